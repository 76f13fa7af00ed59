package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// The coupon and backfill activities run against the real PostgreSQL and
// Redis of the local stack (a database and key prefix of their own per run).
var infra struct {
	once  sync.Once
	err   error
	env   *testenv.Env
	store *store.Store
	queue *queue.Redis
}

func TestMain(m *testing.M) {
	code := m.Run()
	if infra.env != nil {
		_ = infra.queue.Close()
		infra.store.Close()
		infra.env.Close()
	}
	os.Exit(code)
}

// storeActivities returns coupon activities on the real stores and a tenant
// of their own, opening the stack on first use.
func storeActivities(t *testing.T) (*CouponActivities, tenant.Tenant) {
	t.Helper()
	infra.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if infra.env, infra.err = testenv.New(ctx); infra.err != nil {
			return
		}
		if infra.store, infra.err = store.Open(ctx, infra.env.Config.DatabaseURL, 10, store.WithDevSecrets()); infra.err != nil {
			return
		}
		if infra.err = infra.store.Migrate(ctx); infra.err != nil {
			return
		}
		infra.queue, infra.err = queue.Open(ctx, infra.env.Config.RedisURL, infra.env.Config.RedisPrefix)
	})
	if infra.err != nil {
		t.Fatal(infra.err)
	}
	tn, err := tenant.New("t" + testenv.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if err := infra.store.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return &CouponActivities{
		Campaigns: func(schema string) CampaignStore { return infra.store.Campaigns(schema) },
		Queue:     infra.queue,
	}, tn
}

// openCampaign creates a campaign of stock, open now for a minute, in
// PostgreSQL and Redis.
func openCampaign(t *testing.T, a *CouponActivities, tn tenant.Tenant, stock int) CampaignRef {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	cp, err := infra.store.Campaigns(tn.Schema).Create(ctx, coupon.Campaign{Name: "c", Stock: stock, StartsAt: now.Add(-time.Second), EndsAt: now.Add(time.Minute)},
		func(cp coupon.Campaign) (starter.Start, error) {
			return starter.Start{Tenant: tn.Name, WorkflowID: tn.Name + ":campaign:" + cp.ID, WorkflowType: "Campaign", TaskQueue: "none", Input: json.RawMessage(`{}`)}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	ref := CampaignRef{Tenant: tn.Name, Schema: tn.Schema, CampaignID: cp.ID, Stock: stock, StartsAt: cp.StartsAt, EndsAt: cp.EndsAt}
	if err := a.OpenCampaign(ctx, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = infra.queue.DeleteCampaign(context.Background(), tn.Name, cp.ID) })
	return ref
}

func requestCoupons(t *testing.T, ref CampaignRef, users ...string) {
	t.Helper()
	for _, u := range users {
		if out, _, err := infra.queue.Request(context.Background(), ref.Tenant, ref.CampaignID, u); err != nil || out != queue.Accepted {
			t.Fatalf("request of %s: %v %v", u, out, err)
		}
	}
}

func issueNext(env *testsuite.TestActivityEnvironment, a *CouponActivities, in IssueInput) (IssueResult, error) {
	v, err := env.ExecuteActivity(a.IssueNext, in)
	if err != nil {
		return IssueResult{}, err
	}
	var res IssueResult
	err = v.Get(&res)
	return res, err
}

// mustIssueNext is issueNext on the test's goroutine.
func mustIssueNext(t *testing.T, env *testsuite.TestActivityEnvironment, a *CouponActivities, in IssueInput) IssueResult {
	t.Helper()
	res, err := issueNext(env, a, in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func activityEnv(a *CouponActivities) *testsuite.TestActivityEnvironment {
	env := new(testsuite.WorkflowTestSuite).NewTestActivityEnvironment()
	env.RegisterActivity(a)
	return env
}

// issuedRanks reads the campaign's coupons from PostgreSQL: user → rank.
func issuedRanks(t *testing.T, ref CampaignRef, users ...string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, u := range users {
		c, err := infra.store.Campaigns(ref.Schema).Coupon(context.Background(), ref.CampaignID, u)
		if err == nil {
			got[u] = c.Rank
		}
	}
	return got
}

func users(prefix string, from, to int) []string {
	var us []string
	for i := from; i <= to; i++ {
		us = append(us, fmt.Sprintf("%s%d", prefix, i))
	}
	return us
}

// A trickle of requests is issued by one activity for as long as it
// lingers, not one activity per poll: here the second wave arrives after the
// first was written, and the same call issues it.
func TestIssueNext_lingers_over_a_trickle(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 100)
	first, second := users("u", 1, 5), users("u", 6, 10)
	requestCoupons(t, ref, first...)

	env := activityEnv(a)
	type outcome struct {
		res IssueResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := issueNext(env, a, IssueInput{Campaign: ref, Max: 10, Wait: time.Minute, Linger: time.Minute})
		done <- outcome{res, err}
	}()
	eventually(t, 20*time.Second, "the first wave is written", func() bool { return len(issuedRanks(t, ref, first...)) == 5 })
	select {
	case o := <-done:
		t.Fatalf("returned %+v, %v after the first wave, want it to linger", o.res, o.err)
	default:
	}
	requestCoupons(t, ref, second...)

	var res IssueResult
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		res = o.res
	case <-time.After(30 * time.Second):
		t.Fatal("IssueNext did not return once it reached Max")
	}
	if res.Issued != 10 || res.LastRank != 10 || res.Finished {
		t.Fatalf("result %+v, want 10 issued up to rank 10", res)
	}
	got := issuedRanks(t, ref, append(first, second...)...)
	for i, u := range append(first, second...) {
		if got[u] != int64(i+1) {
			t.Errorf("%s holds rank %d, want %d", u, got[u], i+1)
		}
	}
	if st, err := infra.queue.State(context.Background(), ref.Tenant, ref.CampaignID); err != nil || st.Queued != 0 {
		t.Fatalf("queue after issuing: %+v %v", st, err)
	}
}

// Without a linger it reports after its first write, as before.
func TestIssueNext_without_linger_reports_after_its_first_write(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 100)
	requestCoupons(t, ref, users("u", 1, 3)...)
	res := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 1000, Wait: time.Minute})
	if res.Issued != 3 || res.LastRank != 3 || res.Finished {
		t.Fatalf("result %+v, want 3 issued", res)
	}
}

