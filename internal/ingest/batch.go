package ingest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
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
}

// handled reports whether the entry may be acked even if the batch fails:
// nothing more will be done with it.
func (e *entry) handled() bool { return e.state == deadLettered || e.state == seen }

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

// dedupeKey identifies a message for dedupe: message IDs are the
// publisher's, and two tenants' systems may well both send "42".
type dedupeKey struct{ tenant, messageID string }

func keyOf(e *entry) dedupeKey { return dedupeKey{e.env.TenantID, e.env.MessageID} }

// markRepeats marks the valid entries whose (tenant, message ID) came
// earlier in the batch, and returns the first entry of every one.
func markRepeats(es []entry) []*entry {
	first := map[dedupeKey]bool{}
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

// coalesce keeps, per (tenant, SKU), the valid entry of highest version
// (the first of equal ones), and returns them as changes sorted by tenant
// and SKU, and their products per schema sorted by SKU (a fixed order of
// upserts, so concurrent consumers lock rows in the same order).
func coalesce(es []entry) ([]Change, map[string][]catalog.Product) {
	type key struct{ tenant, sku string }
	best := map[key]*entry{}
	for i := range es {
		e := &es[i]
		if e.state != valid {
			continue
		}
		k := key{e.tenant.Name, e.product.SKU}
		if cur, ok := best[k]; !ok || e.product.Version > cur.product.Version {
			best[k] = e
		}
	}
	changes := make([]Change, 0, len(best))
	for _, e := range best {
		changes = append(changes, Change{Tenant: e.tenant.Name, Schema: e.tenant.Schema, Product: e.product, MessageID: e.env.MessageID})
	}
	slices.SortFunc(changes, func(a, b Change) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Product.SKU, b.Product.SKU))
	})
	bySchema := map[string][]catalog.Product{}
	for _, c := range changes {
		bySchema[c.Schema] = append(bySchema[c.Schema], c.Product)
	}
	return changes, bySchema
}

// deadCopy is what goes to the dead exchange for d: the same body and
// properties, the headers plus why and where it came from. It leaves out
// Expiration (the copy must not expire) and UserId (the broker refuses a
// user ID other than the publishing connection's).
func deadCopy(d *amqp.Delivery, reason string) amqp.Publishing {
	headers := amqp.Table{}
	if d.Headers.Validate() == nil {
		for k, v := range d.Headers {
			headers[k] = v
		}
	}
	headers[catalog.ReasonHeader] = truncate(reason, maxReasonBytes)
	headers[OriginalRoutingKeyHeader] = d.RoutingKey
	return amqp.Publishing{
		Headers:         headers,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}

// truncate cuts s to at most n bytes of valid UTF-8.
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
