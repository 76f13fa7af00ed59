package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// Test tokens: they make a new charge's decline decision deterministic
// whatever DeclineRate says. Other tokens follow the rates.
const (
	TokenDecline = "tok_decline" // always declined, reason "card_declined"
	TokenOK      = "tok_ok"      // never declined (errors and dropped replies still apply)
)

// Charge statuses, as on the wire.
const (
	ChargeSucceeded = "succeeded"
	ChargeDeclined  = "declined"
	ChargeRefunded  = "refunded"
	ChargeVoided    = "voided" // the key was voided before any charge was made: none ever will be
)

// maxLateCommitDelay bounds late_commit_delay: a pending charge must not
// outlive a test run by much.
const maxLateCommitDelay = 10 * time.Minute

// paymentHoldMax is how long a dropped reply holds its request when the
// client never gives up: longer than any client timeout we configure.
const paymentHoldMax = 60 * time.Second

// declineReasons are the reasons a random decline picks from, named as real
// gateways name them.
var declineReasons = [...]string{"insufficient_funds", "card_declined", "expired_card", "do_not_honor"}

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// PaymentConfig is the set of failure knobs of a PaymentGateway. The zero
// value is a gateway that answers at once and never fails nor declines.
//
// On the wire (PUT /admin/config, GET /admin/config) it is
//
//	{"latency":"20ms","decline_rate":0.05,"error_rate":0.01,"timeout_after_commit_rate":0.01,
//	 "late_commit_rate":0.05,"late_commit_delay":"2s","in_progress_409_rate":0.05}
//
// where latency and late_commit_delay are Go duration strings ("" or absent
// means 0). A PUT
// replaces the whole config: absent fields are zero; unknown fields are
// refused.
type PaymentConfig struct {
	// Latency is added to every /v1 request before it is handled; a
	// request whose client gives up meanwhile is dropped unhandled.
	Latency time.Duration `json:"latency"`
	// DeclineRate is the chance (0..1) that a new charge is declined (402).
	DeclineRate float64 `json:"decline_rate"`
	// ErrorRate is the chance (0..1) that a /v1 request answers 503 without
	// applying anything.
	ErrorRate float64 `json:"error_rate"`
	// TimeoutAfterCommit is the chance (0..1) that a new charge is applied
	// (succeeded) but no reply comes: the request is held until the client
	// gives up, the gateway is closed or 60 s pass, then its connection is
	// dropped without a response.
	TimeoutAfterCommit float64 `json:"timeout_after_commit_rate"`
	// LateCommitRate is the chance (0..1) that a new charge that would
	// succeed answers 503 as if nothing were applied, yet is committed
	// (succeeded, money taken) at a random time between LateCommitDelay/2
	// and LateCommitDelay later, unless its key is voided first. Until then a lookup of the key answers 404 and a charge
	// with the key answers 409 request_in_progress: the outcome is not final
	// until the key is voided or the charge appears.
	LateCommitRate float64 `json:"late_commit_rate"`
	// LateCommitDelay is the longest a late commit stays pending (0..10m).
	LateCommitDelay time.Duration `json:"late_commit_delay"`
	// InProgress409Rate is the chance (0..1) that a charge request answers
	// 409 request_in_progress and applies nothing, as a gateway does while
	// an earlier request with the same key is still being processed.
	InProgress409Rate float64 `json:"in_progress_409_rate"`
}

// Validate reports the first knob out of range.
func (c PaymentConfig) Validate() error {
	for _, err := range []error{
		checkLatency(c.Latency),
		checkRate("decline_rate", c.DeclineRate),
		checkRate("error_rate", c.ErrorRate),
		checkRate("timeout_after_commit_rate", c.TimeoutAfterCommit),
		checkRate("late_commit_rate", c.LateCommitRate),
		checkLateCommitDelay(c.LateCommitDelay),
		checkRate("in_progress_409_rate", c.InProgress409Rate),
	} {
		if err != nil {
			return fmt.Errorf("sim: payment config: %w", err)
		}
	}
	return nil
}

func checkLateCommitDelay(d time.Duration) error {
	if d < 0 || d > maxLateCommitDelay {
		return fmt.Errorf("late_commit_delay must be within 0..%s, got %s", maxLateCommitDelay, d)
	}
	return nil
}

