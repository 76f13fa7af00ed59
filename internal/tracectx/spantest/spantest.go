// Package spantest records the spans a test makes through the global
// OpenTelemetry API, for tests that assert how traces connect.
//
// OpenTelemetry's global tracer provider forwards the tracers handed out
// before it was set (the Temporal interceptor takes one when a client is
// dialled) to the first provider set, and to no later one; so a provider
// per test would miss those spans. Record installs one provider for the
// whole process, once, and hands each test its own recorder in turn.
package spantest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

var (
	install sync.Once
	current atomic.Pointer[tracetest.SpanRecorder]
	// mu makes the tests that record run one at a time: they share the
	// process's provider.
	mu sync.Mutex
)

// Record makes the process's global tracer provider a recording one (and
// the W3C trace-context propagator the global propagator), and returns a
// recorder that gets every span started until t ends. Tests that call it
// run one after the other (it waits for the previous one to end).
func Record(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	install.Do(func() {
		otel.SetTracerProvider(sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSpanProcessor(forward{}),
		))
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	})
	mu.Lock()
	rec := tracetest.NewSpanRecorder()
	current.Store(rec)
	t.Cleanup(func() {
		current.Store(nil)
		mu.Unlock()
	})
	return rec
}

// forward hands spans to the current test's recorder, if any.
type forward struct{}

func (forward) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	if r := current.Load(); r != nil {
		r.OnStart(ctx, s)
	}
}

func (forward) OnEnd(s sdktrace.ReadOnlySpan) {
	if r := current.Load(); r != nil {
		r.OnEnd(s)
	}
}

func (forward) Shutdown(context.Context) error   { return nil }
func (forward) ForceFlush(context.Context) error { return nil }

// Trace returns the ended spans of rec in trace id, in the order they ended.
func Trace(rec *tracetest.SpanRecorder, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// Named returns the ended spans of rec called name.
func Named(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}
