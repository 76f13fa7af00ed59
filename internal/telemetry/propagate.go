package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
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
// it is built (otelgin, otelhttp): built before SetupTracing or a test's
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
	return deferredTracer{get: p.get, name: name, opts: opts}
}

type deferredTracer struct {
	embedded.Tracer
	get  func() trace.TracerProvider
	name string
	opts []trace.TracerOption
}

func (t deferredTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return t.get().Tracer(t.name, t.opts...).Start(ctx, name, opts...)
}
