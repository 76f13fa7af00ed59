package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/activity"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/queue"
)

// CampaignStore is one tenant's campaigns and coupons.
type CampaignStore interface {
	Get(ctx context.Context, id string) (coupon.Campaign, error)
	Issue(ctx context.Context, campaignID string, coupons []coupon.Coupon) (int, error)
	Finish(ctx context.Context, campaignID string, accepted, setAside int, at time.Time) error
}

// FirstCome is the first-come queue of campaigns (internal/queue).
type FirstCome interface {
	OpenCampaign(ctx context.Context, c queue.Campaign) error
	Pending(ctx context.Context, tenant, id string, n int) ([]queue.Entry, error)
	Issued(ctx context.Context, tenant, id string, users []string) error
	State(ctx context.Context, tenant, id string) (queue.CampaignState, error)
	Accepted(ctx context.Context, tenant, id string) (map[string]int64, error)
	RemoveCampaign(ctx context.Context, tenant, id string, soldOut bool, keep time.Duration) error
	SetAside(ctx context.Context, tenant, id string, items []coupon.SetAside) (int, error)
	SetAsideList(ctx context.Context, tenant, id string) ([]coupon.SetAside, error)
	MarkAsleep(ctx context.Context, tenant, id string) (bool, error)
}

// CouponMetrics counts what the campaigns do, for dashboards and alerts.
type CouponMetrics interface {
	// SetAside counts requests set aside because they can never be issued.
	SetAside(tenant string, n int)
	// Issued counts coupons issued.
	Issued(tenant string, n int)
}

// TenantLimit bounds how many issuing activities of one tenant run at once
// in this worker process, so that one tenant's hundreds of campaigns cannot
// take every activity slot from the others. An activity that finds its
// tenant at the bound does not wait for a turn (that would hold the slot
// it is meant to free): it reports Busy at once, and its workflow tries
// again after a timer. A nil *TenantLimit, or Max <= 0, bounds nothing.
// Safe for concurrent use.
type TenantLimit struct {
	// Max is the bound per tenant.
	Max     int
	mu      sync.Mutex
	running map[string]int
}

// acquire takes a turn for tenant, or reports false; release gives it back.
func (l *TenantLimit) acquire(tenant string) (release func(), ok bool) {
	if l == nil || l.Max <= 0 {
		return func() {}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[tenant] >= l.Max {
		return nil, false
	}
	if l.running == nil {
		l.running = map[string]int{}
	}
	l.running[tenant]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.running[tenant]--; l.running[tenant] <= 0 {
			delete(l.running, tenant)
		}
	}, true
}

