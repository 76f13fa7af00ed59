package outbound_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/outbound"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

func TestNewHTTPClient_traces_the_call_in_the_callers_trace(t *testing.T) {
	rec := testenv.RecordSpans(t)
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("traceparent")
	}))
	defer srv.Close()
	c := outbound.NewHTTPClient("payment", 5*time.Second)
	defer c.CloseIdleConnections()
	if c.Timeout != 5*time.Second {
		t.Fatalf("timeout = %s, want 5s", c.Timeout)
	}
	ctx, parent := otel.Tracer("test").Start(t.Context(), "activity")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/charges", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	parent.End()
	spans := testenv.SpansNamed(rec, "payment POST")
	if len(spans) != 1 {
		t.Fatalf("%d spans named %q, want 1", len(spans), "payment POST")
	}
	s := spans[0]
	if s.SpanKind() != trace.SpanKindClient || s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("span kind %v parent %v, want a client span, child of the caller's", s.SpanKind(), s.Parent().SpanID())
	}
	if want := "00-" + s.SpanContext().TraceID().String() + "-" + s.SpanContext().SpanID().String() + "-01"; got != want {
		t.Fatalf("traceparent sent = %q, want %q", got, want)
	}
}
