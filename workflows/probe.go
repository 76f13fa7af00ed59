package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
)

// ProbeInput names the tenant whose view of the system is probed.
type ProbeInput struct {
	Tenant string `json:"tenant"`
	Schema string `json:"schema"`
}

// ProbeState is what the status query returns, and the probe's result.
type ProbeState struct {
	// Phase is "running" until every check has an answer, then "done".
	Phase string `json:"phase"`
	// Healthy is true when every check passed.
	Healthy bool                     `json:"healthy"`
	Checks  []activities.CheckResult `json:"checks"`
}

// ProbeDependencies are checked in this order; the result lists them so.
var ProbeDependencies = []string{activities.DependencyPostgres, activities.DependencyRedis, activities.DependencyRabbitMQ}

// probeActs are the probe's activities, referred to by method.
var probeActs *activities.ProbeActivities

// Probe checks, from a worker, that each dependency a saga needs answers for
// the tenant: its PostgreSQL schema, Redis, RabbitMQ. The checks run in
// parallel, each retried a few times; a check that still fails is recorded
// in the state, not raised, so the probe always completes with a verdict.
func Probe(ctx workflow.Context, in ProbeInput) (ProbeState, error) {
	state := ProbeState{Phase: "running", Checks: make([]activities.CheckResult, len(ProbeDependencies))}
	for i, dep := range ProbeDependencies {
		state.Checks[i] = activities.CheckResult{Dependency: dep}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ProbeState, error) { return state, nil }); err != nil {
		return state, err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    200 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumAttempts:    3,
		},
	})
	futures := make([]workflow.Future, len(ProbeDependencies))
	for i, dep := range ProbeDependencies {
		futures[i] = workflow.ExecuteActivity(ctx, probeActs.CheckDependency, activities.CheckInput{
			Dependency: dep, Tenant: in.Tenant, Schema: in.Schema,
		})
	}
	state.Healthy = true
	for i, f := range futures {
		var res activities.CheckResult
		if err := f.Get(ctx, &res); err != nil {
			res = activities.CheckResult{Dependency: ProbeDependencies[i], Error: errorMessage(err)}
		}
		state.Checks[i] = res
		state.Healthy = state.Healthy && res.OK
	}
	state.Phase = "done"
	return state, nil
}

// errorMessage is the innermost message of an activity failure, without the
// wrapping Temporal adds ("activity error (type: ..., scheduledEventID: ...)").
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}
