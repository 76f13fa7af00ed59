package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// TestStarter_keeps_the_run_of_each_start checks the run ID the starter
// writes on a started row against Temporal itself: the run it started,
// and, for a workflow ID that ran already, the run that holds it (a start
// sent twice, as after a crash between the start and the mark).
func TestStarter_keeps_the_run_of_each_start(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stack.app.Store.Pool()
	id := workflows.ProbeWorkflowID("demo", "starter-run-"+testenv.RunID())
	enqueue := func() {
		t.Helper()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return starter.Enqueue(ctx, tx, starter.Start{Tenant: "demo", WorkflowID: id, WorkflowType: "Probe",
				TaskQueue: workflows.TaskQueueOps, Input: []byte(`{"tenant":"demo","schema":"tenant_demo"}`)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	kept := func() string {
		t.Helper()
		var run string
		eventually(t, 30*time.Second, "the start of "+id+" is marked", func() bool {
			err := pool.QueryRow(ctx, `SELECT run_id FROM sagaflow.workflow_starts WHERE workflow_id = $1 AND started_at IS NOT NULL`, id).Scan(&run)
			if errors.Is(err, pgx.ErrNoRows) {
				return false
			}
			if err != nil {
				t.Fatal(err)
			}
			return true
		})
		return run
	}

	enqueue()
	first := kept()
	desc, err := stack.app.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(); first == "" || first != want {
		t.Fatalf("row keeps run %q, Temporal's run of %s is %q", first, id, want)
	}
	if err := stack.app.Temporal.GetWorkflow(ctx, id, first).Get(ctx, nil); err != nil {
		t.Fatalf("the kept run does not end well: %v", err)
	}

	// The same workflow ID recorded again once the row is gone: the start
	// is refused as a duplicate, and the row keeps the first run.
	if _, err := pool.Exec(ctx, `DELETE FROM sagaflow.workflow_starts WHERE workflow_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	enqueue()
	if again := kept(); again != first {
		t.Fatalf("a start of a workflow ID that ran keeps run %q, want the run that ran, %q", again, first)
	}
	// And no second run was made: the workflow ID's current run is the first.
	desc, err = stack.app.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if now := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId(); now != first {
		t.Fatalf("the second start made run %q next to %q", now, first)
	}
}
