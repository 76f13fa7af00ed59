package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// These tests stop workers or redis-server, so they do not run in parallel.

// campaignDoc is the API's campaign answer.
type campaignDoc = testenv.Campaign

func createCampaign(t *testing.T, stock int, startsIn, endsIn time.Duration) campaignDoc {
	t.Helper()
	var c campaignDoc
	now := time.Now()
	code := call(t, demoKey(), http.MethodPost, "/v1/campaigns", map[string]any{
		"name": "burst", "stock": stock, "starts_at": now.Add(startsIn), "ends_at": now.Add(endsIn),
	}, &c)
	if code != http.StatusCreated || c.ID == "" {
		t.Fatalf("POST /v1/campaigns = %d %+v", code, c)
	}
	return c
}

type answer struct {
	user string
	code int
	rank int64
}

// burst sends requests (user i%users for request i) with 50 at once, calling
// midway when request number at is sent (if set), and returns every answer.
func burst(t *testing.T, campaignID string, requests, users, at int, midway func()) []answer {
	t.Helper()
	answers := make([]answer, requests)
	var once sync.Once
	testenv.Burst(requests, 50, func(i int) {
		if i == at && midway != nil {
			once.Do(midway)
		}
		user := fmt.Sprintf("user-%d", i%users)
		var out struct {
			Rank int64 `json:"rank"`
		}
		code, err := rawCall(demoKey(), http.MethodPost, "/v1/campaigns/"+campaignID+"/requests", map[string]any{"user_id": user}, &out, nil)
		if err != nil {
			code = -1 // the transport failed: no answer
		}
		answers[i] = answer{user: user, code: code, rank: out.Rank}
	})
	return answers
}

// checkCampaign waits for the campaign to be done and checks the rules:
// exactly the stock issued, ranks 1..stock, one coupon per user, every 202
// user holds the coupon of the rank they were told, every user answered only
// 409/410 holds none.
func checkCampaign(t *testing.T, c campaignDoc, answers []answer) {
	t.Helper()
	assertCampaign(t, c, answers, campaignRules{WantRefused: true})
}

// checkCampaignRefusals is checkCampaign; with wantRefused false it does not
// require a user who was only refused (a long outage may leave none).
func checkCampaignRefusals(t *testing.T, c campaignDoc, answers []answer, wantRefused bool) {
	t.Helper()
	assertCampaign(t, c, answers, campaignRules{WantRefused: wantRefused})
}

// campaignRules tunes assertCampaign.
type campaignRules struct {
	// WantRefused requires at least one user who was only refused (409/410).
	WantRefused bool
	// SetAside are the ranks expected to be set aside (requests that can
	// never be written): they hold no coupon, and their units went to
	// later ranks.
	SetAside []int64
	// Done is how long to wait for the campaign to be done (0: 2 minutes).
	Done time.Duration
}

