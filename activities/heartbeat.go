package activities

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
)

// keepAlive heartbeats for the activity of ctx until the returned stop is
// called. Without heartbeats, the server notices an attempt that will never
// report only when its start-to-close timeout ends: a worker killed
// mid-push, or a completion report that failed (during a PostgreSQL
// restart of the cluster, the SDK's reports of three sync activities timed
// out, "Task processing failed with error: context deadline exceeded", and
// are not sent again: the shard's pushes waited out the push's 2 minutes).
// With them it notices after the heartbeat timeout.
//
// It ticks at a quarter of the attempt's heartbeat timeout (the SDK sends
// at most one heartbeat per 80% of it), and does nothing for an attempt
// scheduled without one, or outside an activity.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	timeout := activity.GetInfo(ctx).HeartbeatTimeout
	if timeout <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(max(timeout/4, 50*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
