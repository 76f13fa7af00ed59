// Package workers runs sagaflow's Temporal workers: one worker per task
// queue, each registering the workflows and activities of its saga family.
package workers

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/workflows"
)

// Options tune every worker of the process (see config.Config).
type Options struct {
	WorkflowPollers       int
	ActivityPollers       int
	MaxConcurrentActivity int
	MaxConcurrentWorkflow int
	// StopTimeout is how long a stopping worker waits for its activities.
	StopTimeout time.Duration
	// Interceptors wrap every workflow and activity (tracing, metrics).
	Interceptors []interceptor.WorkerInterceptor
}

// New builds the workers, registered but not started.
func New(c client.Client, acts *activities.Activities, o Options) map[string]worker.Worker {
	opts := worker.Options{
		MaxConcurrentWorkflowTaskPollers:       o.WorkflowPollers,
		MaxConcurrentActivityTaskPollers:       o.ActivityPollers,
		MaxConcurrentActivityExecutionSize:     o.MaxConcurrentActivity,
		MaxConcurrentWorkflowTaskExecutionSize: o.MaxConcurrentWorkflow,
		Interceptors:                           o.Interceptors,
		WorkerStopTimeout:                      o.StopTimeout,
	}
	ops := worker.New(c, workflows.TaskQueueOps, opts)
	ops.RegisterWorkflowWithOptions(workflows.Probe, workflow.RegisterOptions{Name: workflows.ProbeWorkflowType})
	ops.RegisterActivity(acts)
	join := worker.New(c, workflows.TaskQueueJoin, opts)
	join.RegisterWorkflowWithOptions(workflows.Join, workflow.RegisterOptions{Name: workflows.JoinWorkflowType})
	join.RegisterActivity(acts)
	campaigns := worker.New(c, workflows.TaskQueueCoupon, opts)
	campaigns.RegisterWorkflowWithOptions(workflows.Campaign, workflow.RegisterOptions{Name: workflows.CampaignWorkflowType})
	campaigns.RegisterActivity(acts)
	sync := worker.New(c, workflows.TaskQueueSync, opts)
	sync.RegisterWorkflowWithOptions(workflows.CatalogSync, workflow.RegisterOptions{Name: workflows.CatalogSyncWorkflowType})
	sync.RegisterActivity(acts)
	return map[string]worker.Worker{
		workflows.TaskQueueOps: ops, workflows.TaskQueueJoin: join, workflows.TaskQueueCoupon: campaigns, workflows.TaskQueueSync: sync,
	}
}

// Run starts the workers and stops them when ctx ends. Stop waits for the
// activities in flight (up to Options.StopTimeout) so that
// nothing half-done is abandoned; Temporal retries what did not finish.
func Run(ctx context.Context, ws map[string]worker.Worker) error {
	var started []worker.Worker
	defer func() {
		for _, w := range started {
			w.Stop()
		}
	}()
	for queue, w := range ws {
		if err := w.Start(); err != nil {
			return fmt.Errorf("workers: start %s: %w", queue, err)
		}
		started = append(started, w)
	}
	<-ctx.Done()
	return nil
}
