// Package ingest consumes product changes from the bus (catalog.IngestQueue)
// and hands them to Temporal in batches.
//
// A consumer buffers deliveries and flushes them together: it
// dead-letters what it cannot ingest (with the reason in
// catalog.ReasonHeader), drops (tenant, message ID) pairs it delivered
// before (a Deduper, in Redis), keeps only the highest version per (tenant, SKU),
// upserts the products into each tenant's schema and delivers the changes
// to a Sink. Only once the Sink accepted them does it remember the message
// IDs and ack the batch.
//
// Failures of PostgreSQL and of the Sink are classified. While one fails
// transiently (connection refused, shutdown, timeout, deadlock, Temporal
// unavailable), the consumer holds the batch unacked and tries again with a
// backoff, however long the outage (a requeue would spend one of the
// queue's rabbit.DeliveryLimit deliveries each time, and a long Temporal
// outage would end in the dead queue). When one refuses data for good (a
// data exception, a constraint, a tenant schema that is missing, Temporal's
// InvalidArgument), the consumer splits the failing call in halves until it
// has found the refused (tenant, SKU) items, dead-letters their messages
// with the reason, and hands the rest over: one bad message never holds up
// the others, of its tenant or any other. If the consumer dies meanwhile,
// the broker redelivers. So a change is delivered at least once, and a
// redelivered or republished message (same tenant and message ID) is
// delivered once, except when two copies are in flight at the same time or
// the consumer dies (or Redis fails) between the Sink's acceptance and
// recording the message ID. Only messages that kill the consumer again and
// again reach the delivery limit and the dead queue without a reason.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/backoff"
	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// Change is one product change handed to Temporal.
type Change struct {
	Tenant    string
	Schema    string
	Product   catalog.Product
	MessageID string
	// Trace is the W3C context of the message that carried the change:
	// the sync links its push to it.
	Trace tracectx.Carrier
}

// Sink hands a batch of coalesced changes (at most one per (tenant, SKU):
// the highest version) to Temporal; it returns only once Temporal accepted
// them all. A batch it failed comes again, possibly split or merged with
// others differently, so it must be idempotent per (tenant, SKU, version).
// Consumers call it concurrently.
type Sink interface {
	Deliver(ctx context.Context, changes []Change) error
}

// Tenants looks tenants up by name; store.Store implements it. It returns
// tenant.ErrNotFound for an unknown name; any other error counts as
// transient.
type Tenants interface {
	Tenant(ctx context.Context, name string) (tenant.Tenant, error)
}

// Products upserts products into a tenant's schema, each only if its
// version is newer than the stored one, and returns how many it changed.
// Consumers call it concurrently; each call's products are sorted by SKU.
type Products interface {
	ApplyChanges(ctx context.Context, schema string, ps []catalog.Product) (int, error)
}

// MaxPrefetch is the largest prefetch AMQP can carry (basic.qos holds a
// 16-bit count). The client library truncates a larger one without a
// word: 65,536 would become 0, which the broker takes for no limit.
const MaxPrefetch = 65535

// Options tune a Consumer. The zero value of each field has a default.
type Options struct {
	// Consumers is how many competing consumers run, each on its own
	// channel (default 2).
	Consumers int
	// Prefetch is how many unacked deliveries the broker gives one consumer
	// (default 5000; at most MaxPrefetch).
	Prefetch int
	// FlushEvery is how long a consumer buffers before it flushes (default
	// 200ms), counted from the first delivery of the batch.
	FlushEvery time.Duration
	// MaxBatch flushes early when this many deliveries are buffered
	// (default and at most Prefetch, as no more can be unacked). Below the
	// rate FlushEvery bounds a batch; above it, when the queue has a
	// backlog, a batch is MaxBatch deliveries, and each costs a hand-over
	// per shard: the larger, the fewer signals per change.
	MaxBatch int
	// DedupeTTL is how long a delivered message ID is remembered (default 24h).
	DedupeTTL time.Duration
	// MaxBackoff bounds the wait after a failed batch or a lost channel
	// (default 30s).
	MaxBackoff time.Duration
	// Metrics counts dead letters and hand-over lags; nil counts nothing.
	Metrics Metrics
}

