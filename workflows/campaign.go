package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
)

// CampaignInput starts (or continues) a campaign's workflow.
type CampaignInput struct {
	Campaign activities.CampaignRef `json:"campaign"`
	// Carried across continue-as-new.
	Issued   int `json:"issued"`
	LastRank int `json:"last_rank"`
	Runs     int `json:"runs"`
}

// CampaignState is what the status query returns, and the result.
type CampaignState struct {
	Phase    string `json:"phase"` // issuing | reconciling | done
	Issued   int    `json:"issued"`
	LastRank int    `json:"last_rank"`
	Accepted int    `json:"accepted"`
	Runs     int    `json:"runs"` // continue-as-new generations so far
}

// Tuning of the campaign workflow.
const (
	// campaignBatch coupons per activity: one INSERT of that many rows.
	campaignBatch = 1000
	// campaignWait is how long one activity waits for requests to arrive
	// before it reports back (it heartbeats meanwhile).
	campaignWait = 10 * time.Second
	// campaignLinger is how long one activity goes on issuing a trickle of
	// requests before it reports back: a steady stream then costs one
	// activity a second, not one per poll.
	campaignLinger = time.Second
	// campaignBatchesPerRun bounds the history of one run; then it continues
	// as new with its counters, so any stock fits.
	campaignBatchesPerRun = 200
)

// Campaign issues a first-come campaign's coupons in rank order, in
// batches, until the stock is issued or the window is over and the queue is
// empty; then it reconciles Redis with PostgreSQL, removes the campaign's
// Redis keys and ends. Its progress is the status query.
func Campaign(ctx workflow.Context, in CampaignInput) (CampaignState, error) {
	state := CampaignState{Phase: "issuing", Issued: in.Issued, LastRank: in.LastRank, Runs: in.Runs}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (CampaignState, error) { return state, nil }); err != nil {
		return state, err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: campaignWait + time.Minute,
		HeartbeatTimeout:    5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second},
	})
	if in.Runs == 0 {
		if err := workflow.ExecuteActivity(ctx, a.OpenCampaign, in.Campaign).Get(ctx, nil); err != nil {
			return state, err
		}
	}
	for batch := 0; ; batch++ {
		if batch == campaignBatchesPerRun {
			next := in
			next.Issued, next.LastRank, next.Runs = state.Issued, state.LastRank, in.Runs+1
			return state, workflow.NewContinueAsNewError(ctx, Campaign, next)
		}
		var res activities.IssueResult
		err := workflow.ExecuteActivity(ctx, a.IssueNext, activities.IssueInput{
			Campaign: in.Campaign, Max: campaignBatch, Wait: campaignWait, Linger: campaignLinger,
		}).Get(ctx, &res)
		if err != nil {
			return state, err
		}
		state.Issued += res.Issued
		if res.LastRank > 0 {
			state.LastRank = res.LastRank
		}
		if res.Finished {
			break
		}
	}
	state.Phase = "reconciling"
	var rec activities.ReconcileResult
	if err := workflow.ExecuteActivity(ctx, a.Reconcile, in.Campaign).Get(ctx, &rec); err != nil {
		return state, err
	}
	state.Phase, state.Accepted, state.Issued = "done", rec.Accepted, rec.Issued
	return state, nil
}
