package workflows

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
)

// joinTest runs the join saga against mocked activities and records the
// order in which they ran.
type joinTest struct {
	*testsuite.TestWorkflowEnvironment
	t     *testing.T
	mu    sync.Mutex
	calls []string
}

func newJoinTest(t *testing.T) *joinTest {
	var s testsuite.WorkflowTestSuite
	jt := &joinTest{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment(), t: t}
	jt.RegisterActivity(&activities.JoinActivities{})
	return jt
}

func (jt *joinTest) record(name string) {
	jt.mu.Lock()
	defer jt.mu.Unlock()
	jt.calls = append(jt.calls, name)
}

// ok makes the named activities succeed (recording each call).
func (jt *joinTest) ok(names ...string) {
	for _, n := range names {
		switch n {
		case "ReserveSeat", "ConfirmSeat", "ReleaseSeat":
			jt.OnActivity(n, mock.Anything, mock.Anything).Return(func(context.Context, activities.SeatInput) error { jt.record(n); return nil })
		case "Charge":
			jt.OnActivity(n, mock.Anything, mock.Anything).Return(func(context.Context, activities.ChargeInput) (activities.ChargeResult, error) {
				jt.record(n)
				return activities.ChargeResult{PaymentID: "pay_1", Status: activities.ChargeSucceeded}, nil
			})
		case "Refund":
			jt.OnActivity(n, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RefundInput) (activities.ChargeResult, error) {
				jt.record(n)
				return activities.ChargeResult{PaymentID: in.PaymentID, Status: activities.ChargeRefunded}, nil
			})
		case "Notify":
			jt.OnActivity(n, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.NotifyInput) error {
				jt.record("Notify_" + in.Channel)
				return nil
			})
		case "SaveJoin":
			jt.OnActivity(n, mock.Anything, mock.Anything).Return(func(context.Context, activities.SaveJoinInput) error { jt.record(n); return nil })
		}
	}
}

func (jt *joinTest) run(in JoinInput) meeting.Join {
	jt.t.Helper()
	jt.ExecuteWorkflow(Join, in)
	require.True(jt.t, jt.IsWorkflowCompleted())
	require.NoError(jt.t, jt.GetWorkflowError())
	var got meeting.Join
	require.NoError(jt.t, jt.GetWorkflowResult(&got))
	return got
}

func (jt *joinTest) count(name string) int {
	jt.mu.Lock()
	defer jt.mu.Unlock()
	n := 0
	for _, c := range jt.calls {
		if c == name {
			n++
		}
	}
	return n
}

func joinInput() JoinInput {
	return JoinInput{
		Tenant: "demo", Schema: "tenant_demo", JoinID: "j_1", MeetingID: "m_1", MeetingTitle: "Go meetup",
		UserID: "u_1", PaymentToken: "tok", Channels: []string{"email", "push", "sms"},
		Fee: meeting.Money{Amount: 30000, Currency: "KRW"},
	}
}

func permanent(typ string) error { return temporal.NewNonRetryableApplicationError(typ, typ, nil) }

func TestJoin_success_confirms_and_notifies_without_compensation(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "Charge", "ConfirmSeat", "Notify", "SaveJoin", "ReleaseSeat", "Refund")
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinConfirmed, got.Status)
	require.Equal(t, meeting.Payment{ID: "pay_1", Status: activities.ChargeSucceeded}, got.Payment)
	require.Equal(t, []string{"ReserveSeat", "Charge", "ConfirmSeat"}, jt.calls[:3])
	require.ElementsMatch(t, []string{"Notify_email", "Notify_push", "Notify_sms"}, jt.calls[3:6])
	require.Equal(t, 0, jt.count("ReleaseSeat"))
	require.Equal(t, 0, jt.count("Refund"))
	require.Equal(t, 1, jt.count("SaveJoin"))
}

