package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/notify"
	"github.com/sagaflow/sagaflow/internal/payment"
	"github.com/sagaflow/sagaflow/internal/secret"
)

// Error types of the join saga's non-retryable failures (ApplicationError.Type).
const (
	ErrTypeMeetingFull     = "MeetingFull"
	ErrTypeMeetingClosed   = "MeetingClosed"
	ErrTypeMeetingNotFound = "MeetingNotFound"
	ErrTypeAlreadyJoined   = "AlreadyJoined"
	ErrTypeDeclined        = "Declined"
	ErrTypeRejected        = "Rejected"
	ErrTypeJoinNotFound    = "JoinNotFound"
)

// Charge statuses as the saga sees them.
const (
	ChargeSucceeded = "succeeded"
	ChargeDeclined  = "declined"
	ChargeRefunded  = "refunded"
	ChargeNone      = "none"
	ChargeVoided    = "voided" // final: no charge was made and none will be
)

// MeetingStore is one tenant's seats and joins.
type MeetingStore interface {
	Reserve(ctx context.Context, meetingID, joinID, userID string) error
	Confirm(ctx context.Context, meetingID, joinID string) error
	Release(ctx context.Context, meetingID, joinID string) error
	SaveJoin(ctx context.Context, j meeting.Join) error
}

// PaymentGateway charges and refunds, idempotently by key. Void makes a
// key's outcome final (see payment.Client.Void).
type PaymentGateway interface {
	Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error)
	Lookup(ctx context.Context, idempotencyKey string) (payment.Charge, error)
	Void(ctx context.Context, idempotencyKey string) (payment.Charge, error)
	Refund(ctx context.Context, chargeID, idempotencyKey string) (payment.Charge, error)
}

// JoinMetrics counts the joins' ends and their uncertain charges, for
// dashboards and alerts.
type JoinMetrics interface {
	// Ended counts a join that reached outcome (meeting.JoinConfirmed,
	// JoinFailed or JoinCompensated) for reason; lateRefund: its charge
	// was found taken after it had failed, and refunded.
	Ended(outcome, reason string, lateRefund bool)
	// UnknownOutcome counts a charge whose reply was lost, by what the
	// lookup found: "applied", "not_applied" or "lookup_failed".
	UnknownOutcome(resolution string)
	// Settled counts a settlement by call ("void", "lookup") that found
	// status (a Charge* status, or "error").
	Settled(call, status string)
}

// Notifier sends a message on one channel.
type Notifier interface {
	Send(ctx context.Context, m notify.Message) error
}

// JoinActivities are the join saga's activities (the seat ones run as local
// activities), run on the join task queue; the workflow refers to them
// through a nil *JoinActivities. Safe for concurrent use when its fields are.
type JoinActivities struct {
	// Meetings returns the meeting store of the tenant whose schema it is.
	Meetings func(schema string) MeetingStore
	Payments PaymentGateway
	// JoinMetrics counts the joins' ends and uncertain charges; nil: none.
	JoinMetrics JoinMetrics
	Notifier    Notifier
	// Secrets opens the payment tokens the API sealed; nil leaves a sealed
	// token sealed (and the charge fails for good).
	Secrets Opener
}

// SeatInput names a join's seat in a tenant's meeting.
type SeatInput struct {
	Schema    string `json:"schema"`
	MeetingID string `json:"meeting_id"`
	JoinID    string `json:"join_id"`
	UserID    string `json:"user_id"`
	// Reason is why a release compensates (the join's reason), for its
	// span; empty for the other steps and in joins started before it.
	Reason string `json:"reason,omitempty"`
}

func (in SeatInput) attrs() []attribute.KeyValue {
	return []attribute.KeyValue{attrTenant.String(in.Schema), attrMeetingID.String(in.MeetingID), attrJoinID.String(in.JoinID)}
}

// ReserveSeat takes a seat, atomically against the capacity; idempotent per
// join. A full, closed or unknown meeting is a non-retryable failure.
func (a *JoinActivities) ReserveSeat(ctx context.Context, in SeatInput) (err error) {
	ctx, span := startSpan(ctx, "seat reserve", in.attrs()...)
	defer func() { endSpan(span, err) }()
	return seatError(a.Meetings(in.Schema).Reserve(ctx, in.MeetingID, in.JoinID, in.UserID))
}

// ConfirmSeat confirms the join's reserved seat; idempotent. A meeting closed
// meanwhile, or a user already confirmed by another join, is non-retryable.
func (a *JoinActivities) ConfirmSeat(ctx context.Context, in SeatInput) (err error) {
	ctx, span := startSpan(ctx, "seat confirm", in.attrs()...)
	defer func() { endSpan(span, err) }()
	return seatError(a.Meetings(in.Schema).Confirm(ctx, in.MeetingID, in.JoinID))
}

// ReleaseSeat gives the join's seat back; idempotent. Its span is a
// compensation, with in.Reason.
func (a *JoinActivities) ReleaseSeat(ctx context.Context, in SeatInput) (err error) {
	ctx, span := startSpan(ctx, "seat release", append(in.attrs(), compensation(in.Reason)...)...)
	defer func() { endSpan(span, err) }()
	return a.Meetings(in.Schema).Release(ctx, in.MeetingID, in.JoinID)
}

