package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// headersFrom decodes arbitrary bytes into a header table of every field
// type a delivery can carry, nested, with keys of any bytes and length.
func headersFrom(b []byte) amqp.Table {
	next := func(n int) []byte {
		n = min(n, len(b))
		out := b[:n]
		b = b[n:]
		return out
	}
	var table func(depth int) amqp.Table
	var value func(depth int) any
	value = func(depth int) any {
		if len(b) == 0 {
			return nil
		}
		kind := next(1)[0]
		size := 0
		if s := next(2); len(s) == 2 {
			size = int(s[0])<<8 | int(s[1])
		}
		switch kind % 10 {
		case 0:
			return string(next(size))
		case 1:
			return next(size)
		case 2:
			return int64(size)
		case 3:
			return size%2 == 0
		case 4:
			return strings.Repeat("h", size) // up to 64 KiB
		case 5:
			return float64(size) / 3
		case 6:
			return time.Unix(int64(size), 0)
		case 7:
			if depth < 20 {
				return table(depth + 1)
			}
		case 8:
			if depth < 20 {
				return []any{value(depth + 1), value(depth + 1)}
			}
		case 9:
			return struct{}{} // no AMQP type
		}
		return nil
	}
	table = func(depth int) amqp.Table {
		t := amqp.Table{}
		for range 4 {
			if len(b) == 0 {
				break
			}
			n := int(next(1)[0])
			if n == 255 {
				n = 300 // a key no short string can hold
			}
			k := string(next(n))
			if n == 300 {
				k += strings.Repeat("k", 300)
			}
			t[k] = value(depth)
		}
		return t
	}
	return table(0)
}

// FuzzDeadCopy feeds one delivery of arbitrary body, routing key,
// properties and headers through parse and, if it is refused, deadCopy:
// nothing may panic, and the dead letter must be publishable whatever came
// in: valid headers, the reason at most maxReasonBytes, every short
// string at most 255 bytes, and the whole header table small enough to go
// in one frame with the properties.
func FuzzDeadCopy(f *testing.F) {
	f.Add(envelope(f, "acme", "SKU-1", "m1", 1), catalog.RoutingKey("acme"), []byte{}, "id")
	f.Add([]byte("not json"), "", []byte{5, 'x', '-', 'b', 'i', 'g', 4, 0xff, 0xff}, "")
	f.Add([]byte(`{"message_id":"`+strings.Repeat("x", 5000)+`"}`), strings.Repeat("k", 300), []byte{255, 1, 0, 3, 'a', 'b', 'c'}, strings.Repeat("m", 300))
	f.Add([]byte("\x00"), "product.changed.\xff", []byte{1, 'n', 7, 0, 0, 1, 'a', 8, 0, 0, 2, 'b', 9, 0, 0}, "\x00")
	f.Fuzz(func(t *testing.T, body []byte, key string, header []byte, prop string) {
		d := amqp.Delivery{DeliveryTag: 1, RoutingKey: key, Body: body, Headers: headersFrom(header),
			MessageId: prop, CorrelationId: prop, Type: prop, AppId: prop, ContentType: prop}
		es := parse([]amqp.Delivery{d})
		reason := es[0].reason
		if es[0].state == valid {
			reason = "refused by the store (fuzz)"
		}
		p := deadCopy(es[0].d, reason+strings.Repeat("r", len(body)))
		if err := p.Headers.Validate(); err != nil {
			t.Fatalf("dead letter headers: %v", err)
		}
		n, ok := tableSize(p.Headers, 0)
		if !ok || n > maxCopiedHeaderBytes+maxReasonBytes+512 {
			t.Fatalf("dead letter headers of %d bytes (encodable %v)", n, ok)
		}
		if r, _ := p.Headers[catalog.ReasonHeader].(string); len(r) > maxReasonBytes || !utf8.ValidString(r) || r == "" {
			t.Fatalf("reason of %d bytes", len(r))
		}
		for _, s := range []string{p.MessageId, p.CorrelationId, p.Type, p.AppId, p.ContentType, p.Headers[OriginalRoutingKeyHeader].(string)} {
			if len(s) > 255 {
				t.Fatalf("short string of %d bytes", len(s))
			}
		}
	})
}

func TestDeadCopy_keeps_headers_it_can_send_and_says_why_it_drops_others(t *testing.T) {
	cases := map[string]struct {
		headers amqp.Table
		kept    bool
		why     string
	}{
		"small":        {amqp.Table{"x-a": "b", "x-n": amqp.Table{"c": []any{int32(1)}}}, true, ""},
		"nil":          {nil, true, ""},
		"too_large":    {amqp.Table{"x-big": strings.Repeat("x", maxCopiedHeaderBytes)}, false, "bytes, more than"},
		"unencodable":  {amqp.Table{"x-a": struct{}{}}, false, "cannot be encoded"},
		"key_too_long": {amqp.Table{strings.Repeat("k", 256): "v"}, false, "cannot be encoded"},
		"nested_too_deep": {func() amqp.Table {
			t := amqp.Table{}
			for range maxTableDepth + 2 {
				t = amqp.Table{"n": t}
			}
			return t
		}(), false, "cannot be encoded"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := deadCopy(&amqp.Delivery{Headers: c.headers, RoutingKey: "rk"}, strings.Repeat("é", maxReasonBytes))
			why, dropped := p.Headers[DroppedHeadersHeader].(string)
			if dropped == c.kept || !strings.Contains(why, c.why) {
				t.Errorf("dropped %v (%q), want kept %v", dropped, why, c.kept)
			}
			for k := range c.headers {
				if _, ok := p.Headers[k]; ok != c.kept {
					t.Errorf("header %.20q copied %v", k, ok)
				}
			}
			if r := p.Headers[catalog.ReasonHeader].(string); len(r) > maxReasonBytes || !utf8.ValidString(r) {
				t.Errorf("reason of %d bytes, valid UTF-8 %v", len(r), utf8.ValidString(r))
			}
		})
	}
}
