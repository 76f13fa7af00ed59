package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Markets a Marketplace can simulate.
const (
	MarketBazaar   = "bazaar"
	MarketShopwave = "shopwave"
	MarketSouk     = "souk"
)

const (
	// defaultMarketBodyBytes bounds a batch request body. A Shopwave batch
	// of 500 listings at sagaflow's product limits (50 attributes of 200
	// bytes, escaped) is about 40 MB; real batches are far smaller.
	defaultMarketBodyBytes = 64 << 20
	// maxMarketBodyBytes bounds the max_body_bytes knob.
	maxMarketBodyBytes = 1 << 30
	// maxRetryAfter bounds the retry_after_seconds knob.
	maxRetryAfter = 3600
	// maxMarketKeyLen is the longest idempotency key a market accepts.
	maxMarketKeyLen = 256
	// maxMarketSKULen is the longest SKU a market accepts.
	maxMarketSKULen = 64
)

// MarketConfig is the set of knobs of a Marketplace. The zero value is a
// market that answers at once and never fails.
//
// On the wire (PUT /admin/config, GET /admin/config) it is
//
//	{"latency":"20ms","error_rate":0.01,"throttle_rate":0.05,"retry_after_seconds":2,"down":false,"down_account":"tok-1","max_body_bytes":0}
//
// where latency is a Go duration string ("" or absent means 0). A PUT
// replaces the whole config: absent fields are zero; unknown fields are
// refused.
type MarketConfig struct {
	// Latency is added to every batch request before it is handled; a
	// request whose client gives up meanwhile is dropped unhandled.
	Latency time.Duration `json:"latency"`
	// ErrorRate is the chance (0..1) that a batch request answers 500 or
	// 503 (half each) without applying anything.
	ErrorRate float64 `json:"error_rate"`
	// ThrottleRate is the chance (0..1) that a batch request answers 429
	// with Retry-After: RetryAfterSeconds, without applying anything.
	ThrottleRate float64 `json:"throttle_rate"`
	// RetryAfterSeconds is the Retry-After of a 429 (0..3600; 0 means 1).
	RetryAfterSeconds int `json:"retry_after_seconds"`
	// Down makes every batch request answer 503.
	Down bool `json:"down"`
	// DownAccount, when set, makes the batch requests of that account (its
	// credentials) answer 503, as a market whose shard of one seller's
	// account is down: the endpoint is up for everyone else.
	DownAccount string `json:"down_account,omitempty"`
	// MaxBodyBytes bounds a batch request body (413 beyond); 0 means 64 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes"`
}

// Validate reports the first knob out of range.
func (c MarketConfig) Validate() error {
	errs := []error{
		checkLatency(c.Latency),
		checkRate("error_rate", c.ErrorRate),
		checkRate("throttle_rate", c.ThrottleRate),
	}
	if c.RetryAfterSeconds < 0 || c.RetryAfterSeconds > maxRetryAfter {
		errs = append(errs, fmt.Errorf("retry_after_seconds must be within 0..%d, got %d", maxRetryAfter, c.RetryAfterSeconds))
	}
	if c.MaxBodyBytes < 0 || c.MaxBodyBytes > maxMarketBodyBytes {
		errs = append(errs, fmt.Errorf("max_body_bytes must be within 0..%d, got %d", maxMarketBodyBytes, c.MaxBodyBytes))
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("sim: market config: %w", err)
		}
	}
	return nil
}

func (c MarketConfig) retryAfter() int { return max(1, c.RetryAfterSeconds) }

func (c MarketConfig) bodyLimit() int64 {
	if c.MaxBodyBytes == 0 {
		return defaultMarketBodyBytes
	}
	return c.MaxBodyBytes
}

type marketConfigJSON struct {
	Latency           string  `json:"latency"`
	ErrorRate         float64 `json:"error_rate"`
	ThrottleRate      float64 `json:"throttle_rate"`
	RetryAfterSeconds int     `json:"retry_after_seconds"`
	Down              bool    `json:"down"`
	DownAccount       string  `json:"down_account,omitempty"`
	MaxBodyBytes      int64   `json:"max_body_bytes"`
}

