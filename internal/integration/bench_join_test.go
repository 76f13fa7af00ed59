package integration

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// benchNoop is the no-op activity of the bare workflow.
func benchNoop(context.Context) error { return nil }

// bareJoinShape has the activities of a successful join, of the same kinds
// and with the same timeouts, doing nothing: local (reserve), regular
// (charge, 30 s to complete), local (confirm), three regular in parallel
// (notify, 10 s each), local (save). The timeouts matter: the server keeps
// a timer for each activity's, and fires it after the activity has ended.
func bareJoinShape(ctx workflow.Context) error {
	local := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	charge := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	notify := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	steps := []func() workflow.Future{ // one after the other, as in the saga
		func() workflow.Future { return workflow.ExecuteLocalActivity(local, benchNoop) },
		func() workflow.Future { return workflow.ExecuteActivity(charge, "benchNoop") },
		func() workflow.Future { return workflow.ExecuteLocalActivity(local, benchNoop) },
	}
	for _, step := range steps {
		if err := step().Get(ctx, nil); err != nil {
			return err
		}
	}
	fs := make([]workflow.Future, 3)
	for i := range fs {
		fs[i] = workflow.ExecuteActivity(notify, "benchNoop")
	}
	for _, f := range fs {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	return workflow.ExecuteLocalActivity(local, benchNoop).Get(ctx, nil)
}

// joinSettle is how long a phase of BenchmarkJoin_vs_bare leaves work at
// the server after its last workflow ended: every activity's start-to-close
// timer fires when it is due (30 s for the charge), whether the activity
// ended or not, and the visibility queue may lag. Without the wait, the
// first phase's timers fired during the next one and were billed to it:
// with 400 workflows, the bare phase lasted 5-7 s, so nearly all of its
// timers fired while the joins ran, and none of the joins' did.
const joinSettle = 31 * time.Second

// medianIndex is the index of the median of xs (not empty; the lower
// middle one of an even count).
func medianIndex(xs []float64) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(xs[a], xs[b]) })
	return idx[(len(xs)-1)/2]
}

// joinWarmUp is how many bare workflows, then joins, each target runs
// before its measurements, unmeasured.
const joinWarmUp = 100

// settle waits joinSettle, then for a quiet machine (waitQuiet), so that
// the next phase of BenchmarkJoin_vs_bare starts clean.
func settle(b *testing.B) {
	time.Sleep(joinSettle)
	waitQuiet(b)
}

// phase runs one measurement of BenchmarkJoin_vs_bare, then settles. It returns the measurement and its CPU: during the phase,
// and with what the phase left for the server to do after it.
func phase(b *testing.B, name string, n, concurrency int, op func(i int) (time.Duration, error)) (benchResult, string) {
	cpu0, t0 := processCPU(), time.Now()
	r := measure(b, name, n, concurrency, op)
	cpu1, t1 := processCPU(), time.Now()
	settle(b)
	return r, fmt.Sprintf("%s\n        with what it left for the next %s: %s\n        (from %s to %s, then until %s)", cpu1.since(cpu0), joinSettle, processCPU().since(cpu0),
		t0.UTC().Format("15:04:05.0"), t1.UTC().Format("15:04:05.0"), time.Now().UTC().Format("15:04:05.0"))
}

type benchResult struct {
	perSecond float64
	p50, p99  time.Duration
}

func (r benchResult) String() string {
	return fmt.Sprintf("%.1f/s, p50 %s, p99 %s", r.perSecond, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
}

// measure runs n operations with the given concurrency, each returning its
// start-to-terminal latency. With BENCH_PROFILE_DIR set and a name, it
// writes a CPU profile of this process during the measurement to
// name.pprof there: an embedded run holds the server, the workers and the
// simulators, so each phase's profile says where its CPU went (go test's
// -cpuprofile mixes the phases).
func measure(b *testing.B, name string, n, concurrency int, op func(i int) (time.Duration, error)) benchResult {
	if dir := os.Getenv("BENCH_PROFILE_DIR"); dir != "" && name != "" {
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				b.Error(err)
			}
		}()
	}
	lat := make([]time.Duration, n)
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				d, err := op(i)
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = d
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	return benchResult{perSecond: float64(n) / elapsed.Seconds(), p50: lat[n/2], p99: lat[n*99/100]}
}