// CouponActivities are the coupon campaign's activities, run on the coupon
// task queue; the workflow refers to them through a nil *CouponActivities.
// Safe for concurrent use when its fields are.
type CouponActivities struct {
	// Campaigns returns the campaign store of the tenant whose schema it is.
	Campaigns func(schema string) CampaignStore
	Queue     FirstCome
	// CouponMetrics counts the campaigns' issued and set-aside requests;
	// nil: none.
	CouponMetrics CouponMetrics
	// IssueLimit bounds each tenant's issuing activities; nil: no bound.
	IssueLimit *TenantLimit
	// Log receives the alerts the activities raise; nil means slog.Default.
	Log *slog.Logger
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
func (a *CouponActivities) OpenCampaign(ctx context.Context, ref CampaignRef) error {
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
	// Yield makes the activity give its slot back rather than wait: when
	// the queue is empty and it has issued nothing, it marks the campaign
	// asleep and reports Asleep at once (the next request wakes the
	// workflow); when its tenant is at its TenantLimit it reports Busy.
	// The workflow waits on a timer (and the wake signal) instead. False is
	// the behaviour of the workflows started before it.
	Yield bool `json:"yield,omitempty"`
	// IdleGap ends the linger early once no request has come for that
	// long: a stream of requests is issued by one activity for up to
	// Linger, and the slot is given back soon after the stream stops.
	// Zero lingers the whole Linger.
	IdleGap time.Duration `json:"idle_gap,omitempty"`
}

// IssueResult says what a batch did.
type IssueResult struct {
	Issued   int  `json:"issued"`
	LastRank int  `json:"last_rank"`
	Finished bool `json:"finished"` // nothing more can arrive: sold out or window over, queue empty
	// SetAside counts requests taken off the queue because they can never
	// be written (see coupon.SetAside).
	SetAside int `json:"set_aside,omitempty"`
	// Busy: the tenant was at its TenantLimit; nothing was done.
	Busy bool `json:"busy,omitempty"`
	// Asleep: nothing to issue; the next request accepted will ask for
	// the workflow to be woken (Yield only).
	Asleep bool `json:"asleep,omitempty"`
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
//
// With in.IdleGap the linger ends that long after the last request. With
// in.Yield (the workflows since campaign-yield) it never waits for a first
// request: over an empty queue it marks the campaign asleep in Redis and
// reports Asleep, at once or at the end of its linger, and the workflow
// waits on a timer until the next request's wake signal; and a tenant at
// its TenantLimit gets Busy at once. So a scheduled or quiet campaign
// holds no activity slot.
//
// A request that PostgreSQL can never store does not block those behind it:
// it is set aside with its reason (see issue), counted in SetAside.
func (a *CouponActivities) IssueNext(ctx context.Context, in IssueInput) (IssueResult, error) {
	ref := in.Campaign
	if in.Yield {
		release, ok := a.IssueLimit.acquire(ref.Tenant)
		if !ok {
			return IssueResult{Busy: true}, nil
		}
		defer release()
	}
	var res IssueResult
	var lingerUntil, lastIssue time.Time
	if activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &res) // a failed attempt's committed progress
		if res.Issued > 0 {                         // report it without waiting out Wait
			lastIssue = time.Now()
			lingerUntil = lastIssue.Add(in.Linger)
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
			issued, aside, err := a.issue(ctx, ref, entries, func() { activity.RecordHeartbeat(ctx, res) })
			if err != nil {
				return IssueResult{}, err
			}
			res.Issued += issued
			res.SetAside += aside
			res.LastRank = int(entries[len(entries)-1].Rank)
			activity.RecordHeartbeat(ctx, res)
			lastIssue = time.Now()
			if lingerUntil.IsZero() {
				lingerUntil = lastIssue.Add(in.Linger)
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
			lingering := !lingerUntil.IsZero()
			over := now.After(deadline) || (lingering && !now.Before(lingerUntil)) ||
				(lingering && in.IdleGap > 0 && !lastIssue.IsZero() && now.Sub(lastIssue) >= in.IdleGap)
			if in.Yield && (lingerUntil.IsZero() || over) {
				// Nothing issued yet, or done lingering over an empty
				// queue: go to sleep (rather than have the next call find
				// the queue empty), unless a request just came in.
				asleep, err := a.Queue.MarkAsleep(ctx, ref.Tenant, ref.CampaignID)
				if err != nil {
					return IssueResult{}, err
				}
				if asleep {
					res.Asleep = true
					return res, nil
				}
				if lingerUntil.IsZero() {
					continue
				}
			}
			if over {
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

// MaxBatchLinks caps the span links of one issued batch: the batch's span
// links to the trace of each request in it (the coupon request's HTTP
// span), the lowest ranks first, up to this many (OpenTelemetry's SDK keeps
// 128 links a span by default); the rest are counted in
// sagaflow.coupon.unlinked_requests.
const MaxBatchLinks = 128

// issueSpan starts the span of one batch of entries, a child of the
// issuing activity's span, linked to the requests' traces.
func issueSpan(ctx context.Context, ref CampaignRef, entries []queue.Entry) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, min(len(entries), MaxBatchLinks))
	unlinked := 0
	for _, e := range entries {
		sc := e.Trace.SpanContext()
		if !sc.IsValid() {
			continue
		}
		if len(links) == MaxBatchLinks {
			unlinked++
			continue
		}
		links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.Int64("sagaflow.coupon.rank", e.Rank)}})
	}
	return otel.Tracer(tracerName).Start(ctx, "coupon issue", trace.WithLinks(links...), trace.WithAttributes(
		attrTenant.String(ref.Tenant), attrCampaignID.String(ref.CampaignID), attrBatchSize.Int(len(entries)),
		attrRankFirst.Int64(entries[0].Rank), attrRankLast.Int64(entries[len(entries)-1].Rank),
		attrLinked.Int(len(links)), attrUnlinked.Int(unlinked),
	))
}

// issue writes entries' coupons (see write), then takes them off the
// queue: the issued ones as issued, the ones that can never be written as
// set aside. It returns how many of each. Its span ("coupon issue") links
// to the requests' traces (see MaxBatchLinks).
func (a *CouponActivities) issue(ctx context.Context, ref CampaignRef, entries []queue.Entry, beat func()) (issued, setAside int, err error) {
	ctx, span := issueSpan(ctx, ref, entries)
	defer func() { endSpan(span, err) }()
	coupons := make([]coupon.Coupon, len(entries))
	for i, e := range entries {
		coupons[i] = coupon.Coupon{UserID: e.User, Rank: e.Rank, Code: coupon.Code(ref.Tenant, ref.CampaignID, e.User, e.Rank)}
	}
	bad, err := a.write(ctx, ref, coupons, beat)
	if err != nil {
		return 0, 0, err
	}
	users := make([]string, 0, len(entries)-len(bad))
	for i, j := 0, 0; i < len(coupons); i++ {
		if j < len(bad) && bad[j].Rank == coupons[i].Rank {
			j++
			continue
		}
		users = append(users, coupons[i].UserID)
	}
	if err := a.Queue.Issued(ctx, ref.Tenant, ref.CampaignID, users); err != nil {
		return 0, 0, err
	}
	a.couponMetrics().Issued(ref.Tenant, len(users))
	if err := a.setAside(ctx, ref, bad); err != nil {
		return 0, 0, err
	}
	return len(users), len(bad), nil
}

