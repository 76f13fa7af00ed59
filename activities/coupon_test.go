package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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

// storeActivities returns activities on the real stores and a tenant of
// their own, opening the stack on first use.
func storeActivities(t *testing.T) (*Activities, tenant.Tenant) {
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
	return &Activities{
		Campaigns: func(schema string) CampaignStore { return infra.store.Campaigns(schema) },
		Catalog:   func(schema string) CatalogStore { return infra.store.Catalog(schema) },
		Queue:     infra.queue,
	}, tn
}

// openCampaign creates a campaign of stock, open now for a minute, in
// PostgreSQL and Redis.
func openCampaign(t *testing.T, a *Activities, tn tenant.Tenant, stock int) CampaignRef {
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

func issueNext(env *testsuite.TestActivityEnvironment, a *Activities, in IssueInput) (IssueResult, error) {
	v, err := env.ExecuteActivity(a.IssueNext, in)
	if err != nil {
		return IssueResult{}, err
	}
	var res IssueResult
	err = v.Get(&res)
	return res, err
}

// mustIssueNext is issueNext on the test's goroutine.
func mustIssueNext(t *testing.T, env *testsuite.TestActivityEnvironment, a *Activities, in IssueInput) IssueResult {
	t.Helper()
	res, err := issueNext(env, a, in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func activityEnv(a *Activities) *testsuite.TestActivityEnvironment {
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
	if err := a.issue(context.Background(), ref, entries); err != nil {
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