// Metrics counts what a Consumer does (internal/telemetry.BusMetrics).
// Implementations are safe for concurrent use.
type Metrics interface {
	// DeadLettered counts n messages dead-lettered for reason, one of the
	// Reason* classes.
	DeadLettered(reason string, n int)
	// HandedOver records one message, committed at published, acked now.
	HandedOver(published time.Time)
}

// The classes of the reasons the consumer dead-letters a message for (the
// header holds the full text).
const (
	ReasonInvalidMessage  = "invalid_message"
	ReasonUnknownTenant   = "unknown_tenant"
	ReasonStoreRefused    = "store_refused"
	ReasonTemporalRefused = "temporal_refused"
	ReasonSuperseded      = "superseded"
)

// Texts the reasons start with, by class (see resolveTenants, handOver and
// item.refuse); any other reason is a message that does not parse.
var reasonPrefixes = []struct{ prefix, class string }{
	{"unknown tenant ", ReasonUnknownTenant},
	{"the store refused", ReasonStoreRefused},
	{"Temporal refused", ReasonTemporalRefused},
	{"superseded by message", ReasonSuperseded},
}

// reasonClass is the class of a dead letter's reason.
func reasonClass(reason string) string {
	for _, p := range reasonPrefixes {
		if strings.HasPrefix(reason, p.prefix) {
			return p.class
		}
	}
	return ReasonInvalidMessage
}

type noMetrics struct{}

func (noMetrics) DeadLettered(string, int) {}
func (noMetrics) HandedOver(time.Time)     {}

func (o *Options) setDefaults() {
	if o.Consumers <= 0 {
		o.Consumers = 2
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 5000
	}
	o.Prefetch = min(o.Prefetch, MaxPrefetch)
	if o.FlushEvery <= 0 {
		o.FlushEvery = 200 * time.Millisecond
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = o.Prefetch
	}
	o.MaxBatch = min(o.MaxBatch, o.Prefetch)
	if o.DedupeTTL <= 0 {
		o.DedupeTTL = 24 * time.Hour
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
}

// confirmTimeout bounds the wait for the broker to confirm dead letters.
const confirmTimeout = 30 * time.Second

// Stats are a Consumer's counters since New.
type Stats struct {
	// Received counts deliveries, redeliveries included.
	Received int64
	// DeadLettered counts copies confirmed in the dead queue.
	DeadLettered int64
	// Duplicates counts deliveries dropped for a message ID seen before.
	Duplicates int64
	// Delivered counts changes the Sink accepted (again after a redelivery
	// if the ack of their batch failed).
	Delivered int64
	// Batches counts flushes that ended in an ack.
	Batches int64
	// Failures counts transient failures of a flush's calls (tenant
	// lookup, store, Sink), each retried in process.
	Failures int64
	// Refused counts (tenant, SKU) items the store or the Sink refused for
	// good; their messages are among DeadLettered.
	Refused int64
}

// Consumer consumes catalog.IngestQueue. Run it once; Stats is safe for
// concurrent use.
type Consumer struct {
	conn     *rabbit.Conn
	dedupe   Deduper
	tenants  Tenants
	products Products
	sink     Sink
	log      *slog.Logger
	opts     Options

	received, deadLettered, duplicates, delivered, batches, failures, refused atomic.Int64
	// holding is, per competing consumer, the unix nanoseconds of the
	// oldest delivery it holds unacked (0: none); see OldestUnacked.
	holding []atomic.Int64
}

// New returns a Consumer that drops the messages dedupe has seen.
func New(conn *rabbit.Conn, dedupe Deduper, tenants Tenants, products Products, sink Sink, log *slog.Logger, o Options) *Consumer {
	o.setDefaults()
	return &Consumer{conn: conn, dedupe: dedupe, tenants: tenants, products: products, sink: sink, log: log, opts: o,
		holding: make([]atomic.Int64, o.Consumers)}
}

// OldestUnacked is when the oldest message the consumers hold unacked was
// committed (its timestamp; its receipt if it has none), or the zero time
// if they hold none. Safe for concurrent use.
func (c *Consumer) OldestUnacked() time.Time {
	var oldest int64
	for i := range c.holding {
		if v := c.holding[i].Load(); v != 0 && (oldest == 0 || v < oldest) {
			oldest = v
		}
	}
	if oldest == 0 {
		return time.Time{}
	}
	return time.Unix(0, oldest)
}

// committed is when d's change was committed: its timestamp (the outbox
// row's), else now.
func committed(d *amqp.Delivery) time.Time {
	if d.Timestamp.IsZero() {
		return time.Now()
	}
	return d.Timestamp
}

// Stats returns the counters.
func (c *Consumer) Stats() Stats {
	return Stats{
		Received:     c.received.Load(),
		DeadLettered: c.deadLettered.Load(),
		Duplicates:   c.duplicates.Load(),
		Delivered:    c.delivered.Load(),
		Batches:      c.batches.Load(),
		Failures:     c.failures.Load(),
		Refused:      c.refused.Load(),
	}
}

// Run declares the topology (rabbit.DeclareTopology) and consumes until ctx
// ends, reconnecting with backoff whenever the broker drops a channel or
// the connection. It returns nil when ctx ends, or an error if the broker
// holds the topology with other arguments (PRECONDITION_FAILED), which no
// retry can fix.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.declare(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range c.opts.Consumers {
		wg.Go(func() { c.consume(ctx, i) })
	}
	wg.Wait()
	return nil
}

