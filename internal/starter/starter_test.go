package starter_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

var db *store.Store

func TestMain(m *testing.M) {
	ctx := context.Background()
	env, err := testenv.New(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	db, err = store.Open(ctx, env.Config.DatabaseURL, 10)
	if err == nil {
		err = db.Migrate(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	db.Close()
	env.Close()
	os.Exit(code)
}

// fakeTemporal records the starts it got; fail decides which fail.
type fakeTemporal struct {
	mu   sync.Mutex
	got  map[string]int
	fail func(starter.Start) error
	// run, when set, is the run ID each start returns (else runOf's).
	run func(starter.Start) string
	// parents holds the span context each start was sent in.
	parents map[string]trace.SpanContext
}

func (f *fakeTemporal) StartWorkflow(ctx context.Context, s starter.Start) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.parents == nil {
		f.parents = map[string]trace.SpanContext{}
	}
	f.parents[s.WorkflowID] = trace.SpanContextFromContext(ctx)
	if f.fail != nil {
		if err := f.fail(s); err != nil {
			return "", err
		}
	}
	if f.got == nil {
		f.got = map[string]int{}
	}
	f.got[s.WorkflowID]++
	if f.run != nil {
		return f.run(s), nil
	}
	return runOf(s.WorkflowID), nil
}

// runOf is the run ID fakeTemporal gives a workflow ID's start.
func runOf(workflowID string) string { return "run-of-" + workflowID }

// runIDs reads the run ID each of ids' rows keeps ("" for one not started).
func runIDs(t *testing.T, ids []string) map[string]string {
	t.Helper()
	rows, err := db.Pool().Query(context.Background(), `SELECT workflow_id, run_id FROM sagaflow.workflow_starts WHERE workflow_id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var id, run string
		if err := rows.Scan(&id, &run); err != nil {
			t.Fatal(err)
		}
		got[id] = run
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func (f *fakeTemporal) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[id]
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// enqueue records n starts of a fresh tenant and returns their workflow IDs.
func enqueue(t *testing.T, n int) []string {
	t.Helper()
	return enqueueIn(t, context.Background(), n, tracectx.Carrier{})
}

// enqueueIn is enqueue in ctx, each start carrying tc.
func enqueueIn(t *testing.T, ctx context.Context, n int, tc tracectx.Carrier) []string {
	t.Helper()
	tn, err := tenant.New("s" + testenv.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	var ids []string
	err = pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		for i := range n {
			id := fmt.Sprintf("%s:test:%d", tn.Name, i)
			ids = append(ids, id)
			if err := starter.Enqueue(ctx, tx, starter.Start{Tenant: tn.Name, WorkflowID: id, WorkflowType: "W", TaskQueue: "q", Input: []byte(`{}`), Trace: tc}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func pending(t *testing.T, ids []string) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM sagaflow.workflow_starts WHERE workflow_id = ANY($1) AND started_at IS NULL`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// drain runs rounds until none of ids is pending and due.
func drain(t *testing.T, s *starter.Starter) {
	t.Helper()
	for range 100 {
		n, err := s.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func TestStarter_sends_each_recorded_start_once(t *testing.T) {
	ids := enqueue(t, 5)
	f := &fakeTemporal{}
	s := starter.New(db.Pool(), f, quiet, starter.Options{Batch: 2})
	drain(t, s)
	for _, id := range ids {
		if f.count(id) != 1 {
			t.Errorf("%s started %d times", id, f.count(id))
		}
	}
	if p := pending(t, ids); p != 0 {
		t.Fatalf("%d starts still pending", p)
	}
	// Each row keeps the run its start produced, not its neighbour's: the
	// mark of a batch pairs every row with its own run.
	runs := runIDs(t, ids)
	for _, id := range ids {
		if runs[id] != runOf(id) {
			t.Errorf("%s keeps run %q, want %q", id, runs[id], runOf(id))
		}
	}
	drain(t, s)
	for _, id := range ids {
		if f.count(id) != 1 {
			t.Errorf("%s started again after it was marked", id)
		}
	}
}

// A run ID the column cannot take (a NUL, invalid UTF-8, control
// characters, longer than 255 bytes) is not kept, and does not fail the mark
// of its batch: every start of the batch is marked once and sent once.
func TestStarter_a_run_id_the_row_cannot_take_does_not_stall_the_batch(t *testing.T) {
	ids := enqueue(t, 5)
	runs := map[string]string{
		ids[0]: "good-run",
		ids[1]: "bad\x00run",
		ids[2]: "\xff\xfe",
		ids[3]: "tab\there",
		ids[4]: strings.Repeat("r", 256),
	}
	f := &fakeTemporal{run: func(s starter.Start) string { return runs[s.WorkflowID] }}
	s := starter.New(db.Pool(), f, quiet, starter.Options{})
	drain(t, s)
	if p := pending(t, ids); p != 0 {
		t.Fatalf("%d starts still pending", p)
	}
	drain(t, s)
	for _, id := range ids {
		if f.count(id) != 1 {
			t.Errorf("%s started %d times", id, f.count(id))
		}
	}
	want := map[string]string{ids[0]: "good-run", ids[1]: "", ids[2]: "", ids[3]: "", ids[4]: ""}
	if got := runIDs(t, ids); !maps.Equal(got, want) {
		t.Fatalf("run IDs kept: %q, want %q", got, want)
	}
}

func TestStarter_retries_a_failed_start_later(t *testing.T) {
	ids := enqueue(t, 2)
	down := true
	f := &fakeTemporal{fail: func(s starter.Start) error {
		if down && s.WorkflowID == ids[1] {
			return errors.New("temporal unavailable")
		}
		return nil
	}}
	s := starter.New(db.Pool(), f, quiet, starter.Options{})
	drain(t, s)
	if f.count(ids[0]) != 1 || f.count(ids[1]) != 0 || pending(t, ids) != 1 {
		t.Fatalf("after a failure: got %v, pending %d", f.got, pending(t, ids))
	}
	if runs := runIDs(t, ids); runs[ids[0]] != runOf(ids[0]) || runs[ids[1]] != "" {
		t.Fatalf("run IDs after one start failed: %v", runs)
	}
	var attempts int
	var lastErr string
	_ = db.Pool().QueryRow(context.Background(), `SELECT attempts, last_error FROM sagaflow.workflow_starts WHERE workflow_id = $1`, ids[1]).Scan(&attempts, &lastErr)
	if attempts != 1 || lastErr != "temporal unavailable" {
		t.Fatalf("failure not recorded: attempts %d, last_error %q", attempts, lastErr)
	}
	// Not due yet: the backoff holds it back.
	drain(t, s)
	if f.count(ids[1]) != 0 {
		t.Fatal("retried before its backoff")
	}
	down = false
	if _, err := db.Pool().Exec(context.Background(), `UPDATE sagaflow.workflow_starts SET next_attempt = now() WHERE workflow_id = $1`, ids[1]); err != nil {
		t.Fatal(err)
	}
	drain(t, s)
	if f.count(ids[1]) != 1 || pending(t, ids) != 0 {
		t.Fatalf("not retried: got %v", f.got)
	}
}

func TestStarter_concurrent_starters_share_without_duplicates(t *testing.T) {
	ids := enqueue(t, 60)
	f := &fakeTemporal{}
	var wg sync.WaitGroup
	for range 3 {
		s := starter.New(db.Pool(), f, quiet, starter.Options{Batch: 7, Parallel: 3})
		wg.Go(func() { drain(t, s) })
	}
	wg.Wait()
	for _, id := range ids {
		if c := f.count(id); c != 1 {
			t.Errorf("%s started %d times", id, c)
		}
	}
}

func TestStarter_run_wakes_on_notify(t *testing.T) {
	f := &fakeTemporal{}
	// A poll of a minute: only the NOTIFY can make it start within seconds.
	s := starter.New(db.Pool(), f, quiet, starter.Options{Poll: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond) // let it LISTEN and finish its first round
	ids := enqueue(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for f.count(ids[0]) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a notified start was not sent within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStarter_clears_the_input_of_a_started_row_and_prunes_it_after_the_retention(t *testing.T) {
	ctx := context.Background()
	ids := enqueue(t, 3)
	if _, err := db.Pool().Exec(ctx, `UPDATE sagaflow.workflow_starts SET input = '{"payment_token":"tok_secret"}' WHERE workflow_id = ANY($1)`, ids); err != nil {
		t.Fatal(err)
	}
	f := &fakeTemporal{fail: func(s starter.Start) error {
		if s.WorkflowID == ids[2] {
			return errors.New("temporal unavailable")
		}
		return nil
	}}
	s := starter.New(db.Pool(), f, quiet, starter.Options{Retention: time.Hour})
	drain(t, s)
	inputs := map[string]string{}
	rows, err := db.Pool().Query(ctx, `SELECT workflow_id, input::text FROM sagaflow.workflow_starts WHERE workflow_id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, in string
		if err := rows.Scan(&id, &in); err != nil {
			t.Fatal(err)
		}
		inputs[id] = in
	}
	if inputs[ids[0]] != "{}" || inputs[ids[1]] != "{}" {
		t.Fatalf("started rows keep their input: %v", inputs)
	}
	if inputs[ids[2]] != `{"payment_token": "tok_secret"}` {
		t.Fatalf("a row not yet started lost its input: %q", inputs[ids[2]])
	}

	// Within the retention nothing goes; past it, the started rows only.
	if n, err := s.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("Prune within the retention = %d, %v", n, err)
	}
	if _, err := db.Pool().Exec(ctx, `UPDATE sagaflow.workflow_starts SET started_at = started_at - interval '2 hours', created_at = created_at - interval '2 hours'
		WHERE workflow_id = ANY($1) AND started_at IS NOT NULL`, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `UPDATE sagaflow.workflow_starts SET created_at = created_at - interval '2 hours' WHERE workflow_id = $1`, ids[2]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(ctx); err != nil || n != 2 {
		t.Fatalf("Prune past the retention = %d, %v; want the 2 started rows", n, err)
	}
	var left []string
	rows, err = db.Pool().Query(ctx, `SELECT workflow_id FROM sagaflow.workflow_starts WHERE workflow_id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(left) != 1 || left[0] != ids[2] {
		t.Fatalf("rows left %v, %v; want only the pending one", left, err)
	}
}

func TestStarter_starts_in_the_requests_trace(t *testing.T) {
	testenv.RecordSpans(t)
	ctx, req := otel.Tracer("test").Start(context.Background(), "POST /v1/meetings/:id/join")
	ids := enqueueIn(t, ctx, 1, tracectx.Carrier{})
	req.End()
	var stored string
	if err := db.Pool().QueryRow(ctx, `SELECT traceparent FROM sagaflow.workflow_starts WHERE workflow_id = $1`, ids[0]).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := tracectx.Capture(ctx).TraceParent; stored != want {
		t.Fatalf("stored traceparent = %q, want the request's %q", stored, want)
	}
	f := &fakeTemporal{}
	drain(t, starter.New(db.Pool(), f, quiet, starter.Options{}))
	got := f.parents[ids[0]]
	if got.TraceID() != req.SpanContext().TraceID() || got.SpanID() != req.SpanContext().SpanID() || !got.IsRemote() {
		t.Fatalf("start sent in %v, want the request's span %v as remote parent", got, req.SpanContext())
	}
}

func TestStarter_never_stores_or_continues_a_hostile_context(t *testing.T) {
	testenv.RecordSpans(t)
	// A header the middleware would have refused, handed in directly.
	hostile := []tracectx.Carrier{
		{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + strings.Repeat("x", 1<<16)},
		{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00"},
		{TraceParent: "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{TraceParent: "00-00000000000000000000000000000000-0000000000000000-00"},
	}
	var ids []string
	for _, tc := range hostile {
		ids = append(ids, enqueueIn(t, context.Background(), 1, tc)...)
	}
	// And a valid request whose row was altered afterwards.
	ctx := otel.GetTextMapPropagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	tampered := enqueueIn(t, ctx, 1, tracectx.Carrier{})[0]
	if _, err := db.Pool().Exec(ctx, `UPDATE sagaflow.workflow_starts SET traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01', tracestate = E'a=\x01' WHERE workflow_id = $1`, tampered); err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM sagaflow.workflow_starts WHERE workflow_id = ANY($1) AND (traceparent <> '' OR tracestate <> '')`, ids).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Fatalf("%d hostile trace contexts stored, want none", stored)
	}
	f := &fakeTemporal{}
	drain(t, starter.New(db.Pool(), f, quiet, starter.Options{}))
	for _, id := range append(ids, tampered) {
		if f.count(id) != 1 {
			t.Fatalf("%s started %d times, want once", id, f.count(id))
		}
		if sc := f.parents[id]; sc.IsValid() {
			t.Fatalf("%s started in %v, want no parent (a new root)", id, sc)
		}
	}
}
