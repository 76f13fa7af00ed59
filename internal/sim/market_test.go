package sim_test

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/sim"
)

// wireItem is an item as a test puts it on any market's wire.
type wireItem struct {
	key, sku  string
	version   int64
	name      string
	amount    int64  // minor units
	priceText string // souk only: the price as sent, instead of amount
	currency  string
	qty       int64
	attrs     [][2]string // in the order sent
}

// marketWire is one market as the tests speak it.
type marketWire struct {
	name       string
	path       string
	authHeader string
	authPrefix string
	maxBatch   int
	isXML      bool
	currency   string
	amount     int64
}

var marketWires = []marketWire{
	{sim.MarketShopwave, "/v2/listings:batch", "Authorization", "Bearer ", 500, false, "USD", 1999},
	{sim.MarketSouk, "/api/items/bulk", "X-Souk-Token", "", 100, true, "USD", 1234},
	{sim.MarketBazaar, "/bulk/products", "X-Api-Key", "", 200, false, "KRW", 15000},
}

func (mw marketWire) item(key, sku string, version int64) wireItem {
	return wireItem{key: key, sku: sku, version: version, name: "Item " + sku, amount: mw.amount, currency: mw.currency,
		qty: 3, attrs: [][2]string{{"color", "red"}, {"size", "L"}}}
}

