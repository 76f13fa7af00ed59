package ingest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/ingest/redisdedupe"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

func TestConsumer_dead_letters_what_it_cannot_ingest_with_the_reason(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	ok := change(tn.Name, "SKU-1", 1, uuid.NewString())
	wrongType := change(tn.Name, "SKU-1", 1, uuid.NewString())
	wrongType.body = []byte(strings.Replace(string(wrongType.body), `"type":"product.changed"`, `"type":"product.deleted"`, 1))
	mismatch := change(tn.Name, "SKU-1", 1, uuid.NewString())
	mismatch.key = catalog.RoutingKey("someone_else")
	invalidProduct := change(tn.Name, "SKU-1", 1, uuid.NewString())
	invalidProduct.body = []byte(strings.Replace(string(invalidProduct.body), `"currency":"KRW"`, `"currency":"XXX"`, 1))
	cases := map[string]struct {
		msg    msg
		reason string
	}{
		"malformed_json":    {msg{key: catalog.RoutingKey(tn.Name), body: []byte(`{"message_id": "m1", `), id: "malformed"}, "not JSON"},
		"wrong_type":        {wrongType, `want "product.changed"`},
		"routing_mismatch":  {mismatch, "does not match tenant_id"},
		"unknown_tenant":    {change("nobody_here", "SKU-1", 1, uuid.NewString()), "unknown tenant nobody_here"},
		"invalid_product":   {invalidProduct, `price.currency: "XXX"`},
		"version_below_one": {change(tn.Name, "SKU-2", 0, uuid.NewString()), "payload.version: must be at least 1"},
	}
	byID := map[string]string{}
	var msgs []msg
	for name, c := range cases {
		msgs = append(msgs, c.msg)
		byID[c.msg.id] = name
	}
	msgs = append(msgs, ok)

	c := f.consumer(ingest.Options{Consumers: 1})
	run(t, c)
	f.publish(t, msgs...)
	eventually(t, 20*time.Second, "the valid change delivered", func() bool { return f.sink.acceptedIDs()[ok.id] == 1 })
	eventually(t, 20*time.Second, "every invalid message dead-lettered", func() bool { return c.Stats().DeadLettered == int64(len(cases)) })

	for _, d := range f.get(t, catalog.DeadQueue, len(cases)) {
		name, found := byID[d.MessageId]
		if !found {
			t.Errorf("unexpected dead letter %q: %s", d.MessageId, d.Body)
			continue
		}
		delete(byID, d.MessageId)
		want := cases[name]
		reason, _ := d.Headers[catalog.ReasonHeader].(string)
		if !strings.Contains(reason, want.reason) {
			t.Errorf("%s: reason %q, want it to contain %q", name, reason, want.reason)
		}
		if got := d.Headers[ingest.OriginalRoutingKeyHeader]; got != want.msg.key {
			t.Errorf("%s: original routing key %v, want %q", name, got, want.msg.key)
		}
		if string(d.Body) != string(want.msg.body) || d.Headers["x-test"] != "yes" {
			t.Errorf("%s: the dead letter is not a copy of the message (body %q, headers %v)", name, d.Body, d.Headers)
		}
	}
	if len(byID) > 0 {
		t.Errorf("not dead-lettered: %v", byID)
	}
	if s := c.Stats(); s.Delivered != 1 || s.Failures != 0 {
		t.Errorf("stats = %+v", s)
	}
	eventually(t, 10*time.Second, "the ingest queue empty", func() bool { return f.ready(t, catalog.IngestQueue) == 0 })
}

func TestConsumer_delivers_a_message_id_once(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	c := f.consumer(ingest.Options{Consumers: 1})
	run(t, c)

	m1 := change(tn.Name, "SKU-1", 1, uuid.NewString())
	f.publish(t, m1, m1) // the same batch, most likely
	eventually(t, 20*time.Second, "m1 delivered", func() bool { return f.sink.acceptedIDs()[m1.id] > 0 })
	m2 := change(tn.Name, "SKU-2", 1, uuid.NewString())
	f.publish(t, m1) // a later batch
	f.publish(t, m2)
	eventually(t, 20*time.Second, "m2 delivered", func() bool { return f.sink.acceptedIDs()[m2.id] > 0 })
	eventually(t, 20*time.Second, "every copy handled", func() bool { return c.Stats().Duplicates == 2 })

	ids := f.sink.acceptedIDs()
	if ids[m1.id] != 1 || ids[m2.id] != 1 {
		t.Errorf("deliveries per message ID = %v, want one each", ids)
	}
	// m1's second copy and m2 may be in different batches, so the counters
	// can still be moving.
	eventually(t, 10*time.Second, "stats count 4 received and 2 delivered", func() bool {
		s := c.Stats()
		return s.Received == 4 && s.Delivered == 2
	})
}

