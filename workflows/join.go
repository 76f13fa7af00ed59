package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/meeting"
)

// JoinInput is everything the join saga needs; the API reads the meeting
// once, at the start, so the workflow does not depend on later edits.
type JoinInput struct {
	Tenant         string        `json:"tenant"`
	Schema         string        `json:"schema"`
	JoinID         string        `json:"join_id"`
	MeetingID      string        `json:"meeting_id"`
	MeetingTitle   string        `json:"meeting_title"`
	UserID         string        `json:"user_id"`
	PaymentToken   string        `json:"payment_token"`
	Channels       []string      `json:"channels"`
	Fee            meeting.Money `json:"fee"`
	CancelDeadline *time.Time    `json:"cancel_deadline,omitempty"`
	// Version is the saga's version, as the API that recorded the join
	// knew it (JoinVersion). It replaces workflow.GetVersion on the saga's
	// first step: GetVersion adds two events to every join's history (a
	// marker, and an upsert of the TemporalChangeVersion search attribute).
	// Zero (inputs recorded before it was carried) asks GetVersion, so that
	// every recorded history replays its own path.
	Version int `json:"version,omitempty"`
}

// JoinVersion is the saga's current version, which the API writes into
// every JoinInput (joinVersionUntilDone's version 1).
const JoinVersion = 1

// Reasons a join ends without a seat.
const (
	ReasonMeetingFull     = "meeting_full"
	ReasonMeetingClosed   = "meeting_closed"
	ReasonMeetingNotFound = "meeting_not_found"
	ReasonAlreadyJoined   = "already_joined"
	ReasonDeclined        = "payment_declined"
	ReasonPaymentFailed   = "payment_failed"
	ReasonCancelled       = "cancelled"
	ReasonAborted         = "workflow_cancelled"
)

// ErrCancelTooLate is the cancel update's refusal after the deadline.
var ErrCancelTooLate = errors.New("the meeting's cancel deadline has passed")

// ErrJoinEnded is the cancel update's refusal for a join that failed or was
// compensated already.
var ErrJoinEnded = errors.New("the join has ended already")

// Join is the join-a-paid-meeting saga: reserve a seat, charge, confirm,
// notify. A failure compensates what was done, in reverse (refund, then
// release the seat), on a disconnected context so that even a cancelled
// workflow gives the money back. A charge whose outcome is unknown is looked
// up by its idempotency key before anything else is decided. After
// confirmation the workflow waits until the cancel deadline for a cancel
// (the UpdateCancel update), which refunds in full.
func Join(ctx workflow.Context, in JoinInput) (meeting.Join, error) {
	s := &joinSaga{in: in, state: meeting.Join{
		JoinID: in.JoinID, MeetingID: in.MeetingID, UserID: in.UserID,
		Status: meeting.JoinPending, Payment: meeting.Payment{Status: meeting.PaymentNone}, Steps: []meeting.Step{},
	}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (meeting.Join, error) { return s.state, nil }); err != nil {
		return s.state, err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCancel, s.cancel, workflow.UpdateHandlerOptions{
		Validator: s.validateCancel,
	}); err != nil {
		return s.state, err
	}
	return s.run(ctx)
}

// joinVersionUntilDone is the change id of the join saga's version 1: every
// seat step and every bookkeeping step retries until done (a PostgreSQL
// outage of any length only delays the join); a charge whose outcome stays
// unknown is voided at the gateway before the saga decides no money was
// taken; a compensation that fails for good does not stop the others.
// Histories recorded before it (DefaultVersion) replay the old path.
const joinVersionUntilDone = "join-until-done"

// sagaVersion is the version of the saga the run takes: its input's, else
// (an input recorded before the version was carried) GetVersion's, which
// returns the version a recorded history holds, or 1 for a new run.
func (s *joinSaga) sagaVersion(ctx workflow.Context) workflow.Version {
	switch v := s.in.Version; {
	case v <= 0:
		return workflow.GetVersion(ctx, joinVersionUntilDone, workflow.DefaultVersion, JoinVersion)
	case v > JoinVersion:
		// As GetVersion does for a version it does not know: the workflow
		// task fails, and is retried until a worker that knows it runs it.
		panic(fmt.Sprintf("join %s asks for saga version %d; this worker knows versions up to %d", s.in.JoinID, v, JoinVersion))
	default:
		return workflow.Version(v)
	}
}

