package deadletter_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/deadletter"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/testenv/servers"
)

// fixture is the test's own database (with one tenant) and vhost.
type fixture struct {
	store  *store.Store
	conn   *rabbit.Conn
	tenant tenant.Tenant
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := testenv.ForTest(t)
	s := servers.Store(t, env)
	tn := servers.Tenant(t, s, "recovery")
	conn := servers.Rabbit(t, env)
	return &fixture{store: s, conn: conn, tenant: tn}
}

// queue declares a queue of the test's own name and returns it.
func (f *fixture) queue(t *testing.T, name string) string {
	t.Helper()
	ch, err := f.conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		t.Fatal(err)
	}
	return name
}

func (f *fixture) publish(t *testing.T, exchange, key string, p amqp.Publishing) {
	t.Helper()
	ch, err := f.conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm(exchange, key, false, false, p)
	if err != nil {
		t.Fatal(err)
	}
	if !dc.Wait() {
		t.Fatal("publish nacked")
	}
}

func (f *fixture) depth(t *testing.T, queue string) int {
	t.Helper()
	ch, err := f.conn.Channel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func (f *fixture) letters(t *testing.T, schema string) []deadletter.Letter {
	t.Helper()
	ls, err := f.store.DeadLetters(schema).Page(context.Background(), deadletter.Filter{}, 100, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// flaky fails its first n archives, as PostgreSQL does during an outage.
type flaky struct {
	deadletter.Store
	fails atomic.Int32
}

func (f *flaky) ArchiveDeadLetter(ctx context.Context, schema string, l deadletter.Letter) (string, bool, error) {
	if f.fails.Add(-1) >= 0 {
		return "", false, errors.New("postgres is down")
	}
	return f.Store.ArchiveDeadLetter(ctx, schema, l)
}

// Each dead message lands once in its tenant's table (or the
// administrators'), and leaves the queue only after it is stored: a failed
// write leaves it there for the next try, and a redelivery adds no row.
func TestArchiver_stores_each_letter_once_and_acks_after_the_commit(t *testing.T) {
	f := setup(t)
	q := f.queue(t, "recovery.dead."+testenv.RunID())
	key := catalog.RoutingKey(f.tenant.Name)
	poison := amqp.Publishing{MessageId: "poison-1", Body: []byte(`{"message_id":"poison-1","tenant_id":"` + f.tenant.Name + `"`),
		Headers: amqp.Table{catalog.ReasonHeader: "invalid: envelope is not JSON: unexpected end", "x-original-routing-key": key}}
	f.publish(t, "", q, poison)
	f.publish(t, "", q, poison) // the same message again: a redelivery
	f.publish(t, "", q, amqp.Publishing{MessageId: "ghost-1", Body: []byte(`{"tenant_id":"ghost"}`),
		Headers: amqp.Table{catalog.ReasonHeader: "unknown tenant ghost", "x-original-routing-key": "product.changed.ghost"}})

	st := &flaky{Store: f.store}
	st.fails.Store(2)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	var archived sync.Map // reason -> *atomic.Int64
	count := func(reason string) {
		n, _ := archived.LoadOrStore(reason, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
	a := deadletter.NewArchiver(f.conn, f.store, st, log, deadletter.ArchiverOptions{Queue: q, Prefetch: 1, Archived: count})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.Eventually(t, 30*time.Second, "the dead queue drained", func() bool { return f.depth(t, q) == 0 })
	mine := f.letters(t, f.tenant.Schema)
	if len(mine) != 1 || mine[0].MessageID != "poison-1" || mine[0].Reason != deadletter.ReasonInvalid || mine[0].RoutingKey != key {
		t.Fatalf("tenant's letters %+v, want poison-1 once", mine)
	}
	var ghost int
	for _, l := range f.letters(t, store.AdminSchema) {
		if l.MessageID == "ghost-1" {
			ghost++
		}
	}
	if ghost != 1 {
		t.Fatalf("admin table holds ghost-1 %d times, want 1", ghost)
	}
	if st.fails.Load() >= 0 {
		t.Fatal("the failing writes were not tried")
	}
	// Told once per letter stored, not per delivery: the redelivered
	// poison-1 and the failed writes count nothing.
	for reason, want := range map[string]int64{deadletter.ReasonInvalid: 1, deadletter.ReasonUnknownTenant: 1} {
		n, _ := archived.Load(reason)
		if got, _ := n.(*atomic.Int64); got == nil || got.Load() != want {
			t.Errorf("Archived(%q) told %v times, want %d", reason, got, want)
		}
	}
}

// A replay publishes the letter to the catalog exchange once (the ingest
// queue gets it without the headers of its death); a second replay
// publishes nothing.
func TestReplayer_publishes_to_the_ingest_once(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	ch, err := f.conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rabbit.DeclareTopology(ch); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	key := catalog.RoutingKey(f.tenant.Name)
	body := []byte(`{"message_id":"transient-1"}`)
	l := deadletter.Letter{MessageID: "transient-1", Reason: deadletter.ReasonDeliveryLimit, Transient: true, RoutingKey: key,
		Headers: map[string]any{"x-death": []any{}, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		Body:    body, Fingerprint: deadletter.Fingerprint(key, "transient-1", body), DeadAt: time.Now()}
	id, _, err := f.store.ArchiveDeadLetter(ctx, f.tenant.Schema, l)
	if err != nil {
		t.Fatal(err)
	}
	r := deadletter.NewReplayer(f.conn, f.store)
	for i, want := range []int{1, 0} {
		res, err := r.Replay(ctx, f.tenant.Schema, deadletter.Selection{IDs: []string{id}}, 10)
		if err != nil || len(res.IDs) != want {
			t.Fatalf("replay %d: %+v, %v; want %d", i+1, res, err, want)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the replayed message in the ingest queue", func() bool { return f.depth(t, catalog.IngestQueue) == 1 })
	ch, err = f.conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	d, ok, err := ch.Get(catalog.IngestQueue, true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if string(d.Body) != string(body) || d.MessageId != "transient-1" || d.Headers[deadletter.ReplayedFromHeader] != id ||
		d.Headers["x-death"] != nil || d.Headers["traceparent"] == nil {
		t.Fatalf("replayed %+v", d)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
