// Package outbox relays the messages that tenants' transactions leave in
// their schema's outbox table to RabbitMQ. It is the transactional outbox of
// the bus: a change and the message announcing it commit together, and the
// relay publishes the message afterwards, so a crash or a broker outage
// between the two only delays the message.
//
// Delivery is at least once. A row is marked sent only after the broker
// confirmed it (publisher confirms), in the transaction that claimed it;
// a crash between the confirm and the commit publishes the row again, so
// consumers must drop repeats by message ID (internal/ingest does).
//
// Several relays (one per process) share the tables safely: each claims
// rows with FOR UPDATE SKIP LOCKED. One relay publishes a schema's rows in
// id order; with several, batches of one schema may interleave, so
// consumers must not rely on order (product changes carry versions).
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/backoff"
	"github.com/sagaflow/sagaflow/internal/pglisten"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// Channel is the PostgreSQL NOTIFY channel that wakes the relays; the
// payload is the name of the tenant schema that has new rows.
const Channel = "sagaflow_outbox"

// Options tune a Relay. The zero value of each field has a default.
type Options struct {
	// Batch is how many rows one transaction claims and publishes (default 500).
	Batch int
	// Poll is how often every tenant's outbox is read while the relay's
	// LISTEN connection is down, when no notification can arrive (default
	// 1s).
	Poll time.Duration
	// Sweep is how often every tenant's outbox is read while the LISTEN is
	// in place (default 10s). Notifications bring every committed row
	// then; the sweep takes what no notification will bring again: rows a
	// relay that died had claimed (the others skipped them as locked).
	// Each sweep is one transaction per tenant, so with many tenants it
	// must be rare.
	Sweep time.Duration
	// Retain is how long sent rows are kept before they are deleted
	// (default 24h), for inspection and replay.
	Retain time.Duration
	// MaxBackoff bounds the wait before retrying after a failed round
	// (default 30s).
	MaxBackoff time.Duration
	// ConfirmTimeout bounds the wait for the broker's confirms of one batch
	// (default 30s); past it the batch is rolled back and retried.
	ConfirmTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Sweep <= 0 {
		o.Sweep = 10 * time.Second
	}
	if o.Retain <= 0 {
		o.Retain = 24 * time.Hour
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.ConfirmTimeout <= 0 {
		o.ConfirmTimeout = 30 * time.Second
	}
}

// cleanEvery is how often sent rows past Retain are deleted: rarely, as a
// late delete costs only disk.
const cleanEvery = 10 * time.Minute

// turn is how many batches of one schema a round relays before it moves on
// to the next schema (and comes back): a busy tenant must not starve the rest.
const turn = 20

// cleanChunk bounds the rows one DELETE removes, so a large backlog of sent
// rows never makes one long transaction.
const cleanChunk = 10_000

// errBroker marks failures of the broker (no channel, publish failed, no
// confirm): they hit every schema alike, so a round stops at the first.
var errBroker = errors.New("broker")

// Relay publishes outbox rows. Run it once per process; Published is safe
// for concurrent use.
type Relay struct {
	pool *pgxpool.Pool
	conn *rabbit.Conn
	log  *slog.Logger
	opts Options

	published atomic.Int64

	wake    chan struct{}
	mu      sync.Mutex
	pending map[string]struct{} // schemas to relay in the next round, beyond the poll

	// listening: the LISTEN is in place; sweepNow: read every tenant's
	// outbox in the next round (the LISTEN came back, or a round failed).
	listening, sweepNow atomic.Bool

	// Owned by Run's goroutine.
	ch        *amqp.Channel // confirm-mode channel, reused while it works
	known     map[string]bool
	lastClean time.Time
	lastSweep time.Time
}

// New returns a Relay that reads tenants' outboxes through pool and
// publishes through conn.
func New(pool *pgxpool.Pool, conn *rabbit.Conn, log *slog.Logger, o Options) *Relay {
	o.setDefaults()
	return &Relay{pool: pool, conn: conn, log: log, opts: o, wake: make(chan struct{}, 1), pending: map[string]struct{}{}}
}

// Published is how many rows this relay has published and marked sent.
func (r *Relay) Published() int64 { return r.published.Load() }

// Run relays until ctx ends: a notified schema at once, and every tenant's
// schema every Sweep, or every Poll while the LISTEN is down, and once
// each time it is back. A failed round is logged and retried after a
// backoff that doubles up to MaxBackoff. It returns nil when ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	defer wg.Wait()
	defer r.dropChannel()
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-timer.C:
			timer.Reset(r.opts.Poll)
		}
		all := r.sweepDue()
		err := r.round(ctx, all)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			failures = 0
			if all {
				r.lastSweep = time.Now()
			}
			continue
		}
		failures++
		wait := backoff.Exp(failures, 100*time.Millisecond, r.opts.MaxBackoff)
		r.log.Warn("outbox: round failed; retrying", "retry_in", wait, "error", err)
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
		r.sweepNow.Store(true) // retry everything, not only what was notified
		timer.Reset(0)
	}
}

