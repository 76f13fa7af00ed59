package payment_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/payment"
	"github.com/sagaflow/sagaflow/internal/sim"
)

// start serves a simulated gateway until the test ends and returns a client
// of it with the given timeout.
func start(t *testing.T, cfg sim.PaymentConfig, timeout time.Duration) (*sim.PaymentGateway, *payment.Client) {
	t.Helper()
	g := sim.NewPaymentGateway(cfg, 1)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.Close) // runs first: releases held requests so srv.Close does not wait
	c := payment.NewClient(srv.URL+"/", timeout)
	t.Cleanup(c.CloseIdleConnections)
	return g, c
}

func okCharge(key string, amount int64) payment.ChargeRequest {
	return payment.ChargeRequest{IdempotencyKey: key, Amount: amount, Currency: "KRW", Token: sim.TokenOK}
}

func TestCharge_same_key_never_charges_twice(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{}, time.Second)
	ctx := context.Background()
	first, err := c.Charge(ctx, okCharge("join-1", 15000))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Charge(ctx, okCharge("join-1", 15000))
	if err != nil {
		t.Fatal(err)
	}
	if first != again || first.Status != payment.StatusSucceeded || first.Amount != 15000 || first.IdempotencyKey != "join-1" {
		t.Fatalf("charges %+v, %+v", first, again)
	}
	s := g.Stats()
	if s.Charges != 1 || s.DuplicateKeys != 1 || s.NetByKey["join-1"] != 15000 || s.ChargesByKey["join-1"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	// The same key with another amount is a bug of ours, refused for good.
	if _, err := c.Charge(ctx, okCharge("join-1", 20000)); !errors.Is(err, payment.ErrRejected) {
		t.Fatalf("another amount under the same key: %v, want ErrRejected", err)
	}
}

