package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Notification channels, as in the path POST /v1/{channel}.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
	ChannelPush  = "push"
)

func isChannel(c string) bool {
	return c == ChannelEmail || c == ChannelSMS || c == ChannelPush
}

// NotifyConfig is the set of failure knobs of a Notifier. The zero value
// delivers everything at once.
//
// On the wire (PUT /admin/config, GET /admin/config) it is
//
//	{"latency":"20ms","fail_rate":{"sms":0.2},"down":{"push":true}}
//
// where latency is a Go duration string ("" or absent means 0) and the map
// keys are channels. A PUT replaces the whole config: absent fields are
// zero; unknown fields and channels are refused.
type NotifyConfig struct {
	// Latency is added to every /v1 request before it is handled; a
	// request whose client gives up meanwhile is dropped unhandled.
	Latency time.Duration `json:"latency"`
	// FailRate is, per channel, the chance (0..1) that a send answers 503
	// without delivering.
	FailRate map[string]float64 `json:"fail_rate"`
	// Down lists channels that answer every send with 503.
	Down map[string]bool `json:"down"`
}

// Validate reports the first knob out of range or naming an unknown channel.
func (c NotifyConfig) Validate() error {
	if err := checkLatency(c.Latency); err != nil {
		return fmt.Errorf("sim: notify config: %w", err)
	}
	for _, ch := range sortedKeys(c.FailRate) {
		if !isChannel(ch) {
			return fmt.Errorf("sim: notify config: fail_rate: unknown channel %q (want email, sms or push)", ch)
		}
		if err := checkRate("fail_rate."+ch, c.FailRate[ch]); err != nil {
			return fmt.Errorf("sim: notify config: %w", err)
		}
	}
	for _, ch := range sortedKeys(c.Down) {
		if !isChannel(ch) {
			return fmt.Errorf("sim: notify config: down: unknown channel %q (want email, sms or push)", ch)
		}
	}
	return nil
}

// clone returns a copy that shares no map with c.
func (c NotifyConfig) clone() NotifyConfig {
	out := NotifyConfig{Latency: c.Latency, FailRate: map[string]float64{}, Down: map[string]bool{}}
	maps.Copy(out.FailRate, c.FailRate)
	maps.Copy(out.Down, c.Down)
	return out
}

type notifyConfigJSON struct {
	Latency  string             `json:"latency"`
	FailRate map[string]float64 `json:"fail_rate"`
	Down     map[string]bool    `json:"down"`
}

// MarshalJSON writes the latency as a Go duration string and nil maps as {}.
func (c NotifyConfig) MarshalJSON() ([]byte, error) {
	cc := c.clone()
	return json.Marshal(notifyConfigJSON{Latency: cc.Latency.String(), FailRate: cc.FailRate, Down: cc.Down})
}

// UnmarshalJSON reads the wire form, refusing unknown fields. It does not
// validate; call Validate.
func (c *NotifyConfig) UnmarshalJSON(b []byte) error {
	var w notifyConfigJSON
	if err := decodeStrict(b, &w); err != nil {
		return err
	}
	d, err := parseLatency(w.Latency)
	if err != nil {
		return err
	}
	*c = NotifyConfig{Latency: d, FailRate: w.FailRate, Down: w.Down}
	return nil
}

// NotifyStats is what GET /stats answers. Every count is since the notifier
// started or was last reset; the per-channel maps always hold all three
// channels.
type NotifyStats struct {
	Delivered  map[string]int `json:"delivered"`  // channel → messages delivered
	Failed     map[string]int `json:"failed"`     // channel → sends answered 503 (down or fail_rate)
	Duplicates int            `json:"duplicates"` // sends whose idempotency key was delivered already
	ByKey      map[string]int `json:"by_key"`     // idempotency key → deliveries (never more than 1)
}

// Delivery is a message the Notifier delivered.
type Delivery struct {
	ID             string `json:"id"`
	Channel        string `json:"channel"`
	To             string `json:"to"`
	Subject        string `json:"subject,omitempty"`
	Body           string `json:"body"`
	IdempotencyKey string `json:"idempotency_key"`
}

type notifyRequest struct {
	To             string `json:"to"`
	Subject        string `json:"subject"`
	Body           string `json:"body"`
	IdempotencyKey string `json:"idempotency_key"`
}

func (r notifyRequest) validate() error {
	if r.To == "" {
		return fmt.Errorf("to is required")
	}
	if r.Body == "" {
		return fmt.Errorf("body is required")
	}
	return checkKey(r.IdempotencyKey)
}