type joinSaga struct {
	in JoinInput
	// version is joinVersionUntilDone's version: workflow.DefaultVersion
	// for joins started before it, 1 after.
	version         workflow.Version
	state           meeting.Join
	cancelRequested bool
	// undo holds the compensations of the steps done, pushed after each
	// step succeeds and run in reverse.
	undo []func(workflow.Context) error
}

// joinActs are the join saga's activities, referred to by method.
var joinActs *activities.JoinActivities

func (s *joinSaga) run(ctx workflow.Context) (meeting.Join, error) {
	s.version = s.sagaVersion(ctx)
	seat := activities.SeatInput{Schema: s.in.Schema, MeetingID: s.in.MeetingID, JoinID: s.in.JoinID, UserID: s.in.UserID}
	release := func(ctx workflow.Context) error {
		// The reason only labels the release's span: the same command,
		// with one more input field (replays compare no inputs).
		undo := seat
		undo.Reason = s.state.Reason
		err := workflow.ExecuteLocalActivity(withLocal(ctx, s.undoLocal()), joinActs.ReleaseSeat, undo).Get(ctx, nil)
		s.compensated(ctx, "release_seat", err)
		return err
	}

	// 1. Reserve a seat. Only a refusal (full, closed, unknown, already
	// joined) ends the join here; an outage is waited out.
	if err := workflow.ExecuteLocalActivity(withLocal(ctx, s.seatLocal()), joinActs.ReserveSeat, seat).Get(ctx, nil); err != nil {
		s.step(ctx, "reserve_seat", "failed", errorMessage(err))
		if s.version >= 1 && !isRefusal(err) {
			// Cancelled mid-reserve: the seat may have been taken; releasing
			// a seat never taken does nothing.
			s.push(release)
			return s.compensate(ctx, reasonFor(err))
		}
		return s.fail(ctx, reasonFor(err))
	}
	s.step(ctx, "reserve_seat", "done", "")
	s.state.Status = meeting.JoinReserved
	s.push(release)
	if s.stopping(ctx) {
		return s.compensate(ctx, s.stopReason(ctx))
	}

	// 2. Charge, unless the meeting is free.
	if s.in.Fee.Amount > 0 {
		if err := s.charge(ctx); err != nil {
			return s.compensate(ctx, reasonFor(err))
		}
		s.state.Status = meeting.JoinCharged
		if s.stopping(ctx) {
			return s.compensate(ctx, s.stopReason(ctx))
		}
	} else {
		s.step(ctx, "charge", "skipped", "free meeting")
	}

	// 3. Confirm the participant: fails if the meeting closed meanwhile (an
	// outage is waited out: the money is taken, the seat is held).
	if err := workflow.ExecuteLocalActivity(withLocal(ctx, s.seatLocal()), joinActs.ConfirmSeat, seat).Get(ctx, nil); err != nil {
		s.step(ctx, "confirm", "failed", errorMessage(err))
		return s.compensate(ctx, reasonFor(err))
	}
	s.step(ctx, "confirm", "done", "")
	s.state.Status = meeting.JoinConfirmed

	// 4. Notify on every channel asked for; a failure is recorded, never
	// compensated.
	s.notify(ctx)
	saveCtx := ctx
	if s.version >= 1 {
		// A cancellation must not cut the bookkeeping short: the join is
		// confirmed and must read so.
		saveCtx = disconnected(ctx)
	}
	if err := s.save(saveCtx); err != nil {
		return s.state, err
	}

	// 5. Until the cancel deadline, a cancel refunds in full.
	if s.in.CancelDeadline != nil {
		if wait := s.in.CancelDeadline.Sub(workflow.Now(ctx)); wait > 0 {
			if _, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return s.cancelRequested }); err != nil && ctx.Err() == nil {
				return s.state, err
			}
		}
	}
	if s.stopping(ctx) {
		return s.compensate(ctx, s.stopReason(ctx))
	}
	return s.state, nil
}