// BenchmarkJoin_vs_bare measures completed joins per second and their p99
// start-to-terminal latency on the embedded server, through the API, next
// to a bare workflow with the same activities doing nothing, on the same
// server in the same run. Run it with `make bench-join` (BENCH_JOINS sets
// the count). With BENCH_CLUSTER=1 it measures the cluster of `make
// cluster` too, with one worker process and with two (benchTargets): the
// joins go through both APIs in turn, and the bare workflow runs on as
// many workers of its own in this process, on the cluster's Temporal.
// BENCH_JOIN_ROUNDS (default 3) sets the rounds of bare then join per
// target; BENCH_PROFILE_DIR writes each phase's profile (see measure).
func BenchmarkJoin_vs_bare(b *testing.B) {
	n := envInt("BENCH_JOINS", 400)
	rounds := max(envInt("BENCH_JOIN_ROUNDS", 3), 1)
	const concurrency = 50
	ctx := context.Background()
	cfg := stack.app.Config
	run := testenv.RunID()
	targets := benchTargets(b)
	for range b.N {
		var table []string
		for ti, t := range targets {
			t.prepare(b)
			queue := fmt.Sprintf("bench-bare-%s-%d", run, ti)
			var bareWorkers []worker.Worker
			for range max(t.procs, 1) {
				w := worker.New(t.temporal, queue, worker.Options{
					MaxConcurrentWorkflowTaskPollers: cfg.WorkflowPollers, MaxConcurrentActivityTaskPollers: cfg.ActivityPollers,
					MaxConcurrentActivityExecutionSize: cfg.MaxConcurrentActivity, MaxConcurrentWorkflowTaskExecutionSize: cfg.MaxConcurrentWorkflow,
				})
				w.RegisterWorkflowWithOptions(bareJoinShape, workflow.RegisterOptions{Name: "bareJoinShape"})
				w.RegisterActivityWithOptions(benchNoop, activity.RegisterOptions{Name: "benchNoop"})
				if err := w.Start(); err != nil {
					b.Fatal(err)
				}
				bareWorkers = append(bareWorkers, w)
			}
			bareOp := func(tag string) func(i int) (time.Duration, error) {
				return func(i int) (time.Duration, error) {
					t0 := time.Now()
					r, err := t.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
						ID: fmt.Sprintf("bench-bare-%s-%d-%s%d", run, ti, tag, i), TaskQueue: queue, EnableEagerStart: true, // as the API starts joins
					}, "bareJoinShape")
					if err != nil {
						return 0, err
					}
					err = r.Get(ctx, nil)
					return time.Since(t0), err
				}
			}
			mtg := benchMeeting(b, t, rounds*n+joinWarmUp)
			starts := watchStarts(t)
			joinOp := func(tag string) func(i int) (time.Duration, error) {
				return func(i int) (time.Duration, error) {
					t0 := time.Now()
					joinID, err := benchPostJoin(t, mtg, fmt.Sprintf("bench-%s-%d-%s%d", run, ti, tag, i), fmt.Sprintf("bench-user-%s-%d-%s%d", run, ti, tag, i))
					if err != nil {
						return 0, err
					}
					err = awaitWorkflow(ctx, t, starts, workflows.JoinWorkflowID("demo", joinID))
					return time.Since(t0), err
				}
			}
			// Warm up both sides, unmeasured: a worker process the target
			// has just started (the cluster's worker2) opens its
			// connections, and each PostgreSQL backend fills its caches, on
			// its first workflows, which were the joins'.
			measure(b, "", joinWarmUp, concurrency, bareOp("warm-"))
			measure(b, "", joinWarmUp, concurrency, joinOp("warm-"))
			settle(b)
			var roundRatios []float64
			var bares, joins []benchResult
			for round := range rounds {
				tag := fmt.Sprintf("r%d-", round)
				bare, cpuBare := phase(b, fmt.Sprintf("bare-%d-%d", ti, round), n, concurrency, bareOp(tag))
				join, cpuJoin := phase(b, fmt.Sprintf("join-%d-%d", ti, round), n, concurrency, joinOp(tag))
				ratio := join.perSecond / bare.perSecond
				roundRatios, bares, joins = append(roundRatios, ratio), append(bares, bare), append(joins, join)
				fmt.Printf("%s, round %d of %d: join (%d through the API, %d at once): %s\n%s, round %d: bare (7 no-op activities):              %s\nratio: %.2f (target >= 0.80)\n  bare: %s\n  join: %s\n",
					t.name, round+1, rounds, n, concurrency, join, t.name, round+1, bare, ratio, cpuBare, cpuJoin)
			}
			starts.Close()
			for _, w := range bareWorkers {
				w.Stop()
			}
			// The round of the median ratio stands for the target.
			mid := medianIndex(roundRatios)
			bare, join, ratio := bares[mid], joins[mid], roundRatios[mid]
			if len(targets) == 1 {
				b.ReportMetric(join.perSecond, "joins/s")
				b.ReportMetric(float64(join.p99.Milliseconds()), "join-p99-ms")
				b.ReportMetric(bare.perSecond, "bare/s")
				b.ReportMetric(float64(bare.p99.Milliseconds()), "bare-p99-ms")
				b.ReportMetric(ratio, "join/bare")
			}
			table = append(table, fmt.Sprintf("%-18s %8.1f %9s %8.1f %9s %6.2f  %s", t.name, join.perSecond, join.p99.Round(time.Millisecond),
				bare.perSecond, bare.p99.Round(time.Millisecond), ratio, ratios(roundRatios)))
		}
		fmt.Printf("\njoins, %d at once, %d in all, %d rounds of bare then join per target; the round of the median ratio (target: join/bare >= 0.80)\n%-18s %8s %9s %8s %9s %6s  %s\n", concurrency, n, rounds,
			"target", "joins/s", "join p99", "bare/s", "bare p99", "ratio", "every round's ratio")
		for _, l := range table {
			fmt.Println(l)
		}
	}
}