// assertCampaign waits for the campaign to be done and checks its
// invariants, whatever happened to it on the way (a restart, an outage):
//   - exactly the stock issued; accepted = stock + set aside, and GET shows
//     both, with set_aside;
//   - the coupons' ranks are 1, 2, ... in arrival order with no gap or
//     repeat but the set-aside ranks, one coupon per user;
//   - every user answered 202 holds the coupon of the rank they were told,
//     every user only refused (409/410) holds none;
//   - the campaign's Redis keys are gone but the tombstone, which answers a
//     late request 410 sold_out.
//
// Pair it with startCampaignBurst.
func assertCampaign(t *testing.T, c campaignDoc, answers []answer, rules campaignRules) {
	t.Helper()
	var doc campaignDoc
	wait := rules.Done
	if wait == 0 {
		wait = 2 * time.Minute
	}
	eventually(t, wait, "campaign done", func() bool {
		call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID, nil, &doc)
		return doc.Status == "done"
	})
	aside := map[int64]bool{}
	for _, r := range rules.SetAside {
		aside[r] = true
	}
	if doc.Issued != c.Stock || doc.Accepted != c.Stock+len(aside) || doc.SetAside != len(aside) {
		t.Errorf("issued %d, accepted %d, set aside %d; want the stock %d, and %d set aside", doc.Issued, doc.Accepted, doc.SetAside, c.Stock, len(aside))
	}
	holds := testenv.CouponHolders(t, stack.app.Store.Pool(), "tenant_demo", c.ID, aside)
	if len(holds) != c.Stock {
		t.Errorf("%d coupons, want %d", len(holds), c.Stock)
	}
	byUser := map[string][]answer{}
	for _, a := range answers {
		byUser[a.user] = append(byUser[a.user], a)
	}
	var accepted, refused int
	for user, as := range byUser {
		only4xx := true
		for _, a := range as {
			switch a.code {
			case http.StatusAccepted:
				accepted++
				if holds[user] != a.rank && !aside[a.rank] {
					t.Errorf("%s was told rank %d, holds %d", user, a.rank, holds[user])
				}
				only4xx = false
			case http.StatusConflict, http.StatusGone:
			default:
				only4xx = false
			}
		}
		if only4xx {
			refused++
			if _, ok := holds[user]; ok {
				t.Errorf("%s was only refused but holds a coupon", user)
			}
		}
	}
	if accepted == 0 || (rules.WantRefused && refused == 0) {
		t.Errorf("accepted %d, refused %d: the burst did not test both", accepted, refused)
	}
	// Redis is cleaned up. The clean-up follows the "done" written to
	// PostgreSQL in the same activity (and is retried with it), so it may
	// land a moment after the status.
	eventually(t, 30*time.Second, "the campaign's keys leave redis", func() bool {
		base := stack.app.Redis.Prefix() + "campaign:{demo:" + c.ID + "}:"
		n, err := stack.app.Redis.Client.Exists(context.Background(), base+"users", base+"queue", base+"left", base+"seq").Result()
		return err == nil && n == 0
	})
	// A late request is answered from Redis's tombstone: sold out.
	var e errorDoc
	if code := call(t, demoKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": "latecomer"}, &e); code != http.StatusGone || e.Error.Code != "sold_out" {
		t.Errorf("late request = %d %+v, want 410 sold_out", code, e)
	}
	// The coupon lookups agree.
	for user, rank := range holds {
		var got struct {
			Status string `json:"status"`
			Code   string `json:"code"`
			Rank   int64  `json:"rank"`
		}
		call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID+"/coupons/"+user, nil, &got)
		if got.Status != "issued" || got.Rank != rank || !strings.HasPrefix(got.Code, "CPN-") {
			t.Errorf("coupon of %s = %+v", user, got)
		}
		break // one is enough here; the table was checked above
	}
	t.Logf("%d requests: %d answered 202; %d users only refused", len(answers), accepted, refused)
}

// startCampaignBurst creates an open campaign of stock for tenant demo and
// sends it requests (user i%users for request i, 50 at once), calling
// midway when request number at is sent (an outage, a restart; nil: none).
// It returns when every request is answered; check the campaign with
// assertCampaign (campaignRules{WantRefused: false} if midway may have cost
// the refusals, e.g. a long outage).
func startCampaignBurst(t *testing.T, stock, requests, users, at int, midway func()) (campaignDoc, []answer) {
	t.Helper()
	c := createCampaign(t, stock, -time.Second, time.Hour)
	return c, burst(t, c.ID, requests, users, at, midway)
}

func TestCoupon_burst_issues_exactly_the_stock_in_arrival_order(t *testing.T) {
	c := createCampaign(t, 1234, -time.Second, time.Hour)
	answers := burst(t, c.ID, 20000, 5000, 0, nil)
	checkCampaign(t, c, answers)
	// campaign_done.json is frozen: the Campaign before campaign-yield.
	recordHistory(t, started{WorkflowID: workflows.CampaignWorkflowID("demo", c.ID)}, "campaign_burst.json")
}

func TestCoupon_burst_survives_a_worker_restart(t *testing.T) {
	c := createCampaign(t, 1234, -time.Second, time.Hour)
	// The first 1234 distinct users are accepted within the first ~1300
	// requests: restart while their coupons are being issued.
	answers := burst(t, c.ID, 20000, 5000, 600, func() { go stack.restartWorkers(time.Second) })
	checkCampaign(t, c, answers)
}

func TestCoupon_burst_survives_a_worker_process_killed(t *testing.T) {
	testenv.Chaos(t, "a worker process SIGKILLed mid campaign", "stock exact; every 202 holds its rank")
	resume := stack.pauseWorkers()
	defer resume()
	worker, err := startWorkerProcess()
	if err != nil {
		t.Fatal(err)
	}
	var second *exec.Cmd
	defer func() {
		for _, w := range []*exec.Cmd{worker, second} {
			if w != nil && w.Process != nil {
				_ = w.Process.Kill()
				_ = w.Wait()
			}
		}
	}()
	c := createCampaign(t, 1234, -time.Second, time.Hour)
	// SIGKILL the worker process while the first coupons are being issued,
	// then start another: the activity it was running is retried elsewhere
	// after its heartbeat times out.
	answers := burst(t, c.ID, 20000, 5000, 600, func() {
		if err := worker.Process.Signal(syscall.SIGKILL); err != nil {
			t.Errorf("kill worker: %v", err)
		}
		_ = worker.Wait()
		var err error
		if second, err = startWorkerProcess(); err != nil {
			t.Errorf("start a new worker: %v", err)
		}
	})
	checkCampaign(t, c, answers)
}