func TestJoin_full_meeting_fails_without_charging(t *testing.T) {
	jt := newJoinTest(t)
	jt.OnActivity("ReserveSeat", mock.Anything, mock.Anything).Return(permanent(activities.ErrTypeMeetingFull))
	jt.ok("Charge", "ReleaseSeat", "Refund", "SaveJoin")
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinFailed, got.Status)
	require.Equal(t, ReasonMeetingFull, got.Reason)
	require.Equal(t, 0, jt.count("Charge"), "no charge for a full meeting")
	require.Equal(t, 0, jt.count("ReleaseSeat"))
	require.Equal(t, 1, jt.count("SaveJoin"))
}

func TestJoin_decline_releases_the_seat_and_refunds_nothing(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "ReleaseSeat", "Refund", "ConfirmSeat", "SaveJoin")
	jt.OnActivity("Charge", mock.Anything, mock.Anything).Return(activities.ChargeResult{}, permanent(activities.ErrTypeDeclined)).Once()
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinCompensated, got.Status)
	require.Equal(t, ReasonDeclined, got.Reason)
	require.Equal(t, "declined", got.Payment.Status)
	require.Equal(t, 1, jt.count("ReleaseSeat"))
	require.Equal(t, 0, jt.count("Refund"))
	require.Equal(t, 0, jt.count("ConfirmSeat"))
	jt.AssertNotCalled(t, "LookupCharge", mock.Anything, mock.Anything)
}

func TestJoin_5xx_then_success_is_retried_and_confirms(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "ConfirmSeat", "Notify", "SaveJoin", "ReleaseSeat", "Refund")
	jt.OnActivity("Charge", mock.Anything, mock.Anything).Return(activities.ChargeResult{}, errors.New("payment: 503")).Once()
	jt.OnActivity("Charge", mock.Anything, mock.Anything).Return(activities.ChargeResult{PaymentID: "pay_2", Status: activities.ChargeSucceeded}, nil).Once()
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinConfirmed, got.Status)
	require.Equal(t, "pay_2", got.Payment.ID)
	jt.AssertNumberOfCalls(t, "Charge", 2)
	require.Equal(t, 0, jt.count("Refund"))
}

func TestJoin_unknown_outcome_after_retries_is_voided_not_guessed(t *testing.T) {
	tests := []struct {
		name        string
		void        activities.ChargeResult
		wantStatus  string
		wantRefunds int
	}{
		// The charge was applied although no reply came: the join goes on.
		{"applied", activities.ChargeResult{PaymentID: "pay_3", Status: activities.ChargeSucceeded}, meeting.JoinConfirmed, 0},
		// Nothing was applied, and the void makes sure nothing will be:
		// release the seat, nothing to refund.
		{"not_applied", activities.ChargeResult{PaymentID: "ch_v", Status: activities.ChargeVoided}, meeting.JoinCompensated, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jt := newJoinTest(t)
			jt.ok("ReserveSeat", "ConfirmSeat", "Notify", "SaveJoin", "ReleaseSeat", "Refund")
			jt.OnActivity("Charge", mock.Anything, mock.Anything).Return(activities.ChargeResult{}, errors.New("payment: outcome unknown"))
			jt.OnActivity("VoidCharge", mock.Anything, "j_1").Return(tt.void, nil).Once()
			got := jt.run(joinInput())

			require.Equal(t, tt.wantStatus, got.Status)
			jt.AssertNumberOfCalls(t, "Charge", 5) // the retry policy's attempts
			jt.AssertNumberOfCalls(t, "VoidCharge", 1)
			jt.AssertNotCalled(t, "LookupCharge", mock.Anything, mock.Anything)
			require.Equal(t, tt.wantRefunds, jt.count("Refund"))
			if tt.wantStatus == meeting.JoinCompensated {
				require.Equal(t, ReasonPaymentFailed, got.Reason)
				require.Equal(t, 1, jt.count("ReleaseSeat"))
			} else {
				require.Equal(t, "pay_3", got.Payment.ID)
			}
		})
	}
}

