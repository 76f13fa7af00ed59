package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkCouponRequest_through_the_edge is the coupon hot path over the
// in-memory queue: authentication from the key cache, the body read, its
// UTF-8 check, the decode and the user_id rule. Compare with main's
// (`go test ./api -run '^$' -bench CouponRequest`).
func BenchmarkCouponRequest_through_the_edge(b *testing.B) {
	t := &testing.T{}
	h, _, _ := newEdgeHandler(t)
	path := "/v1/campaigns/" + aUUID + "/requests"
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"user_id":"run-u1"}`))
		req.Header.Set("Authorization", "Bearer demo-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("= %d %s", rec.Code, rec.Body)
		}
	}
}
