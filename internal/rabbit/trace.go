package rabbit

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/sagaflow/sagaflow/internal/tracectx"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the bus's spans.
const tracerName = "github.com/sagaflow/sagaflow/internal/rabbit"

// The W3C trace context travels in these message headers, as strings.
const (
	TraceparentHeader = "traceparent"
	TracestateHeader  = "tracestate"
)

// StartPublish starts the PRODUCER span of one message published to
// exchange with routingKey, named "publish <exchange>" after the
// OpenTelemetry messaging conventions for RabbitMQ, as a child of ctx's span.
// Put HeadersOf(the returned context) in the message's headers.
func StartPublish(ctx context.Context, exchange, routingKey, messageID string) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, "publish "+exchange, trace.WithSpanKind(trace.SpanKindProducer),
		messaging("publish", "send", exchange,
			attribute.String("messaging.rabbitmq.destination.routing_key", routingKey),
			attribute.String("messaging.message.id", messageID)))
}

// StartProcess starts the CONSUMER span of processing a batch of messages
// taken from queue, named "process <queue>", a new root LINKED to each
// message's creation context (links): one batch takes messages of many
// traces.
func StartProcess(ctx context.Context, queue string, messages int, links []trace.Link) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, "process "+queue, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithNewRoot(),
		trace.WithLinks(links...),
		messaging("process", "process", queue, attribute.Int("messaging.batch.message_count", messages)))
}

// StartReceive starts the CONSUMER span that roots a new trace for a
// message that came without a valid trace context (an external publisher,
// or headers refused as malformed), named "receive <queue>".
func StartReceive(ctx context.Context, queue, messageID string) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, "receive "+queue, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithNewRoot(),
		messaging("receive", "receive", queue, attribute.String("messaging.message.id", messageID)))
}

// messaging is the attributes of the messaging conventions for RabbitMQ
// that every span of the bus has, plus extra.
func messaging(operation, operationType, destination string, extra ...attribute.KeyValue) trace.SpanStartOption {
	return trace.WithAttributes(append([]attribute.KeyValue{
		attribute.String("messaging.system", "rabbitmq"),
		attribute.String("messaging.operation.name", operation),
		attribute.String("messaging.operation.type", operationType),
		attribute.String("messaging.destination.name", destination),
	}, extra...)...)
}

// HeadersOf is the headers that carry ctx's span context (traceparent and,
// if any, tracestate), or nil if ctx has none.
func HeadersOf(ctx context.Context) amqp.Table {
	tc := tracectx.Capture(ctx)
	if tc.Empty() {
		return nil
	}
	h := amqp.Table{TraceparentHeader: tc.TraceParent}
	if tc.TraceState != "" {
		h[TracestateHeader] = tc.TraceState
	}
	return h
}

// TraceContextFrom reads a message's W3C headers (tracectx.Parse): string
// values only (a header of another AMQP type counts as absent); what is
// malformed or hostile is the zero Carrier.
func TraceContextFrom(h amqp.Table) tracectx.Carrier {
	tp, _ := h[TraceparentHeader].(string)
	ts, _ := h[TracestateHeader].(string)
	return tracectx.Parse(tp, ts)
}
