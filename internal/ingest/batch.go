package ingest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// OriginalRoutingKeyHeader is the header of a dead-lettered copy that keeps
// the routing key the message arrived with.
const OriginalRoutingKeyHeader = "x-original-routing-key"

// maxReasonBytes bounds the reason header: a parse error may quote a field
// of the message, and a header must fit in one frame with the others.
const maxReasonBytes = 1024

// state is what a flush decided about one delivery.
type state int

const (
	valid        state = iota // parsed, tenant known, not seen before: to deliver
	invalid                   // to dead-letter, with reason
	deadLettered              // its copy is in the dead queue (confirmed)
	repeated                  // same message ID earlier in the batch
	seen                      // message ID delivered before (Redis)
)

// entry is one delivery of a batch and what the flush made of it.
type entry struct {
	d       *amqp.Delivery
	state   state
	reason  string
	env     catalog.Envelope
	product catalog.Product
	tenant  tenant.Tenant
	// trace is the message's creation context (its W3C headers, checked),
	// or a new root if it came without a valid one.
	trace trace.SpanContext
}

// parse parses every delivery of a batch.
func parse(ds []amqp.Delivery) []entry {
	es := make([]entry, len(ds))
	for i := range ds {
		es[i].d = &ds[i]
		env, p, err := parseChange(ds[i].Body, ds[i].RoutingKey)
		if err != nil {
			es[i].state, es[i].reason = invalid, err.Error()
			continue
		}
		es[i].env, es[i].product = env, p
	}
	return es
}

// parseChange is catalog.ParseChange, which promises not to panic; the
// recover keeps that promise's breach from killing every consumer of the
// process on one message.
func parseChange(body []byte, routingKey string) (env catalog.Envelope, p catalog.Product, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: message could not be parsed", catalog.ErrInvalid)
		}
	}()
	return catalog.ParseChange(body, routingKey)
}

func keyOf(e *entry) DedupeKey { return DedupeKey{Tenant: e.env.TenantID, MessageID: e.env.MessageID} }

// markRepeats marks the valid entries whose (tenant, message ID) came
// earlier in the batch, and returns the first entry of every one.
func markRepeats(es []entry) []*entry {
	first := map[DedupeKey]bool{}
	var fresh []*entry
	for i := range es {
		e := &es[i]
		if e.state != valid {
			continue
		}
		k := keyOf(e)
		if first[k] {
			e.state = repeated
			continue
		}
		first[k] = true
		fresh = append(fresh, e)
	}
	return fresh
}

// item is one (tenant, SKU) of a batch: the change handed over (the
// highest version) and every valid entry that contributed to it. The
// entries share the item's fate: delivered, or dead-lettered with its
// reason.
type item struct {
	tenant  tenant.Tenant
	product catalog.Product
	carrier *entry   // the entry whose product is handed over
	entries []*entry // carrier first, then the superseded ones
	// reason is why the store or the Sink refused the item for good;
	// empty while it is not refused.
	reason string
}

func (it *item) change() Change {
	return Change{Tenant: it.tenant.Name, Schema: it.tenant.Schema, Product: it.product, MessageID: it.carrier.env.MessageID,
		Trace: tracectx.Capture(trace.ContextWithSpanContext(context.Background(), it.carrier.trace))}
}

// refuse records that the item cannot be ingested, and marks its entries
// for the dead queue: the carrier with reason, the entries it superseded
// with a pointer to it.
func (it *item) refuse(reason string) {
	it.reason = reason
	for _, e := range it.entries {
		e.state, e.reason = invalid, reason
		if e != it.carrier {
			e.reason = fmt.Sprintf("superseded by message %s (version %d of the same SKU), which was refused: %s",
				it.carrier.env.MessageID, it.product.Version, reason)
		}
	}
}

// coalesce groups the valid entries by (tenant, SKU) into items that carry
// the entry of highest version (the first of equal ones), sorted by tenant
// and SKU (a fixed order of upserts, so concurrent consumers lock rows in
// the same order).
func coalesce(es []entry) []*item {
	type key struct{ tenant, sku string }
	byKey := map[key]*item{}
	var items []*item
	for i := range es {
		e := &es[i]
		if e.state != valid {
			continue
		}
		k := key{e.tenant.Name, e.product.SKU}
		it, ok := byKey[k]
		if !ok {
			it = &item{tenant: e.tenant}
			byKey[k] = it
			items = append(items, it)
		}
		it.entries = append(it.entries, e)
		if it.carrier == nil || e.product.Version > it.product.Version {
			it.carrier, it.product = e, e.product
		}
	}
	for _, it := range items {
		// The carrier first: it is the one a reader of the dead queue
		// should look at.
		i := slices.Index(it.entries, it.carrier)
		it.entries[0], it.entries[i] = it.entries[i], it.entries[0]
	}
	slices.SortFunc(items, func(a, b *item) int {
		return cmp.Or(cmp.Compare(a.tenant.Name, b.tenant.Name), cmp.Compare(a.product.SKU, b.product.SKU))
	})
	return items
}