// write stores coupons (in rank order) in as few statements as it can. When
// PostgreSQL refuses a batch for its data (coupon.ErrUnwritable), it splits
// the batch in two and writes each half, the lower ranks first, down to the
// single coupons that are refused alone: those it returns, in rank order,
// with the reason, and every other coupon is written. A transient error
// ends it (the caller's retry writes again; coupons written already are
// skipped, the store's writes being idempotent). beat, if set, is called
// after each statement, as a split batch may take many.
func (a *CouponActivities) write(ctx context.Context, ref CampaignRef, coupons []coupon.Coupon, beat func()) ([]coupon.SetAside, error) {
	if len(coupons) == 0 {
		return nil, nil
	}
	_, err := a.Campaigns(ref.Schema).Issue(ctx, ref.CampaignID, coupons)
	if beat != nil {
		beat()
	}
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, coupon.ErrUnwritable) {
		return nil, err
	}
	if len(coupons) == 1 {
		return []coupon.SetAside{{User: coupons[0].UserID, Rank: coupons[0].Rank, Reason: err.Error()}}, nil
	}
	mid := len(coupons) / 2
	low, err := a.write(ctx, ref, coupons[:mid], beat)
	if err != nil {
		return nil, err
	}
	high, err := a.write(ctx, ref, coupons[mid:], beat)
	if err != nil {
		return nil, err
	}
	return append(low, high...), nil
}

// setAside records the requests that can never be issued (see
// FirstCome.SetAside), and says so in the log and the metrics.
func (a *CouponActivities) setAside(ctx context.Context, ref CampaignRef, bad []coupon.SetAside) error {
	if len(bad) == 0 {
		return nil
	}
	n, err := a.Queue.SetAside(ctx, ref.Tenant, ref.CampaignID, bad)
	if err != nil {
		return err
	}
	for _, b := range bad {
		// %q: the user id is what PostgreSQL could not hold (a NUL, bad UTF-8).
		orDefault(a.Log).Warn("coupon request set aside: it can never be issued; its unit goes back to the stock",
			"tenant", ref.Tenant, "campaign", ref.CampaignID, "rank", b.Rank, "user", fmt.Sprintf("%q", b.User), "reason", b.Reason)
	}
	if n > 0 {
		a.couponMetrics().SetAside(ref.Tenant, n)
	}
	return nil
}

// ReconcileResult is a finished campaign's account: Accepted = Issued +
// SetAside.
type ReconcileResult struct {
	Accepted int `json:"accepted"`
	Issued   int `json:"issued"`
	SetAside int `json:"set_aside,omitempty"`
}

// Reconcile makes sure every request Redis accepted holds a coupon in
// PostgreSQL (issuing any still missing) or was set aside (setting aside
// any that still cannot be written), records the campaign done, and
// removes its Redis keys. Idempotent: a campaign recorded done only has its
// keys removed.
func (a *CouponActivities) Reconcile(ctx context.Context, ref CampaignRef) (ReconcileResult, error) {
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
		aside, err := a.Queue.SetAsideList(ctx, ref.Tenant, ref.CampaignID)
		if err != nil {
			return ReconcileResult{}, err
		}
		setAside := len(aside)
		for _, b := range aside {
			delete(accepted, b.User)
		}
		users := make([]string, 0, len(accepted))
		for u := range accepted {
			users = append(users, u)
		}
		slices.SortFunc(users, func(x, y string) int { return int(accepted[x] - accepted[y]) })
		beat := func() { activity.RecordHeartbeat(ctx) }
		for batch := range slices.Chunk(users, 1000) {
			coupons := make([]coupon.Coupon, len(batch))
			for i, u := range batch {
				coupons[i] = coupon.Coupon{UserID: u, Rank: accepted[u], Code: coupon.Code(ref.Tenant, ref.CampaignID, u, accepted[u])}
			}
			bad, err := a.write(ctx, ref, coupons, beat)
			if err != nil {
				return ReconcileResult{}, err
			}
			if err := a.setAside(ctx, ref, bad); err != nil {
				return ReconcileResult{}, err
			}
			setAside += len(bad)
		}
		n := len(accepted) + len(aside)
		if err := store.Finish(ctx, ref.CampaignID, n, setAside, time.Now()); err != nil {
			return ReconcileResult{}, err
		}
		c.Issued, c.Accepted = n-setAside, &n
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
		res.SetAside = res.Accepted - res.Issued
	}
	return res, nil
}
