package market

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/sagaflow/sagaflow/internal/outbound"
)

// Defaults of Options.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 5 * time.Second
)

const (
	// defaultRetryAfter is the wait a 429 without a usable Retry-After
	// header asks for.
	defaultRetryAfter = time.Second
	// maxResponseBytes bounds what is read of a reply: 500 results of a
	// few hundred bytes each, with room to spare.
	maxResponseBytes = 4 << 20
	// maxMessageLen bounds the market's text quoted in a RejectedError.
	maxMessageLen = 300
)

// Options configures a Client. The zero value is usable: DefaultTimeout, no
// market-wide rate limits, and breakers that open for DefaultBreakerOpenFor
// after DefaultBreakerFailures consecutive transient failures.
type Options struct {
	// Timeout bounds each HTTP call, reading the reply included; zero means
	// DefaultTimeout. The context of Push can end it sooner.
	Timeout time.Duration
	// MarketRatePerSec bounds, per market name, the requests per second of
	// all channels together; absent or 0 means unlimited.
	MarketRatePerSec map[string]float64
	// BreakerFailures is how many consecutive transient failures (5xx,
	// timeouts, connection errors; never 4xx nor 429) open a market's
	// breaker; zero means DefaultBreakerFailures.
	BreakerFailures uint32
	// BreakerOpenFor is how long an open breaker refuses calls before it
	// lets one through to probe the market; zero means
	// DefaultBreakerOpenFor.
	BreakerOpenFor time.Duration
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
}

// Client pushes listings to the markets. Build one per process and share
// it: it is safe for concurrent use, keeps connections alive between calls,
// and holds the per-channel and per-market rate limiters and the per-market
// circuit breakers, which only work if everyone shares them.
type Client struct {
	http    *http.Client
	markets map[string]*endpoint

	mu       sync.Mutex // guards channels
	channels map[string]*channelLimiter
}

// endpoint is a market with its shared limiter and breaker.
type endpoint struct {
	spec    spec
	limiter *rate.Limiter // nil: no market-wide limit
	breaker *gobreaker.CircuitBreaker[[]answer]
}

// channelLimiter is a channel's limiter and the rate it was built for.
type channelLimiter struct {
	perSec  int
	limiter *rate.Limiter
}

// NewClient returns a client with options o. It panics if o is invalid:
// check options that come from outside with Validate first.
func NewClient(o Options) *Client {
	if err := o.Validate(); err != nil {
		panic(err)
	}
	o.setDefaults()
	c := &Client{
		http:     outbound.NewHTTPClient(o.Timeout),
		markets:  make(map[string]*endpoint, len(specs)),
		channels: map[string]*channelLimiter{},
	}
	for name, s := range specs {
		ep := &endpoint{spec: s}
		if r := o.MarketRatePerSec[name]; r > 0 {
			ep.limiter = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		}
		failures := o.BreakerFailures
		ep.breaker = gobreaker.NewCircuitBreaker[[]answer](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1, // one probe while half-open
			Timeout:     o.BreakerOpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			// A 4xx or 429 is an answer: the market is up.
			IsSuccessful: func(err error) bool { return !errors.Is(err, ErrTransient) },
			// A caller that gave up says nothing about the market.
			IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		})
		c.markets[name] = ep
	}
	return c
}

// CloseIdleConnections closes the connections kept alive for later calls.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// BreakerState returns the state of market's circuit breaker: "closed",
// "half-open" or "open" ("" for an unknown market). For metrics and tests.
func (c *Client) BreakerState(market string) string {
	ep, ok := c.markets[market]
	if !ok {
		return ""
	}
	return ep.breaker.State().String()
}

// Push lists items on the channel t. Each item is translated with the
// market's translator: those that cannot be are Rejected without being sent.
// The rest go in requests of at most the market's MaxBatch items, one after
// the other, each waiting for the channel's and the market's rate limiters
// and passing the market's circuit breaker.
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

