package workflows

import (
	"math"
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
	SetAside int `json:"set_aside,omitempty"`
}

// CampaignState is what the status query returns, and the result.
type CampaignState struct {
	Phase    string `json:"phase"` // scheduled | issuing | reconciling | done
	Issued   int    `json:"issued"`
	LastRank int    `json:"last_rank"`
	Accepted int    `json:"accepted"`
	Runs     int    `json:"runs"` // continue-as-new generations so far
	// SetAside counts accepted requests that can never be issued.
	SetAside int `json:"set_aside,omitempty"`
}

// SignalCampaignWake wakes a campaign's workflow that waits for requests
// (the API sends it for the first request after the workflow went asleep).
const SignalCampaignWake = "wake"

// campaignYield is the change that made the campaign cheap while idle: a
// scheduled campaign sleeps on a timer until its window opens; an open one
// with no requests gives its activity slot back and waits on a timer or
// the wake signal; a tenant's campaigns take at most its share of the
// slots (activities.TenantLimit); and every step retries for as long as an
// outage lasts with timeouts a stuck call cannot outlive. Workflows whose
// history predates it go on the old way.
const campaignYield = "campaign-yield"

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
	// campaignStreamLinger and campaignStreamGap are the linger of the
	// issuing activity since campaign-yield: it goes on issuing a stream of
	// requests for up to 10 s, and gives its slot back 1 s after the last
	// one (then the campaign sleeps until the next request wakes it). A
	// trickle of one request a second or more costs one activity per 10 s;
	// a slower one, one activity and one signal per request.
	campaignStreamLinger = 10 * time.Second
	campaignStreamGap    = time.Second
	// campaignAsleepMax is the longest an idle campaign sleeps without a
	// wake signal: the signal is sent after Redis accepted a request, so a
	// process that dies in between leaves the request to this timer.
	campaignAsleepMax = time.Minute
	// campaignBusyFirst, doubling up to campaignBusyMax, is how long a
	// campaign whose tenant is at its bound waits before it asks again.
	campaignBusyFirst = 50 * time.Millisecond
	campaignBusyMax   = 2 * time.Second
)

// campaignActs are the campaign's activities, referred to by method.
var campaignActs *activities.CouponActivities

// Campaign issues a first-come campaign's coupons in rank order, in
// batches, until the stock is issued or the window is over and the queue is
// empty; then it reconciles Redis with PostgreSQL, removes the campaign's
// Redis keys and ends. Its progress is the status query.
func Campaign(ctx workflow.Context, in CampaignInput) (CampaignState, error) {
	state := CampaignState{Phase: "issuing", Issued: in.Issued, LastRank: in.LastRank, Runs: in.Runs, SetAside: in.SetAside}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (CampaignState, error) { return state, nil }); err != nil {
		return state, err
	}
	if workflow.GetVersion(ctx, campaignYield, workflow.DefaultVersion, 1) == 1 {
		return campaignYielding(ctx, in, &state)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: campaignWait + time.Minute,
		HeartbeatTimeout:    5 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second},
	})
	if in.Runs == 0 {
		if err := workflow.ExecuteActivity(ctx, campaignActs.OpenCampaign, in.Campaign).Get(ctx, nil); err != nil {
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
		err := workflow.ExecuteActivity(ctx, campaignActs.IssueNext, activities.IssueInput{
			Campaign: in.Campaign, Max: campaignBatch, Wait: campaignWait, Linger: campaignLinger,
		}).Get(ctx, &res)
		if err != nil {
			return state, err
		}
		state.Issued += res.Issued
		state.SetAside += res.SetAside
		if res.LastRank > 0 {
			state.LastRank = res.LastRank
		}
		if res.Finished {
			break
		}
	}
	state.Phase = "reconciling"
	var rec activities.ReconcileResult
	if err := workflow.ExecuteActivity(ctx, campaignActs.Reconcile, in.Campaign).Get(ctx, &rec); err != nil {
		return state, err
	}
	state.Phase, state.Accepted, state.Issued, state.SetAside = "done", rec.Accepted, rec.Issued, rec.SetAside
	return state, nil
}

