package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// restoreGlobals puts back the global provider and propagator after t.
func restoreGlobals(t *testing.T) {
	tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTracerProvider(tp); otel.SetTextMapPropagator(prop) })
}

func TestSetupTracing_without_endpoint_records_nothing_but_propagates(t *testing.T) {
	restoreGlobals(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	shutdown, err := SetupTracing(context.Background(), "sagaflow-test", quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	ctx, span := otel.Tracer("t").Start(context.Background(), "root")
	defer span.End()
	if span.IsRecording() {
		t.Fatal("a span is recorded with no exporter configured")
	}
	if !span.SpanContext().IsValid() {
		t.Fatal("a root span has no trace id: the context would not flow")
	}
	c := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, c)
	if want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-00"; c.Get("traceparent") != want {
		t.Fatalf("traceparent %q, want %q", c.Get("traceparent"), want)
	}
	// An incoming context is continued (same trace id).
	in := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	_, child := otel.Tracer("t").Start(otel.GetTextMapPropagator().Extract(context.Background(), in), "child")
	defer child.End()
	if got := child.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("child trace id %s, want the incoming one", got)
	}
}

func TestSetupTracing_exports_over_otlp_http(t *testing.T) {
	restoreGlobals(t)
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" && r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	shutdown, err := SetupTracing(context.Background(), "sagaflow-test", quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("t").Start(context.Background(), "exported")
	if !span.IsRecording() {
		t.Fatal("span not recorded with an exporter configured")
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Fatal("shutdown did not flush the span to the OTLP endpoint")
	}
}

func TestTracingMode(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want TracingMode
	}{
		{map[string]string{}, TracingOff},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, TracingHTTP},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, TracingGRPC},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, TracingHTTP},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, TracingOff},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, TracingOff},
	} {
		if got := tracingMode(tt.env); got != tt.want {
			t.Errorf("tracingMode(%v) = %s, want %s", tt.env, got, tt.want)
		}
	}
}

func TestTraceHandler_adds_trace_and_span_ids(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "json", slog.LevelInfo).With("component", "x").WithGroup("g")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))

	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	log.InfoContext(context.Background(), "no span")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var traced map[string]any
	if err := json.Unmarshal(lines[0], &traced); err != nil {
		t.Fatal(err)
	}
	g, _ := traced["g"].(map[string]any)
	if g["trace_id"] != tid.String() || g["span_id"] != sid.String() {
		t.Fatalf("traced line lacks the ids: %s", lines[0])
	}
	for _, l := range lines[1:] {
		if bytes.Contains(l, []byte("trace_id")) {
			t.Fatalf("a line without a span got a trace id: %s", l)
		}
	}
}
