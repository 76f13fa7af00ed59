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

// Limits of what sagaflow accepts, stores and propagates of a W3C trace
// context (https://www.w3.org/TR/trace-context/). A traceparent of version
// 00 is exactly 55 characters; later versions may append fields, so up to
// MaxTraceparentLen is parsed. A tracestate longer than MaxTracestateLen
// (the length the specification asks every vendor to propagate at least)
// is dropped, the traceparent kept.
const (
	MaxTraceparentLen = 128
	MaxTracestateLen  = 512
)

// TraceContext is the W3C context of one span as it travels in a message
// header or a database row: the traceparent and the (optional) tracestate.
type TraceContext struct {
	Traceparent string `json:"traceparent,omitempty"`
	Tracestate  string `json:"tracestate,omitempty"`
}

// TraceContextOf is the W3C context of ctx's span; empty if ctx carries no
// valid span context. The fields are written by the propagator from the
// parsed span context, never copied from an incoming header.
func TraceContextOf(ctx context.Context) TraceContext {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return TraceContext{}
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	tc := TraceContext{Traceparent: c.Get("traceparent"), Tracestate: c.Get("tracestate")}
	if len(tc.Tracestate) > MaxTracestateLen {
		tc.Tracestate = ""
	}
	return tc
}

// SpanContext parses tc. A traceparent that is too long, holds a byte
// outside printable ASCII, or that the W3C rules refuse (bad version,
// uppercase or non-hex digits, all-zero ids, wrong length) gives an
// invalid span context: the caller starts a fresh root instead. A bad or
// too long tracestate is dropped on its own.
func (tc TraceContext) SpanContext() trace.SpanContext {
	if tc.Traceparent == "" || len(tc.Traceparent) > MaxTraceparentLen || !printable(tc.Traceparent, false) {
		return trace.SpanContext{}
	}
	c := propagation.MapCarrier{"traceparent": tc.Traceparent}
	if tc.Tracestate != "" && len(tc.Tracestate) <= MaxTracestateLen && printable(tc.Tracestate, true) {
		c["tracestate"] = tc.Tracestate
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c))
	if !sc.IsValid() {
		return trace.SpanContext{}
	}
	return sc
}

// Context is ctx with tc as its remote parent, or ctx unchanged when tc is
// not a valid trace context (see SpanContext).
func (tc TraceContext) Context(ctx context.Context) context.Context {
	if sc := tc.SpanContext(); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

// printable reports whether s is printable ASCII (spaces and tabs allowed
// when ows: the optional white space of a tracestate list).
func printable(s string, ows bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c == ' ' || c == '\t') && ows {
			continue
		}
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

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
