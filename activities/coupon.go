package activities

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/queue"
)

// CampaignStore is one tenant's campaigns and coupons.
type CampaignStore interface {
	Get(ctx context.Context, id string) (coupon.Campaign, error)
	Issue(ctx context.Context, campaignID string, coupons []coupon.Coupon) (int, error)
	Finish(ctx context.Context, campaignID string, accepted int, at time.Time) error
}

// FirstCome is the first-come queue of campaigns (internal/queue).
type FirstCome interface {
	OpenCampaign(ctx context.Context, c queue.Campaign) error
	Pending(ctx context.Context, tenant, id string, n int) ([]queue.Entry, error)
	Issued(ctx context.Context, tenant, id string, users []string) error
	State(ctx context.Context, tenant, id string) (queue.CampaignState, error)
	Accepted(ctx context.Context, tenant, id string) (map[string]int64, error)
	RemoveCampaign(ctx context.Context, tenant, id string, soldOut bool, keep time.Duration) error
}

// CampaignRef names a campaign and carries what its activities need.
type CampaignRef struct {
	Tenant     string    `json:"tenant"`
	Schema     string    `json:"schema"`
	CampaignID string    `json:"campaign_id"`
	Stock      int       `json:"stock"`
	StartsAt   time.Time `json:"starts_at"`
	EndsAt     time.Time `json:"ends_at"`
}

func (r CampaignRef) queue() queue.Campaign {
	return queue.Campaign{Tenant: r.Tenant, ID: r.CampaignID, Stock: r.Stock, StartsAt: r.StartsAt, EndsAt: r.EndsAt}
}

// OpenCampaign writes the campaign into Redis unless it is there (the API
// did it already, unless it crashed first).
func (a *Activities) OpenCampaign(ctx context.Context, ref CampaignRef) error {
	return a.Queue.OpenCampaign(ctx, ref.queue())
}

// IssueInput asks for the next batch.
type IssueInput struct {
	Campaign CampaignRef   `json:"campaign"`
	Max      int           `json:"max"`
	Wait     time.Duration `json:"wait"`
	// Linger is how long the activity goes on issuing what trickles in
	// after its first coupons, up to Max, before it reports back. Zero
	// reports after the first write (the behaviour before Linger).
	Linger time.Duration `json:"linger,omitempty"`
}

// IssueResult says what a batch did.
type IssueResult struct {
	Issued   int  `json:"issued"`
	LastRank int  `json:"last_rank"`
	Finished bool `json:"finished"` // nothing more can arrive: sold out or window over, queue empty
}

// issuePoll is how often an idle IssueNext looks at the queue again.
const issuePoll = 20 * time.Millisecond

// IssueNext issues the next accepted requests, lowest ranks first, up to
// in.Max: it writes their coupons to PostgreSQL (idempotently) and only then
// takes them off the Redis queue, so a crash in between issues nothing twice
// and loses nothing. With the queue empty it waits, up to in.Wait, for
// requests to arrive, and reports Finished once none can (sold out, or the
// window over, with the queue empty).
//
// Once it has issued something it goes on for in.Linger, writing what
// arrives every issuePoll, so a steady stream of requests costs one
// activity (and one workflow task) per Linger rather than one per poll: on
// the embedded server those round trips, not the writes, are what an
// ongoing campaign would otherwise spend its CPU on, next to the API that
// answers the requests. Progress is heartbeated after every write, and a
// retried attempt starts its count from the last heartbeat that reached the
// server (heartbeats are throttled, so after a crash the count can be short
// of what was written; it is the query's progress figure only, and the
// campaign's own count is PostgreSQL's).
func (a *Activities) IssueNext(ctx context.Context, in IssueInput) (IssueResult, error) {
	ref := in.Campaign
	var res IssueResult
	var lingerUntil time.Time
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &res) // a failed attempt's committed progress
		if res.Issued > 0 {
			lingerUntil = time.Now().Add(in.Linger) // report it without waiting out Wait
		}
	}
	deadline := time.Now().Add(in.Wait)
	for {
		if res.Issued >= in.Max {
			return res, nil
		}
		entries, err := a.Queue.Pending(ctx, ref.Tenant, ref.CampaignID, in.Max-res.Issued)
		if err != nil {
			return IssueResult{}, err
		}
		if len(entries) > 0 {
			if err := a.issue(ctx, ref, entries); err != nil {
				return IssueResult{}, err
			}
			res.Issued += len(entries)
			res.LastRank = int(entries[len(entries)-1].Rank)
			activity.RecordHeartbeat(ctx, res)
			if lingerUntil.IsZero() {
				lingerUntil = time.Now().Add(in.Linger)
			}
			if res.Issued >= in.Max || !time.Now().Before(lingerUntil) {
				return res, nil
			}
		} else {
			st, err := a.Queue.State(ctx, ref.Tenant, ref.CampaignID)
			if err != nil {
				return IssueResult{}, err
			}
			if !st.Exists {
				return IssueResult{}, fmt.Errorf("campaign %s is not in redis", ref.CampaignID)
			}
			if st.Queued == 0 && (st.Left <= 0 || !st.ServerNow.Before(st.EndsAt)) {
				res.Finished = true
				return res, nil
			}
			now := time.Now()
			if now.After(deadline) || (!lingerUntil.IsZero() && !now.Before(lingerUntil)) {
				return res, nil
			}
			activity.RecordHeartbeat(ctx, res)
		}
		select {
		case <-ctx.Done():
			return IssueResult{}, ctx.Err()
		case <-time.After(issuePoll):
		}
	}
}