func TestCoupon_burst_survives_redis_killed_and_restarted(t *testing.T) {
	testenv.Chaos(t, "redis-server SIGKILLed mid coupon burst", "stock exact; every 202 holds its rank")
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	pidFile := filepath.Join(root, ".data", "redis", "redis.pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("this test kills the private redis-server that deploy/stack.sh runs (run `make up`): %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	c := createCampaign(t, 1234, -time.Second, time.Hour)
	// Kill it while the stock is being taken (the first ~1300 requests).
	answers := burst(t, c.ID, 20000, 5000, 600, func() {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Errorf("kill redis-server: %v", err)
			return
		}
		time.Sleep(300 * time.Millisecond)
		cmd := exec.Command(filepath.Join(root, "deploy", "stack.sh"), "up")
		// Without REDIS_URL, stack.sh (re)starts its own redis-server.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "REDIS_URL=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("restart redis: %v: %s", err, out)
		}
	})
	var failed int
	for _, a := range answers {
		if a.code != http.StatusAccepted && a.code != http.StatusConflict && a.code != http.StatusGone {
			failed++
		}
	}
	t.Logf("%d requests failed while redis was down", failed)
	// Requests that failed leave their users unconstrained; with a long
	// outage every user not accepted may have had one.
	checkCampaignRefusals(t, c, answers, false)
}

func TestCoupon_requests_before_the_window_and_bad_input(t *testing.T) {
	c := createCampaign(t, 10, time.Hour, 2*time.Hour)
	var e errorDoc
	if code := call(t, demoKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": "early"}, &e); code != http.StatusTooEarly || e.Error.Code != "not_open" {
		t.Fatalf("before the window = %d %+v, want 425", code, e)
	}
	var doc campaignDoc
	call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID, nil, &doc)
	if doc.Status != "scheduled" || doc.Stock != 10 {
		t.Fatalf("campaign = %+v", doc)
	}
	for name, body := range map[string]map[string]any{
		"no_stock":      {"name": "x", "stock": 0, "starts_at": time.Now(), "ends_at": time.Now().Add(time.Hour)},
		"ends_first":    {"name": "x", "stock": 1, "starts_at": time.Now(), "ends_at": time.Now().Add(-time.Hour)},
		"no_window":     {"name": "x", "stock": 1},
		"bad_time":      {"name": "x", "stock": 1, "starts_at": "tomorrow", "ends_at": "later"},
		"unknown_field": {"name": "x", "stock": 1, "color": "red"},
	} {
		if code := call(t, demoKey(), http.MethodPost, "/v1/campaigns", body, nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, code)
		}
	}
	if code := call(t, demoKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": ""}, nil); code != http.StatusBadRequest {
		t.Errorf("empty user: %d", code)
	}
	if code := call(t, acmeKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": "u"}, nil); code != http.StatusNotFound {
		t.Errorf("another tenant's campaign: %d, want 404", code)
	}
	var cp struct {
		Status string `json:"status"`
	}
	call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID+"/coupons/nobody", nil, &cp)
	if cp.Status != "none" {
		t.Errorf("coupon of a user who never asked = %q", cp.Status)
	}
}

