package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// deadReasons takes n messages off the dead queue and returns their
// reasons by message ID.
func (f *fixture) deadReasons(t *testing.T, n int) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, d := range f.get(t, catalog.DeadQueue, n) {
		reason, _ := d.Headers[catalog.ReasonHeader].(string)
		got[d.MessageId] = reason
	}
	return got
}

func TestConsumer_dead_letters_only_the_changes_the_store_or_the_sink_refuses(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a, b := f.tenant(t), f.tenant(t)
	f.products.refuse = map[string]bool{"BAD-STORE": true}
	f.sink.refuse = map[string]bool{"BAD-SINK": true}
	// Transient failures first, of both: retried in process, never split
	// or dead-lettered.
	f.products.failFirst, f.sink.failFirst = 2, 2
	var msgs, good []msg
	for i := range 30 {
		m := change([]string{a.Name, b.Name}[i%2], fmt.Sprintf("SKU-%d", i), 1, uuid.NewString())
		msgs, good = append(msgs, m), append(good, m)
	}
	badStore1 := change(a.Name, "BAD-STORE", 1, uuid.NewString())
	badStore2 := change(a.Name, "BAD-STORE", 2, uuid.NewString()) // coalesced with badStore1
	badSink := change(b.Name, "BAD-SINK", 1, uuid.NewString())
	msgs = append(msgs, badStore1, badSink, badStore2)
	f.publish(t, msgs...)

	// One batch: all are in the queue before the consumer starts.
	c := f.consumer(ingest.Options{Consumers: 1, MaxBatch: len(msgs), FlushEvery: 2 * time.Second, MaxBackoff: 20 * time.Millisecond})
	stop := run(t, c)
	eventually(t, 30*time.Second, "the good changes delivered and the refused ones dead-lettered", func() bool {
		return len(f.sink.acceptedIDs()) == len(good) && c.Stats().DeadLettered == 3
	})
	stop()
	ids := f.sink.acceptedIDs()
	for _, m := range good {
		if ids[m.id] != 1 {
			t.Errorf("%s delivered %d times", m.id, ids[m.id])
		}
	}
	reasons := f.deadReasons(t, 3)
	for id, want := range map[string]string{
		badStore2.id: "the store refused the change for good",
		badStore1.id: "superseded by message " + badStore2.id,
		badSink.id:   "Temporal refused the change for good",
	} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("dead letter %s: reason %q, want it to contain %q (all: %v)", id, reasons[id], want, reasons)
		}
	}
	if s := c.Stats(); s.Failures != 4 || s.Batches != 1 || s.Delivered != int64(len(good)) || s.Refused != 2 {
		t.Errorf("stats = %+v, want 4 failures (the transient ones), 1 batch, %d delivered, 2 refused", s, len(good))
	}
	if n := f.ready(t, catalog.IngestQueue); n != 0 {
		t.Errorf("%d messages left in the ingest queue", n)
	}

	// A refused message is not remembered as delivered: once the cause is
	// fixed, the same message republished goes through.
	f.products.mu.Lock()
	f.products.refuse = nil
	f.products.mu.Unlock()
	c2 := f.consumer(ingest.Options{Consumers: 1})
	run(t, c2)
	f.publish(t, badStore2)
	eventually(t, 20*time.Second, "the republished message delivered", func() bool { return f.sink.acceptedIDs()[badStore2.id] == 1 })
}

// injecting is the real store, but it refuses for good, as PostgreSQL
// would, every call that holds the SKU poison: a permanent failure of a
// change that passes every validation.
type injecting struct {
	ingest.Products
	poison string
	mu     sync.Mutex
	calls  map[string]int // schema -> calls
}

func (p *injecting) ApplyChanges(ctx context.Context, schema string, ps []catalog.Product) (int, error) {
	p.mu.Lock()
	p.calls[schema]++
	p.mu.Unlock()
	if slices.ContainsFunc(ps, func(pr catalog.Product) bool { return pr.SKU == p.poison }) {
		return 0, fmt.Errorf("apply %d changes: %w", len(ps), &pgconn.PgError{Severity: "ERROR", Code: "22P05",
			Message: "unsupported Unicode escape sequence (injected)"})
	}
	return p.Products.ApplyChanges(ctx, schema, ps)
}

