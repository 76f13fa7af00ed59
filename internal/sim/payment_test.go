package sim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/sim"
)

// startGateway serves a new gateway until the test ends.
func startGateway(t *testing.T, cfg sim.PaymentConfig, seed int64) (*sim.PaymentGateway, string) {
	t.Helper()
	g := sim.NewPaymentGateway(cfg, seed)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.Close) // runs first: releases held requests so Close does not wait
	return g, srv.URL
}

type reply struct {
	status int
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d reply %q: %v", r.status, r.body, err)
	}
}

// errorCode returns the code of a JSON error reply, failing the test if the
// reply is not one.
func (r reply) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	r.decode(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("reply %d %q is not a JSON error", r.status, r.body)
	}
	return e.Error.Code
}

func call(t *testing.T, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, b}
}

func chargeBody(key string, amount int64, token string) string {
	return fmt.Sprintf(`{"idempotency_key":%q,"amount":%d,"currency":"KRW","token":%q}`, key, amount, token)
}

type charge struct {
	ID, IdempotencyKey, Currency, Status, Reason string
	Amount                                       int64
}

func TestPaymentGateway_bad_requests_answer_400_json(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{}, 1)
	tests := []struct {
		name, method, path, body string
	}{
		{"not_json", "POST", "/v1/charges", `{`},
		{"two_values", "POST", "/v1/charges", chargeBody("k", 1, "tok_ok") + `{}`},
		{"unknown_field", "POST", "/v1/charges", `{"idempotency_key":"k","amount":1,"currency":"KRW","token":"t","amuont":2}`},
		{"no_key", "POST", "/v1/charges", chargeBody("", 1, "tok_ok")},
		{"key_too_long", "POST", "/v1/charges", chargeBody(strings.Repeat("k", 129), 1, "tok_ok")},
		{"negative_amount", "POST", "/v1/charges", chargeBody("k", -1, "tok_ok")},
		{"amount_not_integer", "POST", "/v1/charges", `{"idempotency_key":"k","amount":1.5,"currency":"KRW","token":"t"}`},
		{"lowercase_currency", "POST", "/v1/charges", `{"idempotency_key":"k","amount":1,"currency":"krw","token":"t"}`},
		{"long_currency", "POST", "/v1/charges", `{"idempotency_key":"k","amount":1,"currency":"KRWX","token":"t"}`},
		{"no_token", "POST", "/v1/charges", chargeBody("k", 1, "")},
		{"lookup_without_key", "GET", "/v1/charges", ""},
		{"refund_without_key", "POST", "/v1/charges/ch_1/refund", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, tt.method, url+tt.path, tt.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d %q, want 400", r.status, r.body)
			}
			if code := r.errorCode(t); code != "bad_request" {
				t.Fatalf("code %q, want bad_request", code)
			}
		})
	}
	if s := g.Stats(); s.Charges+s.Declines != 0 || len(s.NetByKey) != 0 {
		t.Fatalf("bad requests changed the ledger: %+v", s)
	}
}

