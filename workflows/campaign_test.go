package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
)

func newCampaignEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.CouponActivities{})
	env.SetStartTime(campaignInput().Campaign.StartsAt) // its window is open
	return env
}

func campaignInput() CampaignInput {
	return CampaignInput{Campaign: activities.CampaignRef{Tenant: "demo", Schema: "tenant_demo", CampaignID: "c1", Stock: 1234,
		StartsAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), EndsAt: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)}}
}

func TestCampaign_issues_in_batches_then_reconciles(t *testing.T) {
	env := newCampaignEnv()
	var a *activities.CouponActivities
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Issued: 1000, LastRank: 1000}, nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{}, nil).Once() // waited, nothing came
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Issued: 234, LastRank: 1234}, nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Finished: true}, nil).Once()
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(activities.ReconcileResult{Accepted: 1234, Issued: 1234}, nil).Once()
	env.ExecuteWorkflow(Campaign, campaignInput())

	require.NoError(t, env.GetWorkflowError())
	var got CampaignState
	require.NoError(t, env.GetWorkflowResult(&got))
	require.Equal(t, CampaignState{Phase: "done", Issued: 1234, LastRank: 1234, Accepted: 1234}, got)
	env.AssertExpectations(t)
}

func TestCampaign_continues_as_new_to_keep_its_history_small(t *testing.T) {
	env := newCampaignEnv()
	var a *activities.CouponActivities
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Issued: 10, LastRank: 10}, nil)
	env.ExecuteWorkflow(Campaign, campaignInput())

	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "got %v", env.GetWorkflowError())
	var next CampaignInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, campaignBatchesPerRun*10, next.Issued)
	require.Equal(t, 1, next.Runs)
	env.AssertNumberOfCalls(t, "IssueNext", campaignBatchesPerRun)
	env.AssertNotCalled(t, "Reconcile", mock.Anything, mock.Anything)
}

func TestCampaign_next_run_does_not_reopen_and_keeps_counting(t *testing.T) {
	env := newCampaignEnv()
	var a *activities.CouponActivities
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Issued: 4, LastRank: 2004}, nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Finished: true}, nil).Once()
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(activities.ReconcileResult{Accepted: 2004, Issued: 2004}, nil)
	in := campaignInput()
	in.Issued, in.LastRank, in.Runs = 2000, 2000, 1
	env.ExecuteWorkflow(Campaign, in)

	var got CampaignState
	require.NoError(t, env.GetWorkflowResult(&got))
	require.Equal(t, 2004, got.Issued)
	require.Equal(t, 1, got.Runs)
	env.AssertNotCalled(t, "OpenCampaign", mock.Anything, mock.Anything)
}

func TestCampaign_status_query_shows_progress(t *testing.T) {
	env := newCampaignEnv()
	var a *activities.CouponActivities
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil)
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(activities.IssueResult{Issued: 500, LastRank: 500}, nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).After(time.Minute).Return(activities.IssueResult{Finished: true}, nil).Once()
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(activities.ReconcileResult{Accepted: 500, Issued: 500}, nil)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		var mid CampaignState
		require.NoError(t, v.Get(&mid))
		require.Equal(t, "issuing", mid.Phase)
		require.Equal(t, 500, mid.Issued)
	}, 30*time.Second)
	env.ExecuteWorkflow(Campaign, campaignInput())
	require.NoError(t, env.GetWorkflowError())
}

// A scheduled campaign runs no issuing activity before its window opens: it
// sleeps on a timer (before, it polled Redis from an activity slot).
func TestCampaign_scheduled_sleeps_until_its_window_opens(t *testing.T) {
	env := newCampaignEnv()
	in := campaignInput()
	env.SetStartTime(in.Campaign.StartsAt.Add(-3 * time.Hour))
	var a *activities.CouponActivities
	var calls []time.Time
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(func(_ context.Context, got activities.IssueInput) (activities.IssueResult, error) {
		calls = append(calls, env.Now())
		if !got.Yield {
			t.Error("IssueNext without Yield: it would hold its slot while the queue is empty")
		}
		if len(calls) == 1 {
			return activities.IssueResult{Issued: 10, LastRank: 10}, nil
		}
		return activities.IssueResult{Finished: true}, nil
	})
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(activities.ReconcileResult{Accepted: 10, Issued: 10}, nil).Once()
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		var mid CampaignState
		require.NoError(t, v.Get(&mid))
		require.Equal(t, "scheduled", mid.Phase)
	}, time.Hour)
	env.ExecuteWorkflow(Campaign, in)

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, calls, 2)
	require.False(t, calls[0].Before(in.Campaign.StartsAt), "first IssueNext at %v, before the window opens at %v", calls[0], in.Campaign.StartsAt)
}