func seatError(err error) error {
	for _, e := range []struct {
		err error
		typ string
	}{
		{meeting.ErrMeetingFull, ErrTypeMeetingFull},
		{meeting.ErrMeetingClosed, ErrTypeMeetingClosed},
		{meeting.ErrNotFound, ErrTypeMeetingNotFound},
		{meeting.ErrAlreadyJoined, ErrTypeAlreadyJoined},
	} {
		if errors.Is(err, e.err) {
			return temporal.NewNonRetryableApplicationError(err.Error(), e.typ, err)
		}
	}
	return err
}

// ChargeInput is one charge; IdempotencyKey is the join id.
type ChargeInput struct {
	IdempotencyKey string `json:"idempotency_key"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	Token          string `json:"token"`
}

// ChargeResult is what the saga keeps of a charge.
type ChargeResult struct {
	PaymentID string `json:"payment_id"`
	Status    string `json:"status"`
}

// Charge takes the money. When the gateway's answer is lost (a timeout, a
// 5xx), the outcome is unknown: the activity looks the charge up by its
// idempotency key before returning, so an applied charge is reported as
// such; one not applied is returned as a retryable error and the retry sends
// it again under the same key, which the gateway applies at most once.
func (a *JoinActivities) Charge(ctx context.Context, in ChargeInput) (res ChargeResult, err error) {
	ctx, span := startSpan(ctx, "payment charge", attrJoinID.String(in.IdempotencyKey), attrAmount.Int64(in.Amount), attrCurrency.String(in.Currency))
	defer func() {
		span.SetAttributes(attrPaymentStatus.String(res.Status))
		endSpan(span, err)
	}()
	token, err := a.openToken(in)
	if err != nil {
		return ChargeResult{}, err
	}
	c, err := a.Payments.Charge(ctx, payment.ChargeRequest{
		IdempotencyKey: in.IdempotencyKey, Amount: in.Amount, Currency: in.Currency, Token: token,
	})
	if errors.Is(err, payment.ErrUnknownOutcome) {
		found, lerr := a.Payments.Lookup(ctx, in.IdempotencyKey)
		a.joinMetrics().UnknownOutcome(lookupResolution(lerr))
		switch {
		case lerr == nil:
			c, err = found, nil
		case errors.Is(lerr, payment.ErrNotFound):
			return ChargeResult{}, fmt.Errorf("charge %s not applied after %v: will retry", in.IdempotencyKey, err)
		default:
			return ChargeResult{}, fmt.Errorf("charge %s outcome unknown (%v), lookup failed: %w", in.IdempotencyKey, err, lerr)
		}
	}
	switch {
	case err == nil && c.Status == payment.StatusDeclined: // a lookup found the key declined
		return ChargeResult{}, temporal.NewNonRetryableApplicationError("declined: "+c.Reason, ErrTypeDeclined, nil)
	case err == nil && c.Status == payment.StatusVoided: // a lookup found the key voided
		return ChargeResult{}, temporal.NewNonRetryableApplicationError("charge "+in.IdempotencyKey+" was voided", ErrTypeRejected, nil)
	case err == nil:
		return ChargeResult{PaymentID: c.ID, Status: c.Status}, nil
	case errors.Is(err, payment.ErrDeclined):
		return ChargeResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeDeclined, err)
	case errors.Is(err, payment.ErrRejected):
		return ChargeResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRejected, err)
	}
	return ChargeResult{}, err
}

// Opener decrypts a secret bound to aad (internal/secret.Keyring).
type Opener interface {
	Open(sealed string, aad []byte) (plain, keyID string, err error)
}

// openToken is the charge's payment token in the clear: the API seals it
// with the join's id (the charge's idempotency key), so that neither
// Temporal's history nor sagaflow.workflow_starts holds it readable. A
// token that is not sealed (joins started before sealing) is used as it
// is; one that does not open is a refusal: retrying cannot open it.
func (a *JoinActivities) openToken(in ChargeInput) (string, error) {
	if !strings.HasPrefix(in.Token, secret.Prefix) {
		return in.Token, nil
	}
	if a.Secrets == nil {
		return "", temporal.NewNonRetryableApplicationError("payment token is sealed and this worker has no keys", ErrTypeRejected, nil)
	}
	plain, _, err := a.Secrets.Open(in.Token, meeting.TokenAAD(in.IdempotencyKey))
	if err != nil {
		return "", temporal.NewNonRetryableApplicationError("payment token does not open: "+err.Error(), ErrTypeRejected, nil)
	}
	return plain, nil
}

// LookupCharge reports the charge made under the key: succeeded, declined,
// refunded, or none. It fails (and is retried) only if the gateway does not
// answer: the saga never guesses.
func (a *JoinActivities) LookupCharge(ctx context.Context, idempotencyKey string) (res ChargeResult, err error) {
	defer func() { a.joinMetrics().Settled("lookup", settledStatus(res, err)) }()
	c, err := a.Payments.Lookup(ctx, idempotencyKey)
	if errors.Is(err, payment.ErrNotFound) {
		return ChargeResult{Status: ChargeNone}, nil
	}
	if err != nil {
		return ChargeResult{}, err
	}
	return ChargeResult{PaymentID: c.ID, Status: c.Status}, nil
}

// VoidCharge makes the outcome of the charge under the key final and
// reports it: succeeded (money taken: refund it), declined, refunded, or
// voided (no charge was made, and the gateway will make none: a charge whose
// reply was lost cannot commit after this). Idempotent; it fails (and is
// retried) only while the gateway does not answer. The saga calls it, never
// LookupCharge, before deciding that no money was taken.
func (a *JoinActivities) VoidCharge(ctx context.Context, idempotencyKey string) (res ChargeResult, err error) {
	defer func() { a.joinMetrics().Settled("void", settledStatus(res, err)) }()
	ctx, span := startSpan(ctx, "payment void", attrJoinID.String(idempotencyKey))
	defer func() {
		span.SetAttributes(attrPaymentStatus.String(res.Status))
		endSpan(span, err)
	}()
	c, err := a.Payments.Void(ctx, idempotencyKey)
	if errors.Is(err, payment.ErrRejected) {
		return ChargeResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRejected, err)
	}
	if err != nil {
		return ChargeResult{}, err
	}
	return ChargeResult{PaymentID: c.ID, Status: c.Status}, nil
}

// RefundInput names the charge to refund.
type RefundInput struct {
	PaymentID      string `json:"payment_id"`
	IdempotencyKey string `json:"idempotency_key"`
	// Reason is why the refund compensates (the join's reason), for its
	// span; empty in joins started before it.
	Reason string `json:"reason,omitempty"`
}

// Refund returns the money of a charge; idempotent. Its span is a
// compensation, with in.Reason.
func (a *JoinActivities) Refund(ctx context.Context, in RefundInput) (res ChargeResult, err error) {
	ctx, span := startSpan(ctx, "payment refund", append(compensation(in.Reason), attrJoinID.String(in.IdempotencyKey))...)
	defer func() {
		span.SetAttributes(attrPaymentStatus.String(res.Status))
		endSpan(span, err)
	}()
	c, err := a.Payments.Refund(ctx, in.PaymentID, in.IdempotencyKey)
	if errors.Is(err, payment.ErrRejected) || errors.Is(err, payment.ErrNotFound) {
		return ChargeResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRejected, err)
	}
	if err != nil {
		return ChargeResult{}, err
	}
	return ChargeResult{PaymentID: c.ID, Status: c.Status}, nil
}

// NotifyInput is one notification of a confirmed join.
type NotifyInput struct {
	Channel string `json:"channel"`
	JoinID  string `json:"join_id"`
	UserID  string `json:"user_id"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// Notify sends on one channel, at most once per (join, channel).
func (a *JoinActivities) Notify(ctx context.Context, in NotifyInput) error {
	err := a.Notifier.Send(ctx, notify.Message{
		Channel: in.Channel, To: in.UserID, Subject: in.Subject, Body: in.Body,
		IdempotencyKey: in.JoinID + ":" + in.Channel,
	})
	if errors.Is(err, notify.ErrPermanent) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRejected, err)
	}
	return err
}

