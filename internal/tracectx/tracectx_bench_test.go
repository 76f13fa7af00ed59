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
