package outbox

import (
	"testing"
	"time"
)

// Every tenant's outbox is read every Sweep while the LISTEN is in place,
// every Poll while it is not, and at once when asked (the LISTEN came back,
// a round failed) or before the first sweep.
func TestRelay_sweeps_rarely_while_it_listens(t *testing.T) {
	r := New(nil, nil, nil, Options{Poll: time.Second, Sweep: time.Minute})
	if !r.sweepDue() {
		t.Fatal("no sweep before the first one")
	}
	r.lastSweep = time.Now().Add(-5 * time.Second)
	if !r.sweepDue() {
		t.Fatal("not listening, and no sweep 5s after the last (Poll 1s)")
	}
	r.listening.Store(true)
	if r.sweepDue() {
		t.Fatal("listening, and a sweep 5s after the last (Sweep 1m)")
	}
	r.sweepNow.Store(true)
	if !r.sweepDue() {
		t.Fatal("a sweep asked for did not come")
	}
	if r.sweepDue() {
		t.Fatal("a sweep asked for once came twice")
	}
	r.lastSweep = time.Now().Add(-2 * time.Minute)
	if !r.sweepDue() {
		t.Fatal("listening, and no sweep 2m after the last (Sweep 1m)")
	}
}
