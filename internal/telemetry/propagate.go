package telemetry

import (
	"context"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// HTTPTransport wraps base with otelhttp: each request is a CLIENT span
// ("HTTP POST" …) of the caller's context, and carries its traceparent to
// the server. Spans go to the global provider of the moment
// (LateTracerProvider).
func HTTPTransport(base http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(base, otelhttp.WithTracerProvider(LateTracerProvider()), otelhttp.WithPropagators(lateProp{}))
}

// lateProp is the global propagator looked up at each use.
type lateProp struct{}

func (lateProp) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	otel.GetTextMapPropagator().Inject(ctx, c)
}

func (lateProp) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, c)
}

func (lateProp) Fields() []string { return otel.GetTextMapPropagator().Fields() }

// LateTracerProvider is a tracer provider that looks the global provider up
// each time a span starts, for instrumentation that takes its tracer when
// it is built (the API's traced, otelhttp): built before SetupTracing or a test's
// testenv.RecordSpans, it still reports to the provider set later.
func LateTracerProvider() trace.TracerProvider { return DeferredTracerProvider(otel.GetTracerProvider) }

// DeferredTracerProvider is a tracer provider whose tracers start each span
// with the provider get returns at that moment.
func DeferredTracerProvider(get func() trace.TracerProvider) trace.TracerProvider {
	return deferredProvider{get: get}
}

type deferredProvider struct {
	embedded.TracerProvider
	get func() trace.TracerProvider
}

func (p deferredProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return deferredTracer{get: p.get, name: name, opts: opts, last: new(atomic.Pointer[sdkTracer])}
}

type deferredTracer struct {
	embedded.Tracer
	get  func() trace.TracerProvider
	name string
	opts []trace.TracerOption
	// last is the tracer of the SDK provider get returned last: the SDK's
	// Tracer takes a lock and builds its config on every call, which was a
	// third of what starting a server span cost.
	last *atomic.Pointer[sdkTracer]
}

type sdkTracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
}

func (t deferredTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return t.tracer().Start(ctx, name, opts...)
}

// tracer is the tracer of the provider get returns now, the one of last
// time if it is the same SDK provider.
func (t deferredTracer) tracer() trace.Tracer {
	p := t.get()
	sdk, ok := p.(*sdktrace.TracerProvider)
	if !ok { // another provider (a test's): no cache
		return p.Tracer(t.name, t.opts...)
	}
	if c := t.last.Load(); c != nil && c.provider == sdk {
		return c.tracer
	}
	tr := sdk.Tracer(t.name, t.opts...)
	t.last.Store(&sdkTracer{provider: sdk, tracer: tr})
	return tr
}
