package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// burstOptions shape a join burst. Zero fields take the defaults of
// startJoinBurst.
type burstOptions struct {
	Joins    int // joins posted (default 500)
	Meetings int // meetings they spread over, round robin (default 10)
	Capacity int // seats per meeting (default 30)
	Posters  int // concurrent clients posting (default 25)
	// During[i] runs once, from the poster of join i, just before it posts
	// join i (close a meeting, restart the workers, ...); it gets the burst,
	// whose meetings exist by then.
	During map[int]func(*joinBurst)
}

// joinBurst is what startJoinBurst posted: every join answered 202.
type joinBurst struct {
	run      string
	capacity int
	meetings []meeting.Meeting
	fee      map[string]int64 // meeting id → its fee
	joins    []postedJoin
}

type postedJoin struct{ joinID, meetingID string }

// startJoinBurst creates o.Meetings paid meetings (fees 1000, 2000, ...
// KRW, o.Capacity seats each) and posts o.Joins joins of distinct users
// over them through the API, o.Posters at a time. It returns once every
// join is accepted (202); the sagas are then in flight. It fails the test
// if a post is not accepted. The payment simulator's knobs are the
// caller's to set.
func startJoinBurst(t *testing.T, o burstOptions) *joinBurst {
	t.Helper()
	if o.Joins == 0 {
		o.Joins = 500
	}
	if o.Meetings == 0 {
		o.Meetings = 10
	}
	if o.Capacity == 0 {
		o.Capacity = 30
	}
	if o.Posters == 0 {
		o.Posters = 25
	}
	b := &joinBurst{run: testenv.RunID(), capacity: o.Capacity, fee: map[string]int64{}, joins: make([]postedJoin, o.Joins)}
	for i := range o.Meetings {
		fee := int64(1000 * (i + 1))
		m := createMeeting(t, demoKey(), map[string]any{"title": fmt.Sprintf("m%d", i), "capacity": o.Capacity,
			"fee": map[string]any{"amount": fee, "currency": "KRW"}})
		b.meetings = append(b.meetings, m)
		b.fee[m.ID] = fee
	}
	var next atomic.Int32
	var wg sync.WaitGroup
	var once sync.Map // join index → *sync.Once
	for range o.Posters {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.Joins {
					return
				}
				if f, ok := o.During[i]; ok {
					do, _ := once.LoadOrStore(i, &sync.Once{})
					do.(*sync.Once).Do(func() { f(b) })
				}
				m := b.meetings[i%len(b.meetings)]
				var out struct {
					JoinID string `json:"join_id"`
				}
				code, err := rawCall(demoKey(), http.MethodPost, "/v1/meetings/"+m.ID+"/joins",
					map[string]any{"user_id": fmt.Sprintf("user-%s-%d", b.run, i), "payment_token": "tok"}, &out,
					map[string]string{"Idempotency-Key": b.idemKey(i)})
				if err != nil || code != http.StatusAccepted {
					t.Errorf("join %d = %d %v", i, code, err)
					continue
				}
				b.joins[i] = postedJoin{joinID: out.JoinID, meetingID: m.ID}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return b
}

func (b *joinBurst) idemKey(i int) string { return fmt.Sprintf("load-%s-%d", b.run, i) }

// closeMeeting closes the burst's meeting i through the API.
func (b *joinBurst) closeMeeting(t *testing.T, i int) {
	if code, err := rawCall(demoKey(), http.MethodPost, "/v1/meetings/"+b.meetings[i].ID+"/close", nil, nil, nil); err != nil || code != http.StatusOK {
		t.Errorf("close = %d %v", code, err)
	}
}

// statuses reads the stored status of every join of the burst.
func (b *joinBurst) statuses(t *testing.T) map[string]string {
	t.Helper()
	rows, err := stack.app.Store.Pool().Query(context.Background(),
		`SELECT id, status FROM tenant_demo.joins WHERE idempotency_key LIKE $1`, "load-"+b.run+"-%")
	if err != nil {
		return nil // PostgreSQL may be down: the caller polls again
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		out[id] = st
	}
	if rows.Err() != nil {
		return nil
	}
	return out
}

// assertJoinInvariants waits up to within for every join of the burst to
// be terminal, then checks what must hold whatever failed meanwhile:
//
//   - no seat leaked: every meeting has reserved == 0 and confirmed == the
//     number of its confirmed joins, never above its capacity;
//   - no double charge: no key of the burst was charged more than once;
//   - the ledger is exact: the gateway holds the fee for each confirmed
//     join and nothing for any other (so charged minus refunded equals the
//     sum of the fees of the confirmed joins);
//   - no charge is still pending at the gateway (a late commit would take
//     money after the fact); and if the simulator commits late
//     (late_commit_delay), the ledger is checked again once that delay
//     has passed.
//
// It returns the number of joins per status.
func assertJoinInvariants(t *testing.T, b *joinBurst, within time.Duration) map[string]int {
	t.Helper()
	var statuses map[string]string
	eventually(t, within, "every join terminal", func() bool {
		statuses = b.statuses(t)
		n := 0
		for _, st := range statuses {
			if meeting.Terminal(st) {
				n++
			}
		}
		return n == len(b.joins)
	})
	byStatus := map[string]int{}
	for _, p := range b.joins {
		byStatus[statuses[p.joinID]]++
	}
	checkLedger := func(when string) {
		stats := stack.sims.Payments.Stats()
		var held, owed int64
		confirmedPer := map[string]int{}
		for _, p := range b.joins {
			st, net := statuses[p.joinID], stats.NetByKey[p.joinID]
			held += net
			if n := stats.ChargesByKey[p.joinID]; n > 1 {
				t.Errorf("%s: join %s was charged %d times", when, p.joinID, n)
			}
			if st == meeting.JoinConfirmed {
				confirmedPer[p.meetingID]++
				owed += b.fee[p.meetingID]
				if net != b.fee[p.meetingID] {
					t.Errorf("%s: confirmed join %s: gateway holds %d, want the fee %d", when, p.joinID, net, b.fee[p.meetingID])
				}
			} else if net != 0 {
				t.Errorf("%s: %s join %s: gateway holds %d, want 0", when, st, p.joinID, net)
			}
		}
		if held != owed {
			t.Errorf("%s: the gateway holds %d in all, the confirmed joins owe %d", when, held, owed)
		}
		if stats.Pending != 0 {
			t.Errorf("%s: %d charges still pending at the gateway", when, stats.Pending)
		}
		for _, m := range b.meetings {
			var got meeting.Meeting
			call(t, demoKey(), http.MethodGet, "/v1/meetings/"+m.ID, nil, &got)
			if got.Confirmed > b.capacity || got.Reserved != 0 || got.Confirmed != confirmedPer[m.ID] {
				t.Errorf("%s: meeting %s: confirmed %d (joins say %d), reserved %d, capacity %d",
					when, m.Title, got.Confirmed, confirmedPer[m.ID], got.Reserved, b.capacity)
			}
		}
		t.Logf("%s: joins by status %v; gateway: %d charges, %d declines, %d refunds, %d duplicate keys, %d injected 5xx, "+
			"%d dropped replies, %d late commits, %d late commits voided, %d voids, %d 409 in progress",
			when, byStatus, stats.Charges, stats.Declines, stats.Refunds, stats.DuplicateKeys, stats.InjectedErrors,
			stats.DroppedReplies, stats.LateCommits, stats.LateCancelled, stats.Voids, stats.InProgress409s)
	}
	checkLedger("when all are terminal")
	if late := stack.sims.Payments.Config().LateCommitDelay; late > 0 {
		time.Sleep(late)
		checkLedger("after the late-commit delay")
	}
	return byStatus
}

// TestJoin_a_charge_committing_after_the_saga_gave_up_is_voided: the gateway
// answers 503 to the charge yet commits it minutes later, and answers 409
// request_in_progress to every retry meanwhile. The saga gives up on the
// charge, voids its key (which cancels the pending commit) and releases the
// seat: no money is taken, now or later.
func TestJoin_a_charge_committing_after_the_saga_gave_up_is_voided(t *testing.T) {
	testenv.Chaos(t, "8. a charge answered 503 and 409 in progress that commits minutes later", "the key is voided: nothing taken, now or later; the seat is released")
	resetSims(t)
	defer resetSims(t)
	before := stack.sims.Payments.Stats()
	if err := stack.sims.Payments.SetConfig(sim.PaymentConfig{LateCommitRate: 1, LateCommitDelay: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	m := createMeeting(t, demoKey(), map[string]any{"title": "Late", "capacity": 1, "fee": map[string]any{"amount": 2500, "currency": "KRW"}})
	code, out := postJoin(t, demoKey(), m.ID, "late-"+testenv.RunID(), map[string]any{"user_id": "frank", "payment_token": "tok_ok"})
	if code != http.StatusAccepted {
		t.Fatalf("POST join = %d", code)
	}
	joinID := out["join_id"].(string)
	j := waitJoin(t, demoKey(), joinID, func(j meeting.Join) bool { return meeting.Terminal(j.Status) })
	if j.Status != meeting.JoinCompensated || j.Reason != workflows.ReasonPaymentFailed {
		t.Fatalf("join = %+v, want compensated for payment_failed", j)
	}
	var settled bool
	for _, s := range j.Steps {
		settled = settled || (s.Name == "settle_charge" && s.Status == "done")
	}
	if !settled {
		t.Fatalf("no settle_charge step in %+v", j.Steps)
	}
	stats := stack.sims.Payments.Stats()
	if stats.NetByKey[joinID] != 0 || stats.ChargesByKey[joinID] != 0 || stats.Pending != 0 || stats.LateCancelled != before.LateCancelled+1 {
		t.Fatalf("gateway: net %d, charges %d, pending %d, late commits cancelled %d (before %d)",
			stats.NetByKey[joinID], stats.ChargesByKey[joinID], stats.Pending, stats.LateCancelled, before.LateCancelled)
	}
	var got meeting.Meeting
	call(t, demoKey(), http.MethodGet, "/v1/meetings/"+m.ID, nil, &got)
	if got.Reserved != 0 || got.Confirmed != 0 {
		t.Fatalf("seat not released: %+v", got)
	}
	recordHistory(t, started{WorkflowID: workflows.JoinWorkflowID("demo", joinID)}, "join_voided_late_commit.json")

	// The seat is free again: a join with a healthy gateway confirms.
	resetSims(t)
	code, out = postJoin(t, demoKey(), m.ID, "late-ok-"+testenv.RunID(), map[string]any{"user_id": "grace", "payment_token": "tok_ok"})
	if code != http.StatusAccepted {
		t.Fatalf("POST join = %d", code)
	}
	ok := waitJoin(t, demoKey(), out["join_id"].(string), func(j meeting.Join) bool { return meeting.Terminal(j.Status) })
	if ok.Status != meeting.JoinConfirmed {
		t.Fatalf("join after the void = %+v", ok)
	}
}

// TestPayloads_are_encrypted_in_the_history_when_keys_are_set runs a
// workflow through a client dialled with SAGAFLOW_PAYLOAD_KEYS and a worker
// built on it: the worker decodes what the client encoded, the result
// decodes, and the history the server keeps holds no payload in the clear.
func TestPayloads_are_encrypted_in_the_history_when_keys_are_set(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := temporalclient.Dial(ctx, temporalclient.Options{
		HostPort: stack.app.Dev.Address(), Namespace: stack.app.Config.TemporalNamespace,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		PayloadKeys: "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	queue := "codec-" + testenv.RunID()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.Probe, workflow.RegisterOptions{Name: workflows.ProbeWorkflowType})
	w.RegisterActivity(stack.app.Activities().Probe)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	opts := startOptions(workflows.ProbeWorkflowID("demo", queue), "demo")
	opts.TaskQueue = queue
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.ProbeWorkflowType, workflows.ProbeInput{Tenant: "demo", Schema: "tenant_demo"})
	if err != nil {
		t.Fatal(err)
	}
	var st workflows.ProbeState
	if err := run.Get(ctx, &st); err != nil || len(st.Checks) == 0 {
		t.Fatalf("probe through the codec: %+v, %v", st, err)
	}
	var encrypted int
	for _, ev := range history(t, run.GetID(), run.GetRunID()) {
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("tenant_demo")) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte(`"tenant_demo"`)))) {
			t.Errorf("event %d %s holds the input in the clear", ev.GetEventId(), ev.GetEventType())
		}
		if in := ev.GetWorkflowExecutionStartedEventAttributes().GetInput(); in != nil {
			for _, p := range in.GetPayloads() {
				if string(p.GetMetadata()["encoding"]) == temporalclient.EncodingEncrypted {
					encrypted++
				}
			}
		}
	}
	if encrypted != 1 {
		t.Fatalf("%d encrypted payloads in the started event, want 1", encrypted)
	}
	// A client without the key cannot read the result.
	var plain workflows.ProbeState
	if err := stack.app.Temporal.GetWorkflow(ctx, run.GetID(), run.GetRunID()).Get(ctx, &plain); err == nil {
		t.Fatalf("a client without the key decoded %+v", plain)
	}
}