// sweepDue says the next round reads every tenant's outbox: it was asked
// for, or the last sweep is older than Sweep (Poll while the LISTEN is
// down).
func (r *Relay) sweepDue() bool {
	if r.sweepNow.Swap(false) || r.lastSweep.IsZero() {
		return true
	}
	every := r.opts.Sweep
	if !r.listening.Load() {
		every = r.opts.Poll
	}
	return time.Since(r.lastSweep) >= every
}

// listen turns NOTIFYs into pending schemas, reconnecting when the
// connection drops (after Poll, at most a second). Each time the LISTEN is
// back, the next round sweeps: what was committed while it was away was
// notified to no one.
func (r *Relay) listen(ctx context.Context) {
	pglisten.Listen(ctx, r.pool, Channel, min(r.opts.Poll, time.Second), r.log, "outbox", func(up bool) {
		r.listening.Store(up)
		if up {
			r.sweepNow.Store(true)
			r.kick()
		}
	}, r.schedule)
}

// kick wakes Run for a round.
func (r *Relay) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// schedule makes the next round relay schema.
func (r *Relay) schedule(schema string) {
	r.mu.Lock()
	r.pending[schema] = struct{}{}
	r.mu.Unlock()
	r.kick()
}

// round relays the notified schemas, or every tenant's schema if all.
func (r *Relay) round(ctx context.Context, all bool) error {
	r.mu.Lock()
	pending := r.pending
	r.pending = map[string]struct{}{}
	r.mu.Unlock()

	refresh := all || r.known == nil
	for s := range pending {
		refresh = refresh || !r.known[s]
	}
	if refresh {
		if err := r.loadSchemas(ctx); err != nil {
			return err
		}
	}
	var schemas []string
	if all {
		for s := range r.known {
			schemas = append(schemas, s)
		}
	} else {
		for s := range pending {
			if r.known[s] {
				schemas = append(schemas, s)
			} else {
				r.log.Debug("outbox: notification for a schema that is no tenant's", "schema", s)
			}
		}
	}
	var errs []error
	for _, s := range schemas {
		err := r.drain(ctx, s)
		if err == nil {
			continue
		}
		errs = append(errs, err)
		if errors.Is(err, errBroker) || ctx.Err() != nil {
			break
		}
	}
	if all && len(errs) == 0 && time.Since(r.lastClean) >= cleanEvery {
		r.lastClean = time.Now()
		for _, s := range schemas {
			if err := r.clean(ctx, s); err != nil && ctx.Err() == nil {
				r.log.Warn("outbox: delete of sent rows failed", "schema", s, "error", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (r *Relay) loadSchemas(ctx context.Context) error {
	rows, err := r.pool.Query(ctx, `SELECT schema_name FROM sagaflow.tenants`)
	if err != nil {
		return fmt.Errorf("outbox: list tenant schemas: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("outbox: list tenant schemas: %w", err)
	}
	r.known = make(map[string]bool, len(names))
	for _, n := range names {
		r.known[n] = true
	}
	return nil
}

// drain relays batches of schema until one comes back short, or for one
// turn, after which it schedules schema again.
func (r *Relay) drain(ctx context.Context, schema string) error {
	for range turn {
		n, err := r.RunOnce(ctx, schema)
		if err != nil {
			return err
		}
		if n < r.opts.Batch {
			return nil
		}
	}
	r.schedule(schema)
	return nil
}

// message is one outbox row.
type message struct {
	id         int64
	messageID  string
	exchange   string
	routingKey string
	typ        string
	payload    []byte
	createdAt  time.Time
	// trace is the context of the transaction that wrote the row: the
	// message is published in that trace.
	trace tracectx.Carrier
}

// RunOnce claims up to Batch unsent rows of schema's outbox, publishes them
// and marks them sent once the broker confirmed every one; on any failure
// it marks none. It returns how many rows it claimed. Not safe for
// concurrent use with Run.
func (r *Relay) RunOnce(ctx context.Context, schema string) (int, error) {
	table := pgx.Identifier{schema, "outbox"}.Sanitize()
	var claimed int
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, message_id::text, exchange, routing_key, type, payload, created_at,
				coalesce(traceparent, ''), coalesce(tracestate, '')
			FROM `+table+` WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, r.opts.Batch)
		if err != nil {
			return err
		}
		msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (message, error) {
			var m message
			err := row.Scan(&m.id, &m.messageID, &m.exchange, &m.routingKey, &m.typ, &m.payload, &m.createdAt, &m.trace.TraceParent, &m.trace.TraceState)
			return m, err
		})
		if err != nil {
			return err
		}
		claimed = len(msgs)
		if claimed == 0 {
			return nil
		}
		if err := r.publish(ctx, msgs); err != nil {
			return err
		}
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.id
		}
		_, err = tx.Exec(ctx, `UPDATE `+table+` SET sent_at = now() WHERE id = ANY($1)`, ids)
		return err
	})
	if err != nil {
		return claimed, fmt.Errorf("outbox: relay %s: %w", schema, err)
	}
	r.published.Add(int64(claimed))
	return claimed, nil
}

// publish sends msgs in order and waits until the broker confirmed all.
// After any failure the channel is dropped, so the next batch opens a fresh
// one (redialling if the connection is gone).
func (r *Relay) publish(ctx context.Context, msgs []message) error {
	ch, err := r.channel(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", errBroker, err)
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	// One PRODUCER span per message, in the trace of the transaction that
	// wrote its row (a row without one starts a new trace), ended once the
	// broker confirmed it.
	spans := make([]trace.Span, 0, len(msgs))
	defer func() {
		for _, sp := range spans {
			sp.End()
		}
	}()
	for _, m := range msgs {
		parent := trace.ContextWithSpanContext(ctx, m.trace.SpanContext())
		pctx, span := rabbit.StartPublish(parent, m.exchange, m.routingKey, m.messageID)
		spans = append(spans, span)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, m.exchange, m.routingKey, false, false, amqp.Publishing{
			Headers:      rabbit.HeadersOf(pctx),
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    m.messageID,
			Type:         m.typ,
			Timestamp:    m.createdAt,
			Body:         m.payload,
		})
		if err != nil {
			r.dropChannel()
			span.SetStatus(codes.Error, "publish failed")
			return fmt.Errorf("%w: publish %s: %w", errBroker, m.messageID, err)
		}
		confirms = append(confirms, dc)
	}
	wctx, cancel := context.WithTimeout(ctx, r.opts.ConfirmTimeout)
	defer cancel()
	for i, dc := range confirms {
		acked, err := dc.WaitContext(wctx)
		if err != nil {
			r.dropChannel()
			spans[i].SetStatus(codes.Error, "no confirm")
			return fmt.Errorf("%w: confirm of %s: %w", errBroker, msgs[i].messageID, err)
		}
		if !acked {
			// A nack, or the channel closed before the confirm arrived.
			r.dropChannel()
			spans[i].SetStatus(codes.Error, "nacked")
			return fmt.Errorf("%w: %s not confirmed (nacked or channel closed)", errBroker, msgs[i].messageID)
		}
	}
	return nil
}

// channel returns the confirm-mode channel, opening one (with the catalog
// topology declared, so the exchange exists) if there is none or it closed.
func (r *Relay) channel(ctx context.Context) (*amqp.Channel, error) {
	if r.ch != nil && !r.ch.IsClosed() {
		return r.ch, nil
	}
	r.dropChannel()
	ch, err := r.conn.Channel(ctx)
	if err != nil {
		return nil, err
	}
	if err := rabbit.DeclareTopology(ch); err != nil {
		_ = ch.Close()
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("outbox: confirm mode: %w", err)
	}
	r.ch = ch
	return ch, nil
}

func (r *Relay) dropChannel() {
	if r.ch != nil {
		_ = r.ch.Close()
		r.ch = nil
	}
}

// clean deletes schema's rows sent longer than Retain ago.
func (r *Relay) clean(ctx context.Context, schema string) error {
	table := pgx.Identifier{schema, "outbox"}.Sanitize()
	for {
		tag, err := r.pool.Exec(ctx, `DELETE FROM `+table+` WHERE id IN (
			SELECT id FROM `+table+` WHERE sent_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)`,
			r.opts.Retain.Seconds(), cleanChunk)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < cleanChunk {
			return nil
		}
	}
}
