package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/backoff"
	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

// Store keeps letters (internal/store.Store). Archive is idempotent per
// fingerprint and reports whether the letter is new; AdminSchema (""
// here) is the table of letters without a tenant.
type Store interface {
	ArchiveDeadLetter(ctx context.Context, schema string, l Letter) (id string, inserted bool, err error)
}

// Tenants resolves a tenant by name; tenant.ErrNotFound when there is none.
type Tenants interface {
	Tenant(ctx context.Context, name string) (tenant.Tenant, error)
}

// ArchiverOptions tune an Archiver; the zero value of a field means its
// default.
type ArchiverOptions struct {
	// Queue is the dead queue (default catalog.DeadQueue, whose topology
	// the Archiver declares; another queue must exist already).
	Queue string
	// Prefetch is how many unacked letters the archiver holds (default 50).
	Prefetch int
	// Archived is told the reason of each letter archived (not of a
	// redelivery of one archived already); nil tells nobody.
	Archived func(reason string)
}

// Archiver moves the bus's dead letters into PostgreSQL: each message of
// the dead queue is written to its tenant's dead_letters (or, when its
// tenant cannot be told or does not exist, to the administrators' table)
// and acked only after that commit. A redelivery (the archiver stopped
// between the commit and the ack) is the same row, not a second one. Run
// it in the worker processes, next to the ingest; several archivers share
// the queue as competing consumers. Safe for concurrent use.
type Archiver struct {
	conn    *rabbit.Conn
	tenants Tenants
	store   Store
	log     *slog.Logger
	opts    ArchiverOptions
}

// AdminSchema is the schema an Archiver names for letters without a
// tenant (internal/store.AdminSchema).
const AdminSchema = "sagaflow"

// NewArchiver returns an Archiver of the dead queue on conn.
func NewArchiver(conn *rabbit.Conn, tenants Tenants, store Store, log *slog.Logger, o ArchiverOptions) *Archiver {
	if o.Queue == "" {
		o.Queue = catalog.DeadQueue
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 50
	}
	return &Archiver{conn: conn, tenants: tenants, store: store, log: log, opts: o}
}

// Run archives until ctx ends, reconnecting after the broker or PostgreSQL
// fails; it returns nil when ctx ends.
func (a *Archiver) Run(ctx context.Context) error {
	attempt := 0
	for ctx.Err() == nil {
		err := a.session(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return nil
		}
		attempt++
		wait := backoff.Exp(attempt, 200*time.Millisecond, 10*time.Second)
		a.log.Warn("deadletter: archiver lost its channel; reconnecting", "retry_in", wait, "error", err)
		backoff.Sleep(ctx, wait)
	}
	return nil
}

// session consumes on one channel until it fails or ctx ends; unacked
// letters go back to the queue when the channel closes.
func (a *Archiver) session(ctx context.Context, consuming func()) error {
	ch, err := a.conn.Channel(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	if a.opts.Queue == catalog.DeadQueue {
		if err := rabbit.DeclareTopology(ch); err != nil {
			return err
		}
	}
	if err := ch.Qos(a.opts.Prefetch, 0, false); err != nil {
		return fmt.Errorf("deadletter: qos: %w", err)
	}
	ds, err := ch.Consume(a.opts.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("deadletter: consume %s: %w", a.opts.Queue, err)
	}
	consuming()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-ds:
			if !ok {
				return errors.New("deadletter: the broker closed the channel")
			}
			if err := a.archive(ctx, d); err != nil {
				_ = d.Nack(false, true)
				return err
			}
			if err := d.Ack(false); err != nil {
				return fmt.Errorf("deadletter: ack: %w", err)
			}
		}
	}
}

// archive writes one letter (committed when it returns nil).
func (a *Archiver) archive(ctx context.Context, d amqp.Delivery) error {
	l := FromDelivery(d, time.Now())
	schema, err := a.schemaOf(ctx, l.Claimed)
	if err != nil {
		return err
	}
	id, inserted, err := a.store.ArchiveDeadLetter(ctx, schema, l)
	if err != nil {
		return fmt.Errorf("deadletter: archive: %w", err)
	}
	if inserted {
		a.log.Info("deadletter: archived", "schema", schema, "id", id, "reason", l.Reason, "message_id", l.MessageID)
		if a.opts.Archived != nil {
			a.opts.Archived(l.Reason)
		}
	}
	return nil
}

// schemaOf is the schema of the tenant named, or AdminSchema if it does
// not exist (or none is named).
func (a *Archiver) schemaOf(ctx context.Context, name string) (string, error) {
	if name == "" {
		return AdminSchema, nil
	}
	t, err := a.tenants.Tenant(ctx, name)
	if errors.Is(err, tenant.ErrNotFound) {
		return AdminSchema, nil
	}
	if err != nil {
		return "", fmt.Errorf("deadletter: look up tenant %q: %w", name, err)
	}
	return t.Schema, nil
}
