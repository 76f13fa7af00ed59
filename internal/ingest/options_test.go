package ingest

import "testing"

// A prefetch past AMQP's 16-bit count is cut to the largest one, not sent
// as its low 16 bits (65,536 would become 0: no limit at all); the batch
// follows it.
func TestOptions_prefetch_stays_within_amqps_count(t *testing.T) {
	for _, p := range []int{65536, 70000, 1 << 40} {
		o := Options{Prefetch: p}
		o.setDefaults()
		if o.Prefetch != MaxPrefetch || o.MaxBatch != MaxPrefetch {
			t.Errorf("Prefetch %d: became %d (batch %d), want %d", p, o.Prefetch, o.MaxBatch, MaxPrefetch)
		}
	}
	o := Options{}
	o.setDefaults()
	if o.Prefetch != 5000 || o.MaxBatch != 5000 {
		t.Errorf("defaults: prefetch %d, batch %d; want 5000 and 5000", o.Prefetch, o.MaxBatch)
	}
}
