//go:build cluster

package clustertest

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// campaign is the API's campaign answer.
type campaign = testenv.Campaign

// couponAnswer is the last answer one request got.
type couponAnswer struct {
	user string
	code int
	rank int64
}

// TestCluster_coupon_burst_survives_a_worker_killed: 2,000 requests of 1,500
// users (500 ask twice) for a stock of 500, 50 at once over both APIs;
// worker1 is killed -9 after 250 requests (half the stock), while the
// issuing runs. Exactly the stock is accepted and issued, with ranks
// 1..500, one coupon per user, each user holding the rank they were told.
func TestCluster_coupon_burst_survives_a_worker_killed(t *testing.T) {
	chaos := testenv.Chaos(t, "cluster: 2,000 coupon requests for a stock of 500, worker1 killed -9 mid-burst",
		"accepted == stock == issued; ranks 1..stock; one coupon per user, the rank told")
	c := connect(t)
	const stock, requests, users = 500, 2000, 1500
	began := time.Now()
	var camp campaign
	now := time.Now()
	c.must(t, http.StatusCreated, http.MethodPost, "/v1/campaigns", map[string]any{
		"name": "cluster-" + runID(), "stock": stock, "starts_at": now.Add(-time.Second), "ends_at": now.Add(time.Hour)}, &camp)

	answers := make([]couponAnswer, requests)
	var faults sync.WaitGroup
	testenv.Burst(requests, 50, func(i int) {
		if i == 250 {
			faults.Go(func() { fault(t, "kill", "worker1") })
		}
		user := fmt.Sprintf("user-%d", i%users)
		var out struct {
			Rank int64 `json:"rank"`
		}
		code, err := c.call(c.key, http.MethodPost, "/v1/campaigns/"+camp.ID+"/requests", map[string]any{"user_id": user}, &out, nil)
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		answers[i] = couponAnswer{user: user, code: code, rank: out.Rank}
	})
	faults.Wait()
	burst := time.Since(began)
	if t.Failed() {
		t.FailNow()
	}

	var doc campaign
	waitFor(t, 3*time.Minute, "the campaign is done", func() (bool, string) {
		c.must(t, http.StatusOK, http.MethodGet, "/v1/campaigns/"+camp.ID, nil, &doc)
		return doc.Status == "done", fmt.Sprintf("%+v", doc)
	})
	if doc.Accepted != stock || doc.Issued != stock || doc.SetAside != 0 {
		t.Errorf("accepted %d, issued %d, set aside %d; want the stock %d, none set aside", doc.Accepted, doc.Issued, doc.SetAside, stock)
	}

	// What each user was told: a rank (202, or 409 already_requested with
	// the rank of an earlier request, e.g. one whose answer a killed
	// process lost), or a refusal.
	told := map[string]int64{}
	var accepted202 int
	for _, a := range answers {
		switch {
		case a.code == http.StatusAccepted || (a.code == http.StatusConflict && a.rank > 0):
			if a.code == http.StatusAccepted {
				accepted202++
			}
			if r, ok := told[a.user]; ok && r != a.rank {
				t.Errorf("%s was told ranks %d and %d", a.user, r, a.rank)
			}
			told[a.user] = a.rank
		case a.code == http.StatusConflict || a.code == http.StatusGone:
		default:
			t.Errorf("%s: answered %d", a.user, a.code)
		}
	}
	if accepted202 != stock {
		t.Errorf("%d requests answered 202, want the stock %d", accepted202, stock)
	}

	holds := testenv.CouponHolders(t, c.db, "tenant_demo", camp.ID, nil)
	if len(holds) != stock {
		t.Errorf("%d coupons issued, want the stock %d", len(holds), stock)
	}
	for user, rank := range told {
		if holds[user] != rank {
			t.Errorf("%s was told rank %d, holds %d", user, rank, holds[user])
		}
	}
	for user := range holds {
		if _, ok := told[user]; !ok {
			t.Errorf("%s holds a coupon but was only refused", user)
		}
	}
	chaos.Observe("%d requests in %s (%d failed over)", requests, burst.Round(time.Millisecond), c.failed.Load())
	chaos.Observe("accepted %d, issued %d, %d coupons, done after %s", doc.Accepted, doc.Issued, len(holds), time.Since(began).Round(time.Second))
}