// downStore is a MeetingStore whose Reserve fails as PostgreSQL does while
// it is down, until a deadline; everything else succeeds without I/O.
type downStore struct{ until time.Time }

func (d downStore) Reserve(context.Context, string, string, string) error {
	if time.Now().Before(d.until) {
		return fmt.Errorf("failed to connect to postgres: connection refused")
	}
	return nil
}
func (downStore) Confirm(context.Context, string, string) error { return nil }
func (downStore) Release(context.Context, string, string) error { return nil }
func (downStore) SaveJoin(context.Context, meeting.Join) error  { return nil }

// BenchmarkJoin_history_cost_of_an_outage measures how many history
// events a join adds while its reserve waits out an outage of
// SAGAFLOW_MEASURE_OUTAGE (default 1m, a real-time wait): the local
// activity's retries past the workflow task timeout are durable timers.
// Run: go test -run '^$' -bench Join_history_cost -benchtime 1x ./internal/integration
func BenchmarkJoin_history_cost_of_an_outage(t *testing.B) {
	outage := time.Minute
	if s := os.Getenv("SAGAFLOW_MEASURE_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		outage = d
	}
	ctx := context.Background()
	queue := "outage-" + testenv.RunID()
	w := worker.New(stack.app.Temporal, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(workflows.Join, workflow.RegisterOptions{Name: workflows.JoinWorkflowType})
	store := downStore{until: time.Now().Add(outage)}
	w.RegisterActivity(&activities.JoinActivities{Meetings: func(string) activities.MeetingStore { return store }})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	opts := startOptions(workflows.JoinWorkflowID("demo", queue), "demo")
	opts.TaskQueue = queue
	run, err := stack.app.Temporal.ExecuteWorkflow(ctx, opts, workflows.JoinWorkflowType, workflows.JoinInput{
		Tenant: "demo", Schema: "tenant_demo", JoinID: queue, MeetingID: "m", UserID: "u", Fee: meeting.Money{Currency: "KRW"}})
	if err != nil {
		t.Fatal(err)
	}
	var j meeting.Join
	if err := run.Get(ctx, &j); err != nil || j.Status != meeting.JoinConfirmed {
		t.Fatalf("join after the outage: %+v, %v", j, err)
	}
	events, timers := 0, 0
	for _, ev := range history(t, run.GetID(), run.GetRunID()) {
		events++
		if ev.GetEventType() == enums.EVENT_TYPE_TIMER_STARTED {
			timers++
		}
	}
	t.ReportMetric(float64(events), "events")
	t.ReportMetric(float64(timers), "timers")
	t.Logf("outage %s: %d history events, %d timers (a join without an outage: about 20 events)", outage, events, timers)
}
