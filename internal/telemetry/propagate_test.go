package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sagaflow/sagaflow/internal/tracectx"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
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