// An open campaign with nothing to issue holds no slot while it waits: the
// activity reports Asleep and the workflow waits on a timer, until the wake
// signal of the next request (here after 5 s of workflow time), or at the
// latest campaignAsleepMax.
func TestCampaign_asleep_waits_for_the_wake_signal_or_its_timer(t *testing.T) {
	env := newCampaignEnv()
	in := campaignInput()
	start := env.Now()
	var a *activities.CouponActivities
	var calls []time.Duration
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(func(context.Context, activities.IssueInput) (activities.IssueResult, error) {
		calls = append(calls, env.Now().Sub(start))
		switch len(calls) {
		case 1, 3: // nothing there
			return activities.IssueResult{Asleep: true}, nil
		case 2:
			return activities.IssueResult{Issued: 1, LastRank: 1}, nil
		}
		return activities.IssueResult{Finished: true}, nil
	})
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(activities.ReconcileResult{Accepted: 1, Issued: 1}, nil).Once()
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCampaignWake, nil) }, 5*time.Second)
	env.ExecuteWorkflow(Campaign, in)

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, calls, 4)
	require.Equal(t, 5*time.Second, calls[1].Round(time.Second), "woken by the signal: %v", calls)
	// No signal after the third: its timer wakes it.
	require.Equal(t, campaignAsleepMax, (calls[3] - calls[2]).Round(time.Second), "woken by the timer: %v", calls)
}

// A campaign whose tenant is at its bound asks again after a growing,
// bounded wait, and then goes on issuing.
func TestCampaign_busy_tenant_backs_off(t *testing.T) {
	env := newCampaignEnv()
	start := env.Now()
	var a *activities.CouponActivities
	var calls []time.Duration
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(func(context.Context, activities.IssueInput) (activities.IssueResult, error) {
		calls = append(calls, env.Now().Sub(start))
		switch {
		case len(calls) <= 8:
			return activities.IssueResult{Busy: true}, nil
		case len(calls) == 9:
			return activities.IssueResult{Issued: 3, LastRank: 3}, nil
		}
		return activities.IssueResult{Finished: true}, nil
	})
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(activities.ReconcileResult{Accepted: 3, Issued: 3}, nil).Once()
	env.ExecuteWorkflow(Campaign, campaignInput())

	require.NoError(t, env.GetWorkflowError())
	require.Len(t, calls, 10)
	var waits []time.Duration
	for i := 1; i < len(calls); i++ {
		waits = append(waits, (calls[i] - calls[i-1]).Round(10*time.Millisecond))
	}
	ms := time.Millisecond
	require.Equal(t, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 2000 * ms, 2000 * ms, 0}, waits)
}

// PostgreSQL (or Redis) down for hours: the issuing and reconciling
// activities fail all that time, are retried without end, and the campaign
// still ends with exactly its stock.
func TestCampaign_outlasts_an_outage_of_hours(t *testing.T) {
	env := newCampaignEnv()
	start := env.Now()
	outage := func() error {
		if env.Now().Sub(start) < 3*time.Hour {
			return errors.New("issue coupons: dial tcp 127.0.0.1:5432: connect: connection refused")
		}
		return nil
	}
	var a *activities.CouponActivities
	issued, attempts := 0, 0
	env.OnActivity(a.OpenCampaign, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.IssueNext, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.IssueInput) (activities.IssueResult, error) {
		attempts++
		if err := outage(); err != nil {
			return activities.IssueResult{}, err
		}
		if issued == 1234 {
			return activities.IssueResult{Finished: true}, nil
		}
		n := min(1000, 1234-issued)
		issued += n
		return activities.IssueResult{Issued: n, LastRank: issued}, nil
	})
	reconciles := 0
	env.OnActivity(a.Reconcile, mock.Anything, mock.Anything).Return(func(context.Context, activities.CampaignRef) (activities.ReconcileResult, error) {
		reconciles++
		if reconciles < 100 { // down again for the reconcile: ~15 minutes of retries
			return activities.ReconcileResult{}, errors.New("read campaign: connection refused")
		}
		return activities.ReconcileResult{Accepted: 1234, Issued: 1234}, nil
	})
	env.ExecuteWorkflow(Campaign, campaignInput())

	require.NoError(t, env.GetWorkflowError(), "after %d attempts, %v", attempts, env.Now().Sub(start))
	var got CampaignState
	require.NoError(t, env.GetWorkflowResult(&got))
	require.Equal(t, CampaignState{Phase: "done", Issued: 1234, LastRank: 1234, Accepted: 1234}, got)
	require.Greater(t, attempts, 1000, "the outage of 3 h was retried %d times", attempts)
	require.GreaterOrEqual(t, env.Now().Sub(start), 3*time.Hour)
}
