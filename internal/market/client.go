package market

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 5 * time.Second
	// DefaultMaxChannels bounds the channels whose breaker and local
	// limiter a client keeps; the least recently used go first.
	DefaultMaxChannels = 10_000
	// DefaultChannelIdle is how long a channel's breaker and local limiter
	// are kept after its last push (a deleted channel's go away then).
	DefaultChannelIdle = 15 * time.Minute
)

const (
	// defaultRetryAfter is the wait a 429 without a usable Retry-After
	// header asks for.
	defaultRetryAfter = time.Second
	// maxResponseBytes bounds what is read of a reply: 500 results of a
	// few hundred bytes each, with room to spare.
	maxResponseBytes = 4 << 20
	// maxMessageLen bounds a market's reason for refusing one item.
	maxMessageLen = 300
	// maxWaitWithoutDeadline bounds the rate-limit wait of a push whose
	// context has no deadline.
	maxWaitWithoutDeadline = time.Minute
)

// RateLimiter is a per-channel rate limit shared by every process that
// pushes to the channel (internal/ratelimit implements it in Redis), so that
// several workers together hold the channel's rate. Implementations are safe
// for concurrent use.
type RateLimiter interface {
	// Reserve claims the next call slot of key at perSec calls per second,
	// with a burst of perSec, unless waiting for that slot would take longer
	// than maxWait. It returns how long to wait before calling and whether a
	// slot was claimed; not claimed, wait is how long the wait would be. An
	// error means the shared limit is out of reach: the client then falls
	// back to a local limiter at the same rate.
	Reserve(ctx context.Context, key string, perSec int, maxWait time.Duration) (wait time.Duration, ok bool, err error)
}

// Options configures a Client. The zero value is usable: DefaultTimeout, no
// market-wide rate limits, per-process channel rate limits, breakers that
// open for DefaultBreakerOpenFor after DefaultBreakerFailures consecutive
// transient failures, and calls only to public addresses.
type Options struct {
	// Timeout bounds each HTTP call, reading the reply included; zero means
	// DefaultTimeout. The context of Push can end it sooner.
	Timeout time.Duration
	// MarketRatePerSec bounds, per market name, the requests per second of
	// all channels together in this process; absent or 0 means unlimited.
	MarketRatePerSec map[string]float64
	// BreakerFailures is how many consecutive transient failures (5xx,
	// timeouts, connection errors; never 4xx nor 429) of a channel open
	// that channel's breaker; zero means DefaultBreakerFailures.
	BreakerFailures uint32
	// BreakerOpenFor is how long an open breaker refuses calls before it
	// lets one through to probe the market; zero means
	// DefaultBreakerOpenFor.
	BreakerOpenFor time.Duration
	// Limiter, when set, holds each channel's RateLimitPerSec across
	// processes; nil means each process holds it on its own.
	Limiter RateLimiter
	// AllowPrivateNetworks lets calls reach loopback, private, link-local
	// and other non-public addresses: for dev and its simulators only.
	// Without it a base URL whose host resolves to such an address fails
	// with ErrInvalidTarget before any byte is sent.
	AllowPrivateNetworks bool
	// MaxChannels bounds the channels whose state (breaker, local limiter)
	// is kept; zero means DefaultMaxChannels.
	MaxChannels int
	// ChannelIdle is how long an unused channel's state is kept; zero
	// means DefaultChannelIdle.
	ChannelIdle time.Duration
	// OnBreakerChange, when set, is called when a channel's breaker of
	// market changes state (from and to: "closed", "half-open", "open"),
	// for metrics. It must be quick and must not call the Client.
	OnBreakerChange func(market, from, to string)
}

