// Package temporalclient builds the one Temporal client of a process and
// prepares a namespace (its registration and search attributes). With
// payload keys, every payload the client and its workers send to Temporal
// (workflow inputs such as a join's payment token, activity inputs and
// results, query and update values) is encrypted with AES-256-GCM (see
// AESCodec), so histories hold no secret in the clear.
package temporalclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Options configure Dial.
type Options struct {
	HostPort  string
	Namespace string
	Logger    *slog.Logger
	// Metrics receives the SDK's metrics; nil drops them.
	Metrics client.MetricsHandler
	// Interceptors run around every client and worker call, after the
	// OpenTelemetry tracing interceptor that Dial always installs
	// (TracingInterceptor: it traces through the global tracer provider,
	// looked up at each span).
	Interceptors []interceptor.ClientInterceptor
	// PayloadKeys is SAGAFLOW_PAYLOAD_KEYS (see ParsePayloadKeys): empty
	// sends payloads in the clear; else the first key encrypts them and
	// every key decrypts. The workers built on the client use the same
	// converter; a replayer must be given DataConverter(PayloadKeys).
	PayloadKeys string
	// Compression is TEMPORAL_GRPC_COMPRESSION: "gzip" (or empty, the
	// SDK's default) or "none".
	Compression string
}

// Compression is the SDK's setting for TEMPORAL_GRPC_COMPRESSION: gzip
// compresses every request (and the server then every response), which
// saves traffic to a distant server and costs CPU on both ends; none sends
// them as they are. Profiles on `make cluster` put gzip at about 7% of a
// worker's CPU and 3% of the Temporal server's.
func Compression(name string) (client.GrpcCompression, error) {
	switch name {
	case "", "gzip":
		return &client.GrpcCompressionGzip{}, nil
	case "none":
		return &client.GrpcCompressionNone{}, nil
	}
	return nil, fmt.Errorf("temporal: TEMPORAL_GRPC_COMPRESSION: want gzip or none, got %q", name)
}

// Dial connects to Temporal, retrying until ctx ends so that a process can
// start before its Temporal frontend does (docker compose, a restart).
func Dial(ctx context.Context, o Options) (client.Client, error) {
	tracing, err := TracingInterceptor()
	if err != nil {
		return nil, err
	}
	keys, err := ParsePayloadKeys(o.PayloadKeys)
	if err != nil {
		return nil, fmt.Errorf("temporal: SAGAFLOW_PAYLOAD_KEYS: %w", err)
	}
	dc, err := NewDataConverter(keys)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		o.Logger.Info("temporal payloads are not encrypted (SAGAFLOW_PAYLOAD_KEYS is empty): histories hold payment tokens in the clear")
	} else {
		o.Logger.Info("temporal payloads are encrypted", "key_id", keys[0].ID, "keys", len(keys))
	}
	compression, err := Compression(o.Compression)
	if err != nil {
		return nil, err
	}
	opts := client.Options{
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: compression},
		DataConverter:     dc,
		HostPort:          o.HostPort,
		Namespace:         o.Namespace,
		Logger:            sdklog.NewStructuredLogger(o.Logger.With("component", "temporal-sdk")),
		MetricsHandler:    o.Metrics,
		Interceptors:      append([]interceptor.ClientInterceptor{tracing}, o.Interceptors...),
	}
	for attempt := 1; ; attempt++ {
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			return c, nil
		}
		o.Logger.Warn("temporal not reachable yet", "address", o.HostPort, "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("temporal: dial %s: %w", o.HostPort, err)
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

// TracingInterceptor is the SDK's OpenTelemetry tracing interceptor, made
// to take its tracer from the global provider each time it starts a span
// (named "temporal-sdk-go"), not once when the client is dialled: a
// provider installed later (telemetry.SetupTracing, a test's
// testenv.RecordSpans) gets the workflow and activity spans. The context
// travels in the Temporal header "_tracer-data" as W3C traceparent and
// baggage.
func TracingInterceptor() (interceptor.Interceptor, error) {
	i, err := temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{
		SpanStarter: func(ctx context.Context, _ trace.Tracer, name string, opts ...trace.SpanStartOption) trace.Span {
			_, span := otel.Tracer("temporal-sdk-go").Start(ctx, name, opts...)
			return span
		},
	})
	if err != nil {
		return nil, fmt.Errorf("temporal: tracing interceptor: %w", err)
	}
	return i, nil
}

// EnsureNamespace registers namespace unless it exists, then waits until the
// frontend serves it (a new namespace takes a moment to propagate).
func EnsureNamespace(ctx context.Context, c client.Client, namespace string, retention time.Duration) error {
	svc := c.WorkflowService()
	_, err := svc.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(retention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("temporal: register namespace %s: %w", namespace, err)
	}
	for {
		_, err := svc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal: namespace %s not ready: %w", namespace, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// EnsureSearchAttributes adds the custom search attributes in want that the
// namespace lacks, and returns their names (sorted; none when all were
// there). An attribute that exists with another type is an error.
//
// A Temporal server keeps the search attributes in a cache that each of
// its services refreshes once a minute, so one just added may be unknown
// to them (a start that sets it refused) for up to that minute. A caller
// that registers them right before use restarts the server when any was
// added (deploy/cluster.sh does), rather than turn the cache off.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string, want map[string]enumspb.IndexedValueType) ([]string, error) {
	op := c.OperatorService()
	have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("temporal: list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		typ, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = want[name]
		case typ != want[name]:
			return nil, fmt.Errorf("temporal: search attribute %s is %s, want %s", name, typ, want[name])
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	_, err = op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return nil, fmt.Errorf("temporal: add search attributes: %w", err)
	}
	return slices.Sorted(maps.Keys(missing)), nil
}
