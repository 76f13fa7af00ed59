package temporalclient

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

func tracedActivity(context.Context) (string, error) { return "ok", nil }

func tracedWorkflow(ctx workflow.Context) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var out string
	err := workflow.ExecuteActivity(ctx, tracedActivity).Get(ctx, &out)
	return out, err
}

// The interceptor is built before the test's provider is installed, as Dial
// builds it before telemetry.SetupTracing or a test sets one: the spans must
// still reach the provider installed later.
func TestTracingInterceptor_uses_the_provider_installed_later(t *testing.T) {
	// The provider at dial time, as telemetry.SetupTracing installs it.
	first := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(first)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	i, err := TracingInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	rec := testenv.RecordSpans(t)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{i}})
	env.RegisterWorkflow(tracedWorkflow)
	env.RegisterActivity(tracedActivity)
	env.ExecuteWorkflow(tracedWorkflow)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if n := len(first.Ended()); n != 0 {
		t.Fatalf("%d spans went to the provider of dial time", n)
	}
	names := map[string]bool{}
	for _, sp := range rec.Ended() {
		names[sp.Name()] = true
	}
	for _, want := range []string{"RunWorkflow:tracedWorkflow", "StartActivity:tracedActivity", "RunActivity:tracedActivity"} {
		if !names[want] {
			t.Errorf("no span %q among %v", want, names)
		}
	}
}