// MarshalJSON writes the latency as a Go duration string.
func (c MarketConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(marketConfigJSON{
		Latency:           c.Latency.String(),
		ErrorRate:         c.ErrorRate,
		ThrottleRate:      c.ThrottleRate,
		RetryAfterSeconds: c.RetryAfterSeconds,
		Down:              c.Down,
		DownAccount:       c.DownAccount,
		MaxBodyBytes:      c.MaxBodyBytes,
	})
}

// UnmarshalJSON reads the wire form, refusing unknown fields. It does not
// validate ranges; call Validate.
func (c *MarketConfig) UnmarshalJSON(b []byte) error {
	var w marketConfigJSON
	if err := decodeStrict(b, &w); err != nil {
		return err
	}
	d, err := parseLatency(w.Latency)
	if err != nil {
		return err
	}
	*c = MarketConfig{
		Latency:           d,
		ErrorRate:         w.ErrorRate,
		ThrottleRate:      w.ThrottleRate,
		RetryAfterSeconds: w.RetryAfterSeconds,
		Down:              w.Down,
		DownAccount:       w.DownAccount,
		MaxBodyBytes:      w.MaxBodyBytes,
	}
	return nil
}

// MarketStats is what GET /stats answers. Every count is since the market
// started or was last reset.
type MarketStats struct {
	Market   string `json:"market"`
	Requests int    `json:"requests"` // batch requests received, whatever became of them
	Items    int    `json:"items"`    // items answered one by one (applied + duplicate_keys + invalid)
	Applied  int    `json:"applied"`  // items applied
	// DuplicateKeys counts items whose idempotency key the account had
	// used already: answered duplicate, not applied.
	DuplicateKeys int `json:"duplicate_keys"`
	// StaleWrites counts items applied over a higher version of the same
	// (account, SKU): the market took an older version after a newer one.
	// A correct client keeps it at 0.
	StaleWrites    int `json:"stale_writes"`
	Invalid        int `json:"invalid"`         // items refused by the market's rules
	Injected5xx    int `json:"injected_5xx"`    // 500s and 503s answered because of error_rate
	Injected429    int `json:"injected_429"`    // 429s answered because of throttle_rate
	DownRejections int `json:"down_rejections"` // 503s answered because the market is down
}

// MarketListing is a listing as a Marketplace holds it, in one shape for
// every market: the price in minor units whatever the market's wire form.
type MarketListing struct {
	Version     int64             `json:"version"`
	Key         string            `json:"key"` // the idempotency key that applied it
	Name        string            `json:"name"`
	AmountMinor int64             `json:"amount_minor"`
	Currency    string            `json:"currency"`
	Quantity    int64             `json:"quantity"`
	Attributes  map[string]string `json:"attributes"`
}

// marketItem is one item of a batch after decoding: its key, SKU and
// listing, or why the market refuses it.
type marketItem struct {
	key     string
	sku     string
	listing MarketListing
	invalid string
}

// Item statuses of a batch reply, before each market names them its way.
const (
	itemApplied   = "applied"
	itemDuplicate = "duplicate"
	itemInvalid   = "invalid"
)

// itemAnswer is the market's answer about one item.
type itemAnswer struct {
	sku, status, reason string
}

// dialect is one market's wire format and rules.
type dialect struct {
	path     string
	maxBatch int
	// account returns the credentials of the request, or "" if they are
	// missing, with the name of the header that carries them.
	account    func(h http.Header) string
	authHeader string
	// decode reads a batch; an error is a malformed request (400).
	decode     func(body []byte) ([]marketItem, error)
	reply      func(w http.ResponseWriter, answers []itemAnswer)
	writeError func(w http.ResponseWriter, status int, code, message string)
}

var dialects = map[string]*dialect{
	MarketShopwave: shopwaveDialect,
	MarketSouk:     soukDialect,
	MarketBazaar:   bazaarDialect,
}

// marketAccount is one account's state: a channel, known by its
// credentials.
type marketAccount struct {
	listings map[string]MarketListing // by SKU
	keys     map[string]struct{}      // idempotency keys seen
}

