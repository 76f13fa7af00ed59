// Package market is the client of the marketplaces sagaflow lists sellers'
// products on (systems we do not own; internal/sim simulates them). Each
// market has its own wire format and rules: a translator per market turns a
// canonical catalog.Product into that market's listing, or says why it
// cannot (ErrUnsupported), and Client.Push sends a channel's batch through
// the market's rate limits and circuit breaker.
//
// Push sorts the failure of a whole call into one of these, so that the
// caller can decide with IsPermanent and RetryAfter:
//
//   - *ThrottledError: the market answered 429, or the channel's or market's
//     rate limit would make the call wait past the context's deadline. Not
//     permanent; RetryAfter says when to try again.
//   - *RejectedError: the market refused the request (a 4xx other than 408
//     and 429: bad credentials, a malformed request; or a redirect, which is
//     never followed). Permanent.
//   - ErrTransient (a *StatusError for a reply): a 5xx, 408, a timeout, a
//     connection error, a 2xx whose body cannot be read. The items may or
//     may not have been applied; they carry idempotency keys, so sending
//     them again is safe.
//   - ErrCircuitOpen (which is also ErrTransient): the channel's breaker is
//     open after repeated transient failures; no request was made.
//   - ErrUnknownMarket, ErrInvalidTarget: the call cannot be made (also
//     ErrAddressRefused: the host resolves to a non-public address).
//     Permanent.
//
// No error text carries bytes of a market's reply: only the market's name,
// the status and a classified reason ("market shopwave answered 503 (server
// error, transient)"), so a base URL pointed at some other server cannot
// make it echo its answers into the parking lot or the API.
//
// Items the market cannot list are not errors of the call: they come back as
// Results with Outcome Rejected and the reason.
package market

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// The kinds of failure; see the package documentation.
var (
	// ErrUnsupported wraps every reason a translator gives for a product
	// the market cannot list (a currency it does not sell in, a price it
	// cannot express). Permanent for that product version.
	ErrUnsupported = errors.New("unsupported")
	// ErrTransient wraps every failure that may pass: retry later with the
	// same idempotency keys.
	ErrTransient = errors.New("transient failure")
	// ErrCircuitOpen means the channel's circuit breaker is open: no request
	// was made. errors.Is(ErrCircuitOpen, ErrTransient) holds.
	ErrCircuitOpen = fmt.Errorf("circuit breaker open: %w", ErrTransient)
	// ErrUnknownMarket means Target.Market is none of Names().
	ErrUnknownMarket = errors.New("unknown market")
	// ErrInvalidTarget means the Target lacks what a call needs (base URL,
	// credentials).
	ErrInvalidTarget = errors.New("invalid target")
)

// The markets sagaflow can talk to.
const (
	Bazaar   = "bazaar"
	Shopwave = "shopwave"
	Souk     = "souk"
)

// MaxKeyLen is the longest idempotency key an item may carry; every market
// accepts at least this.
const MaxKeyLen = 256

// Info describes a market for GET /v1/markets.
type Info struct {
	Name        string `json:"name"`
	Format      string `json:"format"` // wire format: "json" or "xml"
	Description string `json:"description"`
	MaxBatch    int    `json:"max_batch"` // most items one request may carry
}

// Markets returns the markets sagaflow can talk to, sorted by name.
func Markets() []Info {
	out := make([]Info, 0, len(specs))
	for _, name := range Names() {
		out = append(out, specs[name].info())
	}
	return out
}

// Names returns the names of the markets, sorted.
func Names() []string {
	names := make([]string, 0, len(specs))
	for name := range specs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Target is where and as whom to call: one channel, a tenant's account at
// one market.
type Target struct {
	ChannelID   string
	Market      string
	BaseURL     string // such as "https://api.shopwave.example"; a trailing slash is ignored
	Credentials string
	// RateLimitPerSec bounds the channel's calls (requests, not items) per
	// second; zero or less means no limit of the channel's own.
	RateLimitPerSec int
}

// Item is one product version to list. Key is its idempotency key
// ("channelID:sku:version"): the market applies a key at most once.
type Item struct {
	Product catalog.Product
	Key     string
}

// Outcome is what became of one item.
type Outcome string

// Outcomes of an item.
const (
	// Applied: the market applied the item now.
	Applied Outcome = "applied"
	// Duplicate: the market had seen the key already and applied nothing
	// now; the version was applied before.
	Duplicate Outcome = "duplicate"
	// Rejected: the translator or the market refused the item (Reason says
	// why). Sending the same version again cannot help.
	Rejected Outcome = "rejected"
	// Unknown: the call failed before the market answered for the item. It
	// may or may not have been applied; send it again with the same key.
	Unknown Outcome = "unknown"
)

// Result is the outcome of one item.
type Result struct {
	SKU     string
	Version int64
	Outcome Outcome
	Reason  string // why it was rejected; empty otherwise
}

// ThrottledError means "too many requests, try again after RetryAfter": the
// market answered 429, or a local rate limit would have held the call past
// its context's deadline. Not permanent, and not ErrTransient either, so
// that callers honour RetryAfter instead of their own backoff.
type ThrottledError struct {
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("throttled: retry after %s", e.RetryAfter)
}

// RejectedError is a market's refusal of a whole request (a 3xx, which the
// client never follows, or a 4xx other than 408 and 429). Permanent:
// retrying the same request cannot help.
type RejectedError struct {
	Market string // the market's name
	Status int    // the HTTP status
	// Message is what the status means for the channel ("unauthorized;
	// check the channel's credentials"): never the reply's own text, which
	// comes from a system we do not own.
	Message string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("rejected: market %s answered %d (%s)", e.Market, e.Status, e.Message)
}

// StatusError is a reply that may pass: a 5xx, a 408, or a 2xx that cannot
// be read. Its text is the status and a classified reason, never the
// reply's bytes. errors.Is(err, ErrTransient) holds.
type StatusError struct {
	Market string
	Status int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("market %s answered %d (%s, transient)", e.Market, e.Status, e.Reason)
}

// Unwrap makes a StatusError ErrTransient.
func (e *StatusError) Unwrap() error { return ErrTransient }

// IsPermanent reports whether err is a failure retrying cannot fix: a
// *RejectedError, ErrUnsupported, ErrUnknownMarket or ErrInvalidTarget.
func IsPermanent(err error) bool {
	var rej *RejectedError
	return errors.As(err, &rej) ||
		errors.Is(err, ErrUnsupported) ||
		errors.Is(err, ErrUnknownMarket) ||
		errors.Is(err, ErrInvalidTarget)
}

// RetryAfter returns how long to wait before retrying, when err is (or
// wraps) a *ThrottledError.
func RetryAfter(err error) (time.Duration, bool) {
	var t *ThrottledError
	if errors.As(err, &t) {
		return t.RetryAfter, true
	}
	return 0, false
}

// Translate checks that p can be listed on market and returns nil, or an
// error wrapping ErrUnsupported that says why (ErrUnknownMarket for a market
// that is none of Names()). Push uses the same translators.
func Translate(market string, p catalog.Product) error {
	s, ok := specs[market]
	if !ok {
		return fmt.Errorf("market: %w %q", ErrUnknownMarket, market)
	}
	_, err := s.translate(p, "")
	return err
}