func TestPaymentGateway_same_key_never_charges_twice(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{}, 1)
	first := call(t, "POST", url+"/v1/charges", chargeBody("join-1", 5000, "tok_ok"))
	again := call(t, "POST", url+"/v1/charges", chargeBody("join-1", 5000, "tok_other"))
	if first.status != http.StatusCreated || again.status != http.StatusOK {
		t.Fatalf("statuses %d, %d; want 201, 200", first.status, again.status)
	}
	var a, b charge
	first.decode(t, &a)
	again.decode(t, &b)
	if a != b || a.Status != sim.ChargeSucceeded || a.Amount != 5000 || a.Currency != "KRW" {
		t.Fatalf("charges differ or are wrong: %+v, %+v", a, b)
	}
	mismatch := call(t, "POST", url+"/v1/charges", chargeBody("join-1", 7000, "tok_ok"))
	if mismatch.status != http.StatusConflict || mismatch.errorCode(t) != "idempotency_mismatch" {
		t.Fatalf("another amount under the same key: %d %q, want 409 idempotency_mismatch", mismatch.status, mismatch.body)
	}
	s := g.Stats()
	if s.Charges != 1 || s.DuplicateKeys != 2 || s.NetByKey["join-1"] != 5000 || s.ChargesByKey["join-1"] != 1 || s.MaxChargesPerKey != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPaymentGateway_refund_rules(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{}, 1)
	var ok, declined charge
	call(t, "POST", url+"/v1/charges", chargeBody("join-ok", 100, "tok_ok")).decode(t, &ok)
	d := call(t, "POST", url+"/v1/charges", chargeBody("join-declined", 100, sim.TokenDecline))
	if d.status != http.StatusPaymentRequired {
		t.Fatalf("tok_decline: status %d, want 402", d.status)
	}
	d.decode(t, &declined)
	if declined.Status != sim.ChargeDeclined || declined.Reason == "" || declined.ID == "" {
		t.Fatalf("declined charge %+v", declined)
	}
	refund := `{"idempotency_key":"refund-1"}`
	tests := []struct {
		name       string
		id         string
		wantStatus int
		wantCode   string
	}{
		{"refund", ok.ID, http.StatusOK, ""},
		{"refund_again_is_idempotent", ok.ID, http.StatusOK, ""},
		{"unknown_id", "ch_nope", http.StatusNotFound, "not_found"},
		{"declined_charge", declined.ID, http.StatusConflict, "charge_declined"},
	}
	for _, tt := range tests { // in order: the second refund depends on the first
		r := call(t, "POST", url+"/v1/charges/"+tt.id+"/refund", refund)
		if r.status != tt.wantStatus {
			t.Fatalf("%s: status %d %q, want %d", tt.name, r.status, r.body, tt.wantStatus)
		}
		if tt.wantCode != "" {
			if code := r.errorCode(t); code != tt.wantCode {
				t.Fatalf("%s: code %q, want %q", tt.name, code, tt.wantCode)
			}
			continue
		}
		var c charge
		r.decode(t, &c)
		if c.ID != ok.ID || c.Status != sim.ChargeRefunded {
			t.Fatalf("%s: %+v", tt.name, c)
		}
	}
	s := g.Stats()
	if s.Refunds != 1 || s.DuplicateRefunds != 1 || s.NetByKey["join-ok"] != 0 || s.NetByKey["join-declined"] != 0 ||
		s.ChargesByKey["join-ok"] != 1 || s.ChargesByKey["join-declined"] != 0 || s.Declines != 1 {
		t.Fatalf("stats %+v", s)
	}
	// A repeat of the charge after the refund returns the refunded charge.
	var again charge
	call(t, "POST", url+"/v1/charges", chargeBody("join-ok", 100, "tok_ok")).decode(t, &again)
	if again.Status != sim.ChargeRefunded || g.Stats().Charges != 1 {
		t.Fatalf("repeat after refund: %+v", again)
	}
}