// Without a MaxBatch, a consumer hands over as many deliveries as it may
// hold unacked: a backlog of 2,500 changes (more than the 2,000 it stopped
// at before) goes over in one batch, not in one of 2,000 and another after
// FlushEvery.
func TestConsumer_hands_over_a_backlog_up_to_its_prefetch_at_once(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	const n = 2500
	msgs := make([]msg, n)
	for i := range msgs {
		msgs[i] = change(tn.Name, fmt.Sprintf("SKU-%d", i), 1, uuid.NewString())
	}
	f.publish(t, msgs...)
	c := f.consumer(ingest.Options{Consumers: 1, Prefetch: n, FlushEvery: time.Minute})
	run(t, c)
	eventually(t, 30*time.Second, "every change delivered", func() bool {
		return len(f.sink.acceptedIDs()) == n && c.Stats().Batches > 0
	})
	if b := c.Stats().Batches; b != 1 {
		t.Fatalf("%d changes in the queue went over in %d batches, want 1", n, b)
	}
}

func TestConsumer_coalesces_changes_to_the_highest_version_per_sku(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a, b := f.tenant(t), f.tenant(t)
	var msgs []msg
	for v := range int64(200) {
		msgs = append(msgs, change(a.Name, "SKU-1", v+1, uuid.NewString()))
		if v < 50 {
			msgs = append(msgs, change(b.Name, "SKU-1", v+1, uuid.NewString()))
		}
		if v < 3 {
			msgs = append(msgs, change(a.Name, "SKU-2", v+1, uuid.NewString()))
		}
	}
	// Shuffled, as competing publishers and redeliveries leave them.
	rand.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	f.publish(t, msgs...)

	// All in the queue before the consumer starts, and MaxBatch = all:
	// one batch unless the broker is very slow.
	c := f.consumer(ingest.Options{Consumers: 1, MaxBatch: len(msgs), FlushEvery: 5 * time.Second})
	run(t, c)
	latest := func(tenantName, sku string) int64 {
		var v int64
		for _, ch := range f.sink.accepted() {
			if ch.Tenant == tenantName && ch.Product.SKU == sku {
				v = max(v, ch.Product.Version)
			}
		}
		return v
	}
	eventually(t, 30*time.Second, "the highest versions delivered", func() bool {
		return latest(a.Name, "SKU-1") == 200 && latest(b.Name, "SKU-1") == 50 && latest(a.Name, "SKU-2") == 3
	})

	got := f.sink.accepted()
	t.Logf("%d messages became %d delivered changes in %d batches", len(msgs), len(got), c.Stats().Batches)
	if len(got) > 15 {
		t.Errorf("%d changes delivered for 3 SKUs; coalescing does not work", len(got))
	}
	f.sink.mu.Lock()
	for _, batch := range f.sink.batches {
		seen := map[string]bool{}
		for _, ch := range batch {
			k := ch.Tenant + "/" + ch.Product.SKU
			if seen[k] {
				t.Errorf("batch holds %s twice", k)
			}
			seen[k] = true
			if ch.Schema != "tenant_"+ch.Tenant {
				t.Errorf("change of %s carries schema %s", ch.Tenant, ch.Schema)
			}
		}
	}
	f.sink.mu.Unlock()
	if v := f.products.version(a.Schema, "SKU-1"); v != 200 {
		t.Errorf("stored version of %s/SKU-1 = %d, want 200", a.Name, v)
	}
	if v := f.products.version(b.Schema, "SKU-1"); v != 50 {
		t.Errorf("stored version of %s/SKU-1 = %d, want 50", b.Name, v)
	}
}

