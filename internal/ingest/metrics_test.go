package ingest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
)

// metrics is a fake ingest.Metrics that records what it was told.
type metrics struct {
	mu     sync.Mutex
	dead   map[string]int
	handed int
}

func (m *metrics) DeadLettered(reason string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dead[reason] += n
}

func (m *metrics) HandedOver(time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handed++
}

func (m *metrics) snapshot() (map[string]int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for k, v := range m.dead {
		out[k] = v
	}
	return out, m.handed
}

func TestConsumer_metrics_count_dead_letters_by_class_and_the_oldest_unacked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tn := f.tenant(t)
	f.sink.failFirst = 40 // the valid change waits, unacked, through an outage
	m := &metrics{dead: map[string]int{}}
	c := f.consumer(ingest.Options{Consumers: 1, MaxBackoff: 20 * time.Millisecond, Metrics: m})
	if !c.OldestUnacked().IsZero() {
		t.Fatal("oldest unacked before any delivery is not zero")
	}
	run(t, c)
	ok := change(tn.Name, "SKU-1", 1, uuid.NewString())
	unknown := change("nobody_here", "SKU-1", 1, uuid.NewString())
	garbage := msg{key: catalog.RoutingKey(tn.Name), body: []byte(`{"message_id": `), id: "garbage-" + uuid.NewString()}
	f.publish(t, ok, unknown, garbage)
	eventually(t, 20*time.Second, "the batch held unacked during the outage", func() bool {
		return !c.OldestUnacked().IsZero()
	})
	if age := time.Since(c.OldestUnacked()); age < 0 || age > time.Minute {
		t.Fatalf("oldest unacked is %v old, want the just published message's age", age)
	}
	eventually(t, 30*time.Second, "the change delivered", func() bool { return f.sink.acceptedIDs()[ok.id] == 1 })
	eventually(t, 10*time.Second, "nothing held once acked", func() bool { return c.OldestUnacked().IsZero() })
	dead, handed := m.snapshot()
	if dead[ingest.ReasonUnknownTenant] != 1 || dead[ingest.ReasonInvalidMessage] != 1 || len(dead) != 2 {
		t.Errorf("dead letters by reason %v, want 1 unknown_tenant and 1 invalid_message", dead)
	}
	if handed != 3 {
		t.Errorf("handed over %d, want the 3 acked messages", handed)
	}
}