func TestJoin_confirm_failure_refunds_then_releases(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "Charge", "ReleaseSeat", "Refund", "SaveJoin", "Notify")
	jt.OnActivity("ConfirmSeat", mock.Anything, mock.Anything).Return(permanent(activities.ErrTypeMeetingClosed))
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinCompensated, got.Status)
	require.Equal(t, ReasonMeetingClosed, got.Reason)
	require.Equal(t, []string{"ReserveSeat", "Charge", "Refund", "ReleaseSeat", "SaveJoin"}, jt.calls, "compensations run in reverse order")
	require.Equal(t, activities.ChargeRefunded, got.Payment.Status)
}

func TestJoin_failed_notification_never_compensates(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "Charge", "ConfirmSeat", "SaveJoin", "ReleaseSeat", "Refund")
	jt.OnActivity("Notify", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.NotifyInput) error {
		if in.Channel == "sms" {
			return errors.New("sms gateway down")
		}
		return nil
	})
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinConfirmed, got.Status)
	require.Equal(t, 0, jt.count("Refund"))
	require.Equal(t, 0, jt.count("ReleaseSeat"))
	var sms meeting.Step
	for _, s := range got.Steps {
		if s.Name == "notify_sms" {
			sms = s
		}
	}
	require.Equal(t, "failed", sms.Status)
	require.Contains(t, sms.Detail, "sms gateway down")
}

func TestJoin_free_meeting_skips_the_charge(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "Charge", "ConfirmSeat", "Notify", "SaveJoin")
	in := joinInput()
	in.Fee.Amount = 0
	got := jt.run(in)
	require.Equal(t, meeting.JoinConfirmed, got.Status)
	require.Equal(t, 0, jt.count("Charge"))
}

// cancelAt sends the cancel update after d and reports whether it was
// accepted.
func (jt *joinTest) cancelAt(d time.Duration) *updateResult {
	r := &updateResult{}
	jt.RegisterDelayedCallback(func() {
		jt.UpdateWorkflow(UpdateCancel, "cancel-1", &testsuite.TestUpdateCallback{
			OnAccept:   func() { r.accepted = true },
			OnReject:   func(err error) { r.rejected = err },
			OnComplete: func(any, error) {},
		})
	}, d)
	return r
}

type updateResult struct {
	accepted bool
	rejected error
}

func TestJoin_cancel_signal_at_each_step(t *testing.T) {
	deadline := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		cancelAfter  time.Duration // activities take 10 s each: reserve ends at 10 s, charge at 20 s, confirm at 30 s
		wantStatus   string
		wantRefunds  int
		wantReleases int
		wantCharges  int
	}{
		{"during_reserve", 5 * time.Second, meeting.JoinCompensated, 0, 1, 0},
		{"during_charge", 15 * time.Second, meeting.JoinCompensated, 1, 1, 1},
		{"during_confirm", 25 * time.Second, meeting.JoinCompensated, 1, 1, 1},
		{"after_confirm_before_deadline", time.Hour, meeting.JoinCompensated, 1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jt := newJoinTest(t)
			jt.SetStartTime(deadline.Add(-48 * time.Hour))
			for _, n := range []string{"ReserveSeat", "ConfirmSeat"} {
				jt.OnActivity(n, mock.Anything, mock.Anything).After(10 * time.Second).Return(func(context.Context, activities.SeatInput) error { jt.record(n); return nil })
			}
			jt.OnActivity("Charge", mock.Anything, mock.Anything).After(10 * time.Second).Return(func(context.Context, activities.ChargeInput) (activities.ChargeResult, error) {
				jt.record("Charge")
				return activities.ChargeResult{PaymentID: "pay_1", Status: activities.ChargeSucceeded}, nil
			})
			jt.ok("ReleaseSeat", "Refund", "Notify", "SaveJoin")
			in := joinInput()
			in.CancelDeadline = &deadline
			upd := jt.cancelAt(tt.cancelAfter)
			got := jt.run(in)

			require.True(t, upd.accepted, "cancel was refused: %v", upd.rejected)
			require.Equal(t, tt.wantStatus, got.Status)
			require.Equal(t, ReasonCancelled, got.Reason)
			require.Equal(t, tt.wantCharges, jt.count("Charge"))
			require.Equal(t, tt.wantRefunds, jt.count("Refund"))
			require.Equal(t, tt.wantReleases, jt.count("ReleaseSeat"))
		})
	}
}