// Validate reports the first option out of range or naming an unknown
// market.
func (o Options) Validate() error {
	if o.Timeout < 0 {
		return fmt.Errorf("market: options: timeout must be >= 0, got %s", o.Timeout)
	}
	if o.BreakerOpenFor < 0 {
		return fmt.Errorf("market: options: breaker open time must be >= 0, got %s", o.BreakerOpenFor)
	}
	if o.MaxChannels < 0 || o.ChannelIdle < 0 {
		return fmt.Errorf("market: options: max channels and channel idle time must be >= 0")
	}
	for _, name := range slices.Sorted(maps.Keys(o.MarketRatePerSec)) {
		if _, ok := specs[name]; !ok {
			return fmt.Errorf("market: options: rate for %w %q (want one of %s)", ErrUnknownMarket, name, strings.Join(Names(), ", "))
		}
		if r := o.MarketRatePerSec[name]; !(r >= 0) {
			return fmt.Errorf("market: options: rate of %s must be >= 0, got %v", name, r)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = DefaultBreakerFailures
	}
	if o.BreakerOpenFor == 0 {
		o.BreakerOpenFor = DefaultBreakerOpenFor
	}
	if o.MaxChannels == 0 {
		o.MaxChannels = DefaultMaxChannels
	}
	if o.ChannelIdle == 0 {
		o.ChannelIdle = DefaultChannelIdle
	}
}

// Client pushes listings to the markets. Build one per process and share
// it: it is safe for concurrent use, keeps connections alive between calls,
// and holds the per-market rate limiters and, per channel, a circuit breaker
// and a local rate limiter, which only work if everyone shares them.
//
// A breaker belongs to one channel (one tenant's account at one base URL),
// never to a market: a tenant whose channels point at a dead base URL, or
// whose account the market answers with 5xx, opens only its own channels'
// breakers. When a market itself is down, each channel finds out after
// BreakerFailures calls.
type Client struct {
	http     *http.Client
	markets  map[string]*endpoint
	opts     Options
	channels *channelCache
}

// endpoint is a market with its shared limiter.
type endpoint struct {
	name    string
	spec    spec
	limiter *rate.Limiter // nil: no market-wide limit
}

// NewClient returns a client with options o. It panics if o is invalid:
// check options that come from outside with Validate first.
func NewClient(o Options) *Client {
	if err := o.Validate(); err != nil {
		panic(err)
	}
	o.setDefaults()
	c := &Client{
		http:     newHTTPClient(o.Timeout, o.AllowPrivateNetworks),
		markets:  make(map[string]*endpoint, len(specs)),
		opts:     o,
		channels: newChannelCache(o.MaxChannels, o.ChannelIdle),
	}
	for name, s := range specs {
		ep := &endpoint{name: name, spec: s}
		if r := o.MarketRatePerSec[name]; r > 0 {
			ep.limiter = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		}
		c.markets[name] = ep
	}
	return c
}

// newBreaker is the breaker of one channel.
func (c *Client) newBreaker(t Target) *gobreaker.CircuitBreaker[[]answer] {
	failures := c.opts.BreakerFailures
	var onChange func(string, gobreaker.State, gobreaker.State)
	if hook := c.opts.OnBreakerChange; hook != nil {
		onChange = func(_ string, from, to gobreaker.State) { hook(t.Market, from.String(), to.String()) }
	}
	return gobreaker.NewCircuitBreaker[[]answer](gobreaker.Settings{
		Name:          t.ChannelID,
		OnStateChange: onChange,
		MaxRequests:   1, // one probe while half-open
		Timeout:       c.opts.BreakerOpenFor,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// A 4xx or 429 is an answer: the market is up.
		IsSuccessful: func(err error) bool { return !errors.Is(err, ErrTransient) },
		// A caller that gave up says nothing about the market.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
}

// CloseIdleConnections closes the connections kept alive for later calls.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// BreakerState returns the state of the channel's circuit breaker:
// "closed", "half-open" or "open" ("closed" for a channel the client holds
// no state of). For metrics and tests.
func (c *Client) BreakerState(channelID string) string {
	st := c.channels.peek(channelID)
	if st == nil {
		return gobreaker.StateClosed.String()
	}
	return st.breaker.State().String()
}

// EachBreaker calls each once per market and breaker state with how many
// of the channels the client holds are in that state, for metrics; states
// no channel is in are not reported, except "open" (0), so that an alert
// on it has a series to read.
func (c *Client) EachBreaker(each func(market, state string, channels int)) {
	type key struct{ market, state string }
	counts := map[key]int{}
	for name := range c.markets {
		counts[key{name, gobreaker.StateOpen.String()}] = 0
	}
	c.channels.each(func(st *channelState) {
		counts[key{st.market, st.breaker.State().String()}]++
	})
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b key) int {
		return strings.Compare(a.market+"\x00"+a.state, b.market+"\x00"+b.state)
	})
	for _, k := range keys {
		each(k.market, k.state, counts[k])
	}
}

// TrackedChannels is how many channels' state the client holds now.
func (c *Client) TrackedChannels() int { return c.channels.len() }

// Push lists items on the channel t. Each item is translated with the
// market's translator: those that cannot be are Rejected without being sent.
// The rest go in requests of at most the market's MaxBatch items, one after
// the other, each waiting for the channel's and the market's rate limiters
// and passing the channel's circuit breaker.
//
// With a nil error, Push returns one Result per item, in input order. When a
// request fails, Push stops there and returns the error (see the package
// documentation for its kinds) with the same slice, in which the items
// rejected by translation and those of the requests that had succeeded have
// their outcome and all others are Unknown; it is nil only when the call
// could not start (ErrUnknownMarket, ErrInvalidTarget). Sending every item
// again is safe: the market answers Duplicate for keys it has applied.
func (c *Client) Push(ctx context.Context, t Target, items []Item) ([]Result, error) {
	ep, ok := c.markets[t.Market]
	if !ok {
		return nil, fmt.Errorf("market: push to channel %s: %w %q", t.ChannelID, ErrUnknownMarket, t.Market)
	}
	if t.BaseURL == "" || t.Credentials == "" {
		return nil, fmt.Errorf("market: push to channel %s: %w: base URL and credentials are required", t.ChannelID, ErrInvalidTarget)
	}
	if err := CheckBaseURL(t.BaseURL); err != nil {
		return nil, fmt.Errorf("market: push to channel %s: %w", t.ChannelID, err)
	}
	results := make([]Result, len(items))
	var send []int // indexes of the items to send
	var listings []any
	for i, it := range items {
		results[i] = Result{SKU: it.Product.SKU, Version: it.Product.Version, Outcome: Unknown}
		l, err := translateItem(ep.spec, it)
		if err != nil {
			results[i].Outcome, results[i].Reason = Rejected, err.Error()
			continue
		}
		send = append(send, i)
		listings = append(listings, l)
	}
	batch := ep.spec.info().MaxBatch
	for start := 0; start < len(send); start += batch {
		end := min(start+batch, len(send))
		idx := send[start:end]
		skus := make([]string, len(idx))
		for j, i := range idx {
			skus[j] = items[i].Product.SKU
		}
		answers, err := c.send(ctx, ep, t, listings[start:end], skus)
		if err != nil {
			return results, fmt.Errorf("market: push %d items to %s channel %s: %w", len(idx), t.Market, t.ChannelID, err)
		}
		for j, i := range idx {
			a := answers[j]
			results[i].Outcome = a.outcome
			if a.outcome == Rejected {
				results[i].Reason = a.reason
				if a.reason == "" {
					results[i].Reason = "rejected by " + t.Market
				}
			}
		}
	}
	return results, nil
}

// translateItem checks the item's key and translates its product.
func translateItem(s spec, it Item) (any, error) {
	if it.Key == "" || len(it.Key) > MaxKeyLen {
		return nil, fmt.Errorf("%w: idempotency key must be 1-%d bytes, got %d", ErrUnsupported, MaxKeyLen, len(it.Key))
	}
	return s.translate(it.Product, it.Key)
}

// send makes one batch request through the limiters and the channel's
// breaker and returns the market's answers, one per listing, checked
// against skus.
func (c *Client) send(ctx context.Context, ep *endpoint, t Target, listings []any, skus []string) ([]answer, error) {
	st := c.channels.get(t, c.newBreaker)
	// Checked before the limiters, so that an open breaker neither waits
	// nor spends a token.
	if st.breaker.State() == gobreaker.StateOpen {
		return nil, ErrCircuitOpen
	}
	if err := c.wait(ctx, ep, st, t); err != nil {
		return nil, err
	}
	body, err := ep.spec.encode(listings)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	answers, err := st.breaker.Execute(func() ([]answer, error) {
		return c.post(ctx, ep, t, body, skus)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, ErrCircuitOpen
	}
	return answers, err
}

// wait takes a slot of the market's limiter (this process's) and of the
// channel's (shared through Options.Limiter, or else this process's) and
// waits until both allow the call. If that would outlast ctx's deadline it
// takes nothing it can give back and returns a *ThrottledError saying how
// long the wait would be. A shared limiter that fails (Redis down) is
// replaced by the local one at the same rate: never unlimited, and never a
// failed push for want of Redis.
func (c *Client) wait(ctx context.Context, ep *endpoint, st *channelState, t Target) error {
	now := time.Now()
	maxWait := maxWaitWithoutDeadline
	if deadline, ok := ctx.Deadline(); ok {
		maxWait = deadline.Sub(now)
	}
	var held []*rate.Reservation
	release := func() {
		for _, r := range held {
			r.CancelAt(now)
		}
	}
	reserve := func(l *rate.Limiter) (time.Duration, error) {
		r := l.ReserveN(now, 1)
		if !r.OK() { // cannot happen: every burst is at least 1
			return 0, fmt.Errorf("%w: rate limiter refused a reservation", ErrTransient)
		}
		held = append(held, r)
		return r.DelayFrom(now), nil
	}
	var d time.Duration
	if ep.limiter != nil {
		md, err := reserve(ep.limiter)
		if err != nil {
			release()
			return err
		}
		d = md
	}
	if d > maxWait {
		release()
		return fmt.Errorf("market rate limit: %w", &ThrottledError{RetryAfter: d})
	}
	if t.RateLimitPerSec > 0 {
		shared := false
		if c.opts.Limiter != nil {
			cd, ok, err := c.opts.Limiter.Reserve(ctx, t.ChannelID, t.RateLimitPerSec, maxWait)
			switch {
			case err == nil && !ok:
				release()
				return fmt.Errorf("channel rate limit: %w", &ThrottledError{RetryAfter: cd})
			case err == nil:
				shared, d = true, max(d, cd)
			}
		}
		if !shared {
			cd, err := reserve(st.limiter(t.RateLimitPerSec))
			if err != nil {
				release()
				return err
			}
			d = max(d, cd)
		}
	}
	if d == 0 {
		return nil
	}
	if d > maxWait {
		release()
		return fmt.Errorf("local rate limit: %w", &ThrottledError{RetryAfter: d})
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		release()
		return fmt.Errorf("wait for rate limit: %w", ctx.Err())
	}
}

// post sends one batch and classifies the reply. No byte of the reply
// other than a 2xx's per-item answers reaches the error: only the status
// and what it means.
func (c *Client) post(ctx context.Context, ep *endpoint, t Target, body []byte, skus []string) ([]answer, error) {
	s := ep.spec
	url := strings.TrimRight(t.BaseURL, "/") + s.path()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTarget, err)
	}
	req.Header.Set("Content-Type", s.mediaType())
	req.Header.Set("Accept", s.mediaType())
	s.authorize(req.Header, t.Credentials)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportError(ep.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, &StatusError{Market: ep.name, Status: resp.StatusCode, Reason: "reply cut short"}
	}
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		answers, err := s.decode(b)
		if err != nil {
			// The batch may well have been applied; a retry gets duplicates.
			return nil, &StatusError{Market: ep.name, Status: st, Reason: "reply does not decode"}
		}
		if len(answers) != len(skus) {
			return nil, errReplyMismatch("%d answers for %d items", len(answers), len(skus))
		}
		for i, a := range answers {
			if a.sku != skus[i] {
				return nil, errReplyMismatch("answer %d is for another item", i)
			}
		}
		return answers, nil
	case st == http.StatusTooManyRequests:
		return nil, &ThrottledError{RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case st == http.StatusRequestTimeout:
		return nil, &StatusError{Market: ep.name, Status: st, Reason: "request timeout"}
	case st >= 300 && st < 500:
		return nil, &RejectedError{Market: ep.name, Status: st, Message: rejectionReason(st)}
	default: // 5xx, and anything unexpected
		reason := "server error"
		if t := http.StatusText(st); t != "" && st >= 500 {
			reason = strings.ToLower(t)
		}
		return nil, &StatusError{Market: ep.name, Status: st, Reason: reason}
	}
}

// rejectionReason is what a refusal of the whole request means, by status.
func rejectionReason(status int) string {
	switch {
	case status >= 300 && status < 400:
		return "redirect refused; check the channel's base_url"
	case status == http.StatusUnauthorized:
		return "unauthorized; check the channel's credentials"
	case status == http.StatusForbidden:
		return "forbidden; check the channel's credentials"
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
		return "no batch endpoint there; check the channel's base_url"
	default:
		return strings.ToLower(statusText(status))
	}
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP
// date, relative to now. Absent or unreadable means defaultRetryAfter; a
// date in the past means 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return defaultRetryAfter
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 || secs > int64(time.Duration(1<<63-1)/time.Second) {
			return defaultRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(0, at.Sub(now))
	}
	return defaultRetryAfter
}

func statusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "status"
}
