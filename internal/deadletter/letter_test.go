package deadletter

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

func TestFromDelivery_reason_tenant_and_ids(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	env := `{"message_id":"m-1","tenant_id":"demo","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","payload":{"sku":"S-1"}}`
	deathOf := func(reason string) amqp.Table {
		return amqp.Table{"x-death": []any{amqp.Table{"reason": reason, "queue": catalog.IngestQueue, "count": int64(20)}}}
	}
	tests := []struct {
		name       string
		d          amqp.Delivery
		reason     string
		transient  bool
		claimed    string
		messageID  string
		routingKey string
	}{
		{"ingest_invalid", amqp.Delivery{RoutingKey: "product.changed.demo", Body: []byte("{"),
			Headers: amqp.Table{catalog.ReasonHeader: "invalid: envelope is not JSON"}}, ReasonInvalid, false, "demo", "", "product.changed.demo"},
		{"ingest_unknown_tenant", amqp.Delivery{RoutingKey: "product.changed.ghost", Body: []byte(`{"tenant_id":"ghost"}`),
			Headers: amqp.Table{catalog.ReasonHeader: "unknown tenant ghost"}}, ReasonUnknownTenant, false, "ghost", "", "product.changed.ghost"},
		{"ingest_refused", amqp.Delivery{RoutingKey: "product.changed.demo", Body: []byte(env), MessageId: "prop-id",
			Headers: amqp.Table{catalog.ReasonHeader: "store for good: 22021", originalRoutingKeyHeader: "product.changed.demo"}}, ReasonRefused, false, "demo", "prop-id", "product.changed.demo"},
		{"broker_delivery_limit", amqp.Delivery{RoutingKey: "product.changed.demo", Body: []byte(env), Headers: deathOf("delivery_limit")},
			ReasonDeliveryLimit, true, "demo", "m-1", "product.changed.demo"},
		{"broker_odd_reason", amqp.Delivery{RoutingKey: "product.changed.demo", Body: []byte(env), Headers: deathOf("\x00weird")},
			ReasonRejected, false, "demo", "m-1", "product.changed.demo"},
		{"unroutable", amqp.Delivery{RoutingKey: "product.changed", Body: []byte(env)}, ReasonUnroutable, false, "demo", "m-1", "product.changed"},
		{"tenants_disagree", amqp.Delivery{RoutingKey: "product.changed.acme", Body: []byte(env), Headers: amqp.Table{catalog.ReasonHeader: "invalid: routing key"}},
			ReasonInvalid, false, "", "m-1", "product.changed.acme"},
		{"no_tenant_anywhere", amqp.Delivery{RoutingKey: "x", Body: []byte("\xff\x00")}, ReasonUnroutable, false, "", "", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := FromDelivery(tt.d, now)
			if l.Reason != tt.reason || l.Transient != tt.transient || l.Claimed != tt.claimed || l.MessageID != tt.messageID || l.RoutingKey != tt.routingKey {
				t.Fatalf("letter %+v", l)
			}
			if l.Detail == "" || strings.ContainsRune(l.Detail, 0) || !l.DeadAt.Equal(now) || len(l.Fingerprint) != 32 {
				t.Fatalf("detail %q, dead at %s, fingerprint %x", l.Detail, l.DeadAt, l.Fingerprint)
			}
			if _, err := json.Marshal(l.Headers); err != nil {
				t.Fatalf("headers do not encode: %v", err)
			}
		})
	}
}

// The same message is the same fingerprint whatever its headers (a
// redelivery adds x-death counts); another body is another.
func TestFromDelivery_fingerprint_ignores_headers(t *testing.T) {
	d := amqp.Delivery{RoutingKey: "product.changed.demo", Body: []byte(`{"message_id":"m"}`)}
	a := FromDelivery(d, time.Now())
	d.Headers = amqp.Table{"x-death": []any{amqp.Table{"reason": "delivery_limit", "count": int64(3)}}}
	b := FromDelivery(d, time.Now())
	d.Body = []byte(`{"message_id":"m","x":1}`)
	c := FromDelivery(d, time.Now())
	if !bytes.Equal(a.Fingerprint, b.Fingerprint) || bytes.Equal(a.Fingerprint, c.Fingerprint) {
		t.Fatalf("fingerprints %x %x %x", a.Fingerprint, b.Fingerprint, c.Fingerprint)
	}
}

// Headers become JSON PostgreSQL takes: no NUL, valid UTF-8, bytes in
// base64, times in RFC 3339; a body over MaxBodyBytes is cut and marked.
func TestFromDelivery_headers_and_body_fit_postgres(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := amqp.Delivery{RoutingKey: "r", Body: bytes.Repeat([]byte("x"), MaxBodyBytes+10), Headers: amqp.Table{
		"nul": "a\x00b", "bad\xff": "c\xffd", "bin": []byte{0, 1, 2}, "at": at, "nested": amqp.Table{"n": []any{"\x00", int32(7)}},
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}}
	l := FromDelivery(d, time.Now())
	b, err := json.Marshal(l.Headers)
	if err != nil || bytes.Contains(b, []byte(`\u0000`)) {
		t.Fatalf("headers %s, %v", b, err)
	}
	if l.Headers["bin"] != "AAEC" || l.Headers["at"] != "2026-01-02T03:04:05Z" || l.TraceID != "0af7651916cd43dd8448eb211c80319c" {
		t.Fatalf("headers %s, trace %q", b, l.TraceID)
	}
	if len(l.Body) != MaxBodyBytes || l.Headers[TruncatedHeader] != MaxBodyBytes+10 {
		t.Fatalf("body %d bytes, truncated mark %v", len(l.Body), l.Headers[TruncatedHeader])
	}
}

// A replay sends the letter's own headers, not those of its death.
func TestReplayHeaders_drop_the_death(t *testing.T) {
	h := replayHeaders(Letter{ID: "id-1", Headers: map[string]any{
		catalog.ReasonHeader: "x", originalRoutingKeyHeader: "r", "x-death": []any{}, "x-first-death-reason": "y",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "n": 5,
	}})
	if len(h) != 2 || h[ReplayedFromHeader] != "id-1" || h["traceparent"] == nil {
		t.Fatalf("replay headers %v", h)
	}
}