// issue writes entries' coupons, then takes them off the queue.
func (a *Activities) issue(ctx context.Context, ref CampaignRef, entries []queue.Entry) error {
	coupons := make([]coupon.Coupon, len(entries))
	users := make([]string, len(entries))
	for i, e := range entries {
		coupons[i] = coupon.Coupon{UserID: e.User, Rank: e.Rank, Code: coupon.Code(ref.Tenant, ref.CampaignID, e.User, e.Rank)}
		users[i] = e.User
	}
	if _, err := a.Campaigns(ref.Schema).Issue(ctx, ref.CampaignID, coupons); err != nil {
		return err
	}
	return a.Queue.Issued(ctx, ref.Tenant, ref.CampaignID, users)
}

// ReconcileResult is a finished campaign's account.
type ReconcileResult struct {
	Accepted int `json:"accepted"`
	Issued   int `json:"issued"`
}

// Reconcile makes sure every request Redis accepted holds a coupon in
// PostgreSQL (issuing any still missing), records the campaign done, and
// removes its Redis keys. Idempotent: a campaign recorded done only has its
// keys removed.
func (a *Activities) Reconcile(ctx context.Context, ref CampaignRef) (ReconcileResult, error) {
	store := a.Campaigns(ref.Schema)
	c, err := store.Get(ctx, ref.CampaignID)
	if err != nil {
		return ReconcileResult{}, err
	}
	if !c.Done {
		accepted, err := a.Queue.Accepted(ctx, ref.Tenant, ref.CampaignID)
		if err != nil {
			return ReconcileResult{}, err
		}
		users := make([]string, 0, len(accepted))
		for u := range accepted {
			users = append(users, u)
		}
		slices.SortFunc(users, func(x, y string) int { return int(accepted[x] - accepted[y]) })
		for batch := range slices.Chunk(users, 1000) {
			coupons := make([]coupon.Coupon, len(batch))
			for i, u := range batch {
				coupons[i] = coupon.Coupon{UserID: u, Rank: accepted[u], Code: coupon.Code(ref.Tenant, ref.CampaignID, u, accepted[u])}
			}
			if _, err := store.Issue(ctx, ref.CampaignID, coupons); err != nil {
				return ReconcileResult{}, err
			}
			activity.RecordHeartbeat(ctx)
		}
		if err := store.Finish(ctx, ref.CampaignID, len(accepted), time.Now()); err != nil {
			return ReconcileResult{}, err
		}
		n := len(accepted)
		c.Issued, c.Accepted = n, &n
	}
	// Late requests are answered from a tombstone for a day after the end.
	keep := max(time.Until(ref.EndsAt)+24*time.Hour, time.Hour)
	soldOut := c.Issued >= ref.Stock
	if err := a.Queue.RemoveCampaign(ctx, ref.Tenant, ref.CampaignID, soldOut, keep); err != nil {
		return ReconcileResult{}, err
	}
	res := ReconcileResult{Issued: c.Issued}
	if c.Accepted != nil {
		res.Accepted = *c.Accepted
	}
	return res, nil
}
