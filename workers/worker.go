// Package workers runs sagaflow's Temporal workers: one worker per task
// queue, each registering only the workflow and the activities of its saga.
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

// New builds the workers, registered but not started: on each task queue
// only the workflow of its saga and that saga's activities (see Register).
func New(c client.Client, acts *activities.Activities, o Options) map[string]worker.Worker {
	opts := worker.Options{
		MaxConcurrentWorkflowTaskPollers:       o.WorkflowPollers,
		MaxConcurrentActivityTaskPollers:       o.ActivityPollers,
		MaxConcurrentActivityExecutionSize:     o.MaxConcurrentActivity,
		MaxConcurrentWorkflowTaskExecutionSize: o.MaxConcurrentWorkflow,
		Interceptors:                           o.Interceptors,
		WorkerStopTimeout:                      o.StopTimeout,
	}
	ws := make(map[string]worker.Worker, len(TaskQueues))
	for _, queue := range TaskQueues {
		w := worker.New(c, queue, opts)
		Register(w, queue, acts)
		ws[queue] = w
	}
	return ws
}

// TaskQueues are the task queues New builds a worker for, one per saga.
var TaskQueues = []string{workflows.TaskQueueOps, workflows.TaskQueueJoin, workflows.TaskQueueCoupon, workflows.TaskQueueSync}

// Registry is the part of a worker.Worker that Register uses.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
	RegisterActivity(a any)
}

// Register registers on r what runs on queue: that saga's workflow under
// its type name and its activities (remote and local), each known by its
// method's name. A nil set in acts is registered as its zero value. An
// unknown queue panics, as the SDK does on a bad registration.
func Register(r Registry, queue string, acts *activities.Activities) {
	if acts == nil {
		acts = &activities.Activities{}
	}
	switch queue {
	case workflows.TaskQueueOps:
		r.RegisterWorkflowWithOptions(workflows.Probe, workflow.RegisterOptions{Name: workflows.ProbeWorkflowType})
		r.RegisterActivity(orZero(acts.Probe))
	case workflows.TaskQueueJoin:
		r.RegisterWorkflowWithOptions(workflows.Join, workflow.RegisterOptions{Name: workflows.JoinWorkflowType})
		r.RegisterActivity(orZero(acts.Join))
	case workflows.TaskQueueCoupon:
		r.RegisterWorkflowWithOptions(workflows.Campaign, workflow.RegisterOptions{Name: workflows.CampaignWorkflowType})
		r.RegisterActivity(orZero(acts.Coupon))
	case workflows.TaskQueueSync:
		r.RegisterWorkflowWithOptions(workflows.CatalogSync, workflow.RegisterOptions{Name: workflows.CatalogSyncWorkflowType})
		r.RegisterActivity(orZero(acts.Sync))
	default:
		panic(fmt.Sprintf("workers: no saga runs on task queue %q", queue))
	}
}

// orZero is p, or a new zero T when p is nil: the SDK registers a struct's
// methods from a pointer to it.
func orZero[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
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