func TestJoin_cancel_after_deadline_is_refused(t *testing.T) {
	jt := newJoinTest(t)
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	jt.SetStartTime(start)
	jt.ok("ReserveSeat", "Charge", "ConfirmSeat", "SaveJoin", "ReleaseSeat", "Refund")
	// Notifications take 10 s, so the confirmed workflow is still open when
	// the cancel arrives, a minute past the deadline.
	jt.OnActivity("Notify", mock.Anything, mock.Anything).After(10 * time.Second).Return(nil)
	deadline := start.Add(-time.Minute)
	in := joinInput()
	in.CancelDeadline = &deadline
	upd := jt.cancelAt(5 * time.Second)
	got := jt.run(in)

	require.False(t, upd.accepted)
	require.ErrorContains(t, upd.rejected, ErrCancelTooLate.Error())
	require.Equal(t, meeting.JoinConfirmed, got.Status)
	require.Equal(t, 0, jt.count("Refund"))
	require.Equal(t, 0, jt.count("ReleaseSeat"))
}

func TestJoin_workflow_cancellation_still_refunds(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "ReleaseSeat", "Refund", "SaveJoin")
	jt.OnActivity("Charge", mock.Anything, mock.Anything).After(10*time.Second).Return(
		activities.ChargeResult{PaymentID: "pay_9", Status: activities.ChargeSucceeded}, nil)
	// The charge's outcome is unknown when the workflow is cancelled; the
	// compensation settles it (void) and finds the money taken.
	jt.OnActivity("VoidCharge", mock.Anything, "j_1").Return(activities.ChargeResult{PaymentID: "pay_9", Status: activities.ChargeSucceeded}, nil)
	jt.RegisterDelayedCallback(jt.CancelWorkflow, 5*time.Second)
	jt.ExecuteWorkflow(Join, joinInput())

	require.True(t, jt.IsWorkflowCompleted())
	var got meeting.Join
	_ = jt.GetWorkflowResult(&got)
	require.Equal(t, 1, jt.count("Refund"), "money taken must be refunded even when the workflow is cancelled")
	require.Equal(t, 1, jt.count("ReleaseSeat"))
	require.Equal(t, 0, jt.count("ConfirmSeat"))
}

// outageStart is the test clock's start in the outage tests.
var outageStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// outage makes the named seat or bookkeeping activity fail as it does while
// PostgreSQL is down, until the test clock reaches start+d, then succeed;
// it records the successful call only.
func (jt *joinTest) outage(name string, d time.Duration) *int {
	attempts := new(int)
	fail := func() error {
		jt.mu.Lock()
		*attempts++
		jt.mu.Unlock()
		if jt.Now().Before(outageStart.Add(d)) {
			return errors.New("failed to connect to postgres: connection refused")
		}
		jt.record(name)
		return nil
	}
	switch name {
	case "SaveJoin":
		jt.OnActivity(name, mock.Anything, mock.Anything).Return(func(context.Context, activities.SaveJoinInput) error { return fail() })
	default:
		jt.OnActivity(name, mock.Anything, mock.Anything).Return(func(context.Context, activities.SeatInput) error { return fail() })
	}
	return attempts
}

