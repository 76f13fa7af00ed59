package activities

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// slowActivity works for three heartbeat timeouts, with keepAlive or not.
func slowActivity(ctx context.Context, alive bool) error {
	if alive {
		defer keepAlive(ctx)()
	}
	time.Sleep(3 * activity.GetInfo(ctx).HeartbeatTimeout)
	return nil
}

func heartbeatWorkflow(ctx workflow.Context, alive bool) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    200 * time.Millisecond,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	return workflow.ExecuteActivity(ctx, slowActivity, alive).Get(ctx, nil)
}

// An attempt that keeps alive outlives its heartbeat timeout; one that does
// not is timed out by it (the test environment enforces heartbeat timeouts
// as the server does), which is what a dead worker's attempt gets.
func TestKeepAlive_heartbeats_until_the_activity_returns(t *testing.T) {
	for _, alive := range []bool{true, false} {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestWorkflowEnvironment()
		env.RegisterWorkflow(heartbeatWorkflow)
		env.RegisterActivity(slowActivity)
		var beats atomic.Int32
		env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { beats.Add(1) })
		env.ExecuteWorkflow(heartbeatWorkflow, alive)
		err := env.GetWorkflowError()
		var timeout *temporal.TimeoutError
		switch {
		case alive && (err != nil || beats.Load() < 2):
			t.Errorf("with keepAlive: err %v after %d heartbeats; want success, heartbeats", err, beats.Load())
		case !alive && !(errors.As(err, &timeout) && timeout.TimeoutType().String() == "Heartbeat"):
			t.Errorf("without keepAlive: err %v; want a heartbeat timeout", err)
		}
	}
}

// Outside an activity, or for an attempt without a heartbeat timeout,
// keepAlive does nothing and stop returns at once.
func TestKeepAlive_does_nothing_without_a_heartbeat_timeout(t *testing.T) {
	keepAlive(context.Background())()
}