// charge takes the fee. Its outcome is never guessed: when the activity
// gives up with the outcome unknown, the charge is settled by its
// idempotency key (version 1: voided, which no late commit can overtake;
// before: looked up), and money found taken is refunded by the
// compensation.
func (s *joinSaga) charge(ctx workflow.Context) error {
	in := activities.ChargeInput{IdempotencyKey: s.in.JoinID, Amount: s.in.Fee.Amount, Currency: s.in.Fee.Currency, Token: s.in.PaymentToken}
	var res activities.ChargeResult
	err := workflow.ExecuteActivity(withOptions(ctx, chargeOptions), joinActs.Charge, in).Get(ctx, &res)
	if err != nil && !isDecline(err) && ctx.Err() == nil && s.version >= 1 {
		// Retries ran out with the outcome unknown. A lookup that finds
		// nothing can be overtaken by a late commit, so void the key: its
		// answer is final.
		var found activities.ChargeResult
		if rerr := workflow.ExecuteActivity(withOptions(ctx, s.undoRemote()), joinActs.VoidCharge, in.IdempotencyKey).Get(ctx, &found); rerr == nil {
			switch found.Status {
			case activities.ChargeSucceeded:
				res, err = found, nil
				s.step(ctx, "settle_charge", "done", "charge was applied: "+found.PaymentID)
			case activities.ChargeDeclined:
				err = temporal.NewNonRetryableApplicationError("declined", activities.ErrTypeDeclined, err)
				s.step(ctx, "settle_charge", "done", "charge was declined")
			case activities.ChargeVoided:
				s.step(ctx, "settle_charge", "done", "no charge was applied; the key is voided")
			default: // refunded meanwhile: nothing is held
				s.step(ctx, "settle_charge", "done", "the charge is "+found.Status)
			}
		} else {
			s.step(ctx, "settle_charge", "failed", errorMessage(rerr))
			if ctx.Err() == nil { // (a cancellation pushes it below)
				// Settle again in the compensation, which refunds what was taken.
				s.pushRefund(in.IdempotencyKey, "")
			}
		}
	} else if err != nil && !isDecline(err) && ctx.Err() == nil {
		// Retries ran out with the outcome unknown: resolve it.
		var found activities.ChargeResult
		if rerr := workflow.ExecuteActivity(withOptions(ctx, s.undoRemote()), joinActs.LookupCharge, in.IdempotencyKey).Get(ctx, &found); rerr == nil &&
			found.Status == activities.ChargeSucceeded {
			res, err = found, nil
			s.step(ctx, "resolve_charge", "done", "charge was applied: "+found.PaymentID)
		} else if rerr == nil {
			s.step(ctx, "resolve_charge", "done", "no charge was applied")
		}
	}
	if err != nil {
		s.state.Payment.Status = paymentStatusFor(err)
		s.step(ctx, "charge", "failed", errorMessage(err))
		if ctx.Err() != nil {
			// Cancelled mid-charge: the outcome is unknown; the compensation
			// looks it up and refunds whatever was taken.
			s.pushRefund(in.IdempotencyKey, "")
		}
		return err
	}
	s.state.Payment = meeting.Payment{ID: res.PaymentID, Status: res.Status}
	s.step(ctx, "charge", "done", res.PaymentID)
	s.pushRefund(in.IdempotencyKey, res.PaymentID)
	return nil
}

// pushRefund adds the refund of the join's charge to the compensations.
// With no payment id it looks the charge up first, and refunds only if money
// was taken.
func (s *joinSaga) pushRefund(key, paymentID string) {
	s.push(func(ctx workflow.Context) error {
		id := paymentID
		if id == "" {
			// The outcome is unknown: settle it for good (v1: void, which no
			// late commit can overtake), and refund only if money was taken.
			var found activities.ChargeResult
			settle := joinActs.LookupCharge
			if s.version >= 1 {
				settle = joinActs.VoidCharge
			}
			if err := workflow.ExecuteActivity(withOptions(ctx, s.undoRemote()), settle, key).Get(ctx, &found); err != nil {
				s.compensated(ctx, "settle_charge", err)
				return err
			}
			if found.Status != activities.ChargeSucceeded {
				return nil
			}
			id = found.PaymentID
		}
		var res activities.ChargeResult
		err := workflow.ExecuteActivity(withOptions(ctx, s.undoRemote()), joinActs.Refund, activities.RefundInput{PaymentID: id, IdempotencyKey: key, Reason: s.state.Reason}).Get(ctx, &res)
		if err == nil {
			s.state.Payment = meeting.Payment{ID: id, Status: res.Status}
		}
		s.compensated(ctx, "refund", err)
		return err
	})
}

