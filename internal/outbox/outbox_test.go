package outbox_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/outbox"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

// insert adds n product.changed rows to tn's outbox in one transaction that
// also notifies the relays, as the store does, and returns their message
// IDs in id order.
func (f *fixture) insert(t *testing.T, tn tenant.Tenant, n int) []string {
	t.Helper()
	return f.insertRows(t, tn, n, true)
}

// insertRows is insert, with the NOTIFY only if notify.
func (f *fixture) insertRows(t *testing.T, tn tenant.Tenant, n int, notify bool) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	err := pgx.BeginFunc(ctx, f.store.Pool(), func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH g AS (SELECT gen_random_uuid() AS mid, i FROM generate_series(1, $5::int) i)
			INSERT INTO `+pgx.Identifier{tn.Schema, "outbox"}.Sanitize()+` (message_id, exchange, routing_key, type, payload)
			SELECT mid, $1, $2, $3, jsonb_build_object('message_id', mid, 'tenant_id', $4::text, 'type', $3::text,
				'occurred_at', now(), 'payload', jsonb_build_object('sku', 'SKU-' || i, 'name', 'Product ' || i,
				'price', jsonb_build_object('amount', 1000, 'currency', 'KRW'), 'stock', i, 'attributes', '{}'::jsonb, 'version', 1))
			FROM g ORDER BY i
			RETURNING id, message_id::text`,
			catalog.Exchange, catalog.RoutingKey(tn.Name), catalog.TypeProductChanged, tn.Name, n)
		if err != nil {
			return err
		}
		type row struct {
			id  int64
			mid string
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.id, &x.mid)
			return x, err
		})
		if err != nil {
			return err
		}
		slices.SortFunc(got, func(a, b row) int { return int(a.id - b.id) })
		for _, x := range got {
			ids = append(ids, x.mid)
		}
		if !notify {
			return nil
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, outbox.Channel, tn.Schema)
		return err
	})
	must(t, err)
	return ids
}

func (f *fixture) unsent(t *testing.T, tns ...tenant.Tenant) int {
	t.Helper()
	total := 0
	for _, tn := range tns {
		var n int
		must(t, f.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM `+
			pgx.Identifier{tn.Schema, "outbox"}.Sanitize()+` WHERE sent_at IS NULL`).Scan(&n))
		total += n
	}
	return total
}

func (f *fixture) notify(t *testing.T, tn tenant.Tenant) {
	t.Helper()
	_, err := f.store.Pool().Exec(context.Background(), `SELECT pg_notify($1, $2)`, outbox.Channel, tn.Schema)
	must(t, err)
}

// run starts r and returns a stop function that waits for Run to return.
func run(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestRelay_publishes_each_schema_in_id_order_and_marks_rows_sent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a, b := f.tenant(t), f.tenant(t)
	want := map[string][]string{}
	want[a.Name] = append(want[a.Name], f.insert(t, a, 5)...)
	want[b.Name] = append(want[b.Name], f.insert(t, b, 7)...)
	want[a.Name] = append(want[a.Name], f.insert(t, a, 5)...)
	// Sent rows: one past retention (deleted), one within (kept), neither published.
	_, err := f.store.Pool().Exec(ctx, `INSERT INTO `+pgx.Identifier{a.Schema, "outbox"}.Sanitize()+`
		(message_id, exchange, routing_key, type, payload, sent_at) VALUES
		(gen_random_uuid(), 'x', 'old', 't', '{}', now() - interval '48 hours'),
		(gen_random_uuid(), 'x', 'recent', 't', '{}', now() - interval '1 hour')`)
	must(t, err)

	// Batch 4 makes the relay drain a schema over several full batches; the
	// long Poll leaves the late rows to the notification.
	relay := outbox.New(f.store.Pool(), f.conn, f.log, outbox.Options{Batch: 4, Poll: time.Hour, Sweep: time.Hour})
	stop := run(t, relay)
	eventually(t, 20*time.Second, "first rows published", func() bool { return relay.Published() == 17 })

	want[b.Name] = append(want[b.Name], f.insert(t, b, 3)...)
	eventually(t, 20*time.Second, "notified rows published", func() bool {
		f.notify(t, b) // again, in case the relay was not listening yet
		return relay.Published() == 20
	})
	stop()

	if n := f.unsent(t, a, b); n != 0 {
		t.Errorf("%d rows still unsent", n)
	}
	var keys []string
	rows, err := f.store.Pool().Query(ctx, `SELECT routing_key FROM `+pgx.Identifier{a.Schema, "outbox"}.Sanitize()+
		` WHERE exchange = 'x' ORDER BY id`)
	must(t, err)
	keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
	must(t, err)
	if !slices.Equal(keys, []string{"recent"}) {
		t.Errorf("sent rows left = %v, want only the one within retention", keys)
	}

	got := drain(t, f.env.Config.AMQPURL, catalog.IngestQueue, 20*time.Second, func(ds []amqp.Delivery) bool { return len(ds) >= 20 })
	order := map[string][]string{}
	for _, d := range got {
		if d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent || d.Type != catalog.TypeProductChanged || d.Timestamp.IsZero() {
			t.Fatalf("message properties: content-type %q, mode %d, type %q, timestamp %v", d.ContentType, d.DeliveryMode, d.Type, d.Timestamp)
		}
		env, _, err := catalog.ParseChange(d.Body, d.RoutingKey)
		if err != nil {
			t.Fatalf("body does not parse: %v", err)
		}
		if env.MessageID != d.MessageId {
			t.Fatalf("MessageId %q, envelope says %q", d.MessageId, env.MessageID)
		}
		order[env.TenantID] = append(order[env.TenantID], d.MessageId)
	}
	for _, tn := range []tenant.Tenant{a, b} {
		if !slices.Equal(order[tn.Name], want[tn.Name]) {
			t.Errorf("tenant %s: published\n%v\nwant (id order)\n%v", tn.Name, order[tn.Name], want[tn.Name])
		}
	}
}