// A request PostgreSQL can never store — a NUL in its user id, put straight
// into Redis past the API (as one accepted before the API refused such ids)
// — is set aside with its reason; every valid rank is issued, and its unit
// of stock goes to the next request, so exactly the stock is issued. Before,
// every batch from that rank on failed (SQLSTATE 22021) and the campaign
// stalled for good.
func TestCoupon_a_request_that_can_never_be_written_is_set_aside(t *testing.T) {
	testenv.Chaos(t, "2. a NUL user id already in a campaign's Redis queue", "set aside with its reason; every valid rank issued; stock exact")
	ctx := context.Background()
	// Scheduled at first, so the recorded history holds the timer too.
	c := createCampaign(t, 20, 2*time.Second, time.Hour)
	var doc campaignDoc
	eventually(t, 30*time.Second, "the window opens", func() bool {
		call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID, nil, &doc)
		return doc.Status == "open"
	})
	var answers []answer
	send := func(from, to int) {
		for i := from; i <= to; i++ {
			user := fmt.Sprintf("user-%d", i)
			var out struct {
				Rank int64 `json:"rank"`
			}
			code := call(t, demoKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": user}, &out)
			answers = append(answers, answer{user: user, code: code, rank: out.Rank})
		}
	}
	send(1, 5)
	out, rank, err := stack.app.Redis.Request(ctx, "demo", c.ID, "a\x00b")
	if err != nil || out != queue.Accepted || rank != 6 {
		t.Fatalf("the bad request straight into redis: %v rank %d, %v", out, rank, err)
	}
	send(6, 30) // ranks 7..21 (the set-aside unit comes back), then sold out
	eventually(t, time.Minute, "the bad request is set aside and the rest issued", func() bool {
		call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID, nil, &doc)
		return doc.SetAside == 1 && doc.Issued+doc.SetAside == doc.Accepted
	})
	// Had the unit come back after the stock ran out, the next request
	// takes it now.
	send(31, 40)
	var got21 bool
	for _, a := range answers {
		got21 = got21 || (a.code == http.StatusAccepted && a.rank == 21)
	}
	if !got21 {
		t.Error("no request got rank 21, the unit of the set-aside rank 6")
	}
	assertCampaign(t, c, answers, campaignRules{WantRefused: true, SetAside: []int64{6}})

	// The reason stays with the tombstone, for the operator; and a metric.
	aside, err := stack.app.Redis.SetAsideList(ctx, "demo", c.ID)
	if err != nil || len(aside) != 1 || aside[0].Rank != 6 || !strings.Contains(aside[0].Reason, "22021") {
		t.Errorf("set aside after the end = %+v, %v; want rank 6 with PostgreSQL's reason", aside, err)
	}
	if n := counterValue(t, "sagaflow_coupon_set_aside_total", "tenant", "demo"); n < 1 {
		t.Errorf("sagaflow_coupon_set_aside_total{tenant=demo} = %v, want at least 1", n)
	}
	recordHistory(t, started{WorkflowID: workflows.CampaignWorkflowID("demo", c.ID)}, "campaign_set_aside.json")
}

// counterValue reads a counter of the app's registry.
func counterValue(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := stack.app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// Tenant acme's 300 scheduled and 20 quiet open campaigns hold no activity
// slot: the scheduled ones sleep on a timer, the quiet ones are asleep
// (waiting on a timer or the wake signal). Then tenant demo's burst is
// issued in full while all of acme's campaigns still hold nothing. Before,
// each of them held an issuing activity (polling Redis every 20 ms), and
// every slot of the worker could be taken by one tenant.
func TestCoupon_idle_campaigns_of_one_tenant_hold_no_slot(t *testing.T) {
	testenv.Chaos(t, "7. one tenant's 300 scheduled and 20 quiet campaigns", "they hold no activity slot; another tenant's burst is issued exactly")
	ctx := context.Background()
	create := func(startsIn time.Duration) string {
		var c campaignDoc
		now := time.Now()
		code := call(t, acmeKey(), http.MethodPost, "/v1/campaigns", map[string]any{
			"name": "idle", "stock": 100, "starts_at": now.Add(startsIn), "ends_at": now.Add(2 * time.Hour),
		}, &c)
		if code != http.StatusCreated {
			t.Fatalf("POST /v1/campaigns (acme) = %d", code)
		}
		return c.ID
	}
	var scheduled, quiet []string
	for range 300 {
		scheduled = append(scheduled, create(time.Hour))
	}
	for range 20 {
		quiet = append(quiet, create(-time.Second))
	}
	idle := func() (busy int) {
		for _, id := range scheduled {
			if !workflowIdle(ctx, workflows.CampaignWorkflowID("acme", id), "scheduled") {
				busy++
			}
		}
		for _, id := range quiet {
			asleep, _ := stack.app.Redis.Client.HExists(ctx, stack.app.Redis.Prefix()+"campaign:{acme:"+id+"}:meta", "asleep").Result()
			if !asleep {
				busy++
			}
		}
		return busy
	}
	var busy int
	eventually(t, 3*time.Minute, "acme's idle campaigns hold no activity", func() bool {
		busy = idle()
		return busy == 0
	})
	c, answers := startCampaignBurst(t, 300, 2000, 1000, 0, nil)
	assertCampaign(t, c, answers, campaignRules{WantRefused: true})
	if busy = idle(); busy != 0 {
		t.Errorf("%d of acme's idle campaigns ran an activity during demo's burst", busy)
	}
}

// workflowIdle reports whether the workflow runs, in phase, with no
// activity pending.
func workflowIdle(ctx context.Context, workflowID, phase string) bool {
	d, err := stack.app.Temporal.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil || len(d.GetPendingActivities()) > 0 {
		return false
	}
	v, err := stack.app.Temporal.QueryWorkflow(ctx, workflowID, "", workflows.QueryStatus)
	if err != nil {
		return false
	}
	var st workflows.CampaignState
	return v.Get(&st) == nil && st.Phase == phase
}
