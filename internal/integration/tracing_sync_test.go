package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// One PUT of a product is one connected trace down to the market call:
// the HTTP span, the PostgreSQL transaction and its statements, the AMQP
// publish (all in the PUT's trace id, the publish sent from the row's
// stored context, not the relay's), then the ingest's batch span, linked
// to the publish, the signal-with-start below it, and the push activity,
// linked to the publish too, with the market's HTTP call below it.
// Not parallel: it installs the global tracer provider.
func TestTracing_one_put_is_one_connected_trace_down_to_the_market(t *testing.T) {
	rec := testenv.RecordSpans(t)
	st := newSyncTenant(t, syncTenantName("tr"), "shopwave")
	const traceHex = "5af7183fc1d4e4c2b8ab07a4d1e0f3a9"
	// A first version, synced before the traced one: the new channel's
	// catch-up (which reads the catalogue and carries no trace) is over by
	// then, so the traced version can only travel with its change.
	body := map[string]any{"name": "Traced kettle", "price": map[string]any{"amount": 4990, "currency": "EUR"}, "stock": 2}
	if code := call(t, st.key, http.MethodPut, "/v1/products/TRACE-1", body, nil); code != http.StatusCreated {
		t.Fatalf("put v1: %d", code)
	}
	testenv.Eventually(t, time.Minute, "version 1 synced", func() bool {
		var doc productSyncDoc
		call(t, st.key, http.MethodGet, "/v1/products/TRACE-1/sync", nil, &doc)
		return len(doc.Channels) == 1 && doc.Channels[0].Status == catalog.SyncSynced && doc.Channels[0].SyncedVersion == 1
	})
	body["stock"] = 3
	if code := callWithHeaders(t, st.key, http.MethodPut, "/v1/products/TRACE-1", body, nil,
		map[string]string{"traceparent": "00-" + traceHex + "-1111111111111111-01"}); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("put v2: %d", code)
	}

	var spans []sdktrace.ReadOnlySpan
	var push, market sdktrace.ReadOnlySpan
	found := func() bool {
		spans = rec.Ended()
		push, market = nil, nil
		for _, s := range spans {
			if s.Name() == "RunActivity:PushProducts" && linksTo(s, traceHex) {
				push = s
			}
		}
		if push == nil {
			return false
		}
		for _, s := range spans {
			if s.SpanKind() == trace.SpanKindClient && s.Parent().SpanID() == push.SpanContext().SpanID() &&
				strings.Contains(attr(s, "url.full"), stack.marketURLs["shopwave"]) {
				market = s
			}
		}
		return market != nil
	}
	for deadline := time.Now().Add(time.Minute); !found(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			for _, s := range spans {
				var links []string
				for _, l := range s.Links() {
					links = append(links, l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String())
				}
				t.Logf("span %s kind=%s trace=%s id=%s parent=%s links=%v url=%s status=%v", s.Name(), s.SpanKind(), s.SpanContext().TraceID(),
					s.SpanContext().SpanID(), s.Parent().SpanID(), links, attr(s, "url.full"), s.Status())
			}
			t.Fatal("no push linked to the PUT with its market call below it within a minute")
		}
	}

	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	one := func(what string, ok func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, s := range spans {
			if ok(s) {
				return s
			}
		}
		t.Fatalf("no span %s among %d", what, len(spans))
		return nil
	}
	inTrace := func(s sdktrace.ReadOnlySpan) bool { return s.SpanContext().TraceID().String() == traceHex }

	server := one("PUT /v1/products/:sku (server)", func(s sdktrace.ReadOnlySpan) bool {
		return inTrace(s) && s.Name() == "PUT /v1/products/:sku" && s.SpanKind() == trace.SpanKindServer
	})
	tx := one("catalog.put_product under the HTTP span", func(s sdktrace.ReadOnlySpan) bool {
		return inTrace(s) && s.Name() == "catalog.put_product" && s.Parent().SpanID() == server.SpanContext().SpanID()
	})
	for _, op := range []string{"BEGIN", "INSERT", "COMMIT"} {
		one(op+" statement in the transaction", func(s sdktrace.ReadOnlySpan) bool {
			return inTrace(s) && s.Name() == op && s.SpanKind() == trace.SpanKindClient &&
				s.Parent().SpanID() == tx.SpanContext().SpanID() && attr(s, "db.system.name") == "postgresql" &&
				attr(s, "db.query.text") == ""
		})
	}
	publish := one("publish in the PUT's trace, child of the transaction", func(s sdktrace.ReadOnlySpan) bool {
		return inTrace(s) && s.Name() == "publish "+catalog.Exchange && s.SpanKind() == trace.SpanKindProducer &&
			s.Parent().SpanID() == tx.SpanContext().SpanID() &&
			attr(s, "messaging.system") == "rabbitmq" && attr(s, "messaging.destination.name") == catalog.Exchange &&
			attr(s, "messaging.rabbitmq.destination.routing_key") == catalog.RoutingKey(st.t.Name)
	})
	process := one("the ingest's batch span linked to the publish", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "process "+catalog.IngestQueue && s.SpanKind() == trace.SpanKindConsumer &&
			linksToSpan(s, publish.SpanContext()) && attr(s, "messaging.operation.type") == "process"
	})
	one("the signal-with-start under the batch span", func(s sdktrace.ReadOnlySpan) bool {
		return strings.HasPrefix(s.Name(), "SignalWithStartWorkflow:") && descends(s, process, byID)
	})
	if !linksToSpan(push, publish.SpanContext()) {
		t.Fatal("the push links to the PUT's trace but not to its publish span")
	}
	if market.SpanContext().TraceID() != push.SpanContext().TraceID() {
		t.Fatal("the market call is not in the push's trace")
	}

	t.Logf("chain: %s > %s > BEGIN..COMMIT, %s | %s (links %d) > SignalWithStartWorkflow | %s (links %d) > %s %s",
		server.Name(), tx.Name(), publish.Name(), process.Name(), len(process.Links()), push.Name(), len(push.Links()),
		market.Name(), attr(market, "url.full"))

	// The outbox row kept the transaction's context; the envelope's
	// trace_id is its W3C trace id.
	var envTrace, traceparent string
	err := stack.app.Store.Pool().QueryRow(context.Background(), `SELECT payload->>'trace_id', coalesce(traceparent, '')
		FROM `+pgx.Identifier{st.t.Schema, "outbox"}.Sanitize()+` ORDER BY id DESC LIMIT 1`).Scan(&envTrace, &traceparent)
	if err != nil {
		t.Fatal(err)
	}
	sc := tracectx.Carrier{TraceParent: traceparent}.SpanContext()
	if envTrace != traceHex || sc.TraceID().String() != traceHex || sc.SpanID() != tx.SpanContext().SpanID() {
		t.Fatalf("outbox row: envelope trace_id %q, traceparent %q; want trace %s, span %s", envTrace, traceparent, traceHex, tx.SpanContext().SpanID())
	}
}

func linksTo(s sdktrace.ReadOnlySpan, traceHex string) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID().String() == traceHex {
			return true
		}
	}
	return false
}

func linksToSpan(s sdktrace.ReadOnlySpan, sc trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return true
		}
	}
	return false
}

// descends reports whether s is below root, through the recorded spans.
func descends(s, root sdktrace.ReadOnlySpan, byID map[trace.SpanID]sdktrace.ReadOnlySpan) bool {
	for range 64 {
		if !s.Parent().IsValid() {
			return false
		}
		if s.Parent().SpanID() == root.SpanContext().SpanID() {
			return true
		}
		p, ok := byID[s.Parent().SpanID()]
		if !ok {
			return false
		}
		s = p
	}
	return false
}
