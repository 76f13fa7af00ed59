package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/telemetry"
)

func workerHandler(t *testing.T, checks map[string]api.Check) http.Handler {
	t.Helper()
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	return app.WorkerHandler(checks, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func ok(context.Context) error { return nil }

func TestWorkerHandler_readyz_names_the_dependency_that_is_down(t *testing.T) {
	t.Parallel()
	h := workerHandler(t, map[string]api.Check{
		"temporal": ok, "postgres": ok, "rabbitmq": ok,
		"redis": func(context.Context) error { return errors.New("dial tcp 10.0.0.7:6379: connection refused") },
	})
	rec := get(t, h, "/readyz")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz with redis down: status %d, want 503; body %s", rec.Code, rec.Body)
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
		Down   []string          `json:"down"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(body.Down, []string{"redis"}) || body.Checks["postgres"] != "ok" {
		t.Errorf("GET /readyz: %+v, want redis down and the others ok", body)
	}
	if strings.Contains(rec.Body.String(), "10.0.0.7") {
		t.Errorf("GET /readyz leaks the driver's error: %s", rec.Body)
	}
}

func TestWorkerHandler_serves_the_probes_and_metrics_only(t *testing.T) {
	t.Parallel()
	h := workerHandler(t, map[string]api.Check{"temporal": ok, "postgres": ok, "redis": ok, "rabbitmq": ok})
	for path, want := range map[string]int{
		"/healthz":   http.StatusOK,
		"/readyz":    http.StatusOK,
		"/metrics":   http.StatusOK,
		"/v1/probes": http.StatusNotFound, // the worker serves no API
		"/":          http.StatusNotFound,
	} {
		if rec := get(t, h, path); rec.Code != want {
			t.Errorf("GET %s: status %d, want %d; body %s", path, rec.Code, want, rec.Body)
		}
	}
}
