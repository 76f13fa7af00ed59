package queue_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

var (
	rdb      *queue.Redis
	redisURL string // the test run's Redis, for clients of their own
)

func TestMain(m *testing.M) {
	ctx := context.Background()
	env, err := testenv.New(ctx)
	if err == nil {
		redisURL = env.Config.RedisURL
		rdb, err = queue.Open(ctx, redisURL, env.Config.RedisPrefix)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = rdb.Close()
	env.Close()
	os.Exit(code)
}

// campaign opens a campaign whose window is given relative to Redis's clock.
func campaign(t *testing.T, stock int, startIn, endIn time.Duration) queue.Campaign {
	t.Helper()
	ctx := context.Background()
	now, err := rdb.Client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	c := queue.Campaign{Tenant: "demo", ID: "c" + testenv.RunID(), Stock: stock, StartsAt: now.Add(startIn), EndsAt: now.Add(endIn)}
	if err := rdb.OpenCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.DeleteCampaign(context.Background(), c.Tenant, c.ID) })
	return c
}

func request(t *testing.T, c queue.Campaign, user string) (queue.Outcome, int64) {
	t.Helper()
	o, rank, err := rdb.Request(context.Background(), c.Tenant, c.ID, user)
	if err != nil {
		t.Fatal(err)
	}
	return o, rank
}

func TestRequest_last_unit_then_sold_out_and_duplicates(t *testing.T) {
	t.Parallel()
	c := campaign(t, 2, -time.Second, time.Hour)
	steps := []struct {
		user string
		want queue.Outcome
		rank int64
	}{
		{"ann", queue.Accepted, 1},
		{"ann", queue.Duplicate, 1},
		{"bob", queue.Accepted, 2}, // the last unit
		{"cat", queue.SoldOut, 0},
		{"bob", queue.Duplicate, 2}, // a duplicate after sold out keeps its rank
		{"cat", queue.SoldOut, 0},   // told sold out, stays sold out
	}
	for _, s := range steps {
		if o, rank := request(t, c, s.user); o != s.want || rank != s.rank {
			t.Fatalf("%s: %v rank %d, want %v rank %d", s.user, o, rank, s.want, s.rank)
		}
	}
	st, err := rdb.State(context.Background(), c.Tenant, c.ID)
	if err != nil || st.Left != 0 || st.Accepted != 2 || st.Queued != 2 || st.Stock != 2 {
		t.Fatalf("state = %+v, %v", st, err)
	}
}

func TestRequest_window_edges(t *testing.T) {
	t.Parallel()
	early := campaign(t, 5, 400*time.Millisecond, time.Hour)
	if o, _ := request(t, early, "u1"); o != queue.NotOpen {
		t.Fatalf("before the start: %v", o)
	}
	time.Sleep(450 * time.Millisecond)
	if o, rank := request(t, early, "u1"); o != queue.Accepted || rank != 1 {
		t.Fatalf("after the start: %v %d", o, rank)
	}

	ending := campaign(t, 5, -time.Second, 400*time.Millisecond)
	if o, _ := request(t, ending, "u1"); o != queue.Accepted {
		t.Fatalf("before the end: %v", o)
	}
	time.Sleep(450 * time.Millisecond)
	if o, _ := request(t, ending, "u2"); o != queue.Closed {
		t.Fatalf("after the end: %v", o)
	}
	if o, rank := request(t, ending, "u1"); o != queue.Duplicate || rank != 1 {
		t.Fatalf("an accepted user after the end: %v %d", o, rank)
	}
	if o, _, _ := rdb.Request(context.Background(), "demo", "no-such-campaign", "u1"); o != queue.NoCampaign {
		t.Fatalf("unknown campaign: %v", o)
	}
}

func TestOpenCampaign_is_idempotent(t *testing.T) {
	t.Parallel()
	c := campaign(t, 3, -time.Second, time.Hour)
	request(t, c, "u1")
	c.Stock = 100 // a second open (the workflow after the API) changes nothing
	if err := rdb.OpenCampaign(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	st, _ := rdb.State(context.Background(), c.Tenant, c.ID)
	if st.Stock != 3 || st.Left != 2 {
		t.Fatalf("reopen changed the campaign: %+v", st)
	}
}

func TestRequest_concurrent_burst_takes_exactly_the_stock_in_rank_order(t *testing.T) {
	t.Parallel()
	const stock, users = 50, 300
	c := campaign(t, stock, -time.Second, time.Hour)
	var mu sync.Mutex
	ranks := map[int64]string{}
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			user := fmt.Sprintf("u%d", i%200) // duplicates included
			o, rank, err := rdb.Request(context.Background(), c.Tenant, c.ID, user)
			if err != nil {
				t.Error(err)
				return
			}
			if o == queue.Accepted {
				mu.Lock()
				defer mu.Unlock()
				if prev, ok := ranks[rank]; ok {
					t.Errorf("rank %d given to %s and %s", rank, prev, user)
				}
				ranks[rank] = user
			}
		})
	}
	wg.Wait()
	if len(ranks) != stock {
		t.Fatalf("%d accepted, want %d", len(ranks), stock)
	}
	for r := int64(1); r <= stock; r++ {
		if _, ok := ranks[r]; !ok {
			t.Fatalf("rank %d missing", r)
		}
	}
	pending, err := rdb.Pending(context.Background(), c.Tenant, c.ID, 10)
	if err != nil || len(pending) != 10 || pending[0].Rank != 1 || pending[9].Rank != 10 || pending[0].User != ranks[1] {
		t.Fatalf("pending = %+v, %v", pending, err)
	}
	if err := rdb.Issued(context.Background(), c.Tenant, c.ID, []string{pending[0].User}); err != nil {
		t.Fatal(err)
	}
	accepted, err := rdb.Accepted(context.Background(), c.Tenant, c.ID)
	if err != nil || len(accepted) != stock || accepted[ranks[7]] != 7 {
		t.Fatalf("accepted = %d users, %v", len(accepted), err)
	}
	st, _ := rdb.State(context.Background(), c.Tenant, c.ID)
	if st.Queued != stock-1 {
		t.Fatalf("queued %d after one issued", st.Queued)
	}
}