// send makes one batch request through the limiters and the breaker and
// returns the market's answers, one per listing, checked against skus.
func (c *Client) send(ctx context.Context, ep *endpoint, t Target, listings []any, skus []string) ([]answer, error) {
	// Checked before the limiters, so that an open breaker neither waits
	// nor spends a token.
	if ep.breaker.State() == gobreaker.StateOpen {
		return nil, ErrCircuitOpen
	}
	if err := wait(ctx, c.channelLimiter(t), ep.limiter); err != nil {
		return nil, err
	}
	body, err := ep.spec.encode(listings)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	answers, err := ep.breaker.Execute(func() ([]answer, error) {
		return c.post(ctx, ep.spec, t, body, skus)
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, ErrCircuitOpen
	}
	return answers, err
}

// channelLimiter returns the limiter of t's channel, built anew when the
// channel's rate changed; nil when the channel has no limit.
func (c *Client) channelLimiter(t Target) *rate.Limiter {
	if t.RateLimitPerSec <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.channels[t.ChannelID]
	if cl == nil || cl.perSec != t.RateLimitPerSec {
		cl = &channelLimiter{perSec: t.RateLimitPerSec, limiter: rate.NewLimiter(rate.Limit(t.RateLimitPerSec), max(1, t.RateLimitPerSec))}
		c.channels[t.ChannelID] = cl
	}
	return cl.limiter
}

// wait takes a token from each limiter (nil ones are skipped) and waits
// until all allow the call. If that would outlast ctx's deadline it takes
// nothing and returns a *ThrottledError saying how long the wait would be.
func wait(ctx context.Context, limiters ...*rate.Limiter) error {
	now := time.Now()
	var held []*rate.Reservation
	release := func() {
		for _, r := range held {
			r.CancelAt(now)
		}
	}
	var d time.Duration
	for _, l := range limiters {
		if l == nil {
			continue
		}
		r := l.ReserveN(now, 1)
		if !r.OK() { // cannot happen: every burst is at least 1
			release()
			return fmt.Errorf("%w: rate limiter refused a reservation", ErrTransient)
		}
		held = append(held, r)
		d = max(d, r.DelayFrom(now))
	}
	if d == 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && deadline.Sub(now) < d {
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

// post sends one batch and classifies the reply.
func (c *Client) post(ctx context.Context, s spec, t Target, body []byte, skus []string) ([]answer, error) {
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
		return nil, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: read %d reply: %w", ErrTransient, resp.StatusCode, err)
	}
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		answers, err := s.decode(b)
		if err != nil {
			// The batch may well have been applied; a retry gets duplicates.
			return nil, fmt.Errorf("%w: %w", ErrTransient, err)
		}
		if len(answers) != len(skus) {
			return nil, errReplyMismatch("%d answers for %d items", len(answers), len(skus))
		}
		for i, a := range answers {
			if a.sku != skus[i] {
				return nil, errReplyMismatch("answer %d is for %q, not %q", i, a.sku, skus[i])
			}
		}
		return answers, nil
	case st == http.StatusTooManyRequests:
		return nil, &ThrottledError{RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case st == http.StatusRequestTimeout:
		return nil, fmt.Errorf("%w: %d %s: %s", ErrTransient, st, statusText(st), replyMessage(b))
	case st >= 400 && st < 500:
		return nil, &RejectedError{Status: st, Message: replyMessage(b)}
	default: // 5xx, and anything unexpected
		return nil, fmt.Errorf("%w: %d %s: %s", ErrTransient, st, statusText(st), replyMessage(b))
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

// replyMessage extracts a market's explanation from an error reply: the
// house JSON error ({"error":{"code","message"}}), a Souk XML error
// (<error code="...">message</error>), or else the body itself, shortened.
func replyMessage(b []byte) string {
	var j struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &j) == nil && (j.Error.Code != "" || j.Error.Message != "") {
		return joinCode(j.Error.Code, j.Error.Message)
	}
	var x struct {
		XMLName xml.Name `xml:"error"`
		Code    string   `xml:"code,attr"`
		Message string   `xml:",chardata"`
	}
	if xml.Unmarshal(b, &x) == nil {
		return joinCode(x.Code, strings.TrimSpace(x.Message))
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "no details"
	}
	return shorten(s)
}

func joinCode(code, msg string) string {
	switch {
	case code == "":
		return shorten(msg)
	case msg == "":
		return code
	default:
		return code + ": " + shorten(msg)
	}
}

func shorten(s string) string {
	if len(s) > maxMessageLen {
		return truncate(s, maxMessageLen)
	}
	return s
}

func statusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "status"
}
