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
// parses what comes from outside with the W3C trace-context propagator
// itself, whatever the process's global propagator is, and renders and
// reads back its own version-00 form directly, as the propagator does.
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

// w3c parses the trace contexts that come from outside (Parse).
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
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return Carrier{}
	}
	c := Carrier{TraceParent: render(sc), TraceState: sc.TraceState().String()}
	if !stateOK(c.TraceState) {
		c.TraceState = ""
	}
	return c
}

// render is sc's version-00 traceparent as the W3C propagator renders it
// (the sampled and random flags kept, the others dropped), without the
// propagator's carrier map: Capture runs for every message and request.
func render(sc trace.SpanContext) string {
	var b [MaxTraceParent]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	return string(b[:])
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
	if tracestate != "" && stateOK(tracestate) {
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
	if !stateOK(c.TraceState) {
		c.TraceState = ""
	}
	return c
}

// Empty reports whether c carries no trace context.
func (c Carrier) Empty() bool { return c.TraceParent == "" }

// SpanContext is c's remote span context, or an invalid one if c is empty
// or not valid (see Clean).
func (c Carrier) SpanContext() trace.SpanContext {
	cfg, ok := parent00(c.TraceParent)
	if !ok {
		return trace.SpanContext{}
	}
	if c.TraceState != "" && stateOK(c.TraceState) {
		// As the propagator does: a tracestate that does not parse is
		// dropped, the traceparent kept.
		cfg.TraceState, _ = trace.ParseTraceState(c.TraceState)
	}
	return trace.NewSpanContext(cfg)
}

// Context returns ctx continuing c's trace: spans started from it are
// children of c's span. An empty or invalid c returns ctx as it is, so
// what is started from it is a new root (or a child of ctx's own span).
func (c Carrier) Context(ctx context.Context) context.Context {
	sc := c.SpanContext()
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// validParent reports whether h is a version-00 traceparent exactly as
// the W3C propagator renders it (https://www.w3.org/TR/trace-context/#traceparent-header):
// 55 bytes, lowercase hex, neither id all zeros, flags the propagator
// keeps. Anything else (another version, uppercase) is refused: what
// Capture stores always passes.
func validParent(h string) bool {
	_, ok := parent00(h)
	return ok
}

// parent00 reads h if it is a version-00 traceparent exactly as the W3C
// propagator renders one: "00-", 32 lowercase hex digits of a trace id that
// is not all zeros, "-", 16 of a span id that is not all zeros, "-", and
// flags 00 to 03 (the propagator refuses reserved bits in version 00). It
// decodes by hand: Context and SpanContext run for every item a sync
// workflow pushes, and going through the propagator (a carrier map, the
// parse, a rendering to compare) cost more than the rest of the link.
// FuzzParent holds it to the propagator.
func parent00(h string) (trace.SpanContextConfig, bool) {
	var cfg trace.SpanContextConfig
	if len(h) != MaxTraceParent || h[:3] != "00-" || h[35] != '-' || h[52] != '-' || h[53] != '0' || h[54] < '0' || h[54] > '3' {
		return cfg, false
	}
	if !lowerHexTo(cfg.TraceID[:], h[3:35]) || !lowerHexTo(cfg.SpanID[:], h[36:52]) || !cfg.TraceID.IsValid() || !cfg.SpanID.IsValid() {
		return cfg, false
	}
	cfg.TraceFlags = trace.TraceFlags(h[54] - '0')
	cfg.Remote = true
	return cfg, true
}

// lowerHexTo decodes s, 2 × len(dst) lowercase hex digits, into dst.
func lowerHexTo(dst []byte, s string) bool {
	for i := range dst {
		hi, ok1 := nibble(s[2*i])
		lo, ok2 := nibble(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func nibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// stateOK reports whether s may be kept as a tracestate: at most
// MaxTraceState bytes of printable ASCII (what the W3C rules then parse).
func stateOK(s string) bool { return len(s) <= MaxTraceState && printable(s) }

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
