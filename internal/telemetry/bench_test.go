package telemetry_test

import (
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/telemetry"
)

// What the coupon hot path pays per answered request (a counter and, when
// accepted, the campaign's watch time), from many goroutines at once.
func BenchmarkCouponRequested(b *testing.B) {
	m, err := telemetry.NewMetrics()
	if err != nil {
		b.Fatal(err)
	}
	c := telemetry.NewCouponMetrics(m, nil, time.Hour)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Requested("acme", "5f0c8a4e-9a43-4f3b-9a55-0d2c6f1e7b10", "accepted")
		}
	})
}

// What the ingest pays per acked message.
func BenchmarkBusHandedOver(b *testing.B) {
	m, err := telemetry.NewMetrics()
	if err != nil {
		b.Fatal(err)
	}
	bus := telemetry.NewBusMetrics(m)
	at := time.Now()
	for b.Loop() {
		bus.HandedOver(at)
	}
}