// DroppedHeadersHeader is the header of a dead-lettered copy that left out
// the message's own headers, saying why: they could not be encoded again,
// or they were too large to send with ours in one frame.
const DroppedHeadersHeader = "x-sagaflow-dropped-headers"

// maxCopiedHeaderBytes bounds the message's own headers that a dead letter
// copies. The content header (properties and headers) must fit in one AMQP
// frame — RabbitMQ's frame_max, 128 KiB unless configured lower — or the
// broker closes the whole connection; a message that arrived with headers
// near that limit would then kill every consumer of the process again at
// each redelivery. Ours add at most maxReasonBytes plus a routing key.
const maxCopiedHeaderBytes = 32 << 10

// deadCopy is what goes to the dead exchange for d: the same body and
// properties, the headers (if they are valid and not too large) plus why
// and where it came from. It leaves out Expiration (the copy must not
// expire) and UserId (the broker refuses a user ID other than the
// publishing connection's). Whatever d holds, the result can be published.
func deadCopy(d *amqp.Delivery, reason string) amqp.Publishing {
	headers := amqp.Table{}
	switch n, ok := tableSize(d.Headers, 0); {
	case !ok || d.Headers.Validate() != nil:
		headers[DroppedHeadersHeader] = "the message's headers cannot be encoded again"
	case n > maxCopiedHeaderBytes:
		headers[DroppedHeadersHeader] = fmt.Sprintf("the message's headers take %d bytes, more than the %d a dead letter copies", n, maxCopiedHeaderBytes)
	default:
		for k, v := range d.Headers {
			headers[k] = v
		}
	}
	headers[catalog.ReasonHeader] = truncate(reason, maxReasonBytes)
	headers[OriginalRoutingKeyHeader] = truncate(d.RoutingKey, 255)
	return amqp.Publishing{
		Headers:         headers,
		ContentType:     shortstr(d.ContentType),
		ContentEncoding: shortstr(d.ContentEncoding),
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   shortstr(d.CorrelationId),
		ReplyTo:         shortstr(d.ReplyTo),
		MessageId:       shortstr(d.MessageId),
		Timestamp:       d.Timestamp,
		Type:            shortstr(d.Type),
		AppId:           shortstr(d.AppId),
		Body:            d.Body,
	}
}

// shortstr keeps a property that fits AMQP's short string (255 bytes), as
// every property that came from the broker does, and drops one that
// does not rather than fail the publish.
func shortstr(s string) string {
	if len(s) > 255 {
		return ""
	}
	return s
}

// maxTableDepth bounds the nesting of header tables and arrays that
// tableSize follows.
const maxTableDepth = 16

// tableSize is an upper bound of t's AMQP encoding in bytes, and false if
// t cannot be encoded (a key over 255 bytes, a type AMQP has no field for,
// nesting deeper than maxTableDepth).
func tableSize(t amqp.Table, depth int) (int, bool) {
	if depth > maxTableDepth {
		return 0, false
	}
	n := 4
	for k, v := range t {
		if len(k) > 255 {
			return 0, false
		}
		m, ok := fieldSize(v, depth)
		if !ok {
			return 0, false
		}
		n += 1 + len(k) + m
	}
	return n, true
}

// fieldSize is an upper bound of one field value's encoding, type octet
// included.
func fieldSize(v any, depth int) (int, bool) {
	switch v := v.(type) {
	case nil, bool, byte, int8, int, int16, int32, int64, uint16, uint32, float32, float64, amqp.Decimal, time.Time:
		return 1 + 8, true
	case string:
		return 1 + 4 + len(v), true
	case []byte:
		return 1 + 4 + len(v), true
	case amqp.Table:
		m, ok := tableSize(v, depth+1)
		return 1 + m, ok
	case []any:
		if depth+1 > maxTableDepth {
			return 0, false
		}
		n := 1 + 4
		for _, x := range v {
			m, ok := fieldSize(x, depth+1)
			if !ok {
				return 0, false
			}
			n += m
		}
		return n, true
	}
	return 0, false
}

// truncate cuts s to at most n bytes of valid UTF-8.
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