// SaveJoinInput is a join's state to store.
type SaveJoinInput struct {
	Schema string       `json:"schema"`
	Join   meeting.Join `json:"join"`
}

// SaveJoin stores the join's state in the tenant's schema, for reads after
// the workflow ends. A join row that does not exist (its tenant was
// deleted) is non-retryable; every other failure is retried.
func (a *JoinActivities) SaveJoin(ctx context.Context, in SaveJoinInput) error {
	err := a.Meetings(in.Schema).SaveJoin(ctx, in.Join)
	if errors.Is(err, meeting.ErrJoinNotFound) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeJoinNotFound, err)
	}
	if err == nil && joinEnded(in.Join.Status) {
		a.joinMetrics().Ended(in.Join.Status, in.Join.Reason, lateRefund(in.Join))
	}
	return err
}

// joinEnded reports whether a join in status is at an end (confirmed can
// still be cancelled, and then ends again as compensated).
func joinEnded(status string) bool {
	return status == meeting.JoinConfirmed || status == meeting.JoinFailed || status == meeting.JoinCompensated
}

// lateRefund reports whether j's money was refunded although its charge
// step failed: the charge had been applied with its reply lost, and was
// found out only when settled.
func lateRefund(j meeting.Join) bool {
	if j.Payment.Status != ChargeRefunded {
		return false
	}
	for _, st := range j.Steps {
		if st.Name == "charge" && st.Status == "failed" {
			return true
		}
	}
	return false
}

// lookupResolution is what the lookup after a lost charge reply found.
func lookupResolution(err error) string {
	switch {
	case err == nil:
		return "applied"
	case errors.Is(err, payment.ErrNotFound):
		return "not_applied"
	}
	return "lookup_failed"
}

// settledStatus is the status a settlement found, "error" if it failed.
func settledStatus(res ChargeResult, err error) string {
	if err != nil {
		return "error"
	}
	return res.Status
}