// A retried attempt counts what the failed one had written (its heartbeat)
// and issues the rest.
func TestIssueNext_goes_on_from_a_failed_attempts_heartbeat(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 100)
	all := users("u", 1, 5)
	requestCoupons(t, ref, all...)
	// The failed attempt wrote ranks 1..3 and heartbeated, then died.
	entries, err := infra.queue.Pending(context.Background(), ref.Tenant, ref.CampaignID, 3)
	if err != nil || len(entries) != 3 {
		t.Fatalf("pending: %v %v", entries, err)
	}
	if _, _, err := a.issue(context.Background(), ref, entries, nil); err != nil {
		t.Fatal(err)
	}
	env := activityEnv(a)
	env.SetHeartbeatDetails(IssueResult{Issued: 3, LastRank: 3})
	res := mustIssueNext(t, env, a, IssueInput{Campaign: ref, Max: 1000, Wait: time.Minute})
	if res.Issued != 5 || res.LastRank != 5 {
		t.Fatalf("result %+v, want 5 issued in all, up to rank 5", res)
	}
	if got := issuedRanks(t, ref, all...); len(got) != 5 {
		t.Fatalf("coupons %v, want 5", got)
	}
}

// Lingering ends as soon as nothing more can arrive: sold out, queue empty.
func TestIssueNext_reports_finished_while_lingering(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 2)
	requestCoupons(t, ref, "u1", "u2")
	if out, _, err := infra.queue.Request(context.Background(), ref.Tenant, ref.CampaignID, "u3"); err != nil || out != queue.SoldOut {
		t.Fatalf("third request: %v %v, want sold out", out, err)
	}
	res := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 1000, Wait: time.Minute, Linger: time.Minute})
	if res.Issued != 2 || res.LastRank != 2 || !res.Finished {
		t.Fatalf("result %+v, want 2 issued and finished", res)
	}
}

// eventually waits for cond (testenv.Eventually).
var eventually = testenv.Eventually