func (c *Consumer) declare(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		ch, err := c.conn.Channel(ctx)
		if err == nil {
			err = rabbit.DeclareTopology(ch)
			_ = ch.Close()
		}
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if amqpErr := (*amqp.Error)(nil); errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
			return fmt.Errorf("ingest: %w", err)
		}
		wait := c.backoff(attempt)
		c.log.Warn("ingest: declare topology failed; retrying", "retry_in", wait, "error", err)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// consume runs one competing consumer: a session per channel, a new one
// after the broker closes the last.
func (c *Consumer) consume(ctx context.Context, n int) {
	attempt := 0
	for ctx.Err() == nil {
		err := c.session(ctx, n, func() { attempt = 0 })
		if ctx.Err() != nil {
			return
		}
		attempt++
		wait := c.backoff(attempt)
		c.log.Warn("ingest: consumer lost its channel; reconnecting", "consumer", n, "retry_in", wait, "error", err)
		backoff.Sleep(ctx, wait)
	}
}

// session consumes on one channel until it closes or ctx ends. Unacked
// deliveries go back to the queue when the channel closes.
func (c *Consumer) session(ctx context.Context, n int, consuming func()) error {
	defer c.holding[n].Store(0) // unacked deliveries go back with the channel
	ch, err := c.conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	if err := rabbit.DeclareTopology(ch); err != nil {
		return err
	}
	if err := ch.Qos(c.opts.Prefetch, 0, false); err != nil {
		return fmt.Errorf("ingest: qos: %w", err)
	}
	if err := ch.Confirm(false); err != nil { // for dead letters
		return fmt.Errorf("ingest: confirm mode: %w", err)
	}
	deliveries, err := ch.Consume(catalog.IngestQueue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("ingest: consume %s: %w", catalog.IngestQueue, err)
	}
	consuming()

	var (
		buf   []amqp.Delivery
		timer = time.NewTimer(time.Hour)
		retry = &retries{c: c, ch: ch}
	)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("ingest: deliveries ended (channel closed or consumer cancelled)")
			}
			c.received.Add(1)
			buf = append(buf, d)
			if len(buf) == 1 {
				timer.Reset(c.opts.FlushEvery)
				c.holding[n].Store(committed(&buf[0]).UnixNano())
			}
			if len(buf) < c.opts.MaxBatch {
				continue
			}
			timer.Stop()
		case <-timer.C:
		}
		if err := c.flush(ctx, ch, buf, retry); err != nil {
			return err
		}
		c.holding[n].Store(0)
		clear(buf)
		buf = buf[:0]
	}
}