func TestConsumer_retries_until_the_store_and_the_sink_accept(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	f.products.failFirst = 2
	f.sink.failFirst = 3
	var msgs []msg
	for i := range 50 {
		msgs = append(msgs, change(tn.Name, fmt.Sprintf("SKU-%d", i), 1, uuid.NewString()))
	}
	// One poison message among them goes to the dead queue on the first
	// try, and is not retried with the failed batches.
	msgs = append(msgs, msg{key: catalog.RoutingKey(tn.Name), body: []byte("not json"), id: "poison"})
	c := f.consumer(ingest.Options{Consumers: 1, MaxBackoff: 50 * time.Millisecond})
	stop := run(t, c)
	f.publish(t, msgs...)

	// The poison may come in a batch of its own, after the others.
	eventually(t, 30*time.Second, "every change delivered and the poison dead-lettered", func() bool {
		return len(f.sink.acceptedIDs()) == 50 && c.Stats().DeadLettered == 1
	})
	stop()
	ids := f.sink.acceptedIDs()
	for _, m := range msgs[:50] {
		if ids[m.id] != 1 {
			t.Errorf("message %s delivered %d times", m.id, ids[m.id])
		}
	}
	s := c.Stats()
	if s.Failures < 5 || s.DeadLettered != 1 {
		t.Errorf("stats = %+v, want at least 5 failures and 1 dead letter", s)
	}
	if n := f.ready(t, catalog.IngestQueue); n != 0 {
		t.Errorf("%d messages left in the ingest queue", n)
	}
	if n := f.ready(t, catalog.DeadQueue); n != 1 {
		t.Errorf("%d messages in the dead queue, want 1", n)
	}
}

func TestConsumer_competing_consumers_lose_nothing_across_a_broker_drop(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a, b := f.tenant(t), f.tenant(t)
	// Two processes with two consumers each, small batches so all take part.
	opts := ingest.Options{Consumers: 2, Prefetch: 100, MaxBatch: 50, FlushEvery: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	c1, c2 := f.consumer(opts), f.consumer(opts)
	run(t, c1)
	run(t, c2)

	want := map[string]bool{}
	publish := func(n int) {
		var msgs []msg
		for i := range n {
			tn := a
			if i%2 == 1 {
				tn = b
			}
			m := change(tn.Name, fmt.Sprintf("SKU-%s", uuid.NewString()[:8]), 1, uuid.NewString())
			want[m.id] = true
			msgs = append(msgs, m)
		}
		f.publish(t, msgs...)
	}
	publish(1000)
	eventually(t, 30*time.Second, "consumption under way", func() bool { return c1.Stats().Batches+c2.Stats().Batches > 0 })
	ctx := context.Background()
	names, err := f.env.Connections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	publish(1000)
	if err := f.env.CloseConnections(ctx, names); err != nil {
		t.Fatal(err)
	}
	publish(1000)

	eventually(t, 60*time.Second, "every change delivered", func() bool {
		ids := f.sink.acceptedIDs()
		for id := range want {
			if ids[id] == 0 {
				return false
			}
		}
		return true
	})
	// Delivered moves just after the sink accepted a batch.
	eventually(t, 10*time.Second, "the consumers count every delivery", func() bool {
		return c1.Stats().Delivered+c2.Stats().Delivered >= int64(len(want))
	})
	t.Logf("consumer 1: %+v; consumer 2: %+v", c1.Stats(), c2.Stats())
}

func TestConsumer_survives_random_bytes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	rng := rand.New(rand.NewPCG(1, 2))
	valid := change(tn.Name, "SKU-1", 1, "template").body
	var msgs []msg
	for i := range 300 {
		var body []byte
		switch i % 3 {
		case 0: // noise
			body = make([]byte, rng.IntN(2048))
			for j := range body {
				body[j] = byte(rng.UintN(256))
			}
		case 1: // a valid envelope with a few bytes changed
			body = []byte(strings.Replace(string(valid), "template", fmt.Sprintf("m%d", i), 1))
			for range 1 + rng.IntN(4) {
				body[rng.IntN(len(body))] = byte(rng.UintN(256))
			}
		case 2: // truncated
			body = valid[:rng.IntN(len(valid))]
		}
		msgs = append(msgs, msg{key: catalog.RoutingKey(tn.Name), body: body, id: fmt.Sprintf("r%d", i)})
	}
	sentinel := change(tn.Name, "SKU-LAST", 1, uuid.NewString())
	msgs = append(msgs, sentinel)

	c := f.consumer(ingest.Options{Consumers: 2})
	run(t, c)
	f.publish(t, msgs...)
	// Ready 0 is not enough: the other consumer may still hold its batch
	// (unacked), dead-lettering it; so wait for most to be dead-lettered.
	eventually(t, 30*time.Second, "every message handled", func() bool {
		s := c.Stats()
		return s.Received == int64(len(msgs)) && f.sink.acceptedIDs()[sentinel.id] == 1 && f.ready(t, catalog.IngestQueue) == 0 &&
			s.DeadLettered >= 250
	})
	s := c.Stats()
	t.Logf("stats: %+v", s)
	if s.Failures != 0 || s.DeadLettered < 250 {
		t.Errorf("stats = %+v, want no failures and most dead-lettered", s)
	}
}