// A request PostgreSQL can never store (a NUL in its user id, put straight
// into Redis, as one accepted before the API refused such ids would be) is
// set aside with its reason; every valid rank around it is issued, in order,
// and its unit of stock goes back to the queue for the next request.
func TestIssueNext_sets_aside_a_request_that_can_never_be_written(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 5)
	requestCoupons(t, ref, "u1", "u2", "a\x00b", "u3", "u4")

	res, err := issueNext(activityEnv(a), a, IssueInput{Campaign: ref, Max: 1000, Wait: time.Second})
	if err != nil {
		t.Fatalf("IssueNext: %v (one bad request blocks every one behind it)", err)
	}
	got := issuedRanks(t, ref, "u1", "u2", "u3", "u4")
	want := map[string]int64{"u1": 1, "u2": 2, "u3": 4, "u4": 5}
	for u, r := range want {
		if got[u] != r {
			t.Errorf("%s holds rank %d, want %d", u, got[u], r)
		}
	}
	if res.Issued != 4 || res.LastRank != 5 || res.SetAside != 1 || res.Finished {
		t.Errorf("result %+v, want 4 issued up to rank 5, 1 set aside, not finished (a unit is left)", res)
	}
	ctx := context.Background()
	aside, err := infra.queue.SetAsideList(ctx, ref.Tenant, ref.CampaignID)
	if err != nil || len(aside) != 1 || aside[0].User != "a\x00b" || aside[0].Rank != 3 || !strings.Contains(aside[0].Reason, "22021") {
		t.Fatalf("set aside = %+v, %v; want rank 3 with PostgreSQL's reason", aside, err)
	}
	st, err := infra.queue.State(ctx, ref.Tenant, ref.CampaignID)
	if err != nil || st.Queued != 0 || st.SetAside != 1 || st.Left != 1 {
		t.Fatalf("state %+v, %v: want the queue empty, 1 set aside and its unit back", st, err)
	}
	// The unit goes to the next in line: a sixth request is accepted
	// (rank 6) and issued, and then the stock is exactly issued.
	requestCoupons(t, ref, "u5")
	if out, _, _ := infra.queue.Request(ctx, ref.Tenant, ref.CampaignID, "u6"); out != queue.SoldOut {
		t.Fatalf("seventh request: %v, want sold out", out)
	}
	res = mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 1000, Wait: time.Second, Yield: true})
	if res.Issued != 1 || res.LastRank != 6 {
		t.Fatalf("result %+v, want rank 6 issued", res)
	}
	if res = mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 1000, Yield: true}); !res.Finished {
		t.Fatalf("result %+v, want finished: sold out, queue empty", res)
	}
	rec, err := activityEnv(a).ExecuteActivity(a.Reconcile, ref)
	if err != nil {
		t.Fatal(err)
	}
	var done ReconcileResult
	if err := rec.Get(&done); err != nil || done != (ReconcileResult{Accepted: 6, Issued: 5, SetAside: 1}) {
		t.Fatalf("reconcile %+v, %v; want 6 accepted = 5 issued + 1 set aside", done, err)
	}
	cp, err := infra.store.Campaigns(ref.Schema).Get(ctx, ref.CampaignID)
	if err != nil || !cp.Done || cp.Issued != 5 || cp.Accepted == nil || *cp.Accepted != 6 {
		t.Fatalf("campaign %+v, %v; want done with the stock issued", cp, err)
	}
}

// Reconcile sets aside, rather than fails on, an accepted request still
// missing its coupon that can never be written, and finishes the campaign.
func TestReconcile_sets_aside_what_can_never_be_written(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 3)
	requestCoupons(t, ref, "u1", "bad\xff", "u2")
	rec, err := activityEnv(a).ExecuteActivity(a.Reconcile, ref)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	var done ReconcileResult
	if err := rec.Get(&done); err != nil || done != (ReconcileResult{Accepted: 3, Issued: 2, SetAside: 1}) {
		t.Fatalf("reconcile %+v, %v; want 3 accepted = 2 issued + 1 set aside", done, err)
	}
	if got := issuedRanks(t, ref, "u1", "u2"); got["u1"] != 1 || got["u2"] != 3 {
		t.Fatalf("coupons %v", got)
	}
}

// The PostgreSQL errors that set a request aside are the ones about the data.
func TestWrite_retries_what_is_not_about_the_data(t *testing.T) {
	calls := 0
	a := &CouponActivities{Campaigns: func(string) CampaignStore {
		return fakeIssue(func(cs []coupon.Coupon) error {
			calls++
			return errors.New("issue coupons of c: dial tcp: connection refused")
		})
	}}
	bad, err := a.write(context.Background(), CampaignRef{}, []coupon.Coupon{{UserID: "u1", Rank: 1}, {UserID: "u2", Rank: 2}}, nil)
	if err == nil || bad != nil || calls != 1 {
		t.Fatalf("write = %v, %v after %d calls; want the error, nothing set aside, no split", bad, err, calls)
	}
}