func TestRemoveCampaign_leaves_a_tombstone_that_answers_late_requests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sold := campaign(t, 1, -time.Second, time.Hour)
	request(t, sold, "ann")
	if err := rdb.RemoveCampaign(ctx, sold.Tenant, sold.ID, true, time.Minute); err != nil {
		t.Fatal(err)
	}
	if o, _ := request(t, sold, "bob"); o != queue.SoldOut {
		t.Fatalf("after a sold-out campaign ended: %v", o)
	}
	if acc, _ := rdb.Accepted(ctx, sold.Tenant, sold.ID); len(acc) != 0 {
		t.Fatalf("users left behind: %v", acc)
	}
	if err := rdb.OpenCampaign(ctx, queue.Campaign{Tenant: sold.Tenant, ID: sold.ID, Stock: 5, StartsAt: sold.StartsAt, EndsAt: sold.EndsAt}); err != nil {
		t.Fatal(err)
	}
	if o, _ := request(t, sold, "cat"); o != queue.SoldOut {
		t.Fatalf("a late open revived the campaign: %v", o)
	}
	closed := campaign(t, 5, -time.Second, time.Hour)
	if err := rdb.RemoveCampaign(ctx, closed.Tenant, closed.ID, false, time.Minute); err != nil {
		t.Fatal(err)
	}
	if o, _ := request(t, closed, "dan"); o != queue.Closed {
		t.Fatalf("after a closed campaign ended: %v", o)
	}
	ttl, err := rdb.Client.PTTL(ctx, rdb.Prefix()+"campaign:{"+closed.Tenant+":"+closed.ID+"}:meta").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("tombstone ttl = %v, %v", ttl, err)
	}
}

// A set-aside request leaves the queue with its reason and gives its unit
// back once, however often it is set aside; the next request takes the unit.
func TestSetAside_gives_the_unit_back_once(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := campaign(t, 2, -time.Second, time.Hour)
	request(t, c, "a\x00b")
	request(t, c, "u2")
	if o, _ := request(t, c, "u3"); o != queue.SoldOut {
		t.Fatalf("third request: %v, want sold out", o)
	}
	item := []coupon.SetAside{{User: "a\x00b", Rank: 1, Reason: "SQLSTATE 22021"}}
	for i, want := range []int{1, 0} {
		n, err := rdb.SetAside(ctx, c.Tenant, c.ID, item)
		if err != nil || n != want {
			t.Fatalf("set aside #%d = %d, %v; want %d", i+1, n, err, want)
		}
	}
	st, err := rdb.State(ctx, c.Tenant, c.ID)
	if err != nil || st.Left != 1 || st.Queued != 1 || st.SetAside != 1 || st.Accepted != 2 {
		t.Fatalf("state %+v, %v: want one unit back, u2 queued, one set aside", st, err)
	}
	if o, rank := request(t, c, "u3"); o != queue.Accepted || rank != 3 {
		t.Fatalf("u3 = %v rank %d, want accepted with rank 3", o, rank)
	}
	list, err := rdb.SetAsideList(ctx, c.Tenant, c.ID)
	if err != nil || len(list) != 1 || list[0] != item[0] {
		t.Fatalf("set aside list %+v, %v", list, err)
	}
	// Over: a request set aside now gives nothing back.
	if err := rdb.RemoveCampaign(ctx, c.Tenant, c.ID, true, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.SetAside(ctx, c.Tenant, c.ID, []coupon.SetAside{{User: "late", Rank: 9, Reason: "x"}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Client.Exists(ctx, rdb.Prefix()+"campaign:{demo:"+c.ID+"}:left").Result(); n != 0 {
		t.Fatal("a set aside after the end recreated the stock counter")
	}
}

// A sleeping campaign is woken by the first request after it went to sleep,
// once; it does not go to sleep over a waiting request.
func TestMarkAsleep_then_the_first_request_wakes_it(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := campaign(t, 10, -time.Second, time.Hour)
	if ok, err := rdb.MarkAsleep(ctx, c.Tenant, c.ID); err != nil || !ok {
		t.Fatalf("mark asleep an empty queue: %v %v", ok, err)
	}
	var wakes []bool
	for _, u := range []string{"u1", "u2"} {
		a, err := rdb.Ask(ctx, c.Tenant, c.ID, u)
		if err != nil || a.Outcome != queue.Accepted {
			t.Fatalf("ask %s: %+v %v", u, a, err)
		}
		wakes = append(wakes, a.Wake)
	}
	if fmt.Sprint(wakes) != "[true false]" {
		t.Fatalf("wakes %v, want only the first request to wake it", wakes)
	}
	if ok, err := rdb.MarkAsleep(ctx, c.Tenant, c.ID); err != nil || ok {
		t.Fatalf("mark asleep over two waiting requests: %v %v, want false", ok, err)
	}
	if a, _ := rdb.Ask(ctx, c.Tenant, c.ID, "u3"); a.Wake {
		t.Fatal("a request woke a campaign that was not asleep")
	}
}