func TestPaymentGateway_error_rate_applies_nothing_and_spares_stats_and_admin(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{ErrorRate: 1, Latency: time.Second}, 1)
	// Latency holds /v1 requests only; admin and stats answer at once.
	start := time.Now()
	for _, path := range []string{"/stats", "/admin/config"} {
		if r := call(t, "GET", url+path, ""); r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %q", path, r.status, r.body)
		}
	}
	if d := time.Since(start); d >= 2*time.Second { // each would take 1s if held
		t.Fatalf("stats and admin took %s: latency applied to them", d)
	}
	if err := g.SetConfig(sim.PaymentConfig{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []reply{
		call(t, "POST", url+"/v1/charges", chargeBody("join-1", 100, "tok_ok")),
		call(t, "GET", url+"/v1/charges?idempotency_key=join-1", ""),
		call(t, "POST", url+"/v1/charges/ch_00000001/refund", `{"idempotency_key":"r"}`),
	} {
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "unavailable" {
			t.Fatalf("status %d %q, want 503 unavailable", r.status, r.body)
		}
	}
	if s := g.Stats(); s.Charges != 0 || len(s.NetByKey) != 0 || s.InjectedErrors != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPaymentGateway_dropped_reply_applies_the_charge_and_drops_the_connection(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{TimeoutAfterCommit: 1}, 1)
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// No client timeout: only the gateway's Close ends this request.
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post(url+"/v1/charges", "application/json",
			strings.NewReader(chargeBody("join-1", 100, "tok_ok")))
		done <- result{resp, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for g.Stats().DroppedReplies == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the charge was never applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("a reply came before the gateway let go: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	g.Close()
	select {
	case r := <-done:
		if r.err == nil {
			r.resp.Body.Close()
			t.Fatalf("got a %d reply, want the connection dropped", r.resp.StatusCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the held request")
	}
	s := g.Stats()
	if s.Charges != 1 || s.ChargesByKey["join-1"] != 1 || s.NetByKey["join-1"] != 100 {
		t.Fatalf("stats %+v", s)
	}
	var c charge
	call(t, "GET", url+"/v1/charges?idempotency_key=join-1", "").decode(t, &c)
	if c.Status != sim.ChargeSucceeded {
		t.Fatalf("lookup after the dropped reply: %+v", c)
	}
}

func TestPaymentGateway_same_seed_same_decisions(t *testing.T) {
	t.Parallel()
	cfg := sim.PaymentConfig{DeclineRate: 0.3, ErrorRate: 0.2}
	outcomes := func(seed int64) string {
		_, url := startGateway(t, cfg, seed)
		var b strings.Builder
		for i := range 60 {
			r := call(t, "POST", url+"/v1/charges", chargeBody(fmt.Sprintf("join-%d", i), 1, "tok_visa"))
			fmt.Fprintf(&b, "%d ", r.status)
		}
		return b.String()
	}
	a, b := outcomes(42), outcomes(42)
	if a != b {
		t.Fatalf("same seed, different decisions:\n%s\n%s", a, b)
	}
	for _, status := range []string{"201", "402", "503"} {
		if !strings.Contains(a, status) {
			t.Fatalf("no %s among 60 charges with these rates: %s", status, a)
		}
	}
}

func TestPaymentGateway_concurrent_same_key_charges_once(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{Latency: 5 * time.Millisecond}, 1)
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Go(func() {
			resp, err := http.Post(url+"/v1/charges", "application/json", strings.NewReader(chargeBody("join-1", 100, "tok_ok")))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		if s == http.StatusCreated {
			created++
		} else if s != http.StatusOK {
			t.Fatalf("status %d", s)
		}
	}
	s := g.Stats()
	if created != 1 || s.Charges != 1 || s.DuplicateKeys != 19 || s.ChargesByKey["join-1"] != 1 {
		t.Fatalf("created %d; stats %+v", created, s)
	}
}

func TestPaymentGateway_admin_config(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{}, 1)
	tests := []struct {
		name, body string
		wantStatus int
	}{
		{"decline_rate_above_1", `{"decline_rate":1.5}`, http.StatusBadRequest},
		{"error_rate_negative", `{"error_rate":-0.1}`, http.StatusBadRequest},
		{"timeout_rate_above_1", `{"timeout_after_commit_rate":2}`, http.StatusBadRequest},
		{"negative_latency", `{"latency":"-1s"}`, http.StatusBadRequest},
		{"latency_too_long", `{"latency":"2m"}`, http.StatusBadRequest},
		{"latency_not_a_duration", `{"latency":"soon"}`, http.StatusBadRequest},
		{"latency_as_number", `{"latency":20}`, http.StatusBadRequest},
		{"misspelt_knob", `{"timeout_after_commit":0.5}`, http.StatusBadRequest},
		{"not_json", `decline`, http.StatusBadRequest},
		{"valid", `{"latency":"20ms","decline_rate":0.05,"error_rate":0.01,"timeout_after_commit_rate":0.02}`, http.StatusOK},
	}
	for _, tt := range tests { // in order: the last one sets the config checked below
		r := call(t, "PUT", url+"/admin/config", tt.body)
		if r.status != tt.wantStatus {
			t.Fatalf("%s: status %d %q, want %d", tt.name, r.status, r.body, tt.wantStatus)
		}
		if r.status == http.StatusBadRequest {
			r.errorCode(t)
		}
	}
	want := sim.PaymentConfig{Latency: 20 * time.Millisecond, DeclineRate: 0.05, ErrorRate: 0.01, TimeoutAfterCommit: 0.02}
	if got := g.Config(); got != want {
		t.Fatalf("Config() = %+v, want %+v", got, want)
	}
	var wire map[string]any
	call(t, "GET", url+"/admin/config", "").decode(t, &wire)
	if wire["latency"] != "20ms" || wire["timeout_after_commit_rate"] != 0.02 {
		t.Fatalf("GET /admin/config = %v", wire)
	}
	if err := g.SetConfig(sim.PaymentConfig{DeclineRate: -1}); err == nil {
		t.Fatal("SetConfig took a negative rate")
	}
	if g.Config() != want {
		t.Fatal("a refused SetConfig changed the config")
	}
}

func TestPaymentGateway_reset_clears_the_ledger(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{}, 1)
	var first charge
	call(t, "POST", url+"/v1/charges", chargeBody("join-1", 100, "tok_ok")).decode(t, &first)
	if r := call(t, "POST", url+"/admin/reset", ""); r.status != http.StatusNoContent {
		t.Fatalf("reset: %d", r.status)
	}
	if s := g.Stats(); s.Charges != 0 || len(s.NetByKey) != 0 {
		t.Fatalf("stats after reset %+v", s)
	}
	if r := call(t, "GET", url+"/v1/charges?idempotency_key=join-1", ""); r.status != http.StatusNotFound {
		t.Fatalf("lookup after reset: %d", r.status)
	}
	var second charge
	call(t, "POST", url+"/v1/charges", chargeBody("join-1", 100, "tok_ok")).decode(t, &second)
	if second.ID == first.ID {
		t.Fatalf("an ID was given twice: %s", first.ID)
	}
}

func TestPaymentGateway_unknown_routes_answer_404_json(t *testing.T) {
	t.Parallel()
	_, url := startGateway(t, sim.PaymentConfig{}, 1)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/v1/refunds"},
		{"DELETE", "/v1/charges"},
		{"POST", "/stats"},
	} {
		r := call(t, rt.method, url+rt.path, "")
		if r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
			t.Fatalf("%s %s: %d %q", rt.method, rt.path, r.status, r.body)
		}
	}
}

func TestNewPaymentGateway_panics_on_invalid_config(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	sim.NewPaymentGateway(sim.PaymentConfig{ErrorRate: 2}, 1)
}

func TestPaymentGateway_latency_delays_v1_requests(t *testing.T) {
	t.Parallel()
	_, url := startGateway(t, sim.PaymentConfig{Latency: 200 * time.Millisecond}, 1)
	start := time.Now()
	call(t, "GET", url+"/v1/charges?idempotency_key=k", "")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("answered in %s, before the latency", d)
	}
}