// Bisecting finds every bad coupon and writes the others, in rank order.
func TestWrite_splits_a_refused_batch_down_to_its_bad_coupons(t *testing.T) {
	var written []int64
	a := &CouponActivities{Campaigns: func(string) CampaignStore {
		return fakeIssue(func(cs []coupon.Coupon) error {
			for _, c := range cs {
				if strings.HasPrefix(c.UserID, "bad") {
					return fmt.Errorf("issue: %w: 0x00", coupon.ErrUnwritable)
				}
			}
			for _, c := range cs {
				written = append(written, c.Rank)
			}
			return nil
		})
	}}
	var cs []coupon.Coupon
	for r := int64(1); r <= 100; r++ {
		u := fmt.Sprint("u", r)
		if r == 1 || r == 37 || r == 38 || r == 100 {
			u = "bad" + u
		}
		cs = append(cs, coupon.Coupon{UserID: u, Rank: r})
	}
	bad, err := a.write(context.Background(), CampaignRef{}, cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var badRanks []int64
	for _, b := range bad {
		badRanks = append(badRanks, b.Rank)
	}
	if fmt.Sprint(badRanks) != "[1 37 38 100]" {
		t.Fatalf("set aside %v", badRanks)
	}
	if len(written) != 96 || !slices.IsSorted(written) {
		t.Fatalf("written %v: want the 96 others in rank order", written)
	}
}

type fakeIssue func([]coupon.Coupon) error

func (f fakeIssue) Get(context.Context, string) (coupon.Campaign, error) {
	return coupon.Campaign{}, nil
}
func (f fakeIssue) Issue(_ context.Context, _ string, cs []coupon.Coupon) (int, error) {
	if err := f(cs); err != nil {
		return 0, err
	}
	return len(cs), nil
}
func (f fakeIssue) Finish(context.Context, string, int, int, time.Time) error { return nil }

// A tenant at its bound gets Busy at once, without touching Redis; another
// tenant still runs.
func TestIssueNext_yields_when_its_tenant_is_at_its_bound(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 10)
	requestCoupons(t, ref, "u1")
	a.IssueLimit = &TenantLimit{Max: 2}
	r1, ok1 := a.IssueLimit.acquire("other")
	r2, ok2 := a.IssueLimit.acquire("other")
	if !ok1 || !ok2 {
		t.Fatal("the first two turns of a tenant must be free")
	}
	busy := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: CampaignRef{Tenant: "other", CampaignID: "none"}, Max: 10, Yield: true})
	if !busy.Busy {
		t.Fatalf("third activity of a tenant at its bound: %+v, want busy", busy)
	}
	res := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 10, Yield: true})
	if res.Busy || res.Issued != 1 {
		t.Fatalf("another tenant: %+v, want its coupon issued", res)
	}
	r1()
	if _, ok := a.IssueLimit.acquire("other"); !ok {
		t.Fatal("a released turn is not free again")
	}
	r2()
}

// With Yield, an empty queue is reported at once, not waited on, and the
// next request says the workflow is to be woken.
func TestIssueNext_yields_an_empty_queue_at_once(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 10)
	start := time.Now()
	res := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 10, Wait: time.Hour, Yield: true})
	if res != (IssueResult{Asleep: true}) {
		t.Fatalf("result %+v, want nothing done, asleep", res)
	}
	if time.Since(start) > 30*time.Second { // not a speed target: Wait is an hour
		t.Fatal("it waited for requests")
	}
	if ans, err := infra.queue.Ask(context.Background(), ref.Tenant, ref.CampaignID, "u1"); err != nil || !ans.Wake {
		t.Fatalf("first request after it went to sleep: %+v %v, want Wake", ans, err)
	}
}

// A lingering call gives its slot back IdleGap after the last request,
// not at the end of Linger, and goes to sleep over the empty queue.
func TestIssueNext_idle_gap_ends_the_linger(t *testing.T) {
	a, tn := storeActivities(t)
	ref := openCampaign(t, a, tn, 10)
	requestCoupons(t, ref, "u1", "u2", "u3")
	start := time.Now()
	res := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: 10, Wait: time.Hour, Linger: time.Hour, IdleGap: 100 * time.Millisecond, Yield: true})
	if res.Issued != 3 || res.LastRank != 3 || !res.Asleep {
		t.Fatalf("result %+v, want 3 issued, then asleep", res)
	}
	if time.Since(start) > 30*time.Second { // not a speed target: Linger is an hour
		t.Fatal("it lingered on after the gap")
	}
}
