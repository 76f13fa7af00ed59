package testenv

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

func TestRecordSpans_records_global_spans_and_restores_the_provider(t *testing.T) {
	before := otel.GetTracerProvider()
	t.Run("inner", func(t *testing.T) {
		rec := RecordSpans(t)
		ctx, span := otel.Tracer("test").Start(context.Background(), "outer")
		_, child := otel.Tracer("test").Start(ctx, "inner")
		child.End()
		span.End()
		ended := rec.Ended()
		if len(ended) != 2 || ended[0].Name() != "inner" || ended[1].Name() != "outer" {
			t.Fatalf("recorded %d spans, want inner then outer", len(ended))
		}
		if ended[0].Parent().SpanID() != ended[1].SpanContext().SpanID() {
			t.Fatal("inner is not a child of outer")
		}
		carrier := propagation.MapCarrier{}
		otel.GetTextMapPropagator().Inject(ctx, carrier)
		if carrier.Get("traceparent") == "" {
			t.Fatal("the W3C propagator is not installed")
		}
	})
	if otel.GetTracerProvider() != before {
		t.Fatal("the previous tracer provider was not restored")
	}
}

// A tracer taken before any test installed a provider (the global API's
// delegate) reports to each later test's recorder, not only the first.
func TestRecordSpans_reaches_tracers_taken_before(t *testing.T) {
	early := otel.Tracer("early")
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			rec := RecordSpans(t)
			_, span := early.Start(context.Background(), name)
			span.End()
			if ended := rec.Ended(); len(ended) != 1 || ended[0].Name() != name {
				t.Fatalf("recorded %d spans, want %q", len(ended), name)
			}
		})
	}
}
