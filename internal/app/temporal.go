package app

// The Temporal side of the process that is not a worker: the namespace it
// needs and the adapter that starts the recorded workflow starts.

import (
	"context"
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/workflows"
)

// PrepareNamespace registers the namespace (when register is set: the
// embedded server creates its own) and the search attributes the workflows
// need, and returns the names of the search attributes it added (see
// temporalclient.EnsureSearchAttributes). Idempotent.
func PrepareNamespace(ctx context.Context, c client.Client, namespace string, register bool) ([]string, error) {
	if register {
		if err := temporalclient.EnsureNamespace(ctx, c, namespace, 7*24*time.Hour); err != nil {
			return nil, err
		}
	}
	return temporalclient.EnsureSearchAttributes(ctx, c, namespace, workflows.SearchAttributes())
}

// temporalStarter starts a recorded workflow, once per workflow ID.
type temporalStarter struct{ c client.Client }

// StartWorkflow starts s and returns its run ID; if s's workflow ID ran
// already, it starts nothing and returns the run ID of that run.
func (t temporalStarter) StartWorkflow(ctx context.Context, s starter.Start) (string, error) {
	run, err := t.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       s.WorkflowID,
		TaskQueue:                s.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SearchAttributeTenant.ValueSet(s.Tenant)),
		// Where a worker shares this client (dev), the first workflow task
		// comes back with the start: one round trip less per workflow.
		EnableEagerStart: true,
	}, s.WorkflowType, s.Input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return started.RunId, nil // it ran already: a start is sent at most once in effect
	}
	if err != nil {
		return "", err
	}
	return run.GetRunID(), nil
}
