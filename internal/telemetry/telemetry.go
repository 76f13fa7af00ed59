// Package telemetry sets up sagaflow's structured logs (log/slog) and its
// Prometheus metrics, including the Temporal SDK's metrics, which reach the
// same registry through an OpenTelemetry meter and its Prometheus exporter.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// NewLogger returns a slog logger writing format ("json" or "text") to w.
// A record logged with a context that carries a valid span (the
// ...Context methods, e.g. InfoContext) gets its trace_id and span_id
// (TraceHandler), so logs and traces join.
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(TraceHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(TraceHandler(slog.NewJSONHandler(w, opts)))
}

// TraceHandler wraps h so that each record whose context carries a valid
// span context (recording or not: the trace context flows even when
// nothing is exported) gets the attributes trace_id and span_id, the W3C
// ids in lowercase hex. Records logged without a context pass unchanged.
func TraceHandler(h slog.Handler) slog.Handler {
	if th, ok := h.(traceHandler); ok {
		return th
	}
	return traceHandler{h}
}

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

// Metrics is one process's metric registry. Safe for concurrent use.
type Metrics struct {
	// Registry holds every collector; register the process's own metrics here.
	Registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	temporal client.MetricsHandler
}

// NewMetrics returns a registry with the Go runtime and process collectors
// and a Temporal SDK metrics handler that reports into it.
func NewMetrics() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	return &Metrics{
		Registry: reg,
		provider: provider,
		temporal: temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
			Meter: provider.Meter("temporal-sdk-go"),
		}),
	}, nil
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Temporal is the handler to give the Temporal client (client.Options.MetricsHandler).
func (m *Metrics) Temporal() client.MetricsHandler { return m.temporal }

// Shutdown flushes and stops the meter provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }
