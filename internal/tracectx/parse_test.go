package tracectx_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/tracectx"
)

const (
	goodTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	goodParent = "00-" + goodTrace + "-00f067aa0ba902b7-01"
)

func TestParse_refuses_hostile_traceparents(t *testing.T) {
	bad := map[string]string{
		"huge":              goodParent + "-" + strings.Repeat("a", 10000),
		"nul":               "00-" + goodTrace + "-00f067aa0ba902b7-0\x00",
		"nul_inside":        "00-4bf92f3577b34da6\x003ce929d0e0e4736-00f067aa0ba902b7-01",
		"newline":           "00-" + goodTrace + "-00f067aa0ba902b7-01\n",
		"control":           "00-" + goodTrace + "\x1b00f067aa0ba902b7-01",
		"version_ff":        "ff-" + goodTrace + "-00f067aa0ba902b7-01",
		"version_not_hex":   "zz-" + goodTrace + "-00f067aa0ba902b7-01",
		"v00_with_suffix":   goodParent + "-extra",
		"zero_trace_id":     "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01",
		"zero_parent_id":    "00-" + goodTrace + "-" + strings.Repeat("0", 16) + "-01",
		"uppercase":         "00-" + strings.ToUpper(goodTrace) + "-00f067aa0ba902b7-01",
		"short":             "00-" + goodTrace[:31] + "-00f067aa0ba902b7-01",
		"garbage":           "my trace",
		"invalid_utf8":      "00-" + goodTrace + "-00f067aa0ba902b7-\xff\xfe",
		"spaces":            " 00-" + goodTrace + "-00f067aa0ba902b7-01",
		"empty":             "",
		"too_long_future_v": "01-" + goodTrace + "-00f067aa0ba902b7-01-" + strings.Repeat("a", tracectx.MaxHeaderTraceParent),
	}
	for name, tp := range bad {
		t.Run(name, func(t *testing.T) {
			tc := tracectx.Parse(tp, "a=b")
			if sc := tc.SpanContext(); sc.IsValid() {
				t.Fatalf("accepted %q as %s", tp, sc.TraceID())
			}
			ctx := tc.Context(context.Background())
			if trace.SpanContextFromContext(ctx).IsValid() {
				t.Fatal("Context made the refused traceparent the parent")
			}
		})
	}
}

func TestParse_accepts_valid_and_drops_a_bad_tracestate(t *testing.T) {
	sc := tracectx.Parse(goodParent, "vendor=abc").SpanContext()
	if !sc.IsValid() || sc.TraceID().String() != goodTrace || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("valid traceparent not parsed: %+v", sc)
	}
	if sc.TraceState().Get("vendor") != "abc" {
		t.Fatal("valid tracestate lost")
	}
	// A later version may append fields.
	if !tracectx.Parse("01-"+goodTrace+"-00f067aa0ba902b7-01-ab", "").SpanContext().IsValid() {
		t.Fatal("a future version with an extra field is refused")
	}
	for name, ts := range map[string]string{
		"huge":    "a=" + strings.Repeat("b", 2000),
		"nul":     "a=b\x00",
		"control": "a=\x07",
		"bad_key": "UPPER=x",
	} {
		t.Run(name, func(t *testing.T) {
			sc := tracectx.Parse(goodParent, ts).SpanContext()
			if !sc.IsValid() {
				t.Fatal("a bad tracestate made the traceparent invalid")
			}
			if sc.TraceState().Len() != 0 {
				t.Fatalf("bad tracestate %q kept: %s", ts, sc.TraceState())
			}
		})
	}
}

func TestParse_renders_what_it_accepts_as_version_00(t *testing.T) {
	if c := tracectx.Parse("01-"+goodTrace+"-00f067aa0ba902b7-01-ab", "vendor=abc"); c.TraceParent != goodParent || c.TraceState != "vendor=abc" {
		t.Fatalf("got %+v, want the version-00 rendering with its tracestate", c)
	}
}
