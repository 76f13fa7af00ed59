package market_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/internal/sim"
)

// fixture is what the contract suite needs to know of one market: a valid
// product for it and one its translator refuses.
type fixture struct {
	market      string
	currency    string
	amount      int64
	unsupported catalog.Money // a price the market cannot take
	reason      string        // what the rejection says
}

var fixtures = []fixture{
	{market.Shopwave, "USD", 1999, catalog.Money{Amount: 100, Currency: "GBP"}, "shopwave sells only in"},
	{market.Souk, "EUR", 1250, catalog.Money{Amount: 1500, Currency: "JPY"}, "souk sells only in USD, EUR and KRW"},
	{market.Bazaar, "KRW", 15000, catalog.Money{Amount: 15005, Currency: "KRW"}, "multiple of 10 won"},
}

func (f fixture) maxBatch(t *testing.T) int {
	t.Helper()
	for _, in := range market.Markets() {
		if in.Name == f.market {
			return in.MaxBatch
		}
	}
	t.Fatalf("no market %q", f.market)
	return 0
}

func (f fixture) product(sku string, version int64) catalog.Product {
	return catalog.Product{
		SKU:        sku,
		Name:       "Product " + sku,
		Price:      catalog.Money{Amount: f.amount, Currency: f.currency},
		Stock:      7,
		Attributes: map[string]string{"color": "red", "size": "L"},
		Version:    version,
	}
}

// items returns n items of channel, SKUs P0..P(n-1) at version, keyed as
// the sync activity keys them.
func (f fixture) items(channel string, n int, version int64) []market.Item {
	out := make([]market.Item, n)
	for i := range out {
		p := f.product(fmt.Sprintf("P%d", i), version)
		out[i] = market.Item{Product: p, Key: fmt.Sprintf("%s:%s:%d", channel, p.SKU, version)}
	}
	return out
}

func (f fixture) unsupportedItem(channel string) market.Item {
	p := f.product("BAD", 1)
	p.Price = f.unsupported
	return market.Item{Product: p, Key: channel + ":BAD:1"}
}

