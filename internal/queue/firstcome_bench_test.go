package queue_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// BenchmarkAsk is the coupon request's Redis script, parallel (as a burst
// is), without and with a sampled trace context to keep: the cost of
// keeping it is one HSET of 55 bytes in the same script.
func BenchmarkAsk(b *testing.B) {
	testenv.RecordSpans(b)
	traced, span := otel.Tracer("bench").Start(context.Background(), "request")
	defer span.End()
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{{"untraced", context.Background()}, {"traced", traced}} {
		b.Run(bc.name, func(b *testing.B) {
			now, err := rdb.Client.Time(context.Background()).Result()
			if err != nil {
				b.Fatal(err)
			}
			c := queue.Campaign{Tenant: "bench", ID: fmt.Sprintf("b%d", time.Now().UnixNano()), Stock: 1 << 30, StartsAt: now.Add(-time.Second), EndsAt: now.Add(time.Hour)}
			if err := rdb.OpenCampaign(context.Background(), c); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = rdb.DeleteCampaign(context.Background(), c.Tenant, c.ID) }()
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := rdb.Ask(bc.ctx, c.Tenant, c.ID, fmt.Sprintf("u%d", n.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
