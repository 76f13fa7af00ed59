package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// serverSpans serves one request through traced() on a route that answers
// status, and returns the spans it recorded.
func serverSpans(t *testing.T, method, target, traceparent string, status int) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := testenv.RecordSpans(t)
	r := gin.New()
	r.Use(traced())
	answer := func(c *gin.Context) { c.Status(status) }
	r.Handle(http.MethodPost, "/v1/campaigns/:id/requests", answer)
	r.GET("/healthz", answer)
	r.GET("/readyz", answer)
	r.GET("/metrics", answer)
	req := httptest.NewRequest(method, target, strings.NewReader("{}"))
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	r.ServeHTTP(httptest.NewRecorder(), req)
	return rec.Ended()
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestTraced_a_server_span_per_request_with_the_required_attributes(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	spans := serverSpans(t, http.MethodPost, "/v1/campaigns/c1/requests", parent, http.StatusAccepted)
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "POST /v1/campaigns/:id/requests" || s.SpanKind() != trace.SpanKindServer {
		t.Fatalf("span %q kind %s", s.Name(), s.SpanKind())
	}
	if s.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" || !s.Parent().IsRemote() {
		t.Fatalf("parent %+v: the caller's traceparent was not continued", s.Parent())
	}
	want := map[attribute.Key]attribute.Value{
		"http.request.method":       attribute.StringValue("POST"),
		"url.scheme":                attribute.StringValue("http"),
		"url.path":                  attribute.StringValue("/v1/campaigns/c1/requests"),
		"http.route":                attribute.StringValue("/v1/campaigns/:id/requests"),
		"http.response.status_code": attribute.IntValue(http.StatusAccepted),
	}
	got := attrs(s)
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k].String(), v.String())
		}
	}
	if s.Status().Code == codes.Error {
		t.Errorf("a 202 has status %v", s.Status())
	}
}

func TestTraced_a_5xx_is_an_error_and_a_4xx_is_not(t *testing.T) {
	s := serverSpans(t, http.MethodPost, "/v1/campaigns/c1/requests", "", http.StatusServiceUnavailable)[0]
	if s.Status().Code != codes.Error || attrs(s)["error.type"] != attribute.StringValue("503") {
		t.Fatalf("503: status %v, error.type %v", s.Status(), attrs(s)["error.type"].String())
	}
	s = serverSpans(t, http.MethodPost, "/v1/campaigns/c1/requests", "", http.StatusConflict)[0]
	if _, ok := attrs(s)["error.type"]; ok || s.Status().Code == codes.Error {
		t.Fatalf("409: status %v, error.type %v: a client's mistake is not the server's error", s.Status(), attrs(s)["error.type"].String())
	}
}

func TestTraced_a_hostile_traceparent_starts_a_new_trace(t *testing.T) {
	for name, tp := range map[string]string{
		"nul":       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\x00",
		"zero":      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"garbage":   "my trace",
		"huge":      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("a", 8000),
		"uppercase": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
	} {
		t.Run(name, func(t *testing.T) {
			spans := serverSpans(t, http.MethodPost, "/v1/campaigns/c1/requests", tp, http.StatusAccepted)
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			if spans[0].Parent().IsValid() || !spans[0].SpanContext().IsValid() {
				t.Fatalf("parent %+v: want a new root", spans[0].Parent())
			}
		})
	}
}

func TestTraced_probes_metrics_and_unknown_routes(t *testing.T) {
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if spans := serverSpans(t, http.MethodGet, path, "", http.StatusOK); len(spans) != 0 {
			t.Errorf("%s: %d spans, want none", path, len(spans))
		}
	}
	spans := serverSpans(t, http.MethodGet, "/nowhere/"+strings.Repeat("x", 100), "", http.StatusOK)
	if len(spans) != 1 || spans[0].Name() != "GET" {
		t.Fatalf("unknown route: %d spans (%v), want one named after the method only", len(spans), spans)
	}
	if _, ok := attrs(spans[0])["http.route"]; ok {
		t.Error("an unknown route has an http.route")
	}
}