// flush handles one batch: every delivery on ch so far that is not acked.
// It returns an error only when the channel is unusable or ctx ends. When
// PostgreSQL or Temporal fails transiently, it keeps the batch unacked and
// tries the failed call again with a backoff, for as long as it takes: the
// messages neither go back to the queue (each requeue spends one of the
// queue's deliveries, and a long Temporal outage would push good changes
// into the dead queue) nor are lost (if this process dies, the broker
// redelivers them). When one refuses changes for good, handOver finds them
// and they go to the dead queue with the reason; the rest goes through.
func (c *Consumer) flush(ctx context.Context, ch *amqp.Channel, ds []amqp.Delivery, retry *retries) error {
	if len(ds) == 0 {
		return nil
	}
	if ch.IsClosed() {
		return errors.New("ingest: channel closed")
	}
	es := parse(ds)
	ctx, span := c.startBatchSpan(ctx, es)
	defer span.End()
	retry.batch(ctx, len(ds))
	wait := retry.wait
	if err := untilDone(func() error { return c.resolveTenants(ctx, es) }, wait); err != nil {
		return err
	}
	fresh := markRepeats(es)
	c.markSeen(ctx, fresh)
	if err := c.deadLetter(ctx, ch, es); err != nil {
		return err
	}
	items := coalesce(es)
	if err := c.handOver(ctx, items, wait); err != nil {
		return err
	}
	var refused []*item
	for _, it := range items {
		if it.reason != "" {
			refused = append(refused, it)
		}
	}
	if len(refused) > 0 {
		c.log.WarnContext(ctx, "ingest: changes refused for good; dead-lettering their messages", "items", len(refused),
			"first_tenant", refused[0].tenant.Name, "first_sku", refused[0].product.SKU, "first_reason", truncate(refused[0].reason, maxReasonBytes))
	}
	c.refused.Add(int64(len(refused)))
	c.delivered.Add(int64(len(items) - len(refused)))
	c.remember(ctx, fresh)
	if err := c.deadLetter(ctx, ch, es); err != nil { // what handOver refused
		return err
	}
	if err := ch.Ack(ds[len(ds)-1].DeliveryTag, true); err != nil {
		return fmt.Errorf("ingest: ack: %w", err)
	}
	for i := range ds {
		c.opts.Metrics.HandedOver(committed(&ds[i]))
	}
	retry.reset()
	dups := 0
	for i := range es {
		if es[i].state == repeated || es[i].state == seen {
			dups++
		}
	}
	c.duplicates.Add(int64(dups))
	c.batches.Add(1)
	return nil
}

