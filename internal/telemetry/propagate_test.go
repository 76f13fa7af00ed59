package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	goodTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	goodParent = "00-" + goodTrace + "-00f067aa0ba902b7-01"
)

func TestTraceContext_refuses_hostile_traceparents(t *testing.T) {
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
		"too_long_future_v": "01-" + goodTrace + "-00f067aa0ba902b7-01-" + strings.Repeat("a", MaxTraceparentLen),
	}
	for name, tp := range bad {
		t.Run(name, func(t *testing.T) {
			tc := TraceContext{Traceparent: tp, Tracestate: "a=b"}
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

func TestTraceContext_accepts_valid_and_drops_a_bad_tracestate(t *testing.T) {
	sc := TraceContext{Traceparent: goodParent, Tracestate: "vendor=abc"}.SpanContext()
	if !sc.IsValid() || sc.TraceID().String() != goodTrace || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("valid traceparent not parsed: %+v", sc)
	}
	if sc.TraceState().Get("vendor") != "abc" {
		t.Fatal("valid tracestate lost")
	}
	// A later version may append fields.
	if !(TraceContext{Traceparent: "01-" + goodTrace + "-00f067aa0ba902b7-01-ab"}).SpanContext().IsValid() {
		t.Fatal("a future version with an extra field is refused")
	}
	for name, ts := range map[string]string{
		"huge":    "a=" + strings.Repeat("b", 2000),
		"nul":     "a=b\x00",
		"control": "a=\x07",
		"bad_key": "UPPER=x",
	} {
		t.Run(name, func(t *testing.T) {
			sc := TraceContext{Traceparent: goodParent, Tracestate: ts}.SpanContext()
			if !sc.IsValid() {
				t.Fatal("a bad tracestate made the traceparent invalid")
			}
			if sc.TraceState().Len() != 0 {
				t.Fatalf("bad tracestate %q kept: %s", ts, sc.TraceState())
			}
		})
	}
}

func TestTraceContextOf_writes_from_the_parsed_context(t *testing.T) {
	if (TraceContextOf(context.Background()) != TraceContext{}) {
		t.Fatal("a context without a span has a trace context")
	}
	ctx := TraceContext{Traceparent: goodParent, Tracestate: "vendor=abc"}.Context(context.Background())
	if got := TraceContextOf(ctx); got.Traceparent != goodParent || got.Tracestate != "vendor=abc" {
		t.Fatalf("got %+v", got)
	}
}

func TestHTTPTransport_sends_traceparent_and_reports_to_the_provider_of_the_moment(t *testing.T) {
	restoreGlobals(t)
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("traceparent") }))
	defer srv.Close()
	client := &http.Client{Transport: HTTPTransport(http.DefaultTransport)} // built before the provider
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(Propagator())
	ctx := TraceContext{Traceparent: goodParent}.Context(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if sc := (TraceContext{Traceparent: got}).SpanContext(); !sc.IsValid() || sc.TraceID().String() != goodTrace {
		t.Fatalf("market got traceparent %q, want one of trace %s", got, goodTrace)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].SpanKind() != trace.SpanKindClient || spans[0].SpanContext().TraceID().String() != goodTrace {
		t.Fatalf("want one client span of trace %s, got %d", goodTrace, len(spans))
	}
}
