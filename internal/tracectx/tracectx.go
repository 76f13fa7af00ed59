// Package tracectx carries a W3C trace context (traceparent and tracestate)
// through the places sagaflow parks work between processes: a row of
// sagaflow.workflow_starts, an entry of a Redis first-come queue. A request
// records its context there; whoever picks the work up later continues it
// (the starter) or links to it (the coupon issuer), so one trace runs from
// the HTTP request to the calls the saga makes.
//
// It is also the one form of a W3C context in a message header or a row
// anywhere in sagaflow: the outbox row, the AMQP headers, the ingest's
// hand-over and the sync workflow's items carry a Carrier's fields. It
// renders and parses with the W3C trace-context propagator itself, whatever
// the process's global propagator is.
//
// What it stores is never the caller's header as it came: Capture writes
// the propagator's own rendering of a valid span context (so a huge header,
// NUL or control characters, a bad version or all-zero ids never get
// through), and Context and SpanContext check what they read again, as a
// row or a Redis entry may have been written by anything.
package tracectx

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// MaxTraceParent is the length of a version-00 traceparent, the only one
// Capture writes ("00-" 32 hex "-" 16 hex "-" 2 hex).
const MaxTraceParent = 55

// MaxTraceState bounds a stored tracestate, in bytes. W3C asks vendors to
// propagate at least 512 characters; a longer one is dropped whole (the
// traceparent is kept), so a stored value never exceeds this.
const MaxTraceState = 512

// MaxHeaderTraceParent bounds a traceparent Parse reads: a later version
// than 00 may append fields, a longer one is refused whole.
const MaxHeaderTraceParent = 128

// w3c renders and parses every Carrier.
var w3c = propagation.TraceContext{}

// Carrier is a stored trace context. The zero value carries none. Safe to
// copy; it holds only strings.
type Carrier struct {
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Capture is the trace context of ctx's span, rendered by the global
// propagator and checked (see Clean): empty when ctx has no valid span
// context or no W3C propagator is set.
func Capture(ctx context.Context) Carrier {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return Carrier{}
	}
	m := propagation.MapCarrier{}
	w3c.Inject(ctx, m)
	return Carrier{TraceParent: m["traceparent"], TraceState: m["tracestate"]}.Clean()
}

// Parse reads a trace context that came from outside (a message's
// headers): any version the W3C rules accept, up to MaxHeaderTraceParent
// bytes of printable ASCII, rendered again as version 00, with a tracestate
// the rules refuse dropped. Anything else is the zero Carrier: whoever
// continues it starts a new root.
func Parse(traceparent, tracestate string) Carrier {
	if traceparent == "" || len(traceparent) > MaxHeaderTraceParent || !printable(traceparent) {
		return Carrier{}
	}
	m := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" && len(tracestate) <= MaxTraceState && printable(tracestate) {
		m["tracestate"] = tracestate
	}
	sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), m))
	if !sc.IsValid() {
		return Carrier{}
	}
	return Capture(trace.ContextWithRemoteSpanContext(context.Background(), sc))
}

// CaptureSampled is Capture for a context that is only worth keeping when
// its span is recorded: empty unless ctx's span is sampled. A coupon
// request's context serves only as a link target, and a link to a span no
// one exported leads nowhere; so with tracing off (or the request not
// sampled) the hot path stores nothing.
func CaptureSampled(ctx context.Context) Carrier {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return Carrier{}
	}
	return Capture(ctx)
}

// Clean returns c if its traceparent is a valid version-00 traceparent
// (lowercase hex, no all-zero id), with a tracestate longer than
// MaxTraceState or holding bytes outside printable ASCII dropped; else the
// zero Carrier.
func (c Carrier) Clean() Carrier {
	if !validParent(c.TraceParent) {
		return Carrier{}
	}
	if len(c.TraceState) > MaxTraceState || !printable(c.TraceState) {
		c.TraceState = ""
	}
	return c
}

// Empty reports whether c carries no trace context.
func (c Carrier) Empty() bool { return c.TraceParent == "" }

// SpanContext is c's remote span context, or an invalid one if c is empty
// or not valid (see Clean).
func (c Carrier) SpanContext() trace.SpanContext {
	return trace.SpanContextFromContext(c.Context(context.Background()))
}

// Context returns ctx continuing c's trace: spans started from it are
// children of c's span. An empty or invalid c returns ctx as it is, so
// what is started from it is a new root (or a child of ctx's own span).
func (c Carrier) Context(ctx context.Context) context.Context {
	c = c.Clean()
	if c.Empty() {
		return ctx
	}
	m := propagation.MapCarrier{"traceparent": c.TraceParent}
	if c.TraceState != "" {
		m["tracestate"] = c.TraceState
	}
	return w3c.Extract(ctx, m)
}

// validParent reports whether h is a version-00 traceparent exactly as
// the W3C propagator renders it (https://www.w3.org/TR/trace-context/#traceparent-header):
// 55 bytes, lowercase hex, neither id all zeros, flags the propagator
// keeps. Anything else (another version, uppercase) is refused: what
// Capture stores always passes.
func validParent(h string) bool {
	if len(h) != MaxTraceParent || !printable(h) {
		return false
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": h}))
	if !sc.IsValid() {
		return false
	}
	return h == "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-"+hex.EncodeToString([]byte{byte(sc.TraceFlags())})
}

// printable reports whether s holds only printable ASCII (0x20-0x7e), which
// covers every valid tracestate.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
