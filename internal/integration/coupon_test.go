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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// These tests stop workers or redis-server, so they do not run in parallel.

type campaignDoc struct {
	ID       string `json:"id"`
	Stock    int    `json:"stock"`
	Accepted int    `json:"accepted"`
	Issued   int    `json:"issued"`
	Status   string `json:"status"`
}

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
	var next atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
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
			}
		})
	}
	wg.Wait()
	return answers
}

// checkCampaign waits for the campaign to be done and checks the rules:
// exactly the stock issued, ranks 1..stock, one coupon per user, every 202
// user holds the coupon of the rank they were told, every user answered only
// 409/410 holds none.
func checkCampaign(t *testing.T, c campaignDoc, answers []answer) {
	t.Helper()
	checkCampaignRefusals(t, c, answers, true)
}

// checkCampaignRefusals is checkCampaign; with wantRefused false it does not
// require a user who was only refused (a long outage may leave none).
func checkCampaignRefusals(t *testing.T, c campaignDoc, answers []answer, wantRefused bool) {
	t.Helper()
	var doc campaignDoc
	eventually(t, 2*time.Minute, "campaign done", func() bool {
		call(t, demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID, nil, &doc)
		return doc.Status == "done"
	})
	if doc.Issued != c.Stock || doc.Accepted != c.Stock {
		t.Errorf("issued %d, accepted %d, want the stock %d", doc.Issued, doc.Accepted, c.Stock)
	}
	rows, err := stack.app.Store.Pool().Query(context.Background(),
		`SELECT user_id, rank FROM tenant_demo.coupons WHERE campaign_id = $1 ORDER BY rank`, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	holds := map[string]int64{}
	want := int64(1)
	for rows.Next() {
		var user string
		var rank int64
		if err := rows.Scan(&user, &rank); err != nil {
			t.Fatal(err)
		}
		if rank != want {
			t.Fatalf("rank %d follows %d: a gap or a repeat", rank, want-1)
		}
		want++
		if _, dup := holds[user]; dup {
			t.Errorf("user %s holds two coupons", user)
		}
		holds[user] = rank
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
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
				if holds[user] != a.rank {
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
	if accepted == 0 || (wantRefused && refused == 0) {
		t.Errorf("accepted %d, refused %d: the burst did not test both", accepted, refused)
	}
	// Redis is cleaned up. The clean-up follows the "done" written to
	// PostgreSQL in the same activity (and is retried with it), so it may
	// land a moment after the status.
	eventually(t, 30*time.Second, "the campaign's keys leave redis", func() bool {
		n, err := stack.app.Redis.Client.Exists(context.Background(), stack.app.Redis.Prefix()+"campaign:{demo:"+c.ID+"}:users").Result()
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

func TestCoupon_burst_issues_exactly_the_stock_in_arrival_order(t *testing.T) {
	c := createCampaign(t, 1234, -time.Second, time.Hour)
	answers := burst(t, c.ID, 20000, 5000, 0, nil)
	checkCampaign(t, c, answers)
	recordHistory(t, started{WorkflowID: workflows.CampaignWorkflowID("demo", c.ID)}, "campaign_done.json")
}

func TestCoupon_burst_survives_a_worker_restart(t *testing.T) {
	c := createCampaign(t, 1234, -time.Second, time.Hour)
	// The first 1234 distinct users are accepted within the first ~1300
	// requests: restart while their coupons are being issued.
	answers := burst(t, c.ID, 20000, 5000, 600, func() { go stack.restartWorkers(time.Second) })
	checkCampaign(t, c, answers)
}

func TestCoupon_burst_survives_a_worker_process_killed(t *testing.T) {
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
