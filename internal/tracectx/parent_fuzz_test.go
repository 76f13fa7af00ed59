package tracectx

import (
	"context"
	"encoding/hex"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// byPropagator is what Carrier.SpanContext was before it decoded by hand:
// the traceparent through the W3C propagator, kept only if the propagator
// renders it back the same (version 00, lowercase, flags it keeps), and the
// tracestate through the propagator too.
func byPropagator(c Carrier) trace.SpanContext {
	h := c.TraceParent
	if len(h) != MaxTraceParent || !printable(h) {
		return trace.SpanContext{}
	}
	sc := trace.SpanContextFromContext(w3c.Extract(context.Background(), propagation.MapCarrier{"traceparent": h}))
	if !sc.IsValid() || h != "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-"+hex.EncodeToString([]byte{byte(sc.TraceFlags())}) {
		return trace.SpanContext{}
	}
	m := propagation.MapCarrier{"traceparent": h}
	if c.TraceState != "" && len(c.TraceState) <= MaxTraceState && printable(c.TraceState) {
		m["tracestate"] = c.TraceState
	}
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), m))
}

// The hand decoder reads exactly what the propagator accepts, to the same
// span context, and Capture renders what the propagator injects.
func FuzzParent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-04",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00",
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
		"",
	} {
		f.Add(s, "vendor=abc")
		f.Add(s, "")
		f.Add(s, "UPPER=x")
	}
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		c := Carrier{TraceParent: traceparent, TraceState: tracestate}
		got, want := c.SpanContext(), byPropagator(c)
		if !got.Equal(want) || got.IsRemote() != want.IsRemote() {
			t.Fatalf("%q %q: decoded %+v, the propagator %+v", traceparent, tracestate, got, want)
		}
		if validParent(traceparent) != want.IsValid() {
			t.Fatalf("%q: validParent %v, the propagator %v", traceparent, validParent(traceparent), want.IsValid())
		}
		if !want.IsValid() {
			return
		}
		m := propagation.MapCarrier{}
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), want)
		w3c.Inject(ctx, m)
		if captured := Capture(ctx); captured.TraceParent != m["traceparent"] {
			t.Fatalf("Capture rendered %q, the propagator %q", captured.TraceParent, m["traceparent"])
		}
	})
}
