package integration

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/devserver"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/workflows"
)

// waitForSignal completes with the value of the "go" signal.
func waitForSignal(ctx workflow.Context) (string, error) {
	var v string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &v)
	return v, nil
}

func startFileServer(t *testing.T, file string, port int) (*devserver.Server, client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{
		Port: port, DBFile: file, Namespace: "restart",
		SearchAttributes: workflows.SearchAttributes(),
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		LogLevel:         slog.LevelError,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(client.Options{HostPort: srv.Address(), Namespace: "restart",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	return srv, c
}

// The embedded server of `sagaflow dev` keeps completed and running
// workflows in its SQLite file across a restart, and a workflow that waited
// through the restart finishes afterwards.
func TestDevServer_file_keeps_workflows_across_restart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "temporal.db")
	port := freePort()
	const queue = "restart-test"

	srv, c := startFileServer(t, file, port)
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(waitForSignal, workflow.RegisterOptions{Name: "waitForSignal"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	done, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "done", TaskQueue: queue}, "waitForSignal")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SignalWorkflow(ctx, "done", "", "go", "before"); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := done.Get(ctx, &got); err != nil || got != "before" {
		t.Fatalf("first workflow: %q, %v", got, err)
	}
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waiting", TaskQueue: queue}, "waitForSignal"); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	c.Close()
	srv.Stop()

	srv, c = startFileServer(t, file, port)
	defer srv.Stop()
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, "done", "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("completed workflow after restart: %v, %v", desc.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	w = worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(waitForSignal, workflow.RegisterOptions{Name: "waitForSignal"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.SignalWorkflow(ctx, "waiting", "", "go", "after"); err != nil {
		t.Fatalf("signal the workflow that waited through the restart: %v", err)
	}
	if err := c.GetWorkflow(ctx, "waiting", "").Get(ctx, &got); err != nil || got != "after" {
		t.Fatalf("waiting workflow after restart: %q, %v", got, err)
	}
}

func TestDevServer_refuses_a_taken_port(t *testing.T) {
	t.Parallel()
	_, err := devserver.Start(context.Background(), devserver.Options{
		Port: stack.app.Config.DevTemporalPort, Namespace: "x",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		t.Fatal("a second server started on a taken port")
	}
}

// EnsureSearchAttributes adds what the namespace lacks and says which it
// added: deploy/cluster.sh restarts the Temporal server on that answer
// instead of running it with its search-attribute cache turned off.
func TestEnsureSearchAttributes_adds_only_what_is_missing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, c := startFileServer(t, filepath.Join(t.TempDir(), "temporal.db"), freePort())
	defer srv.Stop()
	defer c.Close()

	// The server registered sagaflow's own at boot: nothing to add.
	added, err := app.PrepareNamespace(ctx, c, "restart", false)
	if err != nil || len(added) != 0 {
		t.Fatalf("PrepareNamespace on a prepared namespace = %v, %v; want nothing added", added, err)
	}
	want := maps.Clone(workflows.SearchAttributes())
	want["SagaflowTestB"] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	want["SagaflowTestA"] = enumspb.INDEXED_VALUE_TYPE_INT
	added, err = temporalclient.EnsureSearchAttributes(ctx, c, "restart", want)
	if err != nil || !slices.Equal(added, []string{"SagaflowTestA", "SagaflowTestB"}) {
		t.Fatalf("EnsureSearchAttributes with two new = %v, %v; want [SagaflowTestA SagaflowTestB]", added, err)
	}
	added, err = temporalclient.EnsureSearchAttributes(ctx, c, "restart", want)
	if err != nil || len(added) != 0 {
		t.Fatalf("EnsureSearchAttributes again = %v, %v; want nothing added", added, err)
	}
	want["SagaflowTestB"] = enumspb.INDEXED_VALUE_TYPE_INT
	if added, err = temporalclient.EnsureSearchAttributes(ctx, c, "restart", want); err == nil {
		t.Fatalf("EnsureSearchAttributes with a changed type = %v, nil; want an error", added)
	}
}