func TestCharge_decline_is_permanent_with_reason_and_takes_nothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   sim.PaymentConfig
		token string
	}{
		{"decline_token", sim.PaymentConfig{}, sim.TokenDecline},
		{"decline_rate", sim.PaymentConfig{DeclineRate: 1}, "tok_visa_4242"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, c := start(t, tt.cfg, time.Second)
			req := payment.ChargeRequest{IdempotencyKey: "join-1", Amount: 100, Currency: "KRW", Token: tt.token}
			for attempt := range 2 { // a repeat replays the decline
				ch, err := c.Charge(context.Background(), req)
				var declined *payment.DeclinedError
				if !errors.Is(err, payment.ErrDeclined) || !errors.As(err, &declined) || declined.Reason == "" {
					t.Fatalf("attempt %d: err %v, want a DeclinedError with a reason", attempt, err)
				}
				if errors.Is(err, payment.ErrUnknownOutcome) || errors.Is(err, payment.ErrRejected) {
					t.Fatalf("attempt %d: a decline classified twice: %v", attempt, err)
				}
				if ch.Status != payment.StatusDeclined || ch.Reason != declined.Reason || ch.ID == "" {
					t.Fatalf("attempt %d: charge %+v", attempt, ch)
				}
				if !strings.HasPrefix(err.Error(), "payment: charge join-1: charge declined: ") {
					t.Fatalf("error text %q", err)
				}
			}
			s := g.Stats()
			if s.Charges != 0 || s.Declines != 1 || s.NetByKey["join-1"] != 0 || s.ChargesByKey["join-1"] != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestCharge_gateway_error_is_unknown_outcome_and_applies_nothing(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{ErrorRate: 1}, time.Second)
	ctx := context.Background()
	if _, err := c.Charge(ctx, okCharge("join-1", 100)); !errors.Is(err, payment.ErrUnknownOutcome) {
		t.Fatalf("charge: %v, want ErrUnknownOutcome", err)
	}
	// A lookup that fails too is unknown, never "not found".
	if _, err := c.Lookup(ctx, "join-1"); !errors.Is(err, payment.ErrUnknownOutcome) || errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("lookup during the outage: %v, want ErrUnknownOutcome only", err)
	}
	if err := g.SetConfig(sim.PaymentConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "join-1"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("lookup after the outage: %v, want ErrNotFound", err)
	}
	if s := g.Stats(); s.Charges != 0 || len(s.NetByKey) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCharge_dropped_reply_is_resolved_by_lookup_without_charging_again(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{TimeoutAfterCommit: 1}, 200*time.Millisecond)
	ctx := context.Background()
	began := time.Now()
	_, err := c.Charge(ctx, okCharge("join-1", 5000))
	if !errors.Is(err, payment.ErrUnknownOutcome) {
		t.Fatalf("charge: %v, want ErrUnknownOutcome", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("the client gave up after %s, not after its 200ms timeout", d)
	}
	found, err := c.Lookup(ctx, "join-1")
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if found.Status != payment.StatusSucceeded || found.Amount != 5000 {
		t.Fatalf("lookup found %+v", found)
	}
	again, err := c.Charge(ctx, okCharge("join-1", 5000))
	if err != nil {
		t.Fatalf("retried charge: %v", err)
	}
	if again != found {
		t.Fatalf("retried charge %+v, want %+v", again, found)
	}
	s := g.Stats()
	if s.Charges != 1 || s.ChargesByKey["join-1"] != 1 || s.DroppedReplies != 1 || s.NetByKey["join-1"] != 5000 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRefund_twice_refunds_once(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{}, time.Second)
	ctx := context.Background()
	ch, err := c.Charge(ctx, okCharge("join-1", 3000))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 2 {
		r, err := c.Refund(ctx, ch.ID, "refund:join-1")
		if err != nil {
			t.Fatalf("refund %d: %v", attempt, err)
		}
		if r.ID != ch.ID || r.Status != payment.StatusRefunded {
			t.Fatalf("refund %d: %+v", attempt, r)
		}
	}
	s := g.Stats()
	if s.Refunds != 1 || s.DuplicateRefunds != 1 || s.NetByKey["join-1"] != 0 || s.ChargesByKey["join-1"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	if found, err := c.Lookup(ctx, "join-1"); err != nil || found.Status != payment.StatusRefunded {
		t.Fatalf("lookup after refund: %+v, %v", found, err)
	}
}

func TestRefund_failures_are_classified(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{}, time.Second)
	ctx := context.Background()
	declined, err := c.Charge(ctx, payment.ChargeRequest{IdempotencyKey: "join-d", Amount: 100, Currency: "KRW", Token: sim.TokenDecline})
	if !errors.Is(err, payment.ErrDeclined) {
		t.Fatal(err)
	}
	paid, err := c.Charge(ctx, okCharge("join-p", 100))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refund(ctx, declined.ID, "refund:join-d"); !errors.Is(err, payment.ErrRejected) {
		t.Fatalf("refund of a declined charge: %v, want ErrRejected", err)
	}
	if _, err := c.Refund(ctx, "ch_missing", "refund:x"); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("refund of an unknown charge: %v, want ErrNotFound", err)
	}
	if err := g.SetConfig(sim.PaymentConfig{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refund(ctx, paid.ID, "refund:join-p"); !errors.Is(err, payment.ErrUnknownOutcome) {
		t.Fatalf("refund during an outage: %v, want ErrUnknownOutcome", err)
	}
	if s := g.Stats(); s.Refunds != 0 || s.NetByKey["join-p"] != 100 {
		t.Fatalf("an outage refunded: %+v", s)
	}
}

func TestCharge_bad_requests_are_rejected(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{}, time.Second)
	tests := []struct {
		name string
		req  payment.ChargeRequest
	}{
		{"no_key", payment.ChargeRequest{Amount: 1, Currency: "KRW", Token: "tok_ok"}},
		{"key_too_long", payment.ChargeRequest{IdempotencyKey: strings.Repeat("k", 129), Amount: 1, Currency: "KRW", Token: "tok_ok"}},
		{"negative_amount", payment.ChargeRequest{IdempotencyKey: "k1", Amount: -1, Currency: "KRW", Token: "tok_ok"}},
		{"lowercase_currency", payment.ChargeRequest{IdempotencyKey: "k2", Amount: 1, Currency: "krw", Token: "tok_ok"}},
		{"no_currency", payment.ChargeRequest{IdempotencyKey: "k3", Amount: 1, Token: "tok_ok"}},
		{"no_token", payment.ChargeRequest{IdempotencyKey: "k4", Amount: 1, Currency: "KRW"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Charge(context.Background(), tt.req)
			if !errors.Is(err, payment.ErrRejected) || errors.Is(err, payment.ErrUnknownOutcome) {
				t.Fatalf("err %v, want ErrRejected only", err)
			}
			if !strings.HasPrefix(err.Error(), "payment: charge") {
				t.Fatalf("error text %q", err)
			}
		})
	}
	if s := g.Stats(); s.Charges+s.Declines != 0 {
		t.Fatalf("bad requests reached the ledger: %+v", s)
	}
}

func TestCharge_concurrent_same_key_charges_once(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{Latency: 5 * time.Millisecond}, 5*time.Second)
	charges := make([]payment.Charge, 20)
	errs := make([]error, 20)
	var wg sync.WaitGroup
	for i := range charges {
		wg.Go(func() { charges[i], errs[i] = c.Charge(context.Background(), okCharge("join-1", 700)) })
	}
	wg.Wait()
	for i := range charges {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if charges[i] != charges[0] {
			t.Fatalf("call %d got %+v, call 0 got %+v", i, charges[i], charges[0])
		}
	}
	s := g.Stats()
	if s.Charges != 1 || s.DuplicateKeys != 19 || s.ChargesByKey["join-1"] != 1 || s.NetByKey["join-1"] != 700 {
		t.Fatalf("stats %+v", s)
	}
}