// A PostgreSQL outage much longer than a local activity's StartToClose (10 s)
// delays each step of a join but decides nothing: the join converges on the
// path it would have taken without the outage.
func TestJoin_a_long_outage_delays_each_step_and_decides_nothing(t *testing.T) {
	const outage = 25 * time.Minute
	tests := []struct {
		name       string
		down       string // the activity that fails for the outage
		confirmErr error  // ConfirmSeat's answer once up (nil: confirmed)
		decline    bool
		wantStatus string
		wantReason string
		wantCalls  []string // the successful calls, in order (notifications aside)
	}{
		{"reserve", "ReserveSeat", nil, false, meeting.JoinConfirmed, "",
			[]string{"ReserveSeat", "Charge", "ConfirmSeat", "SaveJoin"}},
		{"confirm_after_the_charge", "ConfirmSeat", nil, false, meeting.JoinConfirmed, "",
			[]string{"ReserveSeat", "Charge", "ConfirmSeat", "SaveJoin"}},
		{"save_of_a_confirmed_join", "SaveJoin", nil, false, meeting.JoinConfirmed, "",
			[]string{"ReserveSeat", "Charge", "ConfirmSeat", "SaveJoin"}},
		{"release_after_a_decline", "ReleaseSeat", nil, true, meeting.JoinCompensated, ReasonDeclined,
			[]string{"ReserveSeat", "ReleaseSeat", "SaveJoin"}},
		{"release_after_a_refused_confirm", "ReleaseSeat", permanent(activities.ErrTypeMeetingClosed), false, meeting.JoinCompensated, ReasonMeetingClosed,
			[]string{"ReserveSeat", "Charge", "Refund", "ReleaseSeat", "SaveJoin"}},
		{"save_of_a_compensated_join", "SaveJoin", nil, true, meeting.JoinCompensated, ReasonDeclined,
			[]string{"ReserveSeat", "ReleaseSeat", "SaveJoin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jt := newJoinTest(t)
			jt.SetStartTime(outageStart)
			attempts := jt.outage(tt.down, outage)
			if tt.confirmErr != nil {
				jt.OnActivity("ConfirmSeat", mock.Anything, mock.Anything).Return(tt.confirmErr)
			}
			if tt.decline {
				jt.OnActivity("Charge", mock.Anything, mock.Anything).Return(func(context.Context, activities.ChargeInput) (activities.ChargeResult, error) {
					return activities.ChargeResult{}, permanent(activities.ErrTypeDeclined)
				})
			}
			jt.ok("ReserveSeat", "Charge", "ConfirmSeat", "ReleaseSeat", "Refund", "SaveJoin", "Notify")
			got := jt.run(joinInput())

			require.Equal(t, tt.wantStatus, got.Status)
			require.Equal(t, tt.wantReason, got.Reason)
			var calls []string
			for _, c := range jt.calls {
				if len(c) < 7 || c[:7] != "Notify_" {
					calls = append(calls, c)
				}
			}
			require.Equal(t, tt.wantCalls, calls, "each step once, in order, no compensation the outage did not call for")
			require.Greater(t, *attempts, 10, "the step was retried through the outage")
			require.False(t, jt.Now().Before(outageStart.Add(outage)), "the join ended before the outage did")
		})
	}
}

// A refund the gateway cannot take is retried until it is taken, and the
// seat is released after it. (The test environment caps an activity whose
// policy allows unlimited attempts at 10, so the refund fails 9 times here;
// TestJoin_until_done_options_have_no_budget checks the policy itself.)
func TestJoin_refund_is_retried_until_the_gateway_takes_it(t *testing.T) {
	jt := newJoinTest(t)
	jt.OnActivity("ConfirmSeat", mock.Anything, mock.Anything).Return(permanent(activities.ErrTypeMeetingClosed))
	refunds := 0
	jt.OnActivity("Refund", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RefundInput) (activities.ChargeResult, error) {
		if refunds++; refunds < 10 {
			return activities.ChargeResult{}, errors.New("payment: refund: outcome unknown: 503")
		}
		jt.record("Refund")
		return activities.ChargeResult{PaymentID: in.PaymentID, Status: activities.ChargeRefunded}, nil
	})
	jt.ok("ReserveSeat", "Charge", "ReleaseSeat", "SaveJoin")
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinCompensated, got.Status)
	require.Equal(t, activities.ChargeRefunded, got.Payment.Status)
	require.Equal(t, []string{"ReserveSeat", "Charge", "Refund", "ReleaseSeat", "SaveJoin"}, jt.calls)
}

