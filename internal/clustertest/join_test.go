//go:build cluster

package clustertest

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// joinRun is a burst of paid joins of distinct users over a few meetings
// whose seats are fewer than the joins, posted through both APIs.
type joinRun struct {
	c         *cluster
	run       string
	capacity  int
	meetings  []meeting.Meeting
	fee       map[string]int64 // meeting id → its fee
	joins     []string         // join ids, by join number
	meetingOf map[string]string
}

// joinOptions shape a join burst.
type joinOptions struct {
	Joins, Meetings, Capacity int
	// Posters post at once, each pausing Pace between two joins, so that
	// the burst lasts long enough for a fault to land in the middle of it.
	Posters int
	Pace    time.Duration
	// During[i] starts, in its own goroutine, just before join i is posted.
	During map[int]func()
}

// setPayments sets the payment simulator's knobs (and clears its ledger
// and stats when reset), restoring a healthy gateway when the test ends.
func (c *cluster) setPayments(t *testing.T, cfg sim.PaymentConfig, reset bool) {
	t.Helper()
	if reset {
		c.simDo(t, "payment", http.MethodPost, "/admin/reset", nil, nil)
	}
	c.simDo(t, "payment", http.MethodPut, "/admin/config", cfg, nil)
	t.Cleanup(func() { c.simDo(t, "payment", http.MethodPut, "/admin/config", sim.PaymentConfig{}, nil) })
}

// postJoins creates the meetings and posts every join through the
// cluster's APIs; it returns once each join is answered 202 (a join whose
// answer was lost is posted again with the same Idempotency-Key, on the
// other API) and every During function has returned.
func postJoins(t *testing.T, c *cluster, o joinOptions) *joinRun {
	t.Helper()
	r := &joinRun{c: c, run: runID(), capacity: o.Capacity, fee: map[string]int64{}, joins: make([]string, o.Joins), meetingOf: map[string]string{}}
	for i := range o.Meetings {
		fee := int64(1000 * (i + 1))
		var m meeting.Meeting
		c.must(t, http.StatusCreated, http.MethodPost, "/v1/meetings", map[string]any{
			"title": fmt.Sprintf("cluster-%s-%d", r.run, i), "capacity": o.Capacity,
			"fee": map[string]any{"amount": fee, "currency": "KRW"}}, &m)
		r.meetings = append(r.meetings, m)
		r.fee[m.ID] = fee
	}
	var next atomic.Int64
	var posters, faults sync.WaitGroup
	var mu sync.Mutex
	for range o.Posters {
		posters.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.Joins {
					return
				}
				if f, ok := o.During[i]; ok {
					faults.Go(f)
				}
				m := r.meetings[i%len(r.meetings)]
				var out struct {
					JoinID string `json:"join_id"`
				}
				code, err := c.call(c.key, http.MethodPost, "/v1/meetings/"+m.ID+"/joins",
					map[string]any{"user_id": fmt.Sprintf("cluster-%s-%d", r.run, i), "payment_token": "tok"}, &out,
					map[string]string{"Idempotency-Key": fmt.Sprintf("cluster-%s-%d", r.run, i)})
				if err != nil || code != http.StatusAccepted || out.JoinID == "" {
					t.Errorf("join %d = %d %v %+v", i, code, err, out)
				} else {
					mu.Lock()
					r.joins[i], r.meetingOf[out.JoinID] = out.JoinID, m.ID
					mu.Unlock()
				}
				time.Sleep(o.Pace)
			}
		})
	}
	posters.Wait()
	faults.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return r
}

// statuses reads every join of the burst through the APIs.
func (r *joinRun) statuses(t *testing.T) (map[string]string, int) {
	out := map[string]string{}
	terminal := 0
	for _, id := range r.joins {
		var j meeting.Join
		code, err := r.c.call(r.c.key, http.MethodGet, "/v1/joins/"+id, nil, &j, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET join %s = %d %v", id, code, err)
		}
		out[id] = j.Status
		if meeting.Terminal(j.Status) {
			terminal++
		}
	}
	return out, terminal
}