func TestPaymentGateway_late_commit_is_invisible_then_charges_unless_voided(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{LateCommitRate: 1, LateCommitDelay: 300 * time.Millisecond}, 1)
	for _, key := range []string{"late-1", "late-2"} {
		if r := call(t, "POST", url+"/v1/charges", chargeBody(key, 700, "tok_ok")); r.status != http.StatusServiceUnavailable {
			t.Fatalf("%s: charge = %d %q, want 503", key, r.status, r.body)
		}
		// Pending: the lookup finds nothing, a repeat is "in progress".
		if r := call(t, "GET", url+"/v1/charges?idempotency_key="+key, ""); r.status != http.StatusNotFound {
			t.Fatalf("%s: lookup while pending = %d %q, want 404", key, r.status, r.body)
		}
		if r := call(t, "POST", url+"/v1/charges", chargeBody(key, 700, "tok_ok")); r.status != http.StatusConflict || r.errorCode(t) != "request_in_progress" {
			t.Fatalf("%s: repeat while pending = %d %q, want 409 request_in_progress", key, r.status, r.body)
		}
	}
	if s := g.Stats(); s.Pending != 2 || s.Charges != 0 {
		t.Fatalf("stats while pending %+v", s)
	}
	// late-2 is voided while pending: it never commits, and stays voided.
	var v charge
	r := call(t, "POST", url+"/v1/charges/void", `{"idempotency_key":"late-2"}`)
	if r.status != http.StatusOK {
		t.Fatalf("void = %d %q", r.status, r.body)
	}
	r.decode(t, &v)
	if v.Status != sim.ChargeVoided {
		t.Fatalf("void = %+v", v)
	}
	time.Sleep(600 * time.Millisecond)
	var c charge
	call(t, "GET", url+"/v1/charges?idempotency_key=late-1", "").decode(t, &c)
	if c.Status != sim.ChargeSucceeded || c.Amount != 700 {
		t.Fatalf("late-1 after the delay = %+v, want the charge committed late", c)
	}
	call(t, "GET", url+"/v1/charges?idempotency_key=late-2", "").decode(t, &c)
	if c.Status != sim.ChargeVoided {
		t.Fatalf("late-2 after the delay = %+v, want voided", c)
	}
	if r := call(t, "POST", url+"/v1/charges", chargeBody("late-2", 700, "tok_ok")); r.status != http.StatusConflict || r.errorCode(t) != "idempotency_key_voided" {
		t.Fatalf("charge of a voided key = %d %q", r.status, r.body)
	}
	if r := call(t, "POST", url+"/v1/charges/"+c.ID+"/refund", `{"idempotency_key":"r"}`); r.status != http.StatusConflict || r.errorCode(t) != "charge_voided" {
		t.Fatalf("refund of a voided key = %d %q", r.status, r.body)
	}
	// A void of a charged key changes nothing and returns the charge to refund.
	call(t, "POST", url+"/v1/charges/void", `{"idempotency_key":"late-1"}`).decode(t, &v)
	if v.Status != sim.ChargeSucceeded {
		t.Fatalf("void of a committed charge = %+v, want it unchanged", v)
	}
	s := g.Stats()
	if s.LateCommits != 1 || s.LateCancelled != 1 || s.Voids != 1 || s.Pending != 0 || s.NetByKey["late-1"] != 700 || s.NetByKey["late-2"] != 0 || s.ChargesByKey["late-2"] != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPaymentGateway_void_of_an_unknown_key_forbids_a_later_charge(t *testing.T) {
	t.Parallel()
	_, url := startGateway(t, sim.PaymentConfig{}, 1)
	var v1, v2 charge
	call(t, "POST", url+"/v1/charges/void", `{"idempotency_key":"never"}`).decode(t, &v1)
	call(t, "POST", url+"/v1/charges/void", `{"idempotency_key":"never"}`).decode(t, &v2)
	if v1.Status != sim.ChargeVoided || v1 != v2 {
		t.Fatalf("voids = %+v, %+v; want the same voided record twice", v1, v2)
	}
	if r := call(t, "POST", url+"/v1/charges", chargeBody("never", 1, "tok_ok")); r.status != http.StatusConflict {
		t.Fatalf("charge after void = %d %q, want 409", r.status, r.body)
	}
	if r := call(t, "POST", url+"/v1/charges/void", `{"idempotency_key":""}`); r.status != http.StatusBadRequest {
		t.Fatalf("void without a key = %d", r.status)
	}
}