// start serves a new simulator of f's market until the test ends.
func (f fixture) start(t *testing.T, cfg sim.MarketConfig) (*sim.Marketplace, string) {
	t.Helper()
	m, err := sim.NewMarketplace(f.market, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL
}

func (f fixture) target(url, channel string) market.Target {
	return market.Target{ChannelID: channel, Market: f.market, BaseURL: url, Credentials: "tok-" + channel, RateLimitPerSec: 1000}
}

func wantOutcomes(t *testing.T, results []market.Result, items []market.Item, want market.Outcome) {
	t.Helper()
	if len(results) != len(items) {
		t.Fatalf("%d results for %d items", len(results), len(items))
	}
	for i, r := range results {
		if r.SKU != items[i].Product.SKU || r.Version != items[i].Product.Version || r.Outcome != want {
			t.Fatalf("result %d is %+v, want %s of %s v%d", i, r, want, items[i].Product.SKU, items[i].Product.Version)
		}
	}
}

// newClient is market.NewClient allowed to reach the simulators, which
// listen on loopback.
func newClient(o market.Options) *market.Client {
	o.AllowPrivateNetworks = true
	return market.NewClient(o)
}

// TestPush_contract runs the same suite against each market's simulator.
func TestPush_contract(t *testing.T) {
	t.Parallel()
	for _, f := range fixtures {
		t.Run(f.market, func(t *testing.T) {
			t.Parallel()
			suite := []struct {
				name string
				run  func(t *testing.T, f fixture)
			}{
				{"applies_then_answers_duplicate_for_repeated_keys", testAppliesThenDuplicates},
				{"throttled_answer_is_a_throttled_error", testThrottled},
				{"down_market_is_transient", testDown},
				{"breaker_opens_after_transient_failures", testBreakerOpens},
				{"breaker_ignores_throttling_and_rejections", testBreakerIgnoresAnswers},
				{"missing_credentials_are_a_permanent_rejection", testUnauthorized},
				{"stale_write_is_counted", testStaleWrite},
				{"batches_split_by_max_batch", testChunking},
				{"channel_rate_limit_honoured", testChannelRateLimit},
				{"market_rate_limit_honoured", testMarketRateLimit},
				{"concurrent_pushes", testConcurrentPushes},
			}
			for _, s := range suite {
				t.Run(s.name, func(t *testing.T) {
					t.Parallel()
					s.run(t, f)
				})
			}
		})
	}
}

func testAppliesThenDuplicates(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	items := append(f.items("ch1", 3, 1), f.unsupportedItem("ch1"))

	res, err := c.Push(context.Background(), f.target(url, "ch1"), items)
	if err != nil {
		t.Fatal(err)
	}
	wantOutcomes(t, res[:3], items[:3], market.Applied)
	if r := res[3]; r.Outcome != market.Rejected || !strings.Contains(r.Reason, f.reason) || r.SKU != "BAD" {
		t.Fatalf("unsupported item: %+v, want rejected saying %q", r, f.reason)
	}

	again, err := c.Push(context.Background(), f.target(url, "ch1"), items)
	if err != nil {
		t.Fatal(err)
	}
	wantOutcomes(t, again[:3], items[:3], market.Duplicate)
	if again[3].Outcome != market.Rejected {
		t.Fatalf("unsupported item again: %+v", again[3])
	}

	s := m.Stats()
	if s.Requests != 2 || s.Items != 6 || s.Applied != 3 || s.DuplicateKeys != 3 || s.Invalid != 0 || s.StaleWrites != 0 {
		t.Fatalf("stats %+v", s)
	}
	listings := m.Listings("tok-ch1")
	if len(listings) != 3 {
		t.Fatalf("listings %+v", listings)
	}
	for _, it := range items[:3] {
		l := listings[it.Product.SKU]
		if l.Version != 1 || l.Key != it.Key || l.Quantity != 7 || l.AmountMinor != f.amount || l.Currency != f.currency ||
			l.Name != it.Product.Name || l.Attributes["color"] != "red" {
			t.Fatalf("listing of %s: %+v", it.Product.SKU, l)
		}
	}
}

func testThrottled(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{ThrottleRate: 1, RetryAfterSeconds: 7})
	c := newClient(market.Options{})
	items := f.items("ch1", 2, 1)
	res, err := c.Push(context.Background(), f.target(url, "ch1"), items)
	var throttled *market.ThrottledError
	if !errors.As(err, &throttled) || throttled.RetryAfter != 7*time.Second {
		t.Fatalf("error %v, want a ThrottledError after 7s", err)
	}
	if after, ok := market.RetryAfter(err); !ok || after != 7*time.Second || market.IsPermanent(err) || errors.Is(err, market.ErrTransient) {
		t.Fatalf("classification of %v: retry after %s %v, permanent %v", err, after, ok, market.IsPermanent(err))
	}
	wantOutcomes(t, res, items, market.Unknown)
	if s := m.Stats(); s.Injected429 != 1 || s.Applied != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func testDown(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{Down: true})
	c := newClient(market.Options{})
	items := f.items("ch1", 2, 1)
	res, err := c.Push(context.Background(), f.target(url, "ch1"), items)
	if !errors.Is(err, market.ErrTransient) || errors.Is(err, market.ErrCircuitOpen) || market.IsPermanent(err) {
		t.Fatalf("error %v, want ErrTransient", err)
	}
	if _, ok := market.RetryAfter(err); ok {
		t.Fatalf("a 503 has no retry-after: %v", err)
	}
	wantOutcomes(t, res, items, market.Unknown)
	if s := m.Stats(); s.DownRejections != 1 || s.Applied != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func testBreakerOpens(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{Down: true})
	// Open long enough that a stalled test cannot see it half-open early.
	c := newClient(market.Options{BreakerFailures: 3, BreakerOpenFor: 2 * time.Second})
	items := f.items("ch1", 1, 1)
	for i := range 3 {
		_, err := c.Push(context.Background(), f.target(url, "ch1"), items)
		if !errors.Is(err, market.ErrTransient) || errors.Is(err, market.ErrCircuitOpen) {
			t.Fatalf("push %d: %v, want a transient failure from the market", i, err)
		}
	}
	res, err := c.Push(context.Background(), f.target(url, "ch1"), items)
	if !errors.Is(err, market.ErrCircuitOpen) || !errors.Is(err, market.ErrTransient) || market.IsPermanent(err) {
		t.Fatalf("push with the breaker open: %v, want ErrCircuitOpen", err)
	}
	wantOutcomes(t, res, items, market.Unknown)
	if s := m.Stats(); s.Requests != 3 {
		t.Fatalf("%d requests reached the market, want 3 (none while open)", s.Requests)
	}
	// Another channel of the same market has a breaker of its own.
	if st := c.BreakerState("ch2"); st != "closed" {
		t.Fatalf("breaker of ch2 %s, want closed", st)
	}
	if st := c.BreakerState("ch1"); st != "open" {
		t.Fatalf("breaker %s, want open", st)
	}

	// The market comes back; after BreakerOpenFor one probe closes it.
	if err := m.SetConfig(sim.MarketConfig{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for c.BreakerState("ch1") == "open" {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open after 15s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Push(context.Background(), f.target(url, "ch1"), items); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := c.BreakerState("ch1"); st != "closed" {
		t.Fatalf("breaker %s after a good probe, want closed", st)
	}
}

func testBreakerIgnoresAnswers(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{ThrottleRate: 1})
	c := newClient(market.Options{BreakerFailures: 2, BreakerOpenFor: time.Hour})
	items := f.items("ch1", 1, 1)
	for i := range 3 {
		if _, err := c.Push(context.Background(), f.target(url, "ch1"), items); !errors.As(err, new(*market.ThrottledError)) {
			t.Fatalf("push %d: %v, want throttled", i, err)
		}
	}
	if err := m.SetConfig(sim.MarketConfig{}); err != nil {
		t.Fatal(err)
	}
	bad := f.target(url, "ch1")
	bad.Credentials = " " // sent, but blank to the market
	for i := range 3 {
		if _, err := c.Push(context.Background(), bad, items); !errors.As(err, new(*market.RejectedError)) {
			t.Fatalf("push %d: %v, want rejected", i, err)
		}
	}
	if st := c.BreakerState("ch1"); st != "closed" {
		t.Fatalf("breaker %s, want closed: 429 and 4xx are answers", st)
	}
	if s := m.Stats(); s.Requests != 6 {
		t.Fatalf("%d requests, want 6", s.Requests)
	}
}

func testUnauthorized(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	tg := f.target(url, "ch1")
	tg.Credentials = " "
	items := f.items("ch1", 2, 1)
	res, err := c.Push(context.Background(), tg, items)
	var rej *market.RejectedError
	if !errors.As(err, &rej) || rej.Status != http.StatusUnauthorized || !strings.Contains(rej.Message, "unauthorized") {
		t.Fatalf("error %v, want a 401 RejectedError", err)
	}
	if !market.IsPermanent(err) || errors.Is(err, market.ErrTransient) {
		t.Fatalf("a 401 must be permanent: %v", err)
	}
	wantOutcomes(t, res, items, market.Unknown)
	if s := m.Stats(); s.Requests != 1 || s.Items != 0 {
		t.Fatalf("stats %+v", s)
	}

	// No credentials at all: refused before any request.
	tg.Credentials = ""
	if res, err := c.Push(context.Background(), tg, items); !errors.Is(err, market.ErrInvalidTarget) || !market.IsPermanent(err) || res != nil {
		t.Fatalf("empty credentials: %v, %v", res, err)
	}
	tg.Market = "etsy"
	if _, err := c.Push(context.Background(), tg, items); !errors.Is(err, market.ErrUnknownMarket) || !market.IsPermanent(err) {
		t.Fatalf("unknown market: %v", err)
	}
	if s := m.Stats(); s.Requests != 1 {
		t.Fatalf("%d requests, want 1", s.Requests)
	}
}

func testStaleWrite(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	for _, v := range []int64{2, 1} {
		if _, err := c.Push(context.Background(), f.target(url, "ch1"), f.items("ch1", 1, v)); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats(); s.StaleWrites != 1 || s.Applied != 2 {
		t.Fatalf("stats %+v, want 1 stale write", s)
	}
	if l := m.Listings("tok-ch1")["P0"]; l.Version != 1 {
		t.Fatalf("listing %+v: the market applies the last write", l)
	}
}

func testChunking(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	n := f.maxBatch(t)
	items := f.items("ch1", 2*n+1, 1)
	// A rejected item in the middle is not sent and does not shift the
	// others' results.
	items = append(items[:n:n], append([]market.Item{f.unsupportedItem("ch1")}, items[n:]...)...)
	res, err := c.Push(context.Background(), f.target(url, "ch1"), items)
	if err != nil {
		t.Fatal(err)
	}
	if res[n].Outcome != market.Rejected {
		t.Fatalf("result %d: %+v", n, res[n])
	}
	good := append(items[:n:n], items[n+1:]...)
	wantOutcomes(t, append(res[:n:n], res[n+1:]...), good, market.Applied)
	if s := m.Stats(); s.Requests != 3 || s.Applied != 2*n+1 {
		t.Fatalf("stats %+v, want 3 requests for %d items", s, 2*n+1)
	}
}

func testChannelRateLimit(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	slow := f.target(url, "slow")
	slow.RateLimitPerSec = 1 // one request now, the next a second later
	if _, err := c.Push(context.Background(), slow, f.items("slow", 1, 1)); err != nil {
		t.Fatal(err)
	}

	// The deadline is shorter than the limiter's wait: nothing is sent, and
	// the error says how long the wait would be.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	items := f.items("slow", 2, 2)
	res, err := c.Push(ctx, slow, items)
	after, ok := market.RetryAfter(err)
	if !ok || after <= 0 || after > time.Second || market.IsPermanent(err) {
		t.Fatalf("error %v, want throttled for at most 1s", err)
	}
	wantOutcomes(t, res, items, market.Unknown)
	if s := m.Stats(); s.Requests != 1 {
		t.Fatalf("%d requests, want 1", s.Requests)
	}

	// Other channels have limiters of their own.
	if _, err := c.Push(context.Background(), f.target(url, "other"), f.items("other", 1, 1)); err != nil {
		t.Fatalf("other channel: %v", err)
	}
	// A new rate builds a new limiter.
	slow.RateLimitPerSec = 1000
	if _, err := c.Push(context.Background(), slow, items); err != nil {
		t.Fatalf("after raising the rate: %v", err)
	}
	if s := m.Stats(); s.Requests != 3 || s.Applied != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func testMarketRateLimit(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	// One request per 1000 s for the whole market, whatever the channel.
	c := newClient(market.Options{MarketRatePerSec: map[string]float64{f.market: 0.001}})
	n := f.maxBatch(t)
	items := f.items("ch1", 2*n, 1)

	// The first batch goes; the second would wait past the deadline, so
	// Push stops with the first batch's results and the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Push(ctx, f.target(url, "ch1"), items)
	if after, ok := market.RetryAfter(err); !ok || after < 900*time.Second {
		t.Fatalf("error %v, want throttled for ~1000s", err)
	}
	wantOutcomes(t, res[:n], items[:n], market.Applied)
	wantOutcomes(t, res[n:], items[n:], market.Unknown)

	_, err = c.Push(ctx, f.target(url, "ch2"), f.items("ch2", 1, 1))
	if after, ok := market.RetryAfter(err); !ok || after < 900*time.Second {
		t.Fatalf("another channel: %v, want throttled for ~1000s", err)
	}
	if s := m.Stats(); s.Requests != 1 || s.Applied != n {
		t.Fatalf("stats %+v, want 1 request", s)
	}
}

func testConcurrentPushes(t *testing.T, f fixture) {
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	const channels, perChannel = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, channels)
	for i := range channels {
		wg.Go(func() {
			ch := fmt.Sprintf("ch%d", i)
			for v := int64(1); v <= 2; v++ {
				res, err := c.Push(context.Background(), f.target(url, ch), f.items(ch, perChannel, v))
				if err != nil {
					errs <- err
					return
				}
				for _, r := range res {
					if r.Outcome != market.Applied {
						errs <- fmt.Errorf("%s: %+v", ch, r)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s := m.Stats(); s.Applied != 2*channels*perChannel || s.StaleWrites != 0 || s.DuplicateKeys != 0 {
		t.Fatalf("stats %+v", s)
	}
	for i := range channels {
		if l := m.Listings(fmt.Sprintf("tok-ch%d", i)); len(l) != perChannel || l["P0"].Version != 2 {
			t.Fatalf("channel %d: %d listings, P0 %+v", i, len(l), l["P0"])
		}
	}
}

// TestPush_classifies_replies checks the client against replies the
// simulators never give.
func TestPush_classifies_replies(t *testing.T) {
	t.Parallel()
	soon := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		transient bool
		permanent bool
		after     time.Duration // > 0: a ThrottledError about this long (-10s)
		outcome   market.Outcome
		reason    string
	}{
		{name: "invalid_item_is_rejected_with_the_reason", status: 200,
			body: `{"results":[{"sku":"P0","status":"invalid","error":"title has a banned word"}]}`, outcome: market.Rejected, reason: "title has a banned word"},
		{name: "invalid_item_without_reason", status: 200,
			body: `{"results":[{"sku":"P0","status":"invalid"}]}`, outcome: market.Rejected, reason: "rejected by shopwave"},
		{name: "unknown_fields_ignored", status: 200,
			body: `{"results":[{"sku":"P0","status":"applied","id":"L-9"}],"took_ms":3}`, outcome: market.Applied},
		{name: "undecodable_2xx_is_transient", status: 200, body: `<html>`, transient: true},
		{name: "unknown_status_is_transient", status: 200, body: `{"results":[{"sku":"P0","status":"queued"}]}`, transient: true},
		{name: "too_few_answers_is_transient", status: 200, body: `{"results":[]}`, transient: true},
		{name: "answer_for_another_sku_is_transient", status: 200, body: `{"results":[{"sku":"P9","status":"applied"}]}`, transient: true},
		{name: "500_is_transient", status: 500, body: `oops`, transient: true},
		{name: "502_is_transient", status: 502, transient: true},
		{name: "408_is_transient", status: 408, transient: true},
		{name: "400_is_permanent", status: 400, body: `{"error":{"code":"bad_request","message":"listings: want an array"}}`, permanent: true, reason: "market shopwave answered 400 (bad request)"},
		{name: "403_is_permanent", status: 403, body: `forbidden`, permanent: true, reason: "answered 403 (forbidden; check the channel's credentials)"},
		{name: "503_names_status_and_class", status: 503, body: `upstream pool exhausted`, transient: true, reason: "market shopwave answered 503 (service unavailable, transient)"},
		{name: "redirect_is_permanent", status: 302, header: map[string]string{"Location": "http://example.com/"}, permanent: true, reason: "answered 302 (redirect refused"},
		{name: "429_with_seconds", status: 429, header: map[string]string{"Retry-After": "12"}, after: 12 * time.Second},
		{name: "429_with_http_date", status: 429, header: map[string]string{"Retry-After": soon}, after: time.Hour},
		{name: "429_without_header_means_1s", status: 429, after: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/listings:batch" || r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("request %s %s %v", r.Method, r.URL, r.Header)
				}
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c := newClient(market.Options{})
			f := fixtures[0]
			items := f.items("ch", 1, 1)
			res, err := c.Push(context.Background(), market.Target{ChannelID: "ch", Market: market.Shopwave, BaseURL: srv.URL + "/", Credentials: "tok"}, items)

			if got := errors.Is(err, market.ErrTransient); got != tt.transient {
				t.Fatalf("transient %v, want %v: %v", got, tt.transient, err)
			}
			if got := market.IsPermanent(err); got != tt.permanent {
				t.Fatalf("permanent %v, want %v: %v", got, tt.permanent, err)
			}
			after, throttled := market.RetryAfter(err)
			if throttled != (tt.after > 0) || after < tt.after-10*time.Second || after > tt.after {
				t.Fatalf("retry after %s %v, want %s: %v", after, throttled, tt.after, err)
			}
			if tt.outcome != "" {
				if err != nil || res[0].Outcome != tt.outcome || res[0].Reason != tt.reason {
					t.Fatalf("result %+v, %v; want %s %q", res, err, tt.outcome, tt.reason)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tt.reason != "" && !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %q does not quote %q", err, tt.reason)
			}
			wantOutcomes(t, res, items, market.Unknown)
		})
	}
}

func TestPush_connection_refused_is_transient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := newClient(market.Options{Timeout: time.Second})
	_, err := c.Push(context.Background(), fixtures[1].target(url, "ch"), fixtures[1].items("ch", 1, 1))
	if !errors.Is(err, market.ErrTransient) || market.IsPermanent(err) {
		t.Fatalf("error %v, want transient", err)
	}
}

func TestPush_timeout_is_transient(t *testing.T) {
	t.Parallel()
	f := fixtures[2]
	_, url := f.start(t, sim.MarketConfig{Latency: 2 * time.Second})
	c := newClient(market.Options{Timeout: 50 * time.Millisecond})
	_, err := c.Push(context.Background(), f.target(url, "ch"), f.items("ch", 1, 1))
	if !errors.Is(err, market.ErrTransient) || market.IsPermanent(err) {
		t.Fatalf("error %v, want transient", err)
	}
}

func TestPush_without_items_calls_nothing(t *testing.T) {
	t.Parallel()
	f := fixtures[0]
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	for _, items := range [][]market.Item{nil, {f.unsupportedItem("ch")}, {{Product: f.product("P0", 1), Key: ""}}} {
		res, err := c.Push(context.Background(), f.target(url, "ch"), items)
		if err != nil || len(res) != len(items) {
			t.Fatalf("push %v: %v, %v", items, res, err)
		}
		for _, r := range res {
			if r.Outcome != market.Rejected || r.Reason == "" {
				t.Fatalf("result %+v", r)
			}
		}
	}
	if s := m.Stats(); s.Requests != 0 {
		t.Fatalf("%d requests, want 0", s.Requests)
	}
}

func TestOptions_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    market.Options
		ok   bool
	}{
		{"zero_value", market.Options{}, true},
		{"market_rates", market.Options{MarketRatePerSec: map[string]float64{"souk": 2.5, "bazaar": 0}}, true},
		{"unknown_market", market.Options{MarketRatePerSec: map[string]float64{"etsy": 1}}, false},
		{"negative_rate", market.Options{MarketRatePerSec: map[string]float64{"souk": -1}}, false},
		{"negative_timeout", market.Options{Timeout: -time.Second}, false},
		{"negative_open_time", market.Options{BreakerOpenFor: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
