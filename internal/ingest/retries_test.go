package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A session's retries count the consecutive transient failures across its
// batches (they set the backoff) until a batch is handed over, and count
// every failure in the Consumer's stats; a batch whose ctx ended gives up.
func TestRetries_count_per_session_until_a_batch_is_handed_over(t *testing.T) {
	c := &Consumer{log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{MaxBackoff: time.Second}}
	r := &retries{c: c}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // wait gives up at once instead of sleeping
	r.batch(ctx, 3)
	for want := 1; want <= 2; want++ {
		if err := r.wait(errors.New("connection refused")); !errors.Is(err, context.Canceled) {
			t.Fatalf("wait = %v, want the batch's context error", err)
		}
		if r.failed != want {
			t.Fatalf("failed = %d after %d waits", r.failed, want)
		}
	}
	r.batch(ctx, 5) // the next batch of the same session keeps the count
	_ = r.wait(errors.New("timeout"))
	if r.failed != 3 || c.Stats().Failures != 3 {
		t.Fatalf("failed = %d, stats = %+v; want 3 and 3", r.failed, c.Stats())
	}
	r.reset()
	if r.failed != 0 || c.Stats().Failures != 3 {
		t.Fatalf("after reset: failed = %d, stats = %+v; want 0 and the stats kept", r.failed, c.Stats())
	}
}
