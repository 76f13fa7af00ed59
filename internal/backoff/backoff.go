// Package backoff is the wait between retries of the background loops that
// must not give up (the outbox relay, the ingest consumer, the workflow
// starter): exponential, capped, and cut short when the loop is stopped.
package backoff

import (
	"context"
	"time"
)

// Exp is the wait after the attempt-th failure in a row (counted from 1):
// base doubled attempt-1 times, at most limit.
func Exp(attempt int, base, limit time.Duration) time.Duration {
	return min(base<<min(max(attempt-1, 0), 16), limit)
}

// Sleep waits d, or until ctx ends; it reports whether it waited all of d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
