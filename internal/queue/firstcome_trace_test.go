package queue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

func TestAsk_keeps_the_requests_trace_until_issued(t *testing.T) {
	testenv.RecordSpans(t)
	ctx := context.Background()
	c := campaign(t, 10, -time.Second, time.Hour)
	traced, span := otel.Tracer("test").Start(ctx, "POST coupon request")
	span.End()
	for i, rctx := range []context.Context{traced, ctx, traced} {
		if a, err := rdb.Ask(rctx, c.Tenant, c.ID, fmt.Sprintf("u%d", i)); err != nil || a.Rank != int64(i+1) {
			t.Fatalf("Ask = %+v, %v", a, err)
		}
	}
	// A duplicate keeps what the first request left.
	if _, err := rdb.Ask(ctx, c.Tenant, c.ID, "u0"); err != nil {
		t.Fatal(err)
	}
	pending, err := rdb.Pending(ctx, c.Tenant, c.ID, 10)
	if err != nil || len(pending) != 3 {
		t.Fatalf("pending = %+v, %v", pending, err)
	}
	want := tracectx.Capture(traced)
	if pending[0].Trace != want || !pending[1].Trace.Empty() || pending[2].Trace != want {
		t.Fatalf("pending traces = %+v, want the request's %q for u0 and u2, none for u1", pending, want.TraceParent)
	}
	if err := rdb.Issued(ctx, c.Tenant, c.ID, []string{"u0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.SetAside(ctx, c.Tenant, c.ID, []coupon.SetAside{{User: "u2", Rank: 3, Reason: "test"}}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Client.HLen(ctx, traceKey(c.Tenant, c.ID)).Val(); n != 0 {
		t.Fatalf("%d trace contexts left after the requests were issued or set aside, want 0", n)
	}
	// Every key of the campaign shares its hash tag (one cluster slot).
	// SCAN, not KEYS: the test Redis is the stack's, which may hold
	// millions of keys (the benchmarks' dedupe marks), and one KEYS over
	// them outlasts the client's read timeout.
	var keys []string
	it := rdb.Client.Scan(ctx, 0, rdb.Prefix()+"campaign:*"+c.ID+"*", 10000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil || len(keys) == 0 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	for _, k := range keys {
		if !strings.Contains(k, "{"+c.Tenant+":"+c.ID+"}") {
			t.Fatalf("key %s is outside the campaign's hash tag", k)
		}
	}
}

func traceKey(tenant, id string) string {
	return rdb.Prefix() + "campaign:{" + tenant + ":" + id + "}:trace"
}

func TestAsk_stores_no_hostile_trace_context(t *testing.T) {
	testenv.RecordSpans(t)
	ctx := context.Background()
	c := campaign(t, 10, -time.Second, time.Hour)
	for i, h := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + strings.Repeat("x", 1<<16),
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-0000000000000000-01",
	} {
		// What a server's middleware makes of the header.
		rctx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{"traceparent": h})
		if _, err := rdb.Ask(rctx, c.Tenant, c.ID, fmt.Sprintf("u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := rdb.Client.HLen(ctx, traceKey(c.Tenant, c.ID)).Val(); n != 0 {
		t.Fatalf("%d hostile trace contexts stored, want 0", n)
	}
	// Whatever else wrote to Redis, the issuer gets it checked.
	rdb.Client.HSet(ctx, traceKey(c.Tenant, c.ID), "u0", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	pending, err := rdb.Pending(ctx, c.Tenant, c.ID, 1)
	if err != nil || len(pending) != 1 || !pending[0].Trace.Clean().Empty() {
		t.Fatalf("pending = %+v, %v; want u0 with a trace context that does not pass Clean", pending, err)
	}
}

func TestPending_reads_large_batches(t *testing.T) {
	ctx := context.Background()
	const n = 1100 // over the script's HMGET chunk
	c := campaign(t, n, -time.Second, time.Hour)
	pipe := rdb.Client.Pipeline()
	for i := range n {
		pipe.ZAdd(ctx, rdb.Prefix()+"campaign:{"+c.Tenant+":"+c.ID+"}:queue", redisZ(i))
	}
	pipe.HSet(ctx, traceKey(c.Tenant, c.ID), "u1099", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	pending, err := rdb.Pending(ctx, c.Tenant, c.ID, n)
	if err != nil || len(pending) != n {
		t.Fatalf("pending = %d entries, %v; want %d", len(pending), err, n)
	}
	for i, e := range pending {
		if e.User != fmt.Sprintf("u%d", i) || e.Rank != int64(i+1) || e.Trace.Empty() != (i != n-1) {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
}

func redisZ(i int) redis.Z { return redis.Z{Score: float64(i + 1), Member: fmt.Sprintf("u%d", i)} }