func (mw marketWire) body(items ...wireItem) string {
	switch mw.name {
	case sim.MarketShopwave:
		out := make([]map[string]any, len(items))
		for i, it := range items {
			attrs := map[string]string{}
			for _, a := range it.attrs {
				attrs[a[0]] = a[1]
			}
			out[i] = map[string]any{"idempotency_key": it.key, "sku": it.sku, "title": it.name,
				"price":    map[string]any{"amount_minor": it.amount, "currency": it.currency},
				"quantity": it.qty, "attributes": attrs, "revision": it.version}
		}
		return mustJSON(map[string]any{"listings": out})
	case sim.MarketSouk:
		var b strings.Builder
		b.WriteString("<items>")
		for _, it := range items {
			price := it.priceText
			if price == "" {
				price = fmt.Sprintf("%d.%02d", it.amount/100, it.amount%100)
			}
			fmt.Fprintf(&b, `<item key="%s" ref="%s" rev="%d"><name>%s</name><price currency="%s">%s</price><qty>%d</qty>`,
				it.key, it.sku, it.version, it.name, it.currency, price, it.qty)
			for _, a := range it.attrs {
				fmt.Fprintf(&b, `<attr name="%s">%s</attr>`, a[0], a[1])
			}
			b.WriteString("</item>")
		}
		b.WriteString("</items>")
		return b.String()
	default:
		out := make([]map[string]any, len(items))
		for i, it := range items {
			opts := make([]map[string]string, len(it.attrs))
			for j, a := range it.attrs {
				opts[j] = map[string]string{"name": a[0], "value": a[1]}
			}
			out[i] = map[string]any{"key": it.key, "productCode": it.sku, "productName": it.name, "salePrice": it.amount,
				"stockQty": it.qty, "options": opts, "seq": it.version}
		}
		return mustJSON(map[string]any{"products": out})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// answer is a market's answer about one item, statuses named as Shopwave
// and Souk name them.
type answer struct{ sku, status, reason string }

func (mw marketWire) answers(t *testing.T, r reply) []answer {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d %q, want 200", r.status, r.body)
	}
	var out []answer
	switch mw.name {
	case sim.MarketShopwave:
		var v struct {
			Results []struct{ SKU, Status, Error string }
		}
		r.decode(t, &v)
		for _, x := range v.Results {
			out = append(out, answer{x.SKU, x.Status, x.Error})
		}
	case sim.MarketSouk:
		var v struct {
			Results []struct {
				Ref    string `xml:"ref,attr"`
				Status string `xml:"status,attr"`
				Reason string `xml:"reason,attr"`
			} `xml:"result"`
		}
		if err := xml.Unmarshal(r.body, &v); err != nil {
			t.Fatalf("reply %q: %v", r.body, err)
		}
		for _, x := range v.Results {
			out = append(out, answer{x.Ref, x.Status, x.Reason})
		}
	default:
		var v struct {
			Items []struct{ ProductCode, Result, Message string }
		}
		r.decode(t, &v)
		names := map[string]string{"OK": "applied", "DUPLICATE": "duplicate", "FAIL": "invalid"}
		for _, x := range v.Items {
			out = append(out, answer{x.ProductCode, names[x.Result], x.Message})
		}
	}
	return out
}

// errorCode returns the code of an error reply in the market's format.
func (mw marketWire) errorCode(t *testing.T, r reply) string {
	t.Helper()
	if !mw.isXML {
		return r.errorCode(t)
	}
	var e struct {
		XMLName xml.Name `xml:"error"`
		Code    string   `xml:"code,attr"`
		Message string   `xml:",chardata"`
	}
	if err := xml.Unmarshal(r.body, &e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("reply %d %q is not an XML error: %v", r.status, r.body, err)
	}
	return e.Code
}

func (mw marketWire) start(t *testing.T, cfg sim.MarketConfig, seed int64) (*sim.Marketplace, string) {
	t.Helper()
	m, err := sim.NewMarketplace(mw.name, cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// post sends a batch as account ("" sends no credentials).
func (mw marketWire) post(t *testing.T, url, account, body string) reply {
	t.Helper()
	r, _ := mw.postH(t, url, account, body)
	return r
}

// postH is post that also returns the reply's headers.
func (mw marketWire) postH(t *testing.T, url, account, body string) (reply, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+mw.path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if account != "" {
		req.Header.Set(mw.authHeader, mw.authPrefix+account)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, b}, resp.Header
}

func forEachMarket(t *testing.T, test func(t *testing.T, mw marketWire)) {
	t.Helper()
	for _, mw := range marketWires {
		t.Run(mw.name, func(t *testing.T) {
			t.Parallel()
			test(t, mw)
		})
	}
}

func TestMarketplace_applies_dedupes_and_counts(t *testing.T) {
	t.Parallel()
	forEachMarket(t, func(t *testing.T, mw marketWire) {
		m, url := mw.start(t, sim.MarketConfig{}, 1)
		bad := mw.item("acct:B:1", "B", 1)
		bad.version = 0
		first := mw.answers(t, mw.post(t, url, "acct", mw.body(mw.item("acct:A:2", "A", 2), bad, mw.item("acct:C:1", "C", 1))))
		if len(first) != 3 || first[0] != (answer{"A", "applied", ""}) || first[1].status != "invalid" ||
			!strings.Contains(first[1].reason, "at least 1") || first[2] != (answer{"C", "applied", ""}) {
			t.Fatalf("answers %+v", first)
		}
		// A repeated key is a duplicate; a lower version under a new key is
		// applied (last write wins) and counted as stale.
		second := mw.answers(t, mw.post(t, url, "acct", mw.body(mw.item("acct:A:2", "A", 2), mw.item("acct:A:1", "A", 1))))
		if len(second) != 2 || second[0].status != "duplicate" || second[1].status != "applied" {
			t.Fatalf("answers %+v", second)
		}
		// Keys and listings are per account.
		other := mw.answers(t, mw.post(t, url, "other", mw.body(mw.item("acct:A:2", "A", 2))))
		if other[0].status != "applied" {
			t.Fatalf("other account: %+v", other)
		}

		want := sim.MarketStats{Market: mw.name, Requests: 3, Items: 6, Applied: 4, DuplicateKeys: 1, StaleWrites: 1, Invalid: 1}
		if s := m.Stats(); s != want {
			t.Fatalf("stats %+v, want %+v", s, want)
		}
		var wire map[string]any
		call(t, "GET", url+"/stats", "").decode(t, &wire)
		for _, k := range []string{"market", "requests", "items", "applied", "duplicate_keys", "stale_writes", "invalid", "injected_5xx", "injected_429", "down_rejections"} {
			if _, ok := wire[k]; !ok {
				t.Fatalf("GET /stats lacks %q: %v", k, wire)
			}
		}

		var got struct {
			Account  string
			Listings map[string]sim.MarketListing
		}
		call(t, "GET", url+"/admin/listings?account=acct", "").decode(t, &got)
		a, c := got.Listings["A"], got.Listings["C"]
		if got.Account != "acct" || len(got.Listings) != 2 || a.Version != 1 || a.Key != "acct:A:1" || c.Version != 1 {
			t.Fatalf("listings %+v", got)
		}
		if a.Name != "Item A" || a.AmountMinor != mw.amount || a.Currency != mw.currency || a.Quantity != 3 ||
			a.Attributes["color"] != "red" || a.Attributes["size"] != "L" {
			t.Fatalf("listing A %+v", a)
		}
	})
}

func TestMarketplace_item_rules(t *testing.T) {
	t.Parallel()
	type rule struct {
		name   string
		modify func(*wireItem)
		reason string
	}
	common := []rule{
		{"no_key", func(it *wireItem) { it.key = "" }, "idempotency key is required"},
		{"key_too_long", func(it *wireItem) { it.key = strings.Repeat("k", 257) }, "at most 256 bytes"},
		{"no_sku", func(it *wireItem) { it.sku = "" }, "sku must be"},
		{"blank_name", func(it *wireItem) { it.name = " " }, "is required"},
		{"negative_stock", func(it *wireItem) { it.qty = -1 }, "got -1"},
	}
	rules := map[string][]rule{
		sim.MarketShopwave: {
			{"title_of_121_runes", func(it *wireItem) { it.name = strings.Repeat("가", 121) }, "at most 120 characters"},
			{"quantity_over_99999", func(it *wireItem) { it.qty = 100_000 }, "0..99999"},
			{"currency_gbp", func(it *wireItem) { it.currency = "GBP" }, "KRW, USD, EUR and JPY"},
		},
		sim.MarketSouk: {
			{"name_of_61_runes", func(it *wireItem) { it.name = strings.Repeat("x", 61) }, "at most 60 characters"},
			{"currency_jpy", func(it *wireItem) { it.currency = "JPY" }, "souk sells only in USD, EUR and KRW"},
			{"price_with_one_decimal", func(it *wireItem) { it.priceText = "12.3" }, "two places"},
			{"price_in_minor_units", func(it *wireItem) { it.priceText = "1234" }, "two places"},
			{"21_attributes", func(it *wireItem) {
				it.attrs = nil
				for i := range 21 {
					it.attrs = append(it.attrs, [2]string{fmt.Sprintf("a%02d", i), "v"})
				}
			}, "at most 20 attributes"},
			{"repeated_attribute", func(it *wireItem) { it.attrs = [][2]string{{"a", "1"}, {"a", "2"}} }, "given twice"},
		},
		sim.MarketBazaar: {
			{"price_not_multiple_of_10", func(it *wireItem) { it.amount = 15005 }, "multiple of 10 won"},
			{"name_of_101_runes", func(it *wireItem) { it.name = strings.Repeat("상", 101) }, "at most 100 characters"},
			{"options_not_sorted", func(it *wireItem) { it.attrs = [][2]string{{"size", "L"}, {"color", "red"}} }, "sorted by name"},
		},
	}
	forEachMarket(t, func(t *testing.T, mw marketWire) {
		m, url := mw.start(t, sim.MarketConfig{}, 1)
		for _, r := range append(common, rules[mw.name]...) {
			it := mw.item("acct:X:1", "X", 1)
			r.modify(&it)
			got := mw.answers(t, mw.post(t, url, "acct", mw.body(it)))
			if len(got) != 1 || got[0].status != "invalid" || !strings.Contains(got[0].reason, r.reason) {
				t.Fatalf("%s: answers %+v, want invalid saying %q", r.name, got, r.reason)
			}
		}
		if s := m.Stats(); s.Applied != 0 || s.Invalid != s.Items {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestMarketplace_refuses_bad_requests(t *testing.T) {
	t.Parallel()
	forEachMarket(t, func(t *testing.T, mw marketWire) {
		m, url := mw.start(t, sim.MarketConfig{MaxBodyBytes: 256 << 10}, 1)
		many := make([]wireItem, mw.maxBatch+1)
		for i := range many {
			many[i] = mw.item(fmt.Sprintf("k%d", i), fmt.Sprintf("S%d", i), 1)
		}
		garbage := `{"listings":`
		if mw.isXML {
			garbage = `<items><item`
		}
		tests := []struct {
			name, account, body string
			status              int
			code                string
		}{
			{"no_credentials", "", mw.body(mw.item("k", "A", 1)), http.StatusUnauthorized, "unauthorized"},
			{"blank_credentials", " ", mw.body(mw.item("k", "A", 1)), http.StatusUnauthorized, "unauthorized"},
			{"malformed_body", "acct", garbage, http.StatusBadRequest, "bad_request"},
			{"empty_batch", "acct", mw.body(), http.StatusBadRequest, "bad_request"},
			{"batch_over_max", "acct", mw.body(many...), http.StatusBadRequest, "bad_request"},
			{"body_too_large", "acct", strings.Repeat(" ", 256<<10+1), http.StatusRequestEntityTooLarge, "body_too_large"},
		}
		if !mw.isXML {
			// A misspelt field is an error, not a silent default.
			misspelt := strings.NewReplacer(`"sku"`, `"skew"`, `"productCode"`, `"code"`).Replace(mw.body(mw.item("k", "A", 1)))
			tests = append(tests, struct {
				name, account, body string
				status              int
				code                string
			}{"unknown_field", "acct", misspelt, http.StatusBadRequest, "bad_request"})
		}
		for _, tt := range tests {
			r, h := mw.postH(t, url, tt.account, tt.body)
			if r.status != tt.status {
				t.Fatalf("%s: status %d %q, want %d", tt.name, r.status, r.body, tt.status)
			}
			if code := mw.errorCode(t, r); code != tt.code {
				t.Fatalf("%s: code %q, want %q", tt.name, code, tt.code)
			}
			if ct := h.Get("Content-Type"); mw.isXML != strings.Contains(ct, "xml") {
				t.Fatalf("%s: content type %q", tt.name, ct)
			}
		}
		if s := m.Stats(); s.Requests != len(tests) || s.Items != 0 || s.Applied != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestMarketplace_failure_knobs_apply_nothing(t *testing.T) {
	t.Parallel()
	forEachMarket(t, func(t *testing.T, mw marketWire) {
		m, url := mw.start(t, sim.MarketConfig{Down: true, ErrorRate: 1, ThrottleRate: 1}, 1)
		body := mw.body(mw.item("k1", "A", 1))
		if r := mw.post(t, url, "acct", body); r.status != http.StatusServiceUnavailable || mw.errorCode(t, r) != "unavailable" {
			t.Fatalf("down: %d %q", r.status, r.body)
		}
		if err := m.SetConfig(sim.MarketConfig{ErrorRate: 1, ThrottleRate: 1}); err != nil {
			t.Fatal(err)
		}
		if r := mw.post(t, url, "acct", body); r.status != http.StatusInternalServerError && r.status != http.StatusServiceUnavailable {
			t.Fatalf("error_rate 1: %d %q", r.status, r.body)
		}
		for _, tt := range []struct{ seconds, want int }{{0, 1}, {5, 5}} {
			if err := m.SetConfig(sim.MarketConfig{ThrottleRate: 1, RetryAfterSeconds: tt.seconds}); err != nil {
				t.Fatal(err)
			}
			r, h := mw.postH(t, url, "acct", body)
			if r.status != http.StatusTooManyRequests || h.Get("Retry-After") != fmt.Sprint(tt.want) || mw.errorCode(t, r) != "rate_limited" {
				t.Fatalf("throttle: %d %q, Retry-After %q, want %d", r.status, r.body, h.Get("Retry-After"), tt.want)
			}
		}
		// Stats and admin are never failed by the knobs.
		if r := call(t, "GET", url+"/stats", ""); r.status != http.StatusOK {
			t.Fatalf("stats: %d", r.status)
		}
		want := sim.MarketStats{Market: mw.name, Requests: 4, DownRejections: 1, Injected5xx: 1, Injected429: 2}
		if s := m.Stats(); s != want {
			t.Fatalf("stats %+v, want %+v", s, want)
		}
		if l := m.Listings("acct"); len(l) != 0 {
			t.Fatalf("listings %+v", l)
		}
	})
}

// One account down answers 503 to that account only.
func TestMarketplace_down_account(t *testing.T) {
	t.Parallel()
	forEachMarket(t, func(t *testing.T, mw marketWire) {
		m, url := mw.start(t, sim.MarketConfig{DownAccount: "sick"}, 1)
		body := mw.body(mw.item("k1", "A", 1))
		if r := mw.post(t, url, "sick", body); r.status != http.StatusServiceUnavailable {
			t.Fatalf("down account: %d %q", r.status, r.body)
		}
		if r := mw.post(t, url, "well", body); r.status != http.StatusOK {
			t.Fatalf("other account: %d %q", r.status, r.body)
		}
		if s := m.Stats(); s.DownRejections != 1 || s.Applied != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestMarketplace_same_seed_same_decisions(t *testing.T) {
	t.Parallel()
	mw := marketWires[0]
	statuses := func() string {
		_, url := mw.start(t, sim.MarketConfig{ErrorRate: 0.3, ThrottleRate: 0.3}, 42)
		var out []string
		for i := range 30 {
			r := mw.post(t, url, "acct", mw.body(mw.item(fmt.Sprint(i), "A", int64(i+1))))
			out = append(out, fmt.Sprint(r.status))
		}
		return strings.Join(out, ",")
	}
	a, b := statuses(), statuses()
	if a != b {
		t.Fatalf("same seed, different decisions:\n%s\n%s", a, b)
	}
	if !strings.Contains(a, "200") || !strings.Contains(a, "429") || !strings.Contains(a, "50") {
		t.Fatalf("30 requests at 30%% error and 30%% throttle rates: %s", a)
	}
}

func TestMarketplace_admin_config(t *testing.T) {
	t.Parallel()
	m, url := marketWires[1].start(t, sim.MarketConfig{}, 1)
	tests := []struct {
		name, body string
		wantStatus int
	}{
		{"error_rate_above_1", `{"error_rate":1.5}`, http.StatusBadRequest},
		{"throttle_rate_negative", `{"throttle_rate":-0.1}`, http.StatusBadRequest},
		{"retry_after_negative", `{"retry_after_seconds":-1}`, http.StatusBadRequest},
		{"retry_after_over_an_hour", `{"retry_after_seconds":3601}`, http.StatusBadRequest},
		{"max_body_negative", `{"max_body_bytes":-1}`, http.StatusBadRequest},
		{"negative_latency", `{"latency":"-1s"}`, http.StatusBadRequest},
		{"latency_too_long", `{"latency":"2m"}`, http.StatusBadRequest},
		{"latency_not_a_duration", `{"latency":"soon"}`, http.StatusBadRequest},
		{"down_not_a_bool", `{"down":"yes"}`, http.StatusBadRequest},
		{"misspelt_knob", `{"throttle":0.5}`, http.StatusBadRequest},
		{"not_json", `throttle`, http.StatusBadRequest},
		{"valid", `{"latency":"5ms","error_rate":0.01,"throttle_rate":0.02,"retry_after_seconds":3,"down":true,"down_account":"a1"}`, http.StatusOK},
	}
	for _, tt := range tests { // in order: the last one sets the config checked below
		r := call(t, "PUT", url+"/admin/config", tt.body)
		if r.status != tt.wantStatus {
			t.Fatalf("%s: status %d %q, want %d", tt.name, r.status, r.body, tt.wantStatus)
		}
		if r.status == http.StatusBadRequest {
			if code := r.errorCode(t); code != "bad_request" {
				t.Fatalf("%s: code %q", tt.name, code)
			}
		}
	}
	want := sim.MarketConfig{Latency: 5 * time.Millisecond, ErrorRate: 0.01, ThrottleRate: 0.02, RetryAfterSeconds: 3, Down: true, DownAccount: "a1"}
	if got := m.Config(); got != want {
		t.Fatalf("Config() = %+v, want %+v", got, want)
	}
	var wire map[string]any
	call(t, "GET", url+"/admin/config", "").decode(t, &wire)
	if wire["latency"] != "5ms" || wire["throttle_rate"] != 0.02 || wire["down"] != true {
		t.Fatalf("GET /admin/config = %v", wire)
	}
	if err := m.SetConfig(sim.MarketConfig{ErrorRate: 2}); err == nil || m.Config() != want {
		t.Fatalf("SetConfig of a bad config: %v, config %+v", err, m.Config())
	}
}

func TestMarketplace_reset_and_listings(t *testing.T) {
	t.Parallel()
	mw := marketWires[2]
	m, url := mw.start(t, sim.MarketConfig{}, 1)
	mw.post(t, url, "acct", mw.body(mw.item("k1", "A", 1)))
	if r := call(t, "GET", url+"/admin/listings", ""); r.status != http.StatusBadRequest || r.errorCode(t) != "bad_request" {
		t.Fatalf("listings without account: %d %q", r.status, r.body)
	}
	var unknown struct{ Listings map[string]sim.MarketListing }
	call(t, "GET", url+"/admin/listings?account=nobody", "").decode(t, &unknown)
	if unknown.Listings == nil || len(unknown.Listings) != 0 {
		t.Fatalf("unknown account: %+v", unknown)
	}
	if r := call(t, "POST", url+"/admin/reset", ""); r.status != http.StatusNoContent {
		t.Fatalf("reset: %d", r.status)
	}
	if s := m.Stats(); s != (sim.MarketStats{Market: mw.name}) || len(m.Listings("acct")) != 0 {
		t.Fatalf("after reset: %+v, %+v", s, m.Listings("acct"))
	}
	// Keys are forgotten too.
	if got := mw.answers(t, mw.post(t, url, "acct", mw.body(mw.item("k1", "A", 1)))); got[0].status != "applied" {
		t.Fatalf("after reset: %+v", got)
	}
	if r := call(t, "GET", url+"/v1/nothing", ""); r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
		t.Fatalf("unknown route: %d %q", r.status, r.body)
	}
}

func TestNewMarketplace_refuses_unknown_market_and_bad_config(t *testing.T) {
	t.Parallel()
	if _, err := sim.NewMarketplace("etsy", sim.MarketConfig{}, 1); err == nil {
		t.Fatal("unknown market accepted")
	}
	if _, err := sim.NewMarketplace(sim.MarketSouk, sim.MarketConfig{ThrottleRate: 2}, 1); err == nil {
		t.Fatal("bad config accepted")
	}
	m, err := sim.NewMarketplace(sim.MarketSouk, sim.MarketConfig{}, 1)
	if err != nil || m.Market() != sim.MarketSouk || m.Path() != "/api/items/bulk" {
		t.Fatalf("souk: %v, %v", m, err)
	}
}
