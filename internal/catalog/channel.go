package catalog

import (
	"fmt"
	"net/url"
	"strings"
	"time"
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

// Validate checks a channel about to be created; markets are the names of
// the markets sagaflow can talk to.
func (c Channel) Validate(markets []string) error {
	var errs []string
	known := false
	for _, m := range markets {
		known = known || m == c.Market
	}
	if !known {
		errs = append(errs, fmt.Sprintf("market %q: want one of %s (GET /v1/markets)", c.Market, strings.Join(markets, ", ")))
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		errs = append(errs, "base_url must be an absolute http(s) URL without user info")
	}
	if c.Credentials == "" || len(c.Credentials) > 512 || strings.ContainsAny(c.Credentials, "\r\n") {
		errs = append(errs, "credentials must be 1-512 characters on one line")
	}
	if c.RateLimitPerSec < 1 || c.RateLimitPerSec > MaxRateLimit {
		errs = append(errs, fmt.Sprintf("rate_limit_per_sec must be 1..%d, got %d", MaxRateLimit, c.RateLimitPerSec))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// Sync statuses of one (channel, SKU), as GET /v1/products/{sku}/sync shows.
const (
	SyncSynced   = "synced"
	SyncPending  = "pending"
	SyncRetrying = "retrying"
	SyncParked   = "parked"
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
}