func (p *injecting) callsTo(schema string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[schema]
}

// A change PostgreSQL refuses for good (an injected 22P05 that passes every
// validation, a tenant whose schema is gone) is dead-lettered alone; before,
// the consumer retried its whole batch for ever and every message behind
// it, of any tenant, waited. A NUL in a product name, which once reached
// PostgreSQL the same way, is now refused by ParseChange already.
func TestConsumer_a_poison_message_holds_up_nobody_against_real_postgres(t *testing.T) {
	testenv.Chaos(t, "3. poison on the bus: a NUL name, a write PostgreSQL refuses, a dropped tenant schema", "each dead-lettered with its reason; every other change, of every tenant, goes through")
	t.Parallel()
	f := setup(t)
	a, b, gone := f.tenant(t), f.tenant(t), f.tenant(t)
	// A tenant whose schema is missing refuses all its changes.
	if _, err := f.store.Pool().Exec(context.Background(), `DROP SCHEMA `+gone.Schema+` CASCADE`); err != nil {
		t.Fatal(err)
	}
	var msgs, good []msg
	for i := range 40 {
		m := change([]string{a.Name, b.Name}[i%2], fmt.Sprintf("SKU-%d", i), 1, uuid.NewString())
		msgs, good = append(msgs, m), append(good, m)
	}
	nul := change(a.Name, "NUL-1", 1, uuid.NewString())
	nul.body = []byte(strings.Replace(string(nul.body), `"name":"Product NUL-1"`, `"name":"Product \u0000 NUL-1"`, 1))
	if !strings.Contains(string(nul.body), `\u0000`) {
		t.Fatal("no NUL in the name")
	}
	injected := change(a.Name, "POISON", 1, uuid.NewString())
	orphans := []msg{change(gone.Name, "SKU-1", 1, uuid.NewString()), change(gone.Name, "SKU-2", 1, uuid.NewString())}
	msgs = append(msgs, nul, injected)
	msgs = append(msgs, orphans...)
	f.publish(t, msgs...)

	p := &injecting{Products: f.store, poison: "POISON", calls: map[string]int{}}
	c := f.consumerOver(ingest.Options{Consumers: 1, MaxBatch: len(msgs), FlushEvery: 2 * time.Second}, p)
	stop := run(t, c)
	eventually(t, 30*time.Second, "the good changes delivered and stored", func() bool {
		return len(f.sink.acceptedIDs()) == len(good)
	})
	eventually(t, 30*time.Second, "the refused ones dead-lettered", func() bool { return c.Stats().DeadLettered == 4 })
	stop()
	ctx := context.Background()
	for i := range 40 {
		tn := []string{a.Schema, b.Schema}[i%2]
		pr, err := f.store.Catalog(tn).Product(ctx, fmt.Sprintf("SKU-%d", i))
		if err != nil || pr.Version != 1 {
			t.Errorf("%s/SKU-%d: %+v, %v", tn, i, pr, err)
		}
	}
	reasons := f.deadReasons(t, 4)
	t.Logf("dead letters: %q", reasons)
	if r := reasons[nul.id]; !strings.Contains(r, "U+0000") {
		t.Errorf("the NUL message's reason: %q (dead letters: %v)", r, reasons)
	}
	if r := reasons[injected.id]; !strings.Contains(r, "22P05") || !strings.Contains(r, "the store refused the change for good") {
		t.Errorf("the injected failure's reason: %q", r)
	}
	for _, m := range orphans {
		if r := reasons[m.id]; !strings.Contains(r, "does not exist") {
			t.Errorf("a change of the tenant without a schema: reason %q", r)
		}
	}
	// Tenant b's schema, which refused nothing, took one call; the
	// missing schema one.
	if n := p.callsTo(b.Schema); n != 1 {
		t.Errorf("%d calls to %s, want 1", n, b.Schema)
	}
	if n := p.callsTo(gone.Schema); n != 1 {
		t.Errorf("%d calls to %s, want 1", n, gone.Schema)
	}
	if s := c.Stats(); s.Failures != 0 || s.Refused != 3 {
		t.Errorf("stats = %+v, want no transient failure and 3 refused by the store", s)
	}
	if n := f.ready(t, catalog.IngestQueue); n != 0 {
		t.Errorf("%d messages left in the ingest queue", n)
	}
}