// Marketplace simulates one marketplace ("shopwave", "souk" or "bazaar"),
// speaking that market's wire format, as internal/market calls it. It is an
// http.Handler serving
//
//	POST <batch path>       the market's batch endpoint (see below)
//	                        → 200 per-item answers | 400 malformed | 401 no credentials
//	                        | 413 body too large | 429 throttled (Retry-After) | 500/503 injected | 503 down
//	GET  /admin/listings?account=X → {"account":X,"listings":{"SKU":MarketListing}} | 400
//	GET  /stats             → MarketStats
//	GET  /admin/config, PUT /admin/config (MarketConfig) → 200 config | 400
//	POST /admin/reset       → 204, listings, keys and stats cleared
//
// The markets:
//
//	shopwave  POST /v2/listings:batch, Authorization: Bearer <token>, JSON, ≤ 500 items
//	souk      POST /api/items/bulk, X-Souk-Token: <token>, XML, ≤ 100 items
//	bazaar    POST /bulk/products, X-Api-Key: <key>, JSON, ≤ 200 items
//
// The credentials value names the account (any non-empty value is
// accepted). Per account, an idempotency key is applied at most once: a
// repeat is answered duplicate and counted in duplicate_keys. Any other
// valid item is applied, last write wins as at a real market, and counted
// in stale_writes if its version is lower than the one applied before for
// that SKU. Items that break the market's rules are answered invalid (FAIL
// at bazaar) with the reason, and their keys are not recorded. Errors are
// JSON as in the package documentation, except Souk's, which are XML:
// <error code="bad_request">message</error>.
//
// Latency applies before handling; a down market, injected 5xx and 429 are
// answered before anything is applied. Safe for concurrent use.
type Marketplace struct {
	market  string
	dialect *dialect
	mux     *http.ServeMux

	mu       sync.Mutex // guards everything below
	cfg      MarketConfig
	rng      *rand.Rand
	accounts map[string]*marketAccount
	stats    MarketStats
}

// NewMarketplace returns a simulator of market with knobs cfg and random
// decisions drawn from seed, or an error if market is unknown or cfg is
// invalid.
func NewMarketplace(market string, cfg MarketConfig, seed int64) (*Marketplace, error) {
	d, ok := dialects[market]
	if !ok {
		return nil, fmt.Errorf("sim: unknown market %q (want bazaar, shopwave or souk)", market)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Marketplace{
		market:   market,
		dialect:  d,
		mux:      http.NewServeMux(),
		cfg:      cfg,
		rng:      newRand(seed),
		accounts: map[string]*marketAccount{},
		stats:    MarketStats{Market: market},
	}
	m.mux.HandleFunc("POST "+d.path, m.handleBatch)
	m.mux.HandleFunc("GET /admin/listings", m.handleListings)
	handleAdmin(m.mux, func() any { return m.Stats() }, m.Config, m.SetConfig, m.Reset)
	return m, nil
}

// ServeHTTP implements http.Handler.
func (m *Marketplace) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Market returns the name of the market simulated.
func (m *Marketplace) Market() string { return m.market }

// Path returns the market's batch endpoint, such as "/v2/listings:batch".
func (m *Marketplace) Path() string { return m.dialect.path }

// Config returns the current knobs.
func (m *Marketplace) Config() MarketConfig {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// SetConfig replaces the knobs, from the next request on, or returns the
// validation error and changes nothing.
func (m *Marketplace) SetConfig(cfg MarketConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg = cfg
	return nil
}

// Stats returns a snapshot of the counts.
func (m *Marketplace) Stats() MarketStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Listings returns a copy of account's listings by SKU (empty, not nil,
// for an unknown account).
func (m *Marketplace) Listings(account string) map[string]MarketListing {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]MarketListing{}
	if a, ok := m.accounts[account]; ok {
		// Listings are replaced, never changed in place, so sharing their
		// attribute maps is safe.
		maps.Copy(out, a.listings)
	}
	return out
}

// Reset forgets every listing and key and zeroes the stats; the knobs stay.
func (m *Marketplace) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.accounts = map[string]*marketAccount{}
	m.stats = MarketStats{Market: m.market}
}

func (m *Marketplace) handleListings(w http.ResponseWriter, r *http.Request) {
	account := r.URL.Query().Get("account")
	if account == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "account is required")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Account  string                   `json:"account"`
		Listings map[string]MarketListing `json:"listings"`
	}{account, m.Listings(account)})
}