// assertJoins waits up to within for every join of the burst to be
// terminal, then checks what the chaos tests check (internal/integration
// assertJoinInvariants), whatever was killed meanwhile:
//
//   - the ledger is exact: the gateway holds the fee for every confirmed
//     join and nothing for any other, and no key was charged twice;
//   - no charge is pending at the gateway;
//   - no seat leaked: every meeting has reserved == 0 and confirmed == the
//     number of its confirmed joins, never above its capacity.
//
// It returns the joins per status.
func (r *joinRun) assertJoins(t *testing.T, within time.Duration) map[string]int {
	t.Helper()
	var statuses map[string]string
	waitFor(t, within, "every join accepted is terminal", func() (bool, string) {
		var n int
		statuses, n = r.statuses(t)
		return n == len(r.joins), fmt.Sprintf("%d of %d terminal", n, len(r.joins))
	})
	byStatus := map[string]int{}
	var stats sim.PaymentStats
	r.c.simDo(t, "payment", http.MethodGet, "/stats", nil, &stats)
	var held, owed int64
	confirmedPer := map[string]int{}
	for _, id := range r.joins {
		st, net, fee := statuses[id], stats.NetByKey[id], r.fee[r.meetingOf[id]]
		byStatus[st]++
		held += net
		if n := stats.ChargesByKey[id]; n > 1 {
			t.Errorf("join %s was charged %d times", id, n)
		}
		if st == meeting.JoinConfirmed {
			confirmedPer[r.meetingOf[id]]++
			owed += fee
			if net != fee {
				t.Errorf("confirmed join %s: the gateway holds %d, want the fee %d", id, net, fee)
			}
		} else if net != 0 {
			t.Errorf("%s join %s: the gateway holds %d, want 0", st, id, net)
		}
	}
	if held != owed {
		t.Errorf("the gateway holds %d in all, the confirmed joins owe %d", held, owed)
	}
	if stats.Pending != 0 {
		t.Errorf("%d charges still pending at the gateway", stats.Pending)
	}
	for _, m := range r.meetings {
		var got meeting.Meeting
		r.c.must(t, http.StatusOK, http.MethodGet, "/v1/meetings/"+m.ID, nil, &got)
		if got.Confirmed > r.capacity || got.Reserved != 0 || got.Confirmed != confirmedPer[m.ID] {
			t.Errorf("meeting %s: confirmed %d (its joins say %d), reserved %d, capacity %d",
				m.Title, got.Confirmed, confirmedPer[m.ID], got.Reserved, r.capacity)
		}
	}
	t.Logf("joins by status %v; gateway: %d charges, %d declines, %d refunds, %d duplicate keys, %d injected 503s, %d dropped replies",
		byStatus, stats.Charges, stats.Declines, stats.Refunds, stats.DuplicateKeys, stats.InjectedErrors, stats.DroppedReplies)
	return byStatus
}

// TestCluster_joins_survive_a_worker_and_an_api_killed: 200 paid joins over
// 5 meetings of 30 seats, the gateway declining 20%, answering 503 to 5%
// and committing 5% without answering; worker1 is killed -9 after 50 joins
// and api1 after 100, while joins are posted and sagas run. Every join
// answered 202 ends terminal, the ledger is exact, no seat leaked.
func TestCluster_joins_survive_a_worker_and_an_api_killed(t *testing.T) {
	chaos := testenv.Chaos(t, "cluster: 200 paid joins, worker1 and api1 killed -9 mid-burst",
		"every join accepted ends terminal; the ledger holds the fee of each confirmed join and nothing else; no double charge; no seat leaked")
	c := connect(t)
	began := time.Now()
	c.setPayments(t, sim.PaymentConfig{Latency: 20 * time.Millisecond, DeclineRate: 0.2, ErrorRate: 0.05, TimeoutAfterCommit: 0.05}, true)
	r := postJoins(t, c, joinOptions{Joins: 200, Meetings: 5, Capacity: 30, Posters: 4, Pace: 100 * time.Millisecond,
		During: map[int]func(){
			50:  func() { fault(t, "kill", "worker1") },
			100: func() { fault(t, "kill", "api1") },
		}})
	posted := time.Since(began)
	byStatus := r.assertJoins(t, 4*time.Minute)
	if byStatus[meeting.JoinConfirmed] == 0 || byStatus[meeting.JoinFailed]+byStatus[meeting.JoinCompensated] == 0 {
		t.Errorf("the burst did not exercise both endings: %v", byStatus)
	}
	chaos.Observe("200 joins posted in %s (%d requests failed over to the other API)", posted.Round(time.Millisecond), c.failed.Load())
	chaos.Observe("all terminal after %s: %v", time.Since(began).Round(time.Second), byStatus)
}
