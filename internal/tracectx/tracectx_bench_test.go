package tracectx_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// BenchmarkCapture is what a traced request spends rendering and checking
// its context before it is stored.
func BenchmarkCapture(b *testing.B) {
	testenv.RecordSpans(b)
	ctx, span := otel.Tracer("bench").Start(context.Background(), "request")
	defer span.End()
	b.ReportAllocs()
	for b.Loop() {
		if tracectx.CaptureSampled(ctx).Empty() {
			b.Fatal("nothing captured")
		}
	}
}

// BenchmarkSpanContext is what a push spends reading back one item's
// stored context to link to it.
func BenchmarkSpanContext(b *testing.B) {
	c := tracectx.Carrier{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "vendor=abc"}
	b.ReportAllocs()
	for b.Loop() {
		if !c.SpanContext().IsValid() {
			b.Fatal("not valid")
		}
	}
}
