package testenv

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagaflow/sagaflow/internal/telemetry"
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
	recording.mu.Lock()
	recording.current = tp
	recording.mu.Unlock()
	otel.SetTracerProvider(switchProvider)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		recording.mu.Lock()
		if recording.current == tp {
			recording.current = nil
		}
		recording.mu.Unlock()
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
}

var recording struct {
	mu      sync.Mutex
	current *sdktrace.TracerProvider
}

// switchProvider starts each span with the current test's provider, or a
// no-op one between tests.
var switchProvider = telemetry.DeferredTracerProvider(func() trace.TracerProvider {
	recording.mu.Lock()
	defer recording.mu.Unlock()
	if recording.current == nil {
		return noop.NewTracerProvider()
	}
	return recording.current
})

// SpansOfTrace returns the ended spans of rec in trace id, in the order
// they ended.
func SpansOfTrace(rec *tracetest.SpanRecorder, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// SpansNamed returns the ended spans of rec called name.
func SpansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}
