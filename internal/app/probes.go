package app

import (
	"context"
	"log/slog"
	"net/http"

	"go.temporal.io/sdk/client"

	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/telemetry"
)

// Checks are the dependencies GET /readyz checks, in the api and the worker
// alike: Temporal's frontend, PostgreSQL, Redis and RabbitMQ.
func (a *App) Checks() map[string]api.Check {
	return map[string]api.Check{
		"temporal": func(ctx context.Context) error {
			_, err := a.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		},
		"postgres": a.Store.Ping,
		"redis":    a.Redis.Ping,
		"rabbitmq": a.Rabbit.Ping,
	}
}

// WorkerHandler is what 'sagaflow worker' serves on SAGAFLOW_WORKER_HTTP_ADDR:
// GET /healthz (the process is up), GET /readyz (every check answers, else
// 503 naming those that do not) and GET /metrics, and nothing else. The
// probes are the API's own handlers (package api), so both processes answer
// them alike; m must be a registry no API handler uses yet (the handler
// registers its HTTP metrics on it).
func WorkerHandler(checks map[string]api.Check, m *telemetry.Metrics, log *slog.Logger) http.Handler {
	probes := api.NewHandler(api.Deps{Checks: checks, Metrics: m, Logger: log})
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", probes)
	mux.Handle("GET /readyz", probes)
	mux.Handle("GET /metrics", m.Handler())
	return mux
}
