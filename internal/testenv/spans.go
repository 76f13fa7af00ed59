package testenv

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// RecordSpans installs, for the rest of test t, a tracer provider that
// samples every span and keeps the ended ones in memory, as the global
// provider (with the W3C tracecontext and baggage propagator), and returns
// its recorder: rec.Ended() lists the spans ended so far. The previous
// provider and propagator come back when the test ends.
//
// The global provider it sets is one per process that passes each span to
// the provider of the test running now (none between tests: spans are then
// no-ops): instrumentation that took its tracer before (from the global
// API's delegate, which binds to the first provider ever set) still reports
// to the current test. Tests that call it change process-wide state: do not
// combine it with t.Parallel.
func RecordSpans(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	UseTracerProvider(t, tp)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec
}

// UseTracerProvider makes tp the provider every span of the process starts
// with, for the rest of t (or until the next call), through the same
// switching global provider as RecordSpans: a benchmark switches one
// running server between a provider that exports and one that does not.
// The caller shuts tp down; the previous global provider and propagator
// come back when t ends.
func UseTracerProvider(t testing.TB, tp *sdktrace.TracerProvider) {
	t.Helper()
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	recording.Store(tp)
	otel.SetTracerProvider(switchProvider{})
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		recording.CompareAndSwap(tp, nil)
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
}

// recording is the provider spans start with now (nil: no-op spans).
var recording atomic.Pointer[sdktrace.TracerProvider]

// switchProvider starts each span with the current test's provider, or a
// no-op one between tests.
type switchProvider struct{ embedded.TracerProvider }

func (switchProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return switchTracer{name: name, opts: opts}
}

type switchTracer struct {
	embedded.Tracer
	name string
	opts []trace.TracerOption
}

func (t switchTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	tp := recording.Load()
	if tp == nil {
		return noop.NewTracerProvider().Tracer(t.name).Start(ctx, name, opts...)
	}
	return tp.Tracer(t.name, t.opts...).Start(ctx, name, opts...)
}
