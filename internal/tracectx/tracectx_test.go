package tracectx_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// incoming is ctx after the global propagator read headers, as a server's
// middleware does.
func incoming(traceparent, tracestate string) context.Context {
	h := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		h["tracestate"] = tracestate
	}
	return otel.GetTextMapPropagator().Extract(context.Background(), h)
}

func TestCapture_round_trip(t *testing.T) {
	testenv.RecordSpans(t)
	ctx, span := otel.Tracer("test").Start(incoming(parent, "congo=t61rcWkgMzE"), "request")
	defer span.End()
	c := tracectx.Capture(ctx)
	if !strings.HasPrefix(c.TraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || c.TraceParent == parent {
		t.Fatalf("traceparent = %q, want the request span's, in the caller's trace", c.TraceParent)
	}
	if c.TraceState != "congo=t61rcWkgMzE" {
		t.Fatalf("tracestate = %q", c.TraceState)
	}
	sc := c.SpanContext()
	if sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() || !sc.IsRemote() {
		t.Fatalf("span context = %v, want the request span's, remote", sc)
	}
	_, child := otel.Tracer("test").Start(c.Context(context.Background()), "later")
	defer child.End()
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatal("a span started from the carrier's context is not in the request's trace")
	}
}

func TestCapture_nothing_without_a_span(t *testing.T) {
	testenv.RecordSpans(t)
	if c := tracectx.Capture(context.Background()); !c.Empty() {
		t.Fatalf("carrier = %+v, want empty", c)
	}
}

func TestCapture_hostile_headers_never_get_through(t *testing.T) {
	testenv.RecordSpans(t)
	huge := strings.Repeat("a", 1<<20)
	for _, tc := range []struct{ name, traceparent, tracestate string }{
		{"huge", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + huge, ""},
		{"nul", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00", ""},
		{"control", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba\n02b7-01", ""},
		{"version_ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"zero_trace_id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"zero_span_id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""},
		{"upper_case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", ""},
		{"invalid_utf8", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\xff\xfe", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, span := otel.Tracer("test").Start(incoming(tc.traceparent, tc.tracestate), "request")
			defer span.End()
			if span.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Fatal("the hostile header was continued")
			}
			c := tracectx.Capture(ctx)
			if len(c.TraceParent) != tracectx.MaxTraceParent || !strings.HasPrefix(c.TraceParent, "00-"+span.SpanContext().TraceID().String()) {
				t.Fatalf("traceparent = %q, want the fresh root's", c.TraceParent)
			}
		})
	}
	t.Run("huge_tracestate", func(t *testing.T) {
		ctx, span := otel.Tracer("test").Start(incoming(parent, "k="+strings.Repeat("v", 250)+",j="+strings.Repeat("w", 250)+",i="+strings.Repeat("x", 250)), "request")
		defer span.End()
		if c := tracectx.Capture(ctx); c.TraceState != "" || c.TraceParent == "" {
			t.Fatalf("carrier = %+v, want the traceparent and no tracestate (over %d bytes)", c, tracectx.MaxTraceState)
		}
	})
}

func TestClean_refuses_what_a_store_may_hold(t *testing.T) {
	testenv.RecordSpans(t)
	for _, tc := range []struct {
		name string
		in   tracectx.Carrier
		want tracectx.Carrier
	}{
		{"valid", tracectx.Carrier{TraceParent: parent, TraceState: "a=b"}, tracectx.Carrier{TraceParent: parent, TraceState: "a=b"}},
		{"later_version", tracectx.Carrier{TraceParent: "01" + parent[2:] + "-what"}, tracectx.Carrier{}},
		{"too_long", tracectx.Carrier{TraceParent: parent + "0"}, tracectx.Carrier{}},
		{"nul_in_state", tracectx.Carrier{TraceParent: parent, TraceState: "a=\x00"}, tracectx.Carrier{TraceParent: parent}},
		{"huge_state", tracectx.Carrier{TraceParent: parent, TraceState: "a=" + strings.Repeat("b", tracectx.MaxTraceState)}, tracectx.Carrier{TraceParent: parent}},
		{"upper_case", tracectx.Carrier{TraceParent: strings.ToUpper(parent)}, tracectx.Carrier{}},
		{"zero_ids", tracectx.Carrier{TraceParent: "00-00000000000000000000000000000000-0000000000000000-01"}, tracectx.Carrier{}},
		{"empty", tracectx.Carrier{}, tracectx.Carrier{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.Clean(); got != tc.want {
				t.Fatalf("Clean() = %+v, want %+v", got, tc.want)
			}
			ctx := tc.in.Context(context.Background())
			if valid := tc.in.SpanContext().IsValid(); valid != !tc.want.Empty() {
				t.Fatalf("SpanContext valid = %v, want %v", valid, !tc.want.Empty())
			}
			_ = ctx
		})
	}
}

func TestCaptureSampled_keeps_only_a_sampled_context(t *testing.T) {
	testenv.RecordSpans(t)
	sampled := incoming(parent, "")
	if c := tracectx.CaptureSampled(sampled); c.TraceParent != parent {
		t.Fatalf("sampled: %+v, want %s", c, parent)
	}
	unsampled := incoming(parent[:53]+"00", "")
	if c := tracectx.CaptureSampled(unsampled); !c.Empty() {
		t.Fatalf("unsampled: %+v, want empty", c)
	}
	if c := tracectx.Capture(unsampled); c.TraceParent != parent[:53]+"00" {
		t.Fatalf("Capture of the unsampled context: %+v, want it kept", c)
	}
}
