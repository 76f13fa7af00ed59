package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

func envelope(t testing.TB, tenantName, sku, messageID string, version int64) []byte {
	p, err := json.Marshal(catalog.Product{SKU: sku, Name: "P", Price: catalog.Money{Amount: 1, Currency: "USD"}, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(catalog.Envelope{MessageID: messageID, TenantID: tenantName, Type: catalog.TypeProductChanged,
		OccurredAt: time.Unix(1e9, 0).UTC(), Payload: p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzBatch runs the decisions of a flush (everything but the I/O) over a
// batch that holds an arbitrary message twice and a valid one: nothing may
// panic, every dead letter must be publishable, and a batch must never
// deliver two changes of one SKU.
func FuzzBatch(f *testing.F) {
	f.Add(envelope(f, "acme", "SKU-1", "m1", 2), catalog.RoutingKey("acme"))
	f.Add(envelope(f, "acme", "SKU-1", "m1", 1), catalog.RoutingKey("acme"))
	f.Add(envelope(f, "acme", "SKU-2", "m2", 1), catalog.RoutingKey("other"))
	f.Add([]byte(`{"message_id":"m","tenant_id":"acme","type":"product.changed","occurred_at":"2020-01-01T00:00:00Z","payload":null}`), "product.changed.acme")
	f.Add([]byte(`{"payload":{"sku":"`+strings.Repeat("x", 5000)+`"}}`), "")
	f.Add([]byte("\xff\xfe\x00"), "product.changed.\xff")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		ds := []amqp.Delivery{
			{DeliveryTag: 1, RoutingKey: key, Body: body, Headers: amqp.Table{"h": "v"}},
			{DeliveryTag: 2, RoutingKey: catalog.RoutingKey("acme"), Body: envelope(t, "acme", "SKU-1", "m1", 1)},
			{DeliveryTag: 3, RoutingKey: key, Body: body},
		}
		es := parse(ds)
		for i := range es {
			switch es[i].state {
			case valid:
				es[i].tenant = tenant.Tenant{Name: es[i].env.TenantID, Schema: "tenant_" + es[i].env.TenantID}
			case invalid:
				if es[i].reason == "" {
					t.Fatal("invalid without a reason")
				}
				p := deadCopy(es[i].d, es[i].reason)
				if err := p.Headers.Validate(); err != nil {
					t.Fatalf("dead letter headers: %v", err)
				}
				if len(p.Headers[catalog.ReasonHeader].(string)) > maxReasonBytes {
					t.Fatal("reason too long")
				}
			}
		}
		if es[0].state != es[2].state {
			t.Fatalf("the same message parsed two ways: %v and %v", es[0].state, es[2].state)
		}
		fresh := markRepeats(es)
		if es[0].state == valid && es[2].state != repeated {
			t.Fatalf("second copy not marked a repeat: %v", es[2].state)
		}
		items := coalesce(es)
		if len(items) > len(fresh) || len(items) == 0 {
			t.Fatalf("%d items from %d fresh entries", len(items), len(fresh))
		}
		seen := map[string]bool{}
		n := 0
		for _, it := range items {
			c := it.change()
			k := c.Tenant + "/" + c.Product.SKU
			if seen[k] {
				t.Fatalf("two changes of %s", k)
			}
			seen[k] = true
			if err := c.Product.Validate(); err != nil {
				t.Fatalf("delivering an invalid product: %v", err)
			}
			if it.entries[0] != it.carrier {
				t.Fatal("the carrier is not the item's first entry")
			}
			n += len(it.entries)
		}
		if n != len(fresh) {
			t.Fatalf("%d entries in items for %d fresh entries", n, len(fresh))
		}
	})
}

func TestCoalesce_keeps_the_highest_version_per_tenant_and_sku(t *testing.T) {
	var ds []amqp.Delivery
	add := func(tn, sku, id string, v int64) {
		ds = append(ds, amqp.Delivery{DeliveryTag: uint64(len(ds) + 1), RoutingKey: catalog.RoutingKey(tn), Body: envelope(t, tn, sku, id, v)})
	}
	add("acme", "A", "1", 3)
	add("acme", "A", "2", 7)
	add("acme", "A", "3", 5)
	add("beta", "A", "4", 1)
	add("acme", "B", "5", 2)
	add("acme", "A", "2", 7) // a repeat
	es := parse(ds)
	for i := range es {
		es[i].tenant = tenant.Tenant{Name: es[i].env.TenantID, Schema: "tenant_" + es[i].env.TenantID}
	}
	if fresh := markRepeats(es); len(fresh) != 5 || es[5].state != repeated {
		t.Fatalf("fresh = %d, last state %v", len(fresh), es[5].state)
	}
	items := coalesce(es)
	var got []string
	for _, it := range items {
		c := it.change()
		got = append(got, fmt.Sprintf("%s/%s@%s(%d)", c.Tenant, c.Product.SKU, c.MessageID, len(it.entries)))
	}
	if strings.Join(got, " ") != "acme/A@2(3) acme/B@5(1) beta/A@4(1)" {
		t.Errorf("items = %v", got)
	}
	if items[0].product.Version != 7 || items[0].entries[0] != &es[1] {
		t.Errorf("acme/A carries version %d from %v", items[0].product.Version, items[0].entries[0].env.MessageID)
	}
}