// Notifier simulates the providers behind our email, SMS and push
// notifications. It is an http.Handler serving
//
//	POST /v1/{email|sms|push} {"to","subject","body","idempotency_key"}
//	                          → 202 {"id","channel","status":"delivered"} delivered now
//	                          | 200 the same body, the key was delivered already (not delivered again)
//	                          | 400 | 404 unknown channel | 503 channel down or failing
//	GET  /stats               → NotifyStats
//	GET  /deliveries          → [Delivery...] in delivery order
//	GET  /admin/config, PUT /admin/config (NotifyConfig) → 200 config | 400
//	POST /admin/reset         → 204, deliveries and stats cleared
//
// Idempotency keys are global across channels: a key is delivered at most
// once whatever channel a repeat names. Subject is optional (SMS and push
// have none). Safe for concurrent use.
type Notifier struct {
	mux *http.ServeMux

	mu         sync.Mutex // guards everything below
	cfg        NotifyConfig
	rng        *rand.Rand
	nextID     uint64
	byKey      map[string]*Delivery
	deliveries []*Delivery
	failed     map[string]int
	duplicates int
}

// NewNotifier returns a notifier with knobs cfg and random decisions drawn
// from seed. It panics if cfg is invalid: check configuration that comes
// from outside with Validate first.
func NewNotifier(cfg NotifyConfig, seed int64) *Notifier {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	n := &Notifier{
		mux:    http.NewServeMux(),
		cfg:    cfg.clone(),
		rng:    newRand(seed),
		byKey:  map[string]*Delivery{},
		failed: map[string]int{},
	}
	n.mux.HandleFunc("POST /v1/{channel}", n.handleSend)
	n.mux.HandleFunc("GET /deliveries", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Deliveries())
	})
	handleAdmin(n.mux, func() any { return n.Stats() }, n.Config, n.SetConfig, n.Reset)
	return n
}

// ServeHTTP implements http.Handler.
func (n *Notifier) ServeHTTP(w http.ResponseWriter, r *http.Request) { n.mux.ServeHTTP(w, r) }

// Config returns a copy of the current knobs.
func (n *Notifier) Config() NotifyConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.clone()
}

// SetConfig replaces the knobs, from the next request on, or returns the
// validation error and changes nothing. The notifier keeps a copy of cfg.
func (n *Notifier) SetConfig(cfg NotifyConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg = cfg.clone()
	return nil
}

// Stats returns a snapshot of the counts.
func (n *Notifier) Stats() NotifyStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := NotifyStats{
		Delivered:  map[string]int{ChannelEmail: 0, ChannelSMS: 0, ChannelPush: 0},
		Failed:     map[string]int{ChannelEmail: 0, ChannelSMS: 0, ChannelPush: 0},
		Duplicates: n.duplicates,
		ByKey:      make(map[string]int, len(n.byKey)),
	}
	for _, d := range n.deliveries {
		s.Delivered[d.Channel]++
		s.ByKey[d.IdempotencyKey]++
	}
	maps.Copy(s.Failed, n.failed)
	return s
}

// Deliveries returns a copy of the messages delivered, oldest first.
func (n *Notifier) Deliveries() []Delivery {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Delivery, len(n.deliveries))
	for i, d := range n.deliveries {
		out[i] = *d
	}
	return out
}

// Reset forgets every delivery and zeroes the stats; the knobs stay.
func (n *Notifier) Reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.byKey = map[string]*Delivery{}
	n.deliveries = nil
	n.failed = map[string]int{}
	n.duplicates = 0
}

type sendReply struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Status  string `json:"status"`
}

func (n *Notifier) handleSend(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	latency := n.cfg.Latency
	n.mu.Unlock()
	body, ok := delay(w, r, latency)
	if !ok {
		return
	}

	channel := r.PathValue("channel")
	if !isChannel(channel) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("unknown channel %q (want email, sms or push)", channel))
		return
	}
	var req notifyRequest
	if !decodeValid(w, body, &req) {
		return
	}

	n.mu.Lock()
	if n.cfg.Down[channel] {
		n.failed[channel]++
		n.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "unavailable", channel+" provider is down (simulated)")
		return
	}
	if roll(n.rng, n.cfg.FailRate[channel]) {
		n.failed[channel]++
		n.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "unavailable", channel+" provider failed (simulated); nothing was delivered")
		return
	}
	if d, ok := n.byKey[req.IdempotencyKey]; ok {
		n.duplicates++
		reply := sendReply{ID: d.ID, Channel: d.Channel, Status: "delivered"}
		n.mu.Unlock()
		writeJSON(w, http.StatusOK, reply)
		return
	}
	n.nextID++
	d := &Delivery{
		ID:             fmt.Sprintf("ntf_%08d", n.nextID),
		Channel:        channel,
		To:             req.To,
		Subject:        req.Subject,
		Body:           req.Body,
		IdempotencyKey: req.IdempotencyKey,
	}
	n.byKey[d.IdempotencyKey] = d
	n.deliveries = append(n.deliveries, d)
	n.mu.Unlock()
	writeJSON(w, http.StatusAccepted, sendReply{ID: d.ID, Channel: d.Channel, Status: "delivered"})
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