// Every option set of a step that must finish has no budget a long outage
// can exhaust: no attempt limit, and a ScheduleToClose of years (a local
// activity's ScheduleToClose defaults to its StartToClose, 10 s).
func TestJoin_until_done_options_have_no_budget(t *testing.T) {
	s := &joinSaga{version: 1}
	for name, o := range map[string]workflow.LocalActivityOptions{"seat": s.seatLocal(), "undo": s.undoLocal()} {
		require.GreaterOrEqual(t, o.ScheduleToCloseTimeout, 365*24*time.Hour, name)
		require.Zero(t, o.RetryPolicy.MaximumAttempts, name)
	}
	o := s.undoRemote()
	require.GreaterOrEqual(t, o.ScheduleToCloseTimeout, 365*24*time.Hour)
	require.Zero(t, o.RetryPolicy.MaximumAttempts)
}

// A seat refusal at reserve ends the join without a compensation; a
// workflow cancelled while the reserve waits out an outage releases the
// seat it may have taken.
func TestJoin_cancelled_during_a_reserve_outage_releases(t *testing.T) {
	jt := newJoinTest(t)
	jt.SetStartTime(outageStart)
	jt.outage("ReserveSeat", 24*time.Hour)
	jt.ok("Charge", "ReleaseSeat", "SaveJoin")
	jt.RegisterDelayedCallback(jt.CancelWorkflow, 30*time.Minute)
	jt.ExecuteWorkflow(Join, joinInput())

	require.True(t, jt.IsWorkflowCompleted())
	require.Equal(t, 0, jt.count("Charge"))
	require.Equal(t, 1, jt.count("ReleaseSeat"))
	require.Equal(t, 1, jt.count("SaveJoin"))
}

// The compensations run to the end even when one of them is refused for
// good: a refund the gateway rejects does not keep the seat reserved.
func TestJoin_a_refused_refund_does_not_keep_the_seat(t *testing.T) {
	jt := newJoinTest(t)
	jt.OnActivity("ConfirmSeat", mock.Anything, mock.Anything).Return(permanent(activities.ErrTypeMeetingClosed))
	jt.OnActivity("Refund", mock.Anything, mock.Anything).Return(activities.ChargeResult{}, permanent(activities.ErrTypeRejected))
	jt.ok("ReserveSeat", "Charge", "ReleaseSeat", "SaveJoin")
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinCompensated, got.Status)
	require.Equal(t, 1, jt.count("ReleaseSeat"))
	require.Equal(t, 1, jt.count("SaveJoin"))
	var refund meeting.Step
	for _, s := range got.Steps {
		if s.Name == "refund" {
			refund = s
		}
	}
	require.Equal(t, "failed", refund.Status, "the refused refund is on record")
}

// The histories recorded before payloads were encrypted replay on workers
// whose client encrypts: the codec passes clear payloads through.
func TestJoin_clear_histories_replay_under_the_payload_codec(t *testing.T) {
	keys, err := temporalclient.ParsePayloadKeys("k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)))
	require.NoError(t, err)
	dc, err := temporalclient.NewDataConverter(keys)
	require.NoError(t, err)
	files, err := filepath.Glob("testdata/join_*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: dc})
	require.NoError(t, err)
	r.RegisterWorkflowWithOptions(Join, workflow.RegisterOptions{Name: JoinWorkflowType})
	for _, f := range files {
		require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f), f)
	}
}