func TestConsumer_a_long_outage_keeps_changes_unacked_without_spending_deliveries(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	// More failures than the queue's delivery limit: were the batch
	// requeued after each, the change would end in the dead queue.
	f.sink.failFirst = 3 * rabbit.DeliveryLimit
	c := f.consumer(ingest.Options{Consumers: 1, MaxBackoff: 10 * time.Millisecond})
	stop := run(t, c)
	m := change(tn.Name, "SKU-1", 1, uuid.NewString())
	f.publish(t, m)

	eventually(t, 30*time.Second, "the change delivered once the sink accepts", func() bool { return f.sink.acceptedIDs()[m.id] == 1 })
	stop()
	if s := c.Stats(); s.Failures < 3*rabbit.DeliveryLimit || s.Delivered != 1 {
		t.Errorf("stats = %+v, want at least %d failures and 1 delivered", s, 3*rabbit.DeliveryLimit)
	}
	if n := f.ready(t, catalog.DeadQueue); n != 0 {
		t.Errorf("%d messages in the dead queue, want none", n)
	}
	if n := f.ready(t, catalog.IngestQueue); n != 0 {
		t.Errorf("%d messages left in the ingest queue", n)
	}
}

func TestConsumer_the_same_message_id_from_two_tenants_is_two_messages(t *testing.T) {
	testenv.Chaos(t, "4. two tenants publish the same message_id", "both changes are delivered")
	t.Parallel()
	f := setup(t)
	a, b := f.tenant(t), f.tenant(t)
	c := f.consumer(ingest.Options{Consumers: 1})
	run(t, c)
	id := "42-" + uuid.NewString()[:8] // unique per run: the keys live in the shared Redis

	// The same batch, most likely: the within-batch dedupe.
	f.publish(t, change(a.Name, "SKU-1", 1, id), change(b.Name, "SKU-1", 1, id))
	eventually(t, 20*time.Second, "both tenants' changes delivered", func() bool {
		return len(f.sink.accepted()) == 2
	})
	// Later batches: the Redis dedupe. Tenant a's repeat is dropped,
	// tenant b's new change with a's id is not.
	f.publish(t, change(a.Name, "SKU-1", 1, id))
	eventually(t, 20*time.Second, "a's repeat dropped", func() bool { return c.Stats().Duplicates == 1 })
	other := "43-" + uuid.NewString()[:8]
	f.publish(t, change(a.Name, "SKU-2", 1, other))
	eventually(t, 20*time.Second, "a's other change delivered", func() bool { return f.sink.acceptedIDs()[other] == 1 })
	f.publish(t, change(b.Name, "SKU-2", 1, other))
	eventually(t, 20*time.Second, "b's change with a's message id delivered", func() bool { return f.sink.acceptedIDs()[other] == 2 })

	got := map[string]int{}
	for _, ch := range f.sink.accepted() {
		got[ch.Tenant+"/"+ch.Product.SKU+"/"+ch.MessageID]++
	}
	for _, k := range []string{a.Name + "/SKU-1/" + id, b.Name + "/SKU-1/" + id, a.Name + "/SKU-2/" + other, b.Name + "/SKU-2/" + other} {
		if got[k] != 1 {
			t.Errorf("%s delivered %d times, want once (all: %v)", k, got[k], got)
		}
	}
	if s := c.Stats(); s.Duplicates != 1 {
		t.Errorf("stats = %+v, want exactly one duplicate", s)
	}
}

// A Deduper that fails costs a repeat, never a change: the batch is taken
// as new, handed over and acked, and a republished message goes through
// again instead of being dropped.
func TestConsumer_delivers_when_the_deduper_fails(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gone, err := queue.Open(ctx, f.env.Config.RedisURL, f.env.Config.RedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	_ = gone.Close()
	c := ingest.New(f.conn, redisdedupe.New(gone), f.store, f.products, f.sink, f.log,
		ingest.Options{Consumers: 1, DedupeTTL: time.Minute, MaxBackoff: 500 * time.Millisecond})
	stop := run(t, c)
	m := change(tn.Name, "SKU-1", 1, uuid.NewString())
	f.publish(t, m)
	eventually(t, 20*time.Second, "the change delivered", func() bool { return f.sink.acceptedIDs()[m.id] == 1 })
	f.publish(t, m)
	eventually(t, 20*time.Second, "the repeat delivered too", func() bool { return f.sink.acceptedIDs()[m.id] == 2 })
	stop()
	if s := c.Stats(); s.Duplicates != 0 || s.Failures != 0 {
		t.Errorf("stats = %+v, want no duplicate (nothing to tell them by) and no failure", s)
	}
}
