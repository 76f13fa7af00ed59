package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/sagaflow/sagaflow/activities"
)

func newProbeEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.ProbeActivities{})
	return env
}

func checkOK(dep string) activities.CheckResult {
	return activities.CheckResult{Dependency: dep, OK: true, LatencyMS: 1}
}

func TestProbe_healthy_when_every_check_passes(t *testing.T) {
	env := newProbeEnv(t)
	var a *activities.ProbeActivities
	for _, dep := range ProbeDependencies {
		env.OnActivity(a.CheckDependency, mock.Anything, activities.CheckInput{Dependency: dep, Tenant: "demo", Schema: "tenant_demo"}).
			Return(checkOK(dep), nil).Once()
	}
	env.ExecuteWorkflow(Probe, ProbeInput{Tenant: "demo", Schema: "tenant_demo"})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var got ProbeState
	require.NoError(t, env.GetWorkflowResult(&got))
	require.Equal(t, "done", got.Phase)
	require.True(t, got.Healthy)
	require.Len(t, got.Checks, 3)
	for i, dep := range ProbeDependencies {
		require.Equal(t, dep, got.Checks[i].Dependency, "checks keep their order")
		require.True(t, got.Checks[i].OK)
	}
	env.AssertExpectations(t)
}

func TestProbe_records_a_failing_dependency_after_retries(t *testing.T) {
	env := newProbeEnv(t)
	var a *activities.ProbeActivities
	env.OnActivity(a.CheckDependency, mock.Anything, mock.MatchedBy(func(in activities.CheckInput) bool {
		return in.Dependency != activities.DependencyRedis
	})).Return(func(_ context.Context, in activities.CheckInput) (activities.CheckResult, error) {
		return checkOK(in.Dependency), nil
	})
	env.OnActivity(a.CheckDependency, mock.Anything, mock.MatchedBy(func(in activities.CheckInput) bool {
		return in.Dependency == activities.DependencyRedis
	})).Return(activities.CheckResult{}, errors.New("dial tcp 127.0.0.1:63790: connection refused"))

	env.ExecuteWorkflow(Probe, ProbeInput{Tenant: "demo", Schema: "tenant_demo"})

	require.NoError(t, env.GetWorkflowError(), "a failing dependency is a verdict, not a workflow failure")
	var got ProbeState
	require.NoError(t, env.GetWorkflowResult(&got))
	require.False(t, got.Healthy)
	require.False(t, got.Checks[1].OK)
	require.Contains(t, got.Checks[1].Error, "connection refused")
	require.True(t, got.Checks[0].OK)
	require.True(t, got.Checks[2].OK)
	// Three attempts by the retry policy, then the verdict.
	env.AssertNumberOfCalls(t, "CheckDependency", 2+3)
}

func TestProbe_does_not_retry_a_missing_schema(t *testing.T) {
	env := newProbeEnv(t)
	var a *activities.ProbeActivities
	env.OnActivity(a.CheckDependency, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.CheckInput) (activities.CheckResult, error) {
			if in.Dependency == activities.DependencyPostgres {
				return activities.CheckResult{}, temporal.NewNonRetryableApplicationError(`schema "tenant_x" of tenant x does not exist`, "SchemaMissing", nil)
			}
			return checkOK(in.Dependency), nil
		})
	env.ExecuteWorkflow(Probe, ProbeInput{Tenant: "x", Schema: "tenant_x"})

	var got ProbeState
	require.NoError(t, env.GetWorkflowResult(&got))
	require.False(t, got.Healthy)
	require.Equal(t, `schema "tenant_x" of tenant x does not exist`, got.Checks[0].Error)
	env.AssertNumberOfCalls(t, "CheckDependency", 3)
}

func TestProbe_status_query_shows_progress(t *testing.T) {
	env := newProbeEnv(t)
	var a *activities.ProbeActivities
	env.OnActivity(a.CheckDependency, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.CheckInput) (activities.CheckResult, error) {
			return checkOK(in.Dependency), nil
		}).After(time.Minute)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		var mid ProbeState
		require.NoError(t, v.Get(&mid))
		require.Equal(t, "running", mid.Phase)
		require.False(t, mid.Checks[0].OK)
		require.Equal(t, activities.DependencyPostgres, mid.Checks[0].Dependency)
	}, 30*time.Second)
	env.ExecuteWorkflow(Probe, ProbeInput{Tenant: "demo", Schema: "tenant_demo"})
	require.NoError(t, env.GetWorkflowError())

	v, err := env.QueryWorkflow(QueryStatus)
	require.NoError(t, err)
	var end ProbeState
	require.NoError(t, v.Get(&end))
	require.Equal(t, "done", end.Phase)
	require.True(t, end.Healthy)
}

func TestTenantOfWorkflowID(t *testing.T) {
	tests := []struct {
		id     string
		tenant string
		ok     bool
	}{
		{ProbeWorkflowID("demo", "x"), "demo", true},
		{"demo", "", false},
		{":probe:x", "", false},
		{"demo:", "demo", false},
	}
	for _, tt := range tests {
		got, ok := TenantOfWorkflowID(tt.id)
		if ok != tt.ok || (ok && got != tt.tenant) {
			t.Errorf("TenantOfWorkflowID(%q) = %q, %v", tt.id, got, ok)
		}
	}
}