func benchMeeting(b *testing.B, t *benchTarget, capacity int) string {
	var m struct {
		ID string `json:"id"`
	}
	code, err := t.call(t.demoKey, http.MethodPost, "/v1/meetings", map[string]any{
		"title": "bench", "capacity": capacity, "fee": map[string]any{"amount": 1000, "currency": "KRW"},
	}, &m, nil)
	if err != nil || code != http.StatusCreated {
		b.Fatalf("%s: create meeting: %d %v", t.name, code, err)
	}
	return m.ID
}

func benchPostJoin(t *benchTarget, meetingID, key, user string) (string, error) {
	var out struct {
		JoinID string `json:"join_id"`
	}
	code, err := t.call(t.demoKey, http.MethodPost, "/v1/meetings/"+meetingID+"/joins",
		map[string]any{"user_id": user, "payment_token": "tok_ok"}, &out, map[string]string{"Idempotency-Key": key})
	if err != nil {
		return "", err
	}
	if code != http.StatusAccepted {
		return "", fmt.Errorf("POST join = %d", code)
	}
	return out.JoinID, nil
}

// startWatch finds the runs the starter started, for every join of a
// measurement at once: one indexed read of sagaflow.workflow_starts every
// 20 ms for all the workflow IDs waited on, however many there are. Each
// join waiting on its own row was a read every 20 ms per join in wait: with
// 50 joins in flight, up to 2,500 reads a second, which PostgreSQL paid on
// the join and not the bare run. It asked Temporal before that: a describe
// and a history poll per look, each resolving the workflow ID's current run
// in the server's PostgreSQL.
type startWatch struct {
	t       *benchTarget
	mu      sync.Mutex
	waiting map[string]chan string
	stop    chan struct{}
	done    chan struct{}
}

func watchStarts(t *benchTarget) *startWatch {
	w := &startWatch{t: t, waiting: map[string]chan string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *startWatch) Close() {
	close(w.stop)
	<-w.done
}

func (w *startWatch) run() {
	defer close(w.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		ids := make([]string, 0, len(w.waiting))
		for id := range w.waiting {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		rows, err := w.t.store.Pool().Query(context.Background(),
			`SELECT workflow_id, coalesce(run_id, '') FROM sagaflow.workflow_starts WHERE workflow_id = ANY($1) AND started_at IS NOT NULL`, ids)
		if err != nil {
			continue // the waiter's deadline reports a lasting failure
		}
		var id, run string
		_, err = pgx.ForEachRow(rows, []any{&id, &run}, func() error {
			w.mu.Lock()
			if c, ok := w.waiting[id]; ok {
				c <- run
				delete(w.waiting, id)
			}
			w.mu.Unlock()
			return nil
		})
		_ = err // as above
	}
}

// runOf waits until the start of the workflow of ID id is marked and returns
// its run ID ("" when a starter older than the run_id column marked it:
// Temporal then resolves the current run).
func (w *startWatch) runOf(id string) (string, error) {
	c := make(chan string, 1)
	w.mu.Lock()
	w.waiting[id] = c
	w.mu.Unlock()
	select {
	case run := <-c:
		return run, nil
	case <-time.After(2 * time.Minute):
		w.mu.Lock()
		delete(w.waiting, id)
		w.mu.Unlock()
		return "", fmt.Errorf("the start of %s was not marked within 2 minutes", id)
	}
}

// awaitWorkflow waits for the workflow the starter starts from the row of
// workflow ID id (startWatch), then for its end, as the bare workflow's
// client does: one history poll on a known run.
func awaitWorkflow(ctx context.Context, t *benchTarget, w *startWatch, id string) error {
	run, err := w.runOf(id)
	if err != nil {
		return err
	}
	return t.temporal.GetWorkflow(ctx, id, run).Get(ctx, nil)
}
