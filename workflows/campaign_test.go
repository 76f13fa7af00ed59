package workflows

import (
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
	env.RegisterActivity(&activities.Activities{})
	return env
}

func campaignInput() CampaignInput {
	return CampaignInput{Campaign: activities.CampaignRef{Tenant: "demo", Schema: "tenant_demo", CampaignID: "c1", Stock: 1234,
		StartsAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), EndsAt: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)}}
}

func TestCampaign_issues_in_batches_then_reconciles(t *testing.T) {
	env := newCampaignEnv()
	var a *activities.Activities
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
	var a *activities.Activities
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
	var a *activities.Activities
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
	var a *activities.Activities
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
