package catalog

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/internal/valid"
)

// Channel is a tenant's connection to one market: where to call it, with
// which credentials, and how often.
type Channel struct {
	ID      string `json:"id"`
	Market  string `json:"market"`
	BaseURL string `json:"base_url"`
	// Credentials authenticate the tenant at the market. Never shown back.
	Credentials     string    `json:"-"`
	RateLimitPerSec int       `json:"rate_limit_per_sec"`
	CreatedAt       time.Time `json:"created_at"`
}

// MaxRateLimit bounds a channel's rate limit (calls per second).
const MaxRateLimit = 10_000

// MaxCredentialsLen bounds a channel's credentials, in bytes.
const MaxCredentialsLen = 512

// ChannelPolicy says which base URLs a channel may have. The zero value
// allows none: every base URL needs its host listed in Hosts.
type ChannelPolicy struct {
	// AllowHTTP allows http base URLs (dev, for the simulators); otherwise
	// only https.
	AllowHTTP bool
	// Hosts are, per market, the hosts a base URL may name: "host" allows
	// the scheme's default port only, "host:port" that port. Lower case.
	Hosts map[string][]string
}

// allows reports whether market's hosts include the URL's host and port.
func (p ChannelPolicy) allows(market string, u *url.URL) bool {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for _, entry := range p.Hosts[market] {
		h, hp, err := net.SplitHostPort(entry)
		if err != nil { // no port: the scheme's default
			h, hp = strings.Trim(entry, "[]"), map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if strings.EqualFold(h, host) && hp == port {
			return true
		}
	}
	return false
}

// BaseURLProblem says what is wrong with the form of a base URL, or "": it
// must be http(s), a host and an optional port, and nothing else (no user
// info, no path but "/", no query, not even an empty one, no fragment).
func BaseURLProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return "is required"
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http or https URL"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry user info"
	case u.Port() != "" && !validPort(u.Port()):
		return "has a bad port"
	case (u.Path != "" && u.Path != "/") || u.RawPath != "":
		return "must be scheme, host and port only, without a path"
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "?"):
		return "must be scheme, host and port only, without a query"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must be scheme, host and port only, without a fragment"
	}
	return ""
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

// Validate checks a channel about to be created; markets are the names of
// the markets sagaflow can talk to, p the base URLs allowed. It returns a
// *valid.Error naming each bad field.
func (c Channel) Validate(markets []string, p ChannelPolicy) error {
	var v valid.Errors
	if !slices.Contains(markets, c.Market) {
		v.Add("market", "%q: want one of %s (GET /v1/markets)", c.Market, strings.Join(markets, ", "))
	}
	if msg := BaseURLProblem(c.BaseURL); msg != "" {
		v.Add("base_url", "%s", msg)
	} else if u, _ := url.Parse(c.BaseURL); u.Scheme != "https" && !p.AllowHTTP {
		v.Add("base_url", "must be an https URL")
	} else if v.Empty() && !p.allows(c.Market, u) {
		allowed := strings.Join(p.Hosts[c.Market], ", ")
		if allowed == "" {
			allowed = "none configured"
		}
		v.Add("base_url", "host %q is not allowed for %s (allowed: %s)", u.Host, c.Market, allowed)
	}
	if c.Credentials == "" || len(c.Credentials) > MaxCredentialsLen {
		v.Add("credentials", "must be 1-%d bytes", MaxCredentialsLen)
	} else {
		v.Text("credentials", c.Credentials, 1, MaxCredentialsLen, false)
	}
	if c.RateLimitPerSec < 1 || c.RateLimitPerSec > MaxRateLimit {
		v.Add("rate_limit_per_sec", "must be 1..%d, got %d", MaxRateLimit, c.RateLimitPerSec)
	}
	return v.Err()
}

// ErrTooManyChannels means the tenant has as many channels as it may have.
var ErrTooManyChannels = errors.New("too many channels")

// ChannelLimitError is the refusal of a channel over the tenant's limit.
type ChannelLimitError struct {
	Limit int
}

func (e *ChannelLimitError) Error() string {
	return fmt.Sprintf("a tenant may have at most %d channels (SAGAFLOW_MAX_CHANNELS_PER_TENANT); delete one first", e.Limit)
}

// Is makes errors.Is(err, ErrTooManyChannels) true.
func (e *ChannelLimitError) Is(target error) bool { return target == ErrTooManyChannels }

// Sync statuses of one (channel, SKU), as GET /v1/products/{sku}/sync shows.
const (
	SyncSynced   = "synced"
	SyncPending  = "pending"
	SyncRetrying = "retrying"
	SyncParked   = "parked"
	// SyncInFlight is a sync workflow's own status of a push under way; the
	// API shows it as pending or retrying.
	SyncInFlight = "in_flight"
)

// ParkedItem is a change a channel could not apply: out of retries or
// refused by the market. It waits for an operator's retry or discard.
type ParkedItem struct {
	ID         string    `json:"id"`
	SKU        string    `json:"sku"`
	ChannelID  string    `json:"channel"`
	Market     string    `json:"market"`
	Version    int64     `json:"version"`
	Error      string    `json:"error"`
	Attempts   int       `json:"attempts"`
	Since      time.Time `json:"since"`
	WorkflowID string    `json:"-"`
	// TraceID is the trace id of the parked version's change, when the
	// product still holds that version ("" otherwise, or when none came).
	TraceID string `json:"trace_id"`
}

// ParkedFilter selects parked items; a zero field selects every item.
type ParkedFilter struct {
	Market    string
	ChannelID string
	SKU       string
	// Since keeps the items parked at or after it.
	Since time.Time
}

// Empty reports whether f selects every item.
func (f ParkedFilter) Empty() bool {
	return f.Market == "" && f.ChannelID == "" && f.SKU == "" && f.Since.IsZero()
}

// Matches reports whether f selects it.
func (f ParkedFilter) Matches(it ParkedItem) bool {
	return (f.Market == "" || it.Market == f.Market) && (f.ChannelID == "" || it.ChannelID == f.ChannelID) &&
		(f.SKU == "" || it.SKU == f.SKU) && (f.Since.IsZero() || !it.Since.Before(f.Since))
}
