package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

func TestTracedContext_continues_a_valid_header_and_no_hostile_one(t *testing.T) {
	testenv.RecordSpans(t)
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name, traceparent string
		continued         bool
	}{
		{"valid", valid, true},
		{"huge", valid + strings.Repeat("-x", 1<<15), false},
		{"nul", valid[:54] + "\x00", false},
		{"control", valid[:20] + "\r" + valid[21:], false},
		{"version_ff", "ff" + valid[2:], false},
		{"zero_trace_id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero_parent_id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"none", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := gin.CreateTestContext(httptest.NewRecorder())
			c.Request = httptest.NewRequest("POST", "/v1/meetings/x/join", nil)
			c.Request.Header["Traceparent"] = []string{tc.traceparent}
			c.Request.Header["Tracestate"] = []string{"a=\x00b"}
			sc := trace.SpanContextFromContext(tracedContext(c))
			if sc.IsValid() != tc.continued {
				t.Fatalf("continued = %v, want %v", sc.IsValid(), tc.continued)
			}
			if tc.continued && (sc.TraceID().String() != valid[3:35] || sc.TraceState().Len() != 0) {
				t.Fatalf("span context %v, want the header's trace with no tracestate", sc)
			}
		})
	}
	t.Run("middleware_span_wins", func(t *testing.T) {
		ctx, span := otel.Tracer("test").Start(t.Context(), "server")
		defer span.End()
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequestWithContext(ctx, "POST", "/v1/meetings/x/join", nil)
		c.Request.Header.Set("traceparent", valid)
		if got := trace.SpanContextFromContext(tracedContext(c)); got.SpanID() != span.SpanContext().SpanID() {
			t.Fatalf("span %v, want the middleware's server span", got.SpanID())
		}
	})
}
