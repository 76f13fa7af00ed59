package store

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the store's spans.
const tracerName = "github.com/sagaflow/sagaflow/internal/store"

// QueryTracer is a pgx.QueryTracer that makes one client span per
// statement, BEGIN and COMMIT included (pgx sends them as statements),
// named after the statement's first keyword ("SELECT", "COMMIT"), with the
// OpenTelemetry database attributes db.system.name=postgresql and
// db.operation.name. The statement's text and arguments are never recorded
// (they hold customer data). A statement whose context has no recording
// span makes none: background loops (relay polls, listeners) do not open a
// trace per query, and with tracing off nothing is done at all.
type QueryTracer struct{}

type querySpanKey struct{}

// TraceQueryStart implements pgx.QueryTracer.
func (QueryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	op := operation(data.SQL)
	ctx, span := otel.Tracer(tracerName).Start(ctx, op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "postgresql"), attribute.String("db.operation.name", op)))
	return context.WithValue(ctx, querySpanKey{}, span)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (QueryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span, ok := ctx.Value(querySpanKey{}).(trace.Span)
	if !ok {
		return
	}
	if data.Err != nil {
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, "statement failed")
	} else {
		span.SetAttributes(attribute.Int64("db.response.returned_rows", data.CommandTag.RowsAffected()))
	}
	span.End()
}

// operation is the statement's first word in upper case ("SELECT",
// "BEGIN"), at most 16 letters; "QUERY" if it has none.
func operation(sql string) string {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	end := 0
	for end < len(sql) && end < 16 {
		c := sql[end]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			break
		}
		end++
	}
	if end == 0 {
		return "QUERY"
	}
	return strings.ToUpper(sql[:end])
}

// startSpan starts an internal span of the store (a transaction that does
// one thing, such as "catalog.put_product").
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}