type paymentConfigJSON struct {
	Latency            string  `json:"latency"`
	DeclineRate        float64 `json:"decline_rate"`
	ErrorRate          float64 `json:"error_rate"`
	TimeoutAfterCommit float64 `json:"timeout_after_commit_rate"`
	LateCommitRate     float64 `json:"late_commit_rate"`
	LateCommitDelay    string  `json:"late_commit_delay"`
	InProgress409Rate  float64 `json:"in_progress_409_rate"`
}

// MarshalJSON writes the latency as a Go duration string.
func (c PaymentConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(paymentConfigJSON{
		Latency:            c.Latency.String(),
		DeclineRate:        c.DeclineRate,
		ErrorRate:          c.ErrorRate,
		TimeoutAfterCommit: c.TimeoutAfterCommit,
		LateCommitRate:     c.LateCommitRate,
		LateCommitDelay:    c.LateCommitDelay.String(),
		InProgress409Rate:  c.InProgress409Rate,
	})
}

// UnmarshalJSON reads the wire form, refusing unknown fields. It does not
// validate ranges; call Validate.
func (c *PaymentConfig) UnmarshalJSON(b []byte) error {
	var w paymentConfigJSON
	if err := decodeStrict(b, &w); err != nil {
		return err
	}
	d, err := parseLatency(w.Latency)
	if err != nil {
		return err
	}
	late, err := parseLatency(w.LateCommitDelay)
	if err != nil {
		return fmt.Errorf("late_commit_delay: %w", err)
	}
	*c = PaymentConfig{Latency: d, DeclineRate: w.DeclineRate, ErrorRate: w.ErrorRate, TimeoutAfterCommit: w.TimeoutAfterCommit,
		LateCommitRate: w.LateCommitRate, LateCommitDelay: late, InProgress409Rate: w.InProgress409Rate}
	return nil
}

// PaymentStats is what GET /stats answers. Every count is since the gateway
// started or was last reset.
type PaymentStats struct {
	Charges          int `json:"charges"`           // succeeded charges ever applied (refunded ones included)
	Declines         int `json:"declines"`          // charges declined
	Refunds          int `json:"refunds"`           // charges refunded
	DuplicateKeys    int `json:"duplicate_keys"`    // charge requests whose key had a charge already
	DuplicateRefunds int `json:"duplicate_refunds"` // refunds of a charge already refunded
	InjectedErrors   int `json:"injected_errors"`   // 503s answered because of error_rate
	DroppedReplies   int `json:"dropped_replies"`   // charges applied whose reply was dropped
	LateCommits      int `json:"late_commits"`      // charges committed after a 503 (late_commit_rate)
	LateCancelled    int `json:"late_cancelled"`    // pending late commits cancelled by a void
	Voids            int `json:"voids"`             // keys voided with no charge made
	InProgress409s   int `json:"in_progress_409s"`  // 409 request_in_progress answered
	Pending          int `json:"pending"`           // late commits still pending now
	// MaxChargesPerKey is the largest value in ChargesByKey (0 when empty),
	// so that a load test can check the invariant without reading the maps.
	MaxChargesPerKey int `json:"max_charges_per_key"`
	// NetByKey is, per idempotency key, the amount charged minus the amount
	// refunded (0 for declined and refunded charges).
	NetByKey map[string]int64 `json:"net_by_key"`
	// ChargesByKey is, per idempotency key, how many times money was taken.
	// It must never exceed 1.
	ChargesByKey map[string]int `json:"charges_by_key"`
}

// paymentCharge is a charge as the gateway stores and sends it.
type paymentCharge struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	Status         string `json:"status"`
	Reason         string `json:"reason,omitempty"`
}