func TestPaymentGateway_in_progress_409_applies_nothing(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{InProgress409Rate: 1}, 1)
	if r := call(t, "POST", url+"/v1/charges", chargeBody("busy", 5, "tok_ok")); r.status != http.StatusConflict || r.errorCode(t) != "request_in_progress" {
		t.Fatalf("charge = %d %q, want 409 request_in_progress", r.status, r.body)
	}
	if s := g.Stats(); s.Charges != 0 || s.InProgress409s != 1 || len(s.NetByKey) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPaymentGateway_late_commit_knobs_on_the_wire(t *testing.T) {
	t.Parallel()
	g, url := startGateway(t, sim.PaymentConfig{}, 1)
	body := `{"late_commit_rate":0.1,"late_commit_delay":"1500ms","in_progress_409_rate":0.2}`
	if r := call(t, "PUT", url+"/admin/config", body); r.status != http.StatusOK {
		t.Fatalf("PUT = %d %q", r.status, r.body)
	}
	if want := (sim.PaymentConfig{LateCommitRate: 0.1, LateCommitDelay: 1500 * time.Millisecond, InProgress409Rate: 0.2}); g.Config() != want {
		t.Fatalf("Config() = %+v, want %+v", g.Config(), want)
	}
	for _, bad := range []string{`{"late_commit_rate":2}`, `{"late_commit_delay":"1h"}`, `{"late_commit_delay":"soon"}`, `{"in_progress_409_rate":-0.1}`} {
		if r := call(t, "PUT", url+"/admin/config", bad); r.status != http.StatusBadRequest {
			t.Errorf("PUT %s = %d, want 400", bad, r.status)
		}
	}
	var wire map[string]any
	call(t, "GET", url+"/admin/config", "").decode(t, &wire)
	if wire["late_commit_delay"] != "1.5s" || wire["in_progress_409_rate"] != 0.2 {
		t.Fatalf("GET /admin/config = %v", wire)
	}
}
