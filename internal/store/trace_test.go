package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// A PUT's transaction is one span with a span per statement (no statement
// text); its outbox row keeps the transaction's W3C context and the
// envelope's trace_id is that context's trace id, whatever trace id the
// caller passed. Not parallel: it installs the global tracer provider.
func TestPutProduct_traces_the_transaction_and_stores_its_context_in_the_outbox(t *testing.T) {
	rec := testenv.RecordSpans(t)
	c, s, tn := newCatalog(t)
	ctx, root := otel.Tracer("test").Start(context.Background(), "request")
	if _, _, err := c.PutProduct(ctx, tn.Name, product("TRACE-1", 1), "not-the-trace"); err != nil {
		t.Fatal(err)
	}
	root.End()

	var tx trace.SpanContext
	ops := map[string]bool{}
	for _, sp := range rec.Ended() {
		if sp.SpanContext().TraceID() != root.SpanContext().TraceID() {
			continue
		}
		if sp.Name() == "catalog.put_product" {
			tx = sp.SpanContext()
		}
		for _, kv := range sp.Attributes() {
			if strings.HasPrefix(string(kv.Key), "db.query") || strings.Contains(kv.Value.String(), "outbox") {
				t.Errorf("span %s records the statement: %s=%s", sp.Name(), kv.Key, kv.Value.String())
			}
		}
		ops[sp.Name()] = true
	}
	for _, want := range []string{"catalog.put_product", "BEGIN", "INSERT", "COMMIT"} {
		if !ops[want] {
			t.Errorf("no span %s in the request's trace (have %v)", want, ops)
		}
	}

	var envTrace, traceparent string
	if err := s.Pool().QueryRow(context.Background(), `SELECT payload->>'trace_id', coalesce(traceparent, '') FROM `+
		pgx.Identifier{tn.Schema, "outbox"}.Sanitize()+` ORDER BY id DESC LIMIT 1`).Scan(&envTrace, &traceparent); err != nil {
		t.Fatal(err)
	}
	sc := tracectx.Carrier{TraceParent: traceparent}.SpanContext()
	if envTrace != root.SpanContext().TraceID().String() || sc.TraceID() != root.SpanContext().TraceID() || sc.SpanID() != tx.SpanID() {
		t.Fatalf("envelope trace_id %q, row traceparent %q; want trace %s and the transaction's span %s",
			envTrace, traceparent, root.SpanContext().TraceID(), tx.SpanID())
	}
}

// Without a span in the context (a caller outside any trace) the
// transaction roots a new trace: the row and the envelope carry it, not the
// caller's trace id.
func TestPutProduct_without_a_trace_roots_a_new_one(t *testing.T) {
	rec := testenv.RecordSpans(t)
	c, s, tn := newCatalog(t)
	const callers = "4bf92f3577b34da6a3ce929d0e0e4736"
	if _, _, err := c.PutProduct(context.Background(), tn.Name, product("PLAIN-1", 1), callers); err != nil {
		t.Fatal(err)
	}
	var envTrace, traceparent string
	if err := s.Pool().QueryRow(context.Background(), `SELECT payload->>'trace_id', coalesce(traceparent, '') FROM `+
		pgx.Identifier{tn.Schema, "outbox"}.Sanitize()+` ORDER BY id DESC LIMIT 1`).Scan(&envTrace, &traceparent); err != nil {
		t.Fatal(err)
	}
	sc := tracectx.Carrier{TraceParent: traceparent}.SpanContext()
	if !sc.IsValid() || envTrace != sc.TraceID().String() || envTrace == callers {
		t.Fatalf("envelope trace_id %q, traceparent %q", envTrace, traceparent)
	}
	for _, sp := range rec.Ended() {
		if sp.Name() == "catalog.put_product" && (sp.Parent().IsValid() || sp.SpanContext().SpanID() != sc.SpanID()) {
			t.Fatalf("the transaction's span is not the new root the row names")
		}
	}
}