// A gateway that refuses to settle a lost charge (no void) leaves the
// outcome on record as unknown; the seat is still released.
func TestJoin_a_charge_that_cannot_be_settled_still_releases_the_seat(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "ConfirmSeat", "ReleaseSeat", "Refund", "SaveJoin")
	jt.OnActivity("Charge", mock.Anything, mock.Anything).Return(activities.ChargeResult{}, errors.New("payment: outcome unknown"))
	jt.OnActivity("VoidCharge", mock.Anything, "j_1").Return(activities.ChargeResult{}, permanent(activities.ErrTypeRejected))
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinCompensated, got.Status)
	require.Equal(t, ReasonPaymentFailed, got.Reason)
	require.Equal(t, 0, jt.count("ConfirmSeat"))
	require.Equal(t, 0, jt.count("Refund"))
	require.Equal(t, 1, jt.count("ReleaseSeat"))
	jt.AssertNumberOfCalls(t, "VoidCharge", 2) // when the charge gave up, and again in the compensation
	var failed int
	for _, s := range got.Steps {
		if s.Name == "settle_charge" && s.Status == "failed" {
			failed++
		}
	}
	require.Equal(t, 2, failed)
}

// The compensations tell their activities why they run (for their spans).
func TestJoin_compensations_carry_the_joins_reason(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "Charge", "SaveJoin", "Notify")
	var releaseReason, refundReason string
	jt.OnActivity("ConfirmSeat", mock.Anything, mock.Anything).Return(permanent(activities.ErrTypeMeetingClosed))
	jt.OnActivity("ReleaseSeat", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SeatInput) error {
		releaseReason = in.Reason
		return nil
	})
	jt.OnActivity("Refund", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RefundInput) (activities.ChargeResult, error) {
		refundReason = in.Reason
		return activities.ChargeResult{PaymentID: in.PaymentID, Status: activities.ChargeRefunded}, nil
	})
	got := jt.run(joinInput())

	require.Equal(t, meeting.JoinCompensated, got.Status)
	require.Equal(t, ReasonMeetingClosed, releaseReason, "release's reason")
	require.Equal(t, ReasonMeetingClosed, refundReason, "refund's reason")
}

// A join whose input carries the saga's version asks no GetVersion, which
// adds a marker and an upsert of TemporalChangeVersion to every join's
// history. It takes version 1's path all the same: through a
// reserve outage longer than version 0's budget, to a confirmed join, where
// GetVersion (had it been asked) would have said version 0. An input
// recorded before the version was carried asks GetVersion, once.
func TestJoin_takes_its_version_from_the_input(t *testing.T) {
	for _, tt := range []struct {
		name     string
		version  int
		recorded workflow.Version // what GetVersion answers when asked
		asked    int
	}{
		{"carried", JoinVersion, workflow.DefaultVersion, 0},
		{"recorded_before_it_was_carried", 0, JoinVersion, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jt := newJoinTest(t)
			jt.SetStartTime(outageStart)
			asked := 0
			jt.OnGetVersion(joinVersionUntilDone, workflow.DefaultVersion, JoinVersion).Run(func(mock.Arguments) { asked++ }).Return(tt.recorded).Maybe()
			attempts := jt.outage("ReserveSeat", 25*time.Minute)
			jt.ok("Charge", "ConfirmSeat", "SaveJoin", "Notify")
			in := joinInput()
			in.Version = tt.version
			got := jt.run(in)
			require.Equal(t, meeting.JoinConfirmed, got.Status)
			require.Greater(t, *attempts, 10, "the reserve was retried through the outage")
			require.Equal(t, tt.asked, asked, "GetVersion calls")
		})
	}
}

// A version this worker does not know fails the workflow task (as
// GetVersion does), so that a worker that knows it runs the join; nothing
// runs meanwhile.
func TestJoin_a_version_from_the_future_runs_nothing(t *testing.T) {
	jt := newJoinTest(t)
	jt.ok("ReserveSeat", "Charge", "ConfirmSeat", "SaveJoin", "Notify")
	in := joinInput()
	in.Version = JoinVersion + 1
	jt.ExecuteWorkflow(Join, in)
	err := jt.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "asks for saga version 2")
	require.Empty(t, jt.calls)
}
