package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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

// bareJoinShape has the activities of a successful join, of the same kinds,
// doing nothing: local (reserve), regular (charge), local (confirm), three
// regular in parallel (notify), local (save).
func bareJoinShape(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	steps := []func() workflow.Future{ // one after the other, as in the saga
		func() workflow.Future { return workflow.ExecuteLocalActivity(ctx, benchNoop) },
		func() workflow.Future { return workflow.ExecuteActivity(ctx, "benchNoop") },
		func() workflow.Future { return workflow.ExecuteLocalActivity(ctx, benchNoop) },
	}
	for _, step := range steps {
		if err := step().Get(ctx, nil); err != nil {
			return err
		}
	}
	fs := make([]workflow.Future, 3)
	for i := range fs {
		fs[i] = workflow.ExecuteActivity(ctx, "benchNoop")
	}
	for _, f := range fs {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	return workflow.ExecuteLocalActivity(ctx, benchNoop).Get(ctx, nil)
}

type benchResult struct {
	perSecond float64
	p50, p99  time.Duration
}

func (r benchResult) String() string {
	return fmt.Sprintf("%.1f/s, p50 %s, p99 %s", r.perSecond, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
}

// measure runs n operations with the given concurrency; each returns its
// start-to-terminal latency.
func measure(b *testing.B, n, concurrency int, op func(i int) (time.Duration, error)) benchResult {
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
func BenchmarkJoin_vs_bare(b *testing.B) {
	n := envInt("BENCH_JOINS", 400)
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
			cpu0 := processCPU()
			bare := measure(b, n, concurrency, func(i int) (time.Duration, error) {
				t0 := time.Now()
				r, err := t.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
					ID: fmt.Sprintf("bench-bare-%s-%d-%d", run, ti, i), TaskQueue: queue, EnableEagerStart: true, // as the API starts joins
				}, "bareJoinShape")
				if err != nil {
					return 0, err
				}
				err = r.Get(ctx, nil)
				return time.Since(t0), err
			})
			for _, w := range bareWorkers {
				w.Stop()
			}
			cpuBare := processCPU()

			mtg := benchMeeting(b, t, n)
			join := measure(b, n, concurrency, func(i int) (time.Duration, error) {
				t0 := time.Now()
				joinID, err := benchPostJoin(t, mtg, fmt.Sprintf("bench-%s-%d-%d", run, ti, i), fmt.Sprintf("bench-user-%s-%d-%d", run, ti, i))
				if err != nil {
					return 0, err
				}
				err = awaitWorkflow(ctx, t, workflows.JoinWorkflowID("demo", joinID))
				return time.Since(t0), err
			})
			cpuJoin := processCPU()
			ratio := join.perSecond / bare.perSecond
			if len(targets) == 1 {
				b.ReportMetric(join.perSecond, "joins/s")
				b.ReportMetric(float64(join.p99.Milliseconds()), "join-p99-ms")
				b.ReportMetric(bare.perSecond, "bare/s")
				b.ReportMetric(float64(bare.p99.Milliseconds()), "bare-p99-ms")
				b.ReportMetric(ratio, "join/bare")
			}
			fmt.Printf("%s: join (%d through the API, %d at once): %s\n%s: bare (7 no-op activities):              %s\nratio: %.2f (target >= 0.80)\n  bare: %s\n  join: %s\n",
				t.name, n, concurrency, join, t.name, bare, ratio, cpuBare.since(cpu0), cpuJoin.since(cpuBare))
			table = append(table, fmt.Sprintf("%-18s %8.1f %9s %8.1f %9s %6.2f", t.name, join.perSecond, join.p99.Round(time.Millisecond),
				bare.perSecond, bare.p99.Round(time.Millisecond), ratio))
		}
		fmt.Printf("\njoins, %d at once, %d in all (target: join/bare >= 0.80)\n%-18s %8s %9s %8s %9s %6s\n", concurrency, n,
			"target", "joins/s", "join p99", "bare/s", "bare p99", "ratio")
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

// awaitWorkflow waits for the workflow the starter starts from the row
// of workflow ID id, then for its end, as the bare workflow's client does:
// one history poll on a known run. Until the start is marked, it reads the
// row's run ID from PostgreSQL every 20 ms (an indexed read of one row). It
// asked Temporal before: a describe and a history poll per look, each
// resolving the workflow ID's current run in the server's PostgreSQL, about
// 1.6 looks per join; the server spent that on the join, not the bare run.
//
// A row marked without a run (by a starter older than the run_id column)
// leaves the run to Temporal to resolve ("": the current one).
func awaitWorkflow(ctx context.Context, t *benchTarget, id string) error {
	var run string
	for deadline := time.Now().Add(2 * time.Minute); ; {
		err := t.store.Pool().QueryRow(ctx, `SELECT run_id FROM sagaflow.workflow_starts WHERE workflow_id = $1 AND started_at IS NOT NULL`, id).Scan(&run)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the start of %s was not marked within 2 minutes", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return t.temporal.GetWorkflow(ctx, id, run).Get(ctx, nil)
}