func (s *joinSaga) notify(ctx workflow.Context) {
	futures := make([]workflow.Future, len(s.in.Channels))
	for i, ch := range s.in.Channels {
		futures[i] = workflow.ExecuteActivity(withOptions(ctx, notifyOptions), joinActs.Notify, activities.NotifyInput{
			Channel: ch, JoinID: s.in.JoinID, UserID: s.in.UserID,
			Subject: "You joined " + s.in.MeetingTitle,
			Body:    fmt.Sprintf("Your seat in %q is confirmed (join %s).", s.in.MeetingTitle, s.in.JoinID),
		})
	}
	for i, f := range futures {
		if err := f.Get(ctx, nil); err != nil {
			s.step(ctx, "notify_"+s.in.Channels[i], "failed", errorMessage(err))
			continue
		}
		s.step(ctx, "notify_"+s.in.Channels[i], "done", "")
	}
}

// fail ends a join that did nothing that needs undoing.
func (s *joinSaga) fail(ctx workflow.Context, reason string) (meeting.Join, error) {
	s.state.Status = meeting.JoinFailed
	s.state.Reason = reason
	return s.state, s.save(disconnected(ctx))
}

// compensate runs the compensations in reverse order. It runs on a
// disconnected context so that a cancelled workflow still refunds and
// releases, and each compensation retries until it succeeds.
func (s *joinSaga) compensate(ctx workflow.Context, reason string) (meeting.Join, error) {
	dctx := disconnected(ctx)
	s.state.Status = meeting.JoinCompensating
	s.state.Reason = reason
	for i := len(s.undo) - 1; i >= 0; i-- {
		if err := s.undo[i](dctx); err != nil && s.version < 1 {
			return s.state, err
		}
		// v1: every compensation retries until done, so an error here is a
		// refusal that no retry can change (recorded in the steps by the
		// compensation itself); the others must still run.
	}
	s.undo = nil
	s.state.Status = meeting.JoinCompensated
	return s.state, s.save(dctx)
}

func (s *joinSaga) push(undo func(workflow.Context) error) { s.undo = append(s.undo, undo) }

func (s *joinSaga) compensated(ctx workflow.Context, name string, err error) {
	if err != nil {
		s.step(ctx, name, "failed", errorMessage(err))
		return
	}
	s.step(ctx, name, "done", "")
}

// stopping reports whether the saga must turn back: a cancel update, or a
// cancellation of the workflow itself.
func (s *joinSaga) stopping(ctx workflow.Context) bool { return s.cancelRequested || ctx.Err() != nil }

func (s *joinSaga) stopReason(ctx workflow.Context) string {
	if s.cancelRequested {
		return ReasonCancelled
	}
	return ReasonAborted
}

// validateCancel refuses a cancel the saga cannot honour; a refused update
// leaves no trace in the history.
func (s *joinSaga) validateCancel(ctx workflow.Context) error {
	switch s.state.Status {
	case meeting.JoinFailed, meeting.JoinCompensated, meeting.JoinCompensating:
		return ErrJoinEnded
	case meeting.JoinConfirmed:
		if !(meeting.Meeting{CancelDeadline: s.in.CancelDeadline}).CanRefundAt(workflow.Now(ctx)) {
			return ErrCancelTooLate
		}
	}
	return nil
}

func (s *joinSaga) cancel(workflow.Context) error {
	s.cancelRequested = true
	return nil
}

func (s *joinSaga) save(ctx workflow.Context) error {
	return workflow.ExecuteLocalActivity(withLocal(ctx, s.undoLocal()), joinActs.SaveJoin, activities.SaveJoinInput{Schema: s.in.Schema, Join: s.state}).Get(ctx, nil)
}

func (s *joinSaga) step(ctx workflow.Context, name, status, detail string) {
	s.state.Steps = append(s.state.Steps, meeting.Step{Name: name, Status: status, Detail: detail, At: workflow.Now(ctx).UTC()})
}

func disconnected(ctx workflow.Context) workflow.Context {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	return dctx
}

