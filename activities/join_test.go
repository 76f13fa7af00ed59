package activities

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/payment"
	"github.com/sagaflow/sagaflow/internal/secret"
	"github.com/sagaflow/sagaflow/internal/sim"
)

// gateway runs the payment simulator with cfg and returns activities that
// call it through the real client. The timeout is short enough for the
// timeout-after-commit case, long enough that a loaded machine does not turn
// an ordinary call into an unknown outcome.
func gateway(t *testing.T, cfg sim.PaymentConfig) (*JoinActivities, *sim.PaymentGateway) {
	t.Helper()
	g := sim.NewPaymentGateway(cfg, 1)
	srv := httptest.NewServer(g)
	t.Cleanup(func() { g.Close(); srv.Close() })
	return &JoinActivities{Payments: payment.NewClient(srv.URL, 2*time.Second)}, g
}

func isNonRetryable(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.NonRetryable() && appErr.Type() == typ
}

func TestCharge_timeout_after_commit_is_resolved_by_lookup(t *testing.T) {
	t.Parallel()
	a, g := gateway(t, sim.PaymentConfig{TimeoutAfterCommit: 1})
	in := ChargeInput{IdempotencyKey: "j_1", Amount: 30000, Currency: "KRW", Token: "tok_ok"}
	res, err := a.Charge(context.Background(), in)
	if err != nil || res.Status != ChargeSucceeded || res.PaymentID == "" {
		t.Fatalf("Charge = %+v, %v; want the applied charge found by its key", res, err)
	}
	// A retry of the activity must not take the money again.
	if _, err := a.Charge(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.ChargesByKey["j_1"] != 1 || st.NetByKey["j_1"] != 30000 {
		t.Fatalf("gateway took the money %d times (net %d)", st.ChargesByKey["j_1"], st.NetByKey["j_1"])
	}
}

func TestCharge_5xx_is_retryable_and_applies_nothing(t *testing.T) {
	t.Parallel()
	a, g := gateway(t, sim.PaymentConfig{ErrorRate: 1})
	_, err := a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_2", Amount: 100, Currency: "KRW", Token: "tok_ok"})
	var appErr *temporal.ApplicationError
	if err == nil || (errors.As(err, &appErr) && appErr.NonRetryable()) {
		t.Fatalf("Charge = %v; want a retryable error", err)
	}
	if g.Stats().Charges != 0 {
		t.Fatal("a 503 applied a charge")
	}
}

func TestCharge_decline_is_permanent(t *testing.T) {
	t.Parallel()
	a, _ := gateway(t, sim.PaymentConfig{})
	_, err := a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_3", Amount: 100, Currency: "KRW", Token: sim.TokenDecline})
	if !isNonRetryable(err, ErrTypeDeclined) {
		t.Fatalf("Charge = %v; want a non-retryable %s", err, ErrTypeDeclined)
	}
}

func TestRefund_and_lookup(t *testing.T) {
	t.Parallel()
	a, g := gateway(t, sim.PaymentConfig{})
	ctx := context.Background()
	if res, err := a.LookupCharge(ctx, "j_4"); err != nil || res.Status != ChargeNone {
		t.Fatalf("lookup before any charge = %+v, %v", res, err)
	}
	c, err := a.Charge(ctx, ChargeInput{IdempotencyKey: "j_4", Amount: 500, Currency: "KRW", Token: "tok_ok"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if res, err := a.Refund(ctx, RefundInput{PaymentID: c.PaymentID, IdempotencyKey: "j_4"}); err != nil || res.Status != ChargeRefunded {
			t.Fatalf("Refund = %+v, %v", res, err)
		}
	}
	if net := g.Stats().NetByKey["j_4"]; net != 0 {
		t.Fatalf("net %d after refund", net)
	}
	if _, err := a.Refund(ctx, RefundInput{PaymentID: "ch_unknown", IdempotencyKey: "x"}); !isNonRetryable(err, ErrTypeRejected) {
		t.Fatalf("refund of an unknown charge = %v; want non-retryable", err)
	}
}

func TestCharge_409_in_progress_is_retried_not_declined(t *testing.T) {
	t.Parallel()
	a, g := gateway(t, sim.PaymentConfig{InProgress409Rate: 1})
	_, err := a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_409", Amount: 100, Currency: "KRW", Token: "tok_ok"})
	var appErr *temporal.ApplicationError
	if err == nil || (errors.As(err, &appErr) && appErr.NonRetryable()) {
		t.Fatalf("Charge = %v; want a retryable error (the key is busy, not refused)", err)
	}
	if g.Stats().Charges != 0 {
		t.Fatal("a 409 applied a charge")
	}
}

func TestVoidCharge_reports_a_final_outcome(t *testing.T) {
	t.Parallel()
	a, _ := gateway(t, sim.PaymentConfig{LateCommitRate: 1, LateCommitDelay: 5 * time.Minute})
	ctx := context.Background()
	if _, err := a.Charge(ctx, ChargeInput{IdempotencyKey: "j_late", Amount: 100, Currency: "KRW", Token: "tok_ok"}); err == nil {
		t.Fatal("a late commit answered as a success")
	}
	res, err := a.VoidCharge(ctx, "j_late")
	if err != nil || res.Status != ChargeVoided {
		t.Fatalf("VoidCharge = %+v, %v; want voided", res, err)
	}
	// A retry of the charge after the void must not take money.
	if _, err := a.Charge(ctx, ChargeInput{IdempotencyKey: "j_late", Amount: 100, Currency: "KRW", Token: "tok_ok"}); !isNonRetryable(err, ErrTypeRejected) {
		t.Fatalf("Charge after void = %v; want a non-retryable %s", err, ErrTypeRejected)
	}
}

func TestCharge_opens_the_token_the_api_sealed_for_its_join(t *testing.T) {
	t.Parallel()
	keys, err := secret.Parse(secret.DevKeys)
	if err != nil {
		t.Fatal(err)
	}
	a, g := gateway(t, sim.PaymentConfig{})
	a.Secrets = keys
	seal := func(token, joinID string) string {
		s, err := keys.Seal(token, meeting.TokenAAD(joinID))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The gateway sees the token in the clear: tok_decline declines.
	_, err = a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_s1", Amount: 100, Currency: "KRW", Token: seal("tok_decline", "j_s1")})
	if !isNonRetryable(err, ErrTypeDeclined) {
		t.Fatalf("sealed tok_decline: %v, want a decline (the gateway got the plain token)", err)
	}
	if res, err := a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_s2", Amount: 100, Currency: "KRW", Token: seal("tok_ok", "j_s2")}); err != nil || res.Status != ChargeSucceeded {
		t.Fatalf("sealed tok_ok: %+v, %v", res, err)
	}
	// A token sealed for another join does not open: refused, nothing charged.
	before := g.Stats().Charges
	_, err = a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_s3", Amount: 100, Currency: "KRW", Token: seal("tok_ok", "j_other")})
	if !isNonRetryable(err, ErrTypeRejected) || g.Stats().Charges != before {
		t.Fatalf("a token moved to another join: %v (charges %d → %d)", err, before, g.Stats().Charges)
	}
	// Joins started before sealing carry the plain token: it still works.
	if res, err := a.Charge(context.Background(), ChargeInput{IdempotencyKey: "j_s4", Amount: 100, Currency: "KRW", Token: "tok_ok"}); err != nil || res.Status != ChargeSucceeded {
		t.Fatalf("plain token: %+v, %v", res, err)
	}
}