func TestRelay_loses_nothing_when_the_broker_drops_it_or_it_restarts(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a, b := f.tenant(t), f.tenant(t)
	opts := outbox.Options{Batch: 50, Poll: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	relay := outbox.New(f.store.Pool(), f.conn, f.log, opts)
	stop := run(t, relay)

	// Close the relay's connection while it is publishing a backlog: it
	// must roll back what the broker did not confirm, redial and go on.
	var want []string
	for range 3 {
		want = append(want, f.insert(t, a, 1)...)
		before := relay.Published()
		eventually(t, 20*time.Second, "the relay connected", func() bool { return relay.Published() > before })
		names, err := f.env.Connections(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, f.insert(t, a, 1000)...)
		want = append(want, f.insert(t, b, 1000)...)
		before = relay.Published()
		eventually(t, 20*time.Second, "progress", func() bool { return relay.Published() > before })
		if err := f.env.CloseConnections(context.Background(), names); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "every row sent after the drops", func() bool { return f.unsent(t, a, b) == 0 })

	// A relay stopped and another started in its place pick up where it was.
	want = append(want, f.insert(t, a, 300)...)
	stop()
	want = append(want, f.insert(t, b, 300)...)
	relay2 := outbox.New(f.store.Pool(), f.conn, f.log, opts)
	run(t, relay2)
	eventually(t, 60*time.Second, "every row sent after the restart", func() bool { return f.unsent(t, a, b) == 0 })
	// The counters move just after the commit that marks rows sent.
	eventually(t, 10*time.Second, "Published() counts every row", func() bool {
		return relay.Published()+relay2.Published() >= int64(len(want))
	})

	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	got := drain(t, f.env.Config.AMQPURL, catalog.IngestQueue, 60*time.Second, func(ds []amqp.Delivery) bool {
		if len(ds) > 0 {
			delete(missing, ds[len(ds)-1].MessageId)
		}
		return len(missing) == 0
	})
	t.Logf("%d rows, %d messages (%d duplicates), %d warnings logged", len(want), len(got), len(got)-len(want), f.warns.Load())
}

// The relay's LISTEN connection is lost: what is committed meanwhile is
// notified to no one, and the relay reads every outbox when it listens
// again (a second later), long before its next sweep or poll.
func TestRelay_relays_what_was_committed_while_its_listen_was_lost(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	tn := f.tenant(t)
	relay := outbox.New(f.store.Pool(), f.conn, f.log, outbox.Options{Poll: time.Hour, Sweep: time.Hour})
	run(t, relay)
	f.insert(t, tn, 3)
	eventually(t, 20*time.Second, "the notified rows published", func() bool { return relay.Published() == 3 })

	// End every backend listening on the channel in this database: the
	// relay's (other tests' relays use databases of their own).
	var killed bool
	must(t, f.store.Pool().QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN ' || $1 AND pid <> pg_backend_pid()`, outbox.Channel).Scan(&killed))
	if !killed {
		t.Fatal("no backend listened on the outbox channel")
	}
	f.insertRows(t, tn, 4, false) // no NOTIFY: only a sweep finds them
	eventually(t, 20*time.Second, "the rows committed without a notification published", func() bool {
		return relay.Published() == 7 && f.unsent(t, tn) == 0
	})
}