func TestClient_unreachable_gateway_is_unknown_outcome(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: bind one, then free it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := payment.NewClient("http://"+addr, time.Second)
	ctx := context.Background()
	if _, err := c.Charge(ctx, okCharge("join-1", 1)); !errors.Is(err, payment.ErrUnknownOutcome) {
		t.Fatalf("charge: %v", err)
	}
	if _, err := c.Lookup(ctx, "join-1"); !errors.Is(err, payment.ErrUnknownOutcome) {
		t.Fatalf("lookup: %v", err)
	}
	if _, err := c.Refund(ctx, "ch_1", "refund:join-1"); !errors.Is(err, payment.ErrUnknownOutcome) {
		t.Fatalf("refund: %v", err)
	}
}

func TestClient_caller_cancel_is_unknown_outcome(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{Latency: 300 * time.Millisecond}, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Charge(ctx, okCharge("join-1", 1))
	if !errors.Is(err, payment.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrUnknownOutcome wrapping the context's error", err)
	}
	// The gateway drops a request whose client left during its latency.
	time.Sleep(600 * time.Millisecond)
	if s := g.Stats(); s.Charges != 0 {
		t.Fatalf("a charge was applied after its client left: %+v", s)
	}
}

func TestCharge_409_in_progress_is_unknown_outcome_not_a_rejection(t *testing.T) {
	t.Parallel()
	_, c := start(t, sim.PaymentConfig{InProgress409Rate: 1}, time.Second)
	_, err := c.Charge(context.Background(), okCharge("join-busy", 100))
	if !errors.Is(err, payment.ErrUnknownOutcome) || errors.Is(err, payment.ErrRejected) || errors.Is(err, payment.ErrDeclined) {
		t.Fatalf("409 request_in_progress: %v, want ErrUnknownOutcome only", err)
	}
}

func TestVoid_makes_a_late_commit_final(t *testing.T) {
	t.Parallel()
	g, c := start(t, sim.PaymentConfig{LateCommitRate: 1, LateCommitDelay: 200 * time.Millisecond}, time.Second)
	ctx := context.Background()
	for _, key := range []string{"join-late", "join-voided"} {
		if _, err := c.Charge(ctx, okCharge(key, 900)); !errors.Is(err, payment.ErrUnknownOutcome) {
			t.Fatalf("late charge %s: %v, want ErrUnknownOutcome", key, err)
		}
		if _, err := c.Lookup(ctx, key); !errors.Is(err, payment.ErrNotFound) {
			t.Fatalf("lookup of a pending charge: %v, want ErrNotFound (not final)", err)
		}
	}
	v, err := c.Void(ctx, "join-voided")
	if err != nil || v.Status != payment.StatusVoided {
		t.Fatalf("Void = %+v, %v", v, err)
	}
	time.Sleep(400 * time.Millisecond)
	late, err := c.Lookup(ctx, "join-late")
	if err != nil || late.Status != payment.StatusSucceeded {
		t.Fatalf("the late charge = %+v, %v; want it committed", late, err)
	}
	if v, err := c.Void(ctx, "join-late"); err != nil || v != late {
		t.Fatalf("Void of a committed charge = %+v, %v; want the charge unchanged", v, err)
	}
	if again, err := c.Void(ctx, "join-voided"); err != nil || again != v {
		t.Fatalf("second Void = %+v, %v; want %+v", again, err, v)
	}
	if _, err := c.Charge(ctx, okCharge("join-voided", 900)); !errors.Is(err, payment.ErrRejected) {
		t.Fatalf("charge of a voided key: %v, want ErrRejected", err)
	}
	if s := g.Stats(); s.ChargesByKey["join-voided"] != 0 || s.NetByKey["join-late"] != 900 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := c.Void(ctx, ""); !errors.Is(err, payment.ErrRejected) {
		t.Fatalf("Void without a key: %v", err)
	}
}
