package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Propagator is the W3C trace context and baggage propagator that
// SetupTracing installs as the global one (OpenTelemetry's own default
// propagates nothing).
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// TracingMode says what SetupTracing installs.
type TracingMode string

// The modes of SetupTracing.
const (
	// TracingOff: no span is recorded or exported; spans still get ids, so
	// the trace context flows (logs, envelopes, outgoing headers).
	TracingOff TracingMode = "off"
	// TracingGRPC and TracingHTTP export over OTLP.
	TracingGRPC TracingMode = "otlp/grpc"
	TracingHTTP TracingMode = "otlp/http"
)

// SetupTracing installs the process's global tracer provider and the W3C
// propagator (Propagator), configured by the standard OpenTelemetry
// environment variables (they are not internal/config's: the SDK and its
// exporters read them, as every OpenTelemetry program does):
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
//     set: spans are exported over OTLP, the protocol named by
//     OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
//     ("grpc" or "http/protobuf", the default); the exporters read their
//     other variables themselves (headers, timeout, insecure, …).
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG choose the sampler
//     (default parentbased_always_on), OTEL_SERVICE_NAME and
//     OTEL_RESOURCE_ATTRIBUTES the resource (service.name defaults to
//     service, e.g. "sagaflow-api").
//   - nothing set, OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true: a
//     provider that samples nothing, so spans are non-recording (no
//     attributes kept, nothing exported) yet have real ids that propagate.
//
// The returned shutdown flushes the spans still buffered and stops the
// provider; call it once, with a deadline, when the process stops.
func SetupTracing(ctx context.Context, service string, log *slog.Logger) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(Propagator())
	tp, mode, err := NewTracerProvider(ctx, service, log)
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(tp)
	if mode == TracingOff {
		return tp.Shutdown, nil
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "error", err)
	}))
	shutdown := func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("telemetry: flush traces: %w", err)
		}
		return nil
	}
	return shutdown, nil
}

// NewTracerProvider builds the tracer provider SetupTracing installs, from
// the same OTEL_* variables, without installing it (nor the propagator):
// a benchmark uses it to switch between the provider of a process with no
// exporter and one that exports. Shut the provider down when done.
func NewTracerProvider(ctx context.Context, service string, log *slog.Logger) (*sdktrace.TracerProvider, TracingMode, error) {
	env := envMap(os.Environ())
	mode := tracingMode(env)
	if mode == TracingOff {
		log.Debug("tracing: no OTLP endpoint set, spans are neither recorded nor exported")
		return sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())), mode, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	if mode == TracingGRPC {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, mode, fmt.Errorf("telemetry: otlp trace exporter (%s): %w", mode, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, mode, fmt.Errorf("telemetry: trace resource: %w", err)
	}
	// The sampler comes from OTEL_TRACES_SAMPLER, the batch span processor's
	// sizes from OTEL_BSP_* (the SDK reads both).
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing exported over OTLP", "protocol", string(mode), "endpoint", firstNonEmpty(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], env["OTEL_EXPORTER_OTLP_ENDPOINT"]))
	return tp, mode, nil
}

// tracingMode reads the standard variables that decide whether and how
// spans are exported.
func tracingMode(env map[string]string) TracingMode {
	if strings.EqualFold(env["OTEL_SDK_DISABLED"], "true") || strings.EqualFold(env["OTEL_TRACES_EXPORTER"], "none") {
		return TracingOff
	}
	if env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "" && env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "" {
		return TracingOff
	}
	if firstNonEmpty(env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"], env["OTEL_EXPORTER_OTLP_PROTOCOL"]) == "grpc" {
		return TracingGRPC
	}
	return TracingHTTP
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTEL_") {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
