package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/sagaflow/sagaflow/internal/tracectx"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

const (
	goodTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	goodParent = "00-" + goodTrace + "-00f067aa0ba902b7-01"
)

func TestHTTPTransport_sends_traceparent_and_reports_to_the_provider_of_the_moment(t *testing.T) {
	restoreGlobals(t)
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("traceparent") }))
	defer srv.Close()
	client := &http.Client{Transport: HTTPTransport(http.DefaultTransport)} // built before the provider
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(Propagator())
	ctx := tracectx.Carrier{TraceParent: goodParent}.Context(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if sc := (tracectx.Carrier{TraceParent: got}).SpanContext(); !sc.IsValid() || sc.TraceID().String() != goodTrace {
		t.Fatalf("market got traceparent %q, want one of trace %s", got, goodTrace)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].SpanKind() != trace.SpanKindClient || spans[0].SpanContext().TraceID().String() != goodTrace {
		t.Fatalf("want one client span of trace %s, got %d", goodTrace, len(spans))
	}
}

// A deferred tracer starts each span with the provider of the moment, SDK
// or not, even after it kept the tracer of an earlier SDK provider.
func TestDeferredTracerProvider_follows_the_provider_of_the_moment(t *testing.T) {
	recA, recB := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	a := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recA))
	b := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recB))
	var current trace.TracerProvider = a
	tr := DeferredTracerProvider(func() trace.TracerProvider { return current }).Tracer("test")
	start := func(name string) {
		_, span := tr.Start(context.Background(), name)
		span.End()
	}
	start("a1")
	start("a2")
	current = b
	start("b1")
	current = noop.NewTracerProvider()
	start("nowhere")
	current = a
	start("a3")
	names := func(rec *tracetest.SpanRecorder) (out []string) {
		for _, s := range rec.Ended() {
			out = append(out, s.Name())
		}
		return out
	}
	if got := names(recA); !slices.Equal(got, []string{"a1", "a2", "a3"}) {
		t.Errorf("provider a recorded %v", got)
	}
	if got := names(recB); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("provider b recorded %v", got)
	}
}
