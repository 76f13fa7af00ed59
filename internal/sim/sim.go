// Package sim holds simulators of the systems sagaflow talks to but does not
// own: a payment gateway (PaymentGateway), a notification sink for email,
// SMS and push (Notifier), and marketplaces (Marketplace: shopwave, souk and
// bazaar, each with its own wire format and rules). Each is a real
// http.Handler, served by `sagaflow sim`, `sagaflow dev` and the integration
// tests, and speaks the same wire protocol as its client (internal/payment,
// internal/notify, internal/market).
//
// Both keep their state in memory and are safe for concurrent use. Their
// failure knobs (latency, error and decline rates, dropped replies, channels
// that are down) can be changed while they serve, through SetConfig or
// PUT /admin/config. Randomness comes from a math/rand/v2 source seeded by the
// constructor's seed, so a run with the same seed and the same sequence of
// requests makes the same decisions. GET /stats, GET|PUT /admin/config and
// POST /admin/reset are never slowed down nor failed by the knobs.
//
// Errors are JSON: {"error":{"code":"bad_request","message":"..."}}, with
// codes bad_request (400), not_found (404), conflict codes (409),
// body_too_large (413) and unavailable (503).
package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

const (
	// maxBodyBytes bounds every request body: the largest legitimate one (a
	// notification) is a few kilobytes.
	maxBodyBytes = 1 << 20
	// maxLatency bounds the latency knob: anything longer is a typo, and a
	// request held that long outlives every client timeout we use.
	maxLatency = time.Minute
	// maxKeyLen is the longest idempotency key either simulator accepts.
	maxKeyLen = 128
)

// errorBody is the JSON every error response carries.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

// notFound answers every request no route matched.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s", r.Method, r.URL.Path))
}

// readBody reads the request body up to maxBodyBytes. On failure it has
// answered the request already and returns false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	return readBodyLimit(w, r, maxBodyBytes, writeError)
}

// readBodyLimit reads the request body up to limit bytes. On failure it has
// answered 413 or 400 through fail (each simulator speaks its own error
// format) and returns false.
func readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64, fail func(w http.ResponseWriter, status int, code, message string)) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fail(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", limit))
			return nil, false
		}
		fail(w, http.StatusBadRequest, "bad_request", "read body: "+err.Error())
		return nil, false
	}
	return b, true
}

// decodeStrict decodes exactly one JSON value from b into v, refusing
// unknown fields so that a misspelt field is an error, not a silent default.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON: more than one value")
	}
	return nil
}

// decodeBody reads and strictly decodes the request body into v. On failure
// it has answered 400 (or 413) and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	b, ok := readBody(w, r)
	return ok && decodeInto(w, b, v)
}

// decodeInto strictly decodes b into v. On failure it has answered 400 and
// returns false.
func decodeInto(w http.ResponseWriter, b []byte, v any) bool {
	if err := decodeStrict(b, v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	return true
}

// decodeValid is decodeInto, then v's own checks: on either failure it has
// answered 400 and returns false.
func decodeValid(w http.ResponseWriter, b []byte, v interface{ validate() error }) bool {
	if !decodeInto(w, b, v) {
		return false
	}
	if err := v.validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return false
	}
	return true
}

// delay reads the request body, then waits d (the latency knob). It returns
// the body, or false when the request is over: a body too large or
// unreadable (answered already), or a client that gave up during the wait.
// Such a request is dropped unhandled, so that latency alone never applies a
// change nobody hears about (that is what timeout_after_commit_rate is for).
// The body comes first because net/http notices a client going away only
// once the body has been read.
func delay(w http.ResponseWriter, r *http.Request, d time.Duration) ([]byte, bool) {
	b, ok := readBody(w, r)
	if !ok {
		return nil, false
	}
	return b, sleepCtx(r, d)
}

// sleepCtx waits d, and reports false if the client gave up meanwhile.
func sleepCtx(r *http.Request, d time.Duration) bool {
	ctx := r.Context()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}

// newRand returns the deterministic source both simulators draw from.
func newRand(seed int64) *rand.Rand {
	// The second PCG word is a fixed odd constant so that seed 0 is as good
	// a seed as any other.
	return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}

// roll reports whether an event of probability p happens. Rates of 0 and 1
// draw nothing from rng, so knobs at their extremes do not shift the
// sequence of the others.
func roll(rng *rand.Rand, p float64) bool {
	switch {
	case p <= 0:
		return false
	case p >= 1:
		return true
	default:
		return rng.Float64() < p
	}
}

// checkRate reports an error unless 0 <= p <= 1 (NaN included).
func checkRate(name string, p float64) error {
	if !(p >= 0 && p <= 1) {
		return fmt.Errorf("%s must be within 0..1, got %v", name, p)
	}
	return nil
}

// checkLatency reports an error unless 0 <= d <= maxLatency.
func checkLatency(d time.Duration) error {
	if d < 0 || d > maxLatency {
		return fmt.Errorf("latency must be within 0..%s, got %s", maxLatency, d)
	}
	return nil
}

// parseLatency reads the wire form of a latency: a Go duration string such
// as "20ms"; empty means zero.
func parseLatency(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("latency must be a duration such as \"20ms\": %w", err)
	}
	return d, nil
}

// handleAdmin registers the routes every simulator offers operators and
// tests: GET /stats, GET and PUT /admin/config (the whole config, validated
// by set), POST /admin/reset, and a JSON 404 for anything else.
func handleAdmin[C any](mux *http.ServeMux, stats func() any, get func() C, set func(C) error, reset func()) {
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, stats())
	})
	mux.HandleFunc("GET /admin/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, get())
	})
	mux.HandleFunc("PUT /admin/config", func(w http.ResponseWriter, r *http.Request) {
		var cfg C
		if !decodeBody(w, r, &cfg) {
			return
		}
		if err := set(cfg); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, cfg)
	})
	mux.HandleFunc("POST /admin/reset", func(w http.ResponseWriter, r *http.Request) {
		reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", notFound)
}