// campaignYielding is Campaign since campaignYield.
//
// Outages: no step gives up. Every activity retries without a limit of
// attempts (backoff up to 10 s); a call stuck on a dead connection is cut by
// the heartbeat timeout (the activities heartbeat after every statement)
// and the start-to-close timeout, then retried. PostgreSQL or Redis down
// for an hour costs an hour, not the campaign.
func campaignYielding(ctx workflow.Context, in CampaignInput, state *CampaignState) (CampaignState, error) {
	// MaximumAttempts: as good as no limit (680 years of retries at 10 s),
	// spelt out rather than 0 so that the unit-test environment, which
	// turns 0 into 10 attempts, runs the very policy the server does.
	retry := &temporal.RetryPolicy{InitialInterval: 200 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second,
		MaximumAttempts: math.MaxInt32}
	issueCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// One call lingers up to campaignStreamLinger, plus a split batch's writes.
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    5 * time.Second,
		RetryPolicy:         retry,
	})
	// Reconcile reads every accepted user and writes what is missing: for
	// a stock of millions, minutes. It heartbeats after each 1,000.
	reconcileCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         retry,
	})
	wake := workflow.GetSignalChannel(ctx, SignalCampaignWake)
	drain := func() {
		for wake.ReceiveAsync(nil) {
		}
	}
	if in.Runs == 0 {
		if err := workflow.ExecuteActivity(issueCtx, campaignActs.OpenCampaign, in.Campaign).Get(ctx, nil); err != nil {
			return *state, err
		}
	}
	if d := in.Campaign.StartsAt.Sub(workflow.Now(ctx)); d > 0 {
		state.Phase = "scheduled"
		if err := workflow.Sleep(ctx, d); err != nil {
			return *state, err
		}
		state.Phase = "issuing"
	}
	var busy time.Duration
	for batch := 0; ; batch++ {
		if batch == campaignBatchesPerRun {
			drain() // the next run looks at the queue first anyway
			next := in
			next.Issued, next.LastRank, next.Runs, next.SetAside = state.Issued, state.LastRank, in.Runs+1, state.SetAside
			return *state, workflow.NewContinueAsNewError(ctx, Campaign, next)
		}
		drain() // a wake for requests this call will see
		var res activities.IssueResult
		err := workflow.ExecuteActivity(issueCtx, campaignActs.IssueNext, activities.IssueInput{
			Campaign: in.Campaign, Max: campaignBatch, Wait: campaignStreamLinger, Linger: campaignStreamLinger, IdleGap: campaignStreamGap, Yield: true,
		}).Get(ctx, &res)
		if err != nil {
			return *state, err
		}
		state.Issued += res.Issued
		state.SetAside += res.SetAside
		if res.LastRank > 0 {
			state.LastRank = res.LastRank
		}
		switch {
		case res.Finished:
		case res.Asleep:
			busy = 0
			// Until a request wakes it, or the window closes (then the
			// next call finds it finished), or campaignAsleepMax.
			d := min(campaignAsleepMax, in.Campaign.EndsAt.Sub(workflow.Now(ctx)))
			if d <= 0 {
				d = time.Second // Redis's clock, the one that decides, lags ours
			}
			if err := waitWake(ctx, wake, d); err != nil {
				return *state, err
			}
		case res.Busy:
			busy = min(max(2*busy, campaignBusyFirst), campaignBusyMax)
			if err := workflow.Sleep(ctx, busy); err != nil {
				return *state, err
			}
		default:
			busy = 0
		}
		if res.Finished {
			break
		}
	}
	state.Phase = "reconciling"
	var rec activities.ReconcileResult
	if err := workflow.ExecuteActivity(reconcileCtx, campaignActs.Reconcile, in.Campaign).Get(ctx, &rec); err != nil {
		return *state, err
	}
	state.Phase, state.Accepted, state.Issued, state.SetAside = "done", rec.Accepted, rec.Issued, rec.SetAside
	return *state, nil
}

// waitWake waits for the wake signal or d, whichever comes first.
func waitWake(ctx workflow.Context, wake workflow.ReceiveChannel, d time.Duration) error {
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	var timerErr error
	sel := workflow.NewSelector(ctx)
	sel.AddFuture(workflow.NewTimer(timerCtx, d), func(f workflow.Future) { timerErr = f.Get(timerCtx, nil) })
	sel.AddReceive(wake, func(c workflow.ReceiveChannel, more bool) { c.Receive(ctx, nil) })
	sel.Select(ctx)
	if timerErr != nil && !temporal.IsCanceledError(timerErr) {
		return timerErr
	}
	return ctx.Err()
}