func (m *Marketplace) handleBatch(w http.ResponseWriter, r *http.Request) {
	d := m.dialect
	m.mu.Lock()
	m.stats.Requests++
	cfg := m.cfg
	m.mu.Unlock()

	body, ok := readBodyLimit(w, r, cfg.bodyLimit(), d.writeError)
	if !ok {
		return
	}
	if !sleepCtx(r, cfg.Latency) {
		return
	}

	account := d.account(r.Header)
	m.mu.Lock()
	cfg = m.cfg
	status := 0
	switch {
	case cfg.Down, account != "" && account == cfg.DownAccount:
		m.stats.DownRejections++
		status = http.StatusServiceUnavailable
	case roll(m.rng, cfg.ErrorRate):
		m.stats.Injected5xx++
		status = http.StatusInternalServerError
		if m.rng.IntN(2) == 0 {
			status = http.StatusServiceUnavailable
		}
	case roll(m.rng, cfg.ThrottleRate):
		m.stats.Injected429++
		status = http.StatusTooManyRequests
	}
	m.mu.Unlock()
	switch status {
	case 0:
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(cfg.retryAfter()))
		d.writeError(w, status, "rate_limited", "too many requests (simulated); nothing was applied")
		return
	default:
		d.writeError(w, status, "unavailable", m.market+" is temporarily unavailable (simulated); nothing was applied")
		return
	}

	if account == "" {
		d.writeError(w, http.StatusUnauthorized, "unauthorized", "missing credentials: "+d.authHeader+" header")
		return
	}
	items, err := d.decode(body)
	if err != nil {
		d.writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if len(items) == 0 || len(items) > d.maxBatch {
		d.writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("a batch holds 1-%d items, got %d", d.maxBatch, len(items)))
		return
	}
	d.reply(w, m.apply(account, items))
}

// apply applies a batch of account's items and answers for each.
func (m *Marketplace) apply(account string, items []marketItem) []itemAnswer {
	answers := make([]itemAnswer, len(items))
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.accounts[account]
	if a == nil {
		a = &marketAccount{listings: map[string]MarketListing{}, keys: map[string]struct{}{}}
		m.accounts[account] = a
	}
	m.stats.Items += len(items)
	for i, it := range items {
		answers[i].sku = it.sku
		if it.invalid != "" {
			m.stats.Invalid++
			answers[i].status, answers[i].reason = itemInvalid, it.invalid
			continue
		}
		if _, seen := a.keys[it.key]; seen {
			m.stats.DuplicateKeys++
			answers[i].status = itemDuplicate
			continue
		}
		a.keys[it.key] = struct{}{}
		if prev, ok := a.listings[it.sku]; ok && prev.Version > it.listing.Version {
			m.stats.StaleWrites++
		}
		it.listing.Key = it.key
		a.listings[it.sku] = it.listing
		m.stats.Applied++
		answers[i].status = itemApplied
	}
	return answers
}

// checkCommon checks what every market requires of an item; it returns the
// reason the item is invalid, or "".
func checkCommon(key, sku string, version int64, versionField string) string {
	switch {
	case key == "":
		return "idempotency key is required"
	case len(key) > maxMarketKeyLen:
		return fmt.Sprintf("idempotency key must be at most %d bytes, got %d", maxMarketKeyLen, len(key))
	case sku == "" || len(sku) > maxMarketSKULen:
		return fmt.Sprintf("sku must be 1-%d bytes", maxMarketSKULen)
	case version < 1:
		return fmt.Sprintf("%s must be at least 1, got %d", versionField, version)
	}
	return ""
}

// checkText returns the reason a name is invalid: empty or longer than n
// runes.
func checkText(field, s string, n int) string {
	if strings.TrimSpace(s) == "" {
		return field + " is required"
	}
	if c := utf8.RuneCountInString(s); c > n {
		return fmt.Sprintf("%s must be at most %d characters, got %d", field, n, c)
	}
	return ""
}

// firstReason returns the first non-empty reason.
func firstReason(reasons ...string) string {
	for _, r := range reasons {
		if r != "" {
			return r
		}
	}
	return ""
}
