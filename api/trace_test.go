package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// envelopeOf builds the envelope the store writes for p (internal/store's
// enqueueChange), so the tests can check it as the ingest will.
func envelopeOf(t *testing.T, tenantName string, p catalog.Product, traceID string) []byte {
	t.Helper()
	p.Version = 1
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(catalog.Envelope{MessageID: uuid.NewString(), TenantID: tenantName, Type: catalog.TypeProductChanged,
		OccurredAt: time.Now().UTC(), TraceID: traceID, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isW3CTraceID(s string) bool { return len(s) == 32 && lowerHex(s) && !allZeros(s) }

// The case: X-Request-Id "my trace" was the envelope's trace id,
// which the ingest refused after the product had committed.
func TestPutProduct_trace_id_is_a_W3C_trace_id_the_bus_accepts(t *testing.T) {
	t.Parallel()
	const parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name    string
		headers map[string]string
		want    string // "" for any fresh W3C trace id
	}{
		{"request_id_with_space", map[string]string{"X-Request-Id": "my trace"}, ""},
		{"request_id_with_nul", map[string]string{"X-Request-Id": "a\x00b"}, ""},
		{"request_id_valid_is_still_not_the_trace", map[string]string{"X-Request-Id": "req-1"}, ""},
		{"traceparent", map[string]string{"Traceparent": "00-" + parentTrace + "-00f067aa0ba902b7-01", "X-Request-Id": "my trace"}, parentTrace},
		{"traceparent_uppercase_is_invalid", map[string]string{"Traceparent": "00-" + strings.ToUpper(parentTrace) + "-00f067aa0ba902b7-01"}, ""},
		{"traceparent_zero_trace_is_invalid", map[string]string{"Traceparent": "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01"}, ""},
		{"traceparent_version_ff_is_invalid", map[string]string{"Traceparent": "ff-" + parentTrace + "-00f067aa0ba902b7-01"}, ""},
		{"traceparent_garbage", map[string]string{"Traceparent": "my trace"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, s, _ := newEdgeHandler(t)
			rec, _ := edgeRequest(h, http.MethodPut, "/v1/products/SKU-1", okProduct, tt.headers)
			if rec.Code != http.StatusCreated {
				t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
			}
			s.mu.Lock()
			got, p := s.traceIDs[0], s.products[0]
			s.mu.Unlock()
			if !isW3CTraceID(got) || (tt.want != "" && got != tt.want) || got == tt.headers["X-Request-Id"] {
				t.Fatalf("trace id %q, want a W3C trace id %q", got, tt.want)
			}
			if _, _, err := catalog.ParseChange(envelopeOf(t, "demo", p, got), catalog.RoutingKey("demo")); err != nil {
				t.Fatalf("the ingest would dead-letter what the API accepted: %v", err)
			}
		})
	}
}

func TestAPI_bad_request_id_is_replaced(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, demoTenants(), 0)
	for in, keep := range map[string]bool{
		"abc-123": true, "my trace": false, "a\x00b": false, "é": false, strings.Repeat("r", 129): false, strings.Repeat("r", 128): true,
	} {
		req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		req.Header["X-Request-Id"] = []string{in}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get("X-Request-Id")
		if keep != (got == in) || got == "" || strings.ContainsAny(got, " \x00") {
			t.Errorf("X-Request-Id %q answered as %q (keep %v)", in, got, keep)
		}
	}
}

func TestTraceIDFromParent(t *testing.T) {
	t.Parallel()
	const tr = "4bf92f3577b34da6a3ce929d0e0e4736"
	for in, ok := range map[string]bool{
		"00-" + tr + "-00f067aa0ba902b7-01":      true,
		"00-" + tr + "-00f067aa0ba902b7-01-x":    false, // version 00 has exactly four fields
		"01-" + tr + "-00f067aa0ba902b7-01-more": true,  // a later version may add fields
		"01-" + tr + "-00f067aa0ba902b7-01x":     false,
		"00-" + tr + "-0000000000000000-01":      false,
		"00-" + tr[:31] + "-00f067aa0ba902b7-01": false,
		"":                                       false,
	} {
		if got, valid := traceIDFromParent(in); valid != ok || (ok && got != tr) {
			t.Errorf("traceIDFromParent(%q) = %q, %v; want ok %v", in, got, valid, ok)
		}
	}
}