// reasonFor maps an activity failure to the join's reason.
func reasonFor(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case activities.ErrTypeMeetingFull:
			return ReasonMeetingFull
		case activities.ErrTypeMeetingClosed:
			return ReasonMeetingClosed
		case activities.ErrTypeMeetingNotFound:
			return ReasonMeetingNotFound
		case activities.ErrTypeAlreadyJoined:
			return ReasonAlreadyJoined
		case activities.ErrTypeDeclined:
			return ReasonDeclined
		}
	}
	if temporal.IsCanceledError(err) {
		return ReasonAborted
	}
	return ReasonPaymentFailed
}

// isRefusal reports whether a seat step failed because the meeting refused
// it, for good (not because PostgreSQL was away or the workflow cancelled).
func isRefusal(err error) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return false
	}
	switch appErr.Type() {
	case activities.ErrTypeMeetingFull, activities.ErrTypeMeetingClosed, activities.ErrTypeMeetingNotFound, activities.ErrTypeAlreadyJoined:
		return true
	}
	return appErr.NonRetryable()
}

func isDecline(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && (appErr.Type() == activities.ErrTypeDeclined || appErr.Type() == activities.ErrTypeRejected)
}

func paymentStatusFor(err error) string {
	if isDecline(err) {
		return meeting.PaymentDeclined
	}
	return meeting.PaymentNone
}

// Activity options of the join saga. The seat operations and the saving of
// the join are short PostgreSQL transactions, idempotent per join: they run
// as local activities, in the workflow task, which spares the server three
// activity round trips per join (its scarcest resource here, see the
// README's figures). The calls to the gateway and the notification channels
// stay regular activities, with their own timeouts and retries.
//
// Version 1 (joinVersionUntilDone): a local activity's ScheduleToClose
// defaults to its StartToClose, which is also the budget of all its retries,
// so the version-0 options gave up after about 10 s of a PostgreSQL outage.
// The seat steps and the bookkeeping now set an explicit ScheduleToClose
// (untilDone) and no attempt limit. The SDK retries a local activity in the
// workflow task while the backoff is within the workflow task timeout, and
// past it through a durable timer, so a long outage costs history: about 5
// events per retry once the backoff reaches MaximumInterval (1 minute),
// ~300 events an hour of outage per waiting join (measured: a 6-minute
// outage of the reserve added 41 events over 8 timers), under Temporal's
// 50,000-event limit for about a week.
var (
	seatOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 5 * time.Second, MaximumAttempts: 10},
	}
	localUndoOptions = workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	seatUntilDone = workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: untilDone,
		StartToCloseTimeout:    10 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	undoUntilDone = workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: untilDone,
		StartToCloseTimeout:    10 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	// The remote compensations and lookups of version 1: an explicit
	// ScheduleToClose rather than the server's default.
	undoRemoteUntilDone = workflow.ActivityOptions{
		ScheduleToCloseTimeout: untilDone,
		StartToCloseTimeout:    30 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	// A charge attempt includes the gateway's timeout and a lookup.
	chargeOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 5},
	}
	// Compensations, lookups and bookkeeping must finish: retry until they do.
	undoOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	notifyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 4},
	}
)

// untilDone is the ScheduleToClose of the steps that must finish: ten years
// stands for "until it is done" (the SDK needs a finite timeout).
const untilDone = 10 * 365 * 24 * time.Hour

// seatLocal is the options of the seat steps (reserve, confirm).
func (s *joinSaga) seatLocal() workflow.LocalActivityOptions {
	if s.version >= 1 {
		return seatUntilDone
	}
	return seatOptions
}

// undoLocal is the options of the local compensations and bookkeeping
// (release, save).
func (s *joinSaga) undoLocal() workflow.LocalActivityOptions {
	if s.version >= 1 {
		return undoUntilDone
	}
	return localUndoOptions
}

// undoRemote is the options of the gateway's compensations and lookups
// (refund, void, lookup).
func (s *joinSaga) undoRemote() workflow.ActivityOptions {
	if s.version >= 1 {
		return undoRemoteUntilDone
	}
	return undoOptions
}

func withOptions(ctx workflow.Context, o workflow.ActivityOptions) workflow.Context {
	return workflow.WithActivityOptions(ctx, o)
}

func withLocal(ctx workflow.Context, o workflow.LocalActivityOptions) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, o)
}
