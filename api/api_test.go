package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

// fakeTenants resolves one key; it counts lookups to show the cache works.
type fakeTenants struct {
	key     string
	t       tenant.Tenant
	lookups atomic.Int32
	err     error
}

func (f *fakeTenants) TenantByKeyHash(_ context.Context, h tenant.KeyHash) (tenant.Tenant, tenant.KeyHash, error) {
	f.lookups.Add(1)
	if f.err != nil {
		return tenant.Tenant{}, tenant.KeyHash{}, f.err
	}
	if h != tenant.HashKey(f.key) {
		return tenant.Tenant{}, tenant.KeyHash{}, tenant.ErrNotFound
	}
	return f.t, h, nil
}

func newTestHandler(t *testing.T, f *fakeTenants, ttl time.Duration) http.Handler {
	t.Helper()
	return testHandler(t, Deps{
		Tenants: f,
		Checks: map[string]Check{
			"ok":   func(context.Context) error { return nil },
			"down": func(context.Context) error { return errors.New("connection refused") },
		},
		MaxBodyBytes: 1024,
		KeyCacheTTL:  ttl,
	})
}

// testHandler is NewHandler(d) with fresh metrics and a silent logger, the
// two dependencies every test handler needs and none looks at.
func testHandler(t *testing.T, d Deps) http.Handler {
	t.Helper()
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	d.Metrics, d.Logger = m, slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewHandler(d)
}

func demoTenants() *fakeTenants {
	return &fakeTenants{key: "demo-key", t: tenant.Tenant{Name: "demo", Schema: "tenant_demo"}}
}

func do(h http.Handler, method, path, key, body string) (*httptest.ResponseRecorder, errorBody) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return serve(h, req)
}

// serve runs req through h and returns the reply with its body read as an
// error body (zero if it is not one).
func serve(h http.Handler, req *http.Request) (*httptest.ResponseRecorder, errorBody) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e errorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &e)
	return rec, e
}

// decodeReply decodes rec's JSON body into a T and fails the test unless
// the reply has status code and such a body; what names the call.
func decodeReply[T any](t *testing.T, rec *httptest.ResponseRecorder, code int, what string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || rec.Code != code {
		t.Fatalf("%s: %d %s", what, rec.Code, rec.Body)
	}
	return v
}

func TestAPI_errors_are_json_with_code_and_message(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, demoTenants(), time.Minute)
	tests := []struct {
		name         string
		method, path string
		key, body    string
		status       int
		code         string
	}{
		{"no_key", http.MethodPost, "/v1/probes", "", "{}", 401, "unauthenticated"},
		{"wrong_key", http.MethodPost, "/v1/probes", "nope", "{}", 401, "unauthenticated"},
		{"unknown_route", http.MethodGet, "/v1/nothing", "demo-key", "", 404, "not_found"},
		{"wrong_method", http.MethodDelete, "/healthz", "", "", 405, "method_not_allowed"},
		{"bad_json", http.MethodPost, "/v1/probes", "demo-key", "{", 400, "bad_request"},
		{"unknown_field", http.MethodPost, "/v1/probes", "demo-key", `{"x":1}`, 400, "bad_request"},
		{"two_values", http.MethodPost, "/v1/probes", "demo-key", `{} {}`, 400, "bad_request"},
		{"body_too_large", http.MethodPost, "/v1/probes", "demo-key", `{"x":"` + strings.Repeat("a", 2048) + `"}`, 413, "body_too_large"},
		{"other_tenants_workflow", http.MethodGet, "/v1/workflows/acme:probe:1", "demo-key", "", 404, "not_found"},
		{"workflow_id_without_tenant", http.MethodGet, "/v1/workflows/justanid", "demo-key", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, e := do(h, tt.method, tt.path, tt.key, tt.body)
			if rec.Code != tt.status || e.Error.Code != tt.code || e.Error.Message == "" {
				t.Fatalf("%s %s = %d %s, want %d with code %q", tt.method, tt.path, rec.Code, rec.Body, tt.status, tt.code)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q", ct)
			}
		})
	}
}

func TestAPI_unauthenticated_answer_names_the_scheme(t *testing.T) {
	t.Parallel()
	rec, _ := do(newTestHandler(t, demoTenants(), 0), http.MethodGet, "/v1/workflows/demo:probe:1", "", "")
	if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
	}
}

func TestAPI_key_lookups_are_cached(t *testing.T) {
	t.Parallel()
	f := demoTenants()
	h := newTestHandler(t, f, time.Minute)
	for range 5 {
		do(h, http.MethodGet, "/v1/workflows/acme:probe:1", "demo-key", "")
	}
	if n := f.lookups.Load(); n != 1 {
		t.Fatalf("%d store lookups for 5 requests with one key, want 1", n)
	}
	f2 := demoTenants()
	h2 := newTestHandler(t, f2, 0)
	for range 3 {
		do(h2, http.MethodGet, "/v1/workflows/acme:probe:1", "demo-key", "")
	}
	if n := f2.lookups.Load(); n != 3 {
		t.Fatalf("cache disabled (ttl 0) but %d lookups for 3 requests", n)
	}
}

func TestAPI_store_failure_during_auth_is_503_not_401(t *testing.T) {
	t.Parallel()
	f := demoTenants()
	f.err = context.DeadlineExceeded
	rec, e := do(newTestHandler(t, f, 0), http.MethodPost, "/v1/probes", "demo-key", "{}")
	if rec.Code != http.StatusServiceUnavailable || e.Error.Code != "unavailable" {
		t.Fatalf("= %d %s", rec.Code, rec.Body)
	}
}

func TestHealthz_and_readyz(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, demoTenants(), 0)
	rec, _ := do(h, http.MethodGet, "/healthz", "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz = %d", rec.Code)
	}
	rec, _ = do(h, http.MethodGet, "/readyz", "", "")
	var r readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || r.Status != "unavailable" || len(r.Down) != 1 || r.Down[0] != "down" ||
		r.Checks["ok"] != "ok" || r.Checks["down"] != "down" {
		t.Fatalf("readyz = %d %+v", rec.Code, r)
	}
	// The driver's words stay in the log: /readyz answers anyone.
	if strings.Contains(rec.Body.String(), "connection refused") {
		t.Fatalf("readyz shows a dependency's error: %s", rec.Body)
	}
}

func TestAPI_request_id_is_echoed_or_made(t *testing.T) {
	t.Parallel()
	h := newTestHandler(t, demoTenants(), 0)
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got != "abc-123" {
		t.Fatalf("X-Request-Id = %q", got)
	}
	a, _ := do(h, http.MethodGet, "/healthz", "", "")
	b, _ := do(h, http.MethodGet, "/healthz", "", "")
	idA, idB := a.Header().Get("X-Request-Id"), b.Header().Get("X-Request-Id")
	if idA == "" || idA == idB {
		t.Fatalf("request ids not made or not unique: %q %q", idA, idB)
	}
}