type chargeRequest struct {
	IdempotencyKey string `json:"idempotency_key"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	Token          string `json:"token"`
}

func (r chargeRequest) validate() error {
	if err := checkKey(r.IdempotencyKey); err != nil {
		return err
	}
	if r.Amount < 0 {
		return fmt.Errorf("amount must be >= 0, got %d", r.Amount)
	}
	if !currencyPattern.MatchString(r.Currency) {
		return fmt.Errorf("currency must be three uppercase letters, got %q", r.Currency)
	}
	if r.Token == "" {
		return fmt.Errorf("token is required")
	}
	return nil
}

type refundRequest struct {
	IdempotencyKey string `json:"idempotency_key"`
}

func checkKey(k string) error {
	if k == "" {
		return fmt.Errorf("idempotency_key is required")
	}
	if len(k) > maxKeyLen {
		return fmt.Errorf("idempotency_key must be at most %d bytes, got %d", maxKeyLen, len(k))
	}
	return nil
}

// PaymentGateway simulates a card payment gateway with idempotent charges
// and refunds. It is an http.Handler serving
//
//	POST /v1/charges                 {"idempotency_key","amount","currency","token"}
//	                                 → 201 new charge | 200 the existing charge of that key (any status)
//	                                 | 402 declined charge | 400 | 409 idempotency_mismatch
//	                                 | 409 idempotency_key_voided | 409 request_in_progress | 503
//	                                 | no reply at all: applied, connection dropped (timeout_after_commit_rate)
//	GET  /v1/charges?idempotency_key=K → 200 charge (any status, voided included) | 404 | 400 | 503
//	POST /v1/charges/void            {"idempotency_key"}
//	                                 → 200 the key's charge as it stands (succeeded, declined,
//	                                 refunded), or a new "voided" record: a charge request with
//	                                 the key still pending is cancelled, and none will ever be
//	                                 made for it | 400 | 503
//	POST /v1/charges/{id}/refund     {"idempotency_key"}
//	                                 → 200 refunded charge (again 200 when refunded already)
//	                                 | 404 | 409 charge_declined | 409 charge_voided | 400 | 503
//	GET  /stats                      → PaymentStats
//	GET  /admin/config, PUT /admin/config (PaymentConfig) → 200 config | 400
//	POST /admin/reset                → 204, the ledger and stats cleared
//
// A charge is {"id","idempotency_key","amount","currency","status","reason"}.
// A key's first charge is the only one ever made for it: a repeat (even one
// arriving while the first is being handled) gets that charge back, and a
// repeat with another amount or currency is refused (409). A void is the
// way to make a key's outcome final when a charge's reply was lost: after
// it, a lookup's answer never changes except by a refund (the real-world
// model is a "technical cancel" by merchant reference). The ledger lives
// in memory and is lost with the process. Safe for concurrent use.
type PaymentGateway struct {
	mux    *http.ServeMux
	closed chan struct{}
	close  sync.Once

	mu      sync.Mutex // guards everything below
	cfg     PaymentConfig
	rng     *rand.Rand
	nextID  uint64 // not reset, so that an ID is never given twice
	byKey   map[string]*paymentCharge
	byID    map[string]*paymentCharge
	taken   map[string]int            // key → times money was taken
	pending map[string]*paymentCharge // key → a late commit not yet made
	counter PaymentStats              // counts only; maps are built on demand
}

// NewPaymentGateway returns a gateway with knobs cfg and random decisions
// drawn from seed. It panics if cfg is invalid: check configuration that
// comes from outside with Validate first.
func NewPaymentGateway(cfg PaymentConfig, seed int64) *PaymentGateway {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	g := &PaymentGateway{
		mux:     http.NewServeMux(),
		closed:  make(chan struct{}),
		cfg:     cfg,
		rng:     newRand(seed),
		byKey:   map[string]*paymentCharge{},
		byID:    map[string]*paymentCharge{},
		taken:   map[string]int{},
		pending: map[string]*paymentCharge{},
	}
	g.mux.HandleFunc("POST /v1/charges", g.handleCharge)
	g.mux.HandleFunc("POST /v1/charges/void", g.handleVoid)
	g.mux.HandleFunc("GET /v1/charges", g.handleLookup)
	g.mux.HandleFunc("POST /v1/charges/{id}/refund", g.handleRefund)
	handleAdmin(g.mux, func() any { return g.Stats() }, g.Config, g.SetConfig, g.Reset)
	return g
}

// ServeHTTP implements http.Handler.
func (g *PaymentGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Config returns the current knobs.
func (g *PaymentGateway) Config() PaymentConfig {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

// SetConfig replaces the knobs, from the next request on, or returns the
// validation error and changes nothing.
func (g *PaymentGateway) SetConfig(cfg PaymentConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg = cfg
	return nil
}

// Stats returns a snapshot of the counts and per-key ledger sums.
func (g *PaymentGateway) Stats() PaymentStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.counter
	s.Pending = len(g.pending)
	s.NetByKey = make(map[string]int64, len(g.byKey))
	for k, c := range g.byKey {
		if c.Status == ChargeSucceeded {
			s.NetByKey[k] = c.Amount
		} else {
			s.NetByKey[k] = 0
		}
	}
	s.ChargesByKey = maps.Clone(g.taken)
	if s.ChargesByKey == nil {
		s.ChargesByKey = map[string]int{}
	}
	for _, n := range g.taken {
		s.MaxChargesPerKey = max(s.MaxChargesPerKey, n)
	}
	return s
}

// Reset forgets every charge and zeroes the stats; the knobs stay.
func (g *PaymentGateway) Reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byKey = map[string]*paymentCharge{}
	g.byID = map[string]*paymentCharge{}
	g.taken = map[string]int{}
	g.pending = map[string]*paymentCharge{} // their timers find nothing to commit
	g.counter = PaymentStats{}
}

// Close releases every request held by a dropped reply (their connections
// are dropped at once) and makes later ones drop at once. Call it before
// shutting the server down, which would otherwise wait for them. The gateway
// goes on serving. Idempotent.
func (g *PaymentGateway) Close() {
	g.close.Do(func() { close(g.closed) })
}

func (g *PaymentGateway) latency() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg.Latency
}

// injectErrorLocked rolls error_rate and answers 503 when it hits; the
// caller holds g.mu.
func (g *PaymentGateway) injectErrorLocked(w http.ResponseWriter) bool {
	if !roll(g.rng, g.cfg.ErrorRate) {
		return false
	}
	g.counter.InjectedErrors++
	writeError(w, http.StatusServiceUnavailable, "unavailable", "payment gateway temporarily unavailable (simulated); nothing was applied")
	return true
}

func (g *PaymentGateway) handleCharge(w http.ResponseWriter, r *http.Request) {
	body, ok := delay(w, r, g.latency())
	if !ok {
		return
	}
	var req chargeRequest
	if !decodeValid(w, body, &req) {
		return
	}

	g.mu.Lock()
	if g.injectErrorLocked(w) {
		g.mu.Unlock()
		return
	}
	if roll(g.rng, g.cfg.InProgress409Rate) || g.pending[req.IdempotencyKey] != nil {
		g.counter.InProgress409s++
		g.mu.Unlock()
		writeError(w, http.StatusConflict, "request_in_progress", fmt.Sprintf(
			"a request with idempotency_key %q is being processed; retry later", req.IdempotencyKey))
		return
	}
	if c, ok := g.byKey[req.IdempotencyKey]; ok {
		g.counter.DuplicateKeys++
		existing := *c
		g.mu.Unlock()
		if existing.Status == ChargeVoided {
			writeError(w, http.StatusConflict, "idempotency_key_voided", fmt.Sprintf(
				"idempotency_key %q was voided: no charge will be made for it", req.IdempotencyKey))
			return
		}
		if existing.Amount != req.Amount || existing.Currency != req.Currency {
			writeError(w, http.StatusConflict, "idempotency_mismatch", fmt.Sprintf(
				"idempotency_key %q was used for a charge of %d %s, not %d %s",
				req.IdempotencyKey, existing.Amount, existing.Currency, req.Amount, req.Currency))
			return
		}
		writeJSON(w, http.StatusOK, existing)
		return
	}

	c := &paymentCharge{IdempotencyKey: req.IdempotencyKey, Amount: req.Amount, Currency: req.Currency}
	g.nextID++
	c.ID = fmt.Sprintf("ch_%08d", g.nextID)
	declined, reason := false, ""
	switch {
	case req.Token == TokenDecline:
		declined, reason = true, "card_declined"
	case req.Token == TokenOK:
	case roll(g.rng, g.cfg.DeclineRate):
		declined, reason = true, declineReasons[g.rng.IntN(len(declineReasons))]
	}
	g.byKey[c.IdempotencyKey] = c
	g.byID[c.ID] = c
	if declined {
		c.Status, c.Reason = ChargeDeclined, reason
		g.counter.Declines++
		reply := *c
		g.mu.Unlock()
		writeJSON(w, http.StatusPaymentRequired, reply)
		return
	}
	if roll(g.rng, g.cfg.LateCommitRate) {
		// Answer as if nothing were applied, and commit later.
		delete(g.byKey, c.IdempotencyKey)
		delete(g.byID, c.ID)
		g.pending[c.IdempotencyKey] = c
		wait := g.cfg.LateCommitDelay / 2
		if half := int64(g.cfg.LateCommitDelay - wait); half > 0 {
			wait += time.Duration(g.rng.Int64N(half + 1))
		}
		time.AfterFunc(wait, func() { g.commitLate(c) })
		g.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "unavailable", "payment gateway temporarily unavailable (simulated)")
		return
	}
	c.Status = ChargeSucceeded
	g.counter.Charges++
	g.taken[c.IdempotencyKey]++
	drop := roll(g.rng, g.cfg.TimeoutAfterCommit)
	if drop {
		g.counter.DroppedReplies++
	}
	reply := *c
	g.mu.Unlock()

	if drop {
		g.dropReply(w, r)
		return
	}
	writeJSON(w, http.StatusCreated, reply)
}

// commitLate makes the pending charge c, unless its key was voided or the
// gateway reset meanwhile.
func (g *PaymentGateway) commitLate(c *paymentCharge) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending[c.IdempotencyKey] != c {
		return
	}
	delete(g.pending, c.IdempotencyKey)
	c.Status = ChargeSucceeded
	g.byKey[c.IdempotencyKey] = c
	g.byID[c.ID] = c
	g.counter.Charges++
	g.counter.LateCommits++
	g.taken[c.IdempotencyKey]++
}

// keyedRequest waits the configured latency and reads a body that names an
// idempotency key (a refund or a void); it answers the error itself when
// the body is bad, and then reports false.
func (g *PaymentGateway) keyedRequest(w http.ResponseWriter, r *http.Request) (refundRequest, bool) {
	var req refundRequest
	body, ok := delay(w, r, g.latency())
	if !ok || !decodeInto(w, body, &req) {
		return req, false
	}
	if err := checkKey(req.IdempotencyKey); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return req, false
	}
	return req, true
}

// handleVoid makes a key's outcome final: the charge made under it is
// returned as it stands; otherwise the key is voided (a pending late commit
// is cancelled) and no charge will ever be made for it.
func (g *PaymentGateway) handleVoid(w http.ResponseWriter, r *http.Request) {
	req, ok := g.keyedRequest(w, r)
	if !ok {
		return
	}
	g.mu.Lock()
	if g.injectErrorLocked(w) {
		g.mu.Unlock()
		return
	}
	c, ok := g.byKey[req.IdempotencyKey]
	if !ok {
		if p := g.pending[req.IdempotencyKey]; p != nil {
			delete(g.pending, req.IdempotencyKey)
			g.counter.LateCancelled++
			c = p
		} else {
			g.nextID++
			c = &paymentCharge{ID: fmt.Sprintf("ch_%08d", g.nextID), IdempotencyKey: req.IdempotencyKey}
		}
		c.Status = ChargeVoided
		g.byKey[c.IdempotencyKey] = c
		g.byID[c.ID] = c
		g.counter.Voids++
	}
	reply := *c
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, reply)
}

// dropReply holds the request until the client gives up, the gateway is
// closed or paymentHoldMax passes, then drops the connection without writing
// anything: the client cannot tell whether the charge was applied.
func (g *PaymentGateway) dropReply(w http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(paymentHoldMax)
	defer t.Stop()
	select {
	case <-r.Context().Done():
	case <-g.closed:
	case <-t.C:
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	// Not hijackable (HTTP/2): aborting the handler resets the stream
	// without a response, which is the same thing to the client.
	panic(http.ErrAbortHandler)
}

func (g *PaymentGateway) handleLookup(w http.ResponseWriter, r *http.Request) {
	if _, ok := delay(w, r, g.latency()); !ok {
		return
	}
	key := r.URL.Query().Get("idempotency_key")
	if err := checkKey(key); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	g.mu.Lock()
	if g.injectErrorLocked(w) {
		g.mu.Unlock()
		return
	}
	c, ok := g.byKey[key]
	var reply paymentCharge
	if ok {
		reply = *c
	}
	g.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no charge with idempotency_key %q", key))
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

func (g *PaymentGateway) handleRefund(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.keyedRequest(w, r); !ok {
		return
	}
	id := r.PathValue("id")

	g.mu.Lock()
	if g.injectErrorLocked(w) {
		g.mu.Unlock()
		return
	}
	c, ok := g.byID[id]
	if !ok {
		g.mu.Unlock()
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no charge %q", id))
		return
	}
	switch c.Status {
	case ChargeDeclined:
		g.mu.Unlock()
		writeError(w, http.StatusConflict, "charge_declined", fmt.Sprintf("charge %s was declined: nothing to refund", id))
		return
	case ChargeVoided:
		g.mu.Unlock()
		writeError(w, http.StatusConflict, "charge_voided", fmt.Sprintf("charge %s was voided: nothing to refund", id))
		return
	case ChargeRefunded:
		g.counter.DuplicateRefunds++
	default:
		c.Status = ChargeRefunded
		g.counter.Refunds++
	}
	reply := *c
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, reply)
}