// handOver stores the items, each tenant's in its own schema, and delivers
// the stored ones to the Sink. A call that fails transiently is retried
// (wait) until it succeeds; one that fails permanently is split in halves,
// recursively, until the refused items are found, so k refused items among
// n cost O(k log n) calls; those get a reason (item.refuse), the rest goes
// through. A schema that refuses everything (missing, or not as the
// statement expects) refuses its items at once. So one tenant's refused
// change never holds up another tenant's, nor its own others. It returns
// an error only when wait gives up.
func (c *Consumer) handOver(ctx context.Context, items []*item, wait func(error) error) error {
	bySchema := map[string][]*item{}
	for _, it := range items {
		bySchema[it.tenant.Schema] = append(bySchema[it.tenant.Schema], it)
	}
	for _, schema := range slices.Sorted(maps.Keys(bySchema)) {
		err := bisect(bySchema[schema], "the store refused the change", wait, func(part []*item) error {
			ps := make([]catalog.Product, len(part))
			for i, it := range part {
				ps[i] = it.product
			}
			if _, err := c.products.ApplyChanges(ctx, schema, ps); err != nil {
				return fmt.Errorf("%s: %w", schema, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var stored []*item
	for _, it := range items {
		if it.reason == "" {
			stored = append(stored, it)
		}
	}
	return bisect(stored, "Temporal refused the change", wait, func(part []*item) error {
		changes := make([]Change, len(part))
		for i, it := range part {
			changes[i] = it.change()
		}
		if err := c.sink.Deliver(ctx, changes); err != nil {
			return fmt.Errorf("deliver %d changes: %w", len(changes), err)
		}
		return nil
	})
}

// bisect runs call on items until it succeeds or fails permanently
// (classify); after a permanent failure it refuses a single item, or all
// of them if the failure is permanentAll, and otherwise does the same with
// each half. A transient failure is never split: call runs again on the
// same items after wait, which returns non-nil to give up.
func bisect(items []*item, what string, wait func(error) error, call func([]*item) error) error {
	if len(items) == 0 {
		return nil
	}
	var refused error
	var v verdict
	err := untilDone(func() error {
		err := call(items)
		if err == nil {
			return nil
		}
		if v = classify(err); v != transient {
			refused = err
			return nil
		}
		return err
	}, wait)
	if err != nil || refused == nil {
		return err
	}
	if len(items) == 1 || v == permanentAll {
		for _, it := range items {
			it.refuse(what + " for good: " + refused.Error())
		}
		return nil
	}
	mid := len(items) / 2
	if err := bisect(items[:mid], what, wait, call); err != nil {
		return err
	}
	return bisect(items[mid:], what, wait, call)
}

// untilDone runs step until it succeeds, calling wait after each failure;
// it gives up when wait does.
func untilDone(step func() error, wait func(error) error) error {
	for {
		err := step()
		if err == nil {
			return nil
		}
		if err := wait(err); err != nil {
			return err
		}
	}
}

// retries is one consumer session's (one channel's) retry state: the
// transient failures since a batch was last handed over, which set the
// backoff, and the batch in flight. Not safe for concurrent use: each
// session has its own.
type retries struct {
	c  *Consumer
	ch *amqp.Channel
	// failed counts consecutive transient failures; a batch handed over
	// resets it.
	failed int
	// ctx and deliveries are the batch in flight's, held for the length of
	// one flush (see batch) so that wait is the func(error) error that
	// handOver and bisect take.
	ctx        context.Context
	deliveries int
}

// batch starts a batch of deliveries, flushed within ctx.
func (r *retries) batch(ctx context.Context, deliveries int) {
	r.ctx, r.deliveries = ctx, deliveries
}

// reset records that a batch was handed over.
func (r *retries) reset() { r.failed = 0 }

// wait counts a transient failure of the batch and waits before the retry
// (doubling up to MaxBackoff); it returns an error when the batch's ctx
// ends or the channel closed meanwhile (the broker then redelivers the
// batch).
func (r *retries) wait(err error) error {
	r.c.failures.Add(1)
	r.failed++
	wait := r.c.backoff(r.failed)
	r.c.log.WarnContext(r.ctx, "ingest: batch not handed over; retrying, its messages stay unacked", "deliveries", r.deliveries, "retry_in", wait, "error", err)
	if !backoff.Sleep(r.ctx, wait) {
		return r.ctx.Err()
	}
	if r.ch.IsClosed() {
		return errors.New("ingest: channel closed")
	}
	return nil
}

// resolveTenants looks up the tenant of every valid entry; an unknown one
// makes the entry invalid. Other errors fail the batch.
func (c *Consumer) resolveTenants(ctx context.Context, es []entry) error {
	type result struct {
		t       tenant.Tenant
		unknown bool
	}
	known := map[string]result{}
	for i := range es {
		e := &es[i]
		if e.state != valid {
			continue
		}
		name := e.env.TenantID
		r, ok := known[name]
		if !ok {
			t, err := c.tenants.Tenant(ctx, name)
			if err != nil && !errors.Is(err, tenant.ErrNotFound) {
				return fmt.Errorf("look up tenant %s: %w", name, err)
			}
			r = result{t: t, unknown: err != nil}
			known[name] = r
		}
		if r.unknown {
			e.state, e.reason = invalid, "unknown tenant "+name
			continue
		}
		e.tenant = r.t
	}
	return nil
}

// markSeen marks the entries whose (tenant, message ID) was delivered
// before, in one call of the Deduper. If it fails it marks none: dedupe
// saves work, and the versions keep a repeat harmless.
func (c *Consumer) markSeen(ctx context.Context, fresh []*entry) {
	if len(fresh) == 0 {
		return
	}
	keys := make([]DedupeKey, len(fresh))
	for i, e := range fresh {
		keys[i] = keyOf(e)
	}
	seenBefore, err := c.dedupe.Seen(ctx, keys)
	if err == nil && len(seenBefore) != len(keys) {
		err = fmt.Errorf("ingest: dedupe answered %d of %d keys", len(seenBefore), len(keys))
	}
	if err != nil {
		c.log.WarnContext(ctx, "ingest: dedupe check failed; treating the batch as new", "error", err)
		return
	}
	for i, e := range fresh {
		if seenBefore[i] {
			e.state = seen
		}
	}
}

// remember records the delivered (tenant, message ID) pairs, in one call
// of the Deduper; not those of refused changes, so a republished one is
// tried again (after the cause is fixed, it goes through). A failure is
// logged, not returned: the changes are accepted, and a repeat of them is
// harmless.
func (c *Consumer) remember(ctx context.Context, fresh []*entry) {
	var keys []DedupeKey
	for _, e := range fresh {
		if e.state == valid {
			keys = append(keys, keyOf(e))
		}
	}
	if len(keys) == 0 {
		return
	}
	if err := c.dedupe.Remember(ctx, keys, c.opts.DedupeTTL); err != nil {
		c.log.WarnContext(ctx, "ingest: recording delivered message ids failed", "error", err)
	}
}

// deadLetter publishes a copy of every invalid entry to the dead exchange
// and waits for the broker's confirms. Any failure means the channel is
// unusable.
func (c *Consumer) deadLetter(ctx context.Context, ch *amqp.Channel, es []entry) error {
	var dead []*entry
	var confirms []*amqp.DeferredConfirmation
	for i := range es {
		e := &es[i]
		if e.state != invalid {
			continue
		}
		msg := deadCopy(e.d, e.reason)
		// The copy carries the checked context, never the headers as they came.
		delete(msg.Headers, rabbit.TraceparentHeader)
		delete(msg.Headers, rabbit.TracestateHeader)
		maps.Copy(msg.Headers, rabbit.HeadersOf(trace.ContextWithSpanContext(ctx, e.trace)))
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, catalog.DeadExchange, e.d.RoutingKey, false, false, msg)
		if err != nil {
			return fmt.Errorf("ingest: dead-letter: %w", err)
		}
		dead = append(dead, e)
		confirms = append(confirms, dc)
	}
	if len(dead) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	defer cancel()
	for _, dc := range confirms {
		acked, err := dc.WaitContext(wctx)
		if err != nil {
			return fmt.Errorf("ingest: dead-letter confirm: %w", err)
		}
		if !acked {
			return errors.New("ingest: dead-letter not confirmed (nacked or channel closed)")
		}
	}
	classes := map[string]int{}
	for _, e := range dead {
		e.state = deadLettered
		classes[reasonClass(e.reason)]++
	}
	for class, n := range classes {
		c.opts.Metrics.DeadLettered(class, n)
	}
	c.log.InfoContext(ctx, "ingest: dead-lettered messages", "count", len(dead), "first_routing_key", dead[0].d.RoutingKey,
		"first_reason", truncate(dead[0].reason, maxReasonBytes))
	c.deadLettered.Add(int64(len(dead)))
	return nil
}

// maxBatchLinks bounds the links of a batch's span (the SDK's default
// limit): a batch of 2000 messages links to the first 128.
const maxBatchLinks = 128

// startBatchSpan gives every entry its trace context — the message's W3C
// headers if they are valid, else (an external publisher, a malformed or
// hostile header) a new root trace of its own, started by a "receive" span
// — and starts the batch's CONSUMER span, linked to them.
func (c *Consumer) startBatchSpan(ctx context.Context, es []entry) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, min(len(es), maxBatchLinks))
	for i := range es {
		e := &es[i]
		e.trace = rabbit.TraceContextFrom(e.d.Headers).SpanContext()
		if !e.trace.IsValid() {
			_, root := rabbit.StartReceive(ctx, catalog.IngestQueue, e.d.MessageId)
			e.trace = root.SpanContext()
			root.End()
		}
		if len(links) < maxBatchLinks {
			links = append(links, trace.Link{SpanContext: e.trace})
		}
	}
	return rabbit.StartProcess(ctx, catalog.IngestQueue, len(es), links)
}

func (c *Consumer) backoff(attempt int) time.Duration {
	return backoff.Exp(attempt, 100*time.Millisecond, c.opts.MaxBackoff)
}
