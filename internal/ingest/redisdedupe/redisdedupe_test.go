package redisdedupe_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/ingest/redisdedupe"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// open connects to the stack's Redis under a prefix of its own (Redis is
// all this package needs, so no testenv.New with its database and vhost).
func open(t *testing.T) *queue.Redis {
	t.Helper()
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := queue.Open(ctx, cfg.RedisURL, "sagaflow-test-"+testenv.RunID()+":")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// What was remembered is seen, per tenant: another tenant's same message
// ID, or an ID never remembered, is not.
func TestDeduper_sees_what_it_remembered_per_tenant(t *testing.T) {
	t.Parallel()
	d := redisdedupe.New(open(t))
	ctx := context.Background()
	id := "42-" + testenv.RunID()
	a, b := ingest.DedupeKey{Tenant: "ta", MessageID: id}, ingest.DedupeKey{Tenant: "tb", MessageID: id}
	other := ingest.DedupeKey{Tenant: "ta", MessageID: "43-" + testenv.RunID()}

	if got, err := d.Seen(ctx, []ingest.DedupeKey{a, b, other}); err != nil || len(got) != 3 || got[0] || got[1] || got[2] {
		t.Fatalf("Seen before Remember = %v, %v; want three false", got, err)
	}
	if err := d.Remember(ctx, []ingest.DedupeKey{a}, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := d.Seen(ctx, []ingest.DedupeKey{other, a, b, a})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, false, true}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("Seen = %v, want %v (in the order of the keys)", got, want)
	}
	if got, err := d.Seen(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Seen(nil) = %v, %v", got, err)
	}
	if err := d.Remember(ctx, nil, time.Minute); err != nil {
		t.Fatalf("Remember(nil) = %v", err)
	}
}

// The key scheme is the one the ingest wrote before the Deduper existed
// (prefix, "ingest", "msgid", tenant, message ID), so keys written by an
// older process still count, and each key carries the TTL it was given.
func TestDeduper_keeps_the_key_scheme_and_the_ttl(t *testing.T) {
	t.Parallel()
	r := open(t)
	d := redisdedupe.New(r)
	ctx := context.Background()
	k := ingest.DedupeKey{Tenant: "tkeys", MessageID: "m:1 with spaces-" + testenv.RunID()}
	raw := r.Key("ingest", "msgid", k.Tenant, k.MessageID)
	if got := d.Key(k); got != raw {
		t.Fatalf("Key = %q, want %q", got, raw)
	}
	if err := d.Remember(ctx, []ingest.DedupeKey{k}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ttl, err := r.Client.PTTL(ctx, raw).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Hour {
		t.Fatalf("TTL of %s = %v, want within (0, 1h]", raw, ttl)
	}
	// A key an older process wrote is seen.
	old := ingest.DedupeKey{Tenant: "tkeys", MessageID: "old-" + testenv.RunID()}
	if err := r.Client.Set(ctx, r.Key("ingest", "msgid", old.Tenant, old.MessageID), 1, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Seen(ctx, []ingest.DedupeKey{old}); err != nil || !got[0] {
		t.Fatalf("Seen(old key) = %v, %v; want true", got, err)
	}
}

// With Redis gone, both calls fail with an error naming what they did.
func TestDeduper_fails_when_redis_is_gone(t *testing.T) {
	t.Parallel()
	r := open(t)
	d := redisdedupe.New(r)
	_ = r.Close()
	ctx := context.Background()
	k := []ingest.DedupeKey{{Tenant: "tgone", MessageID: "1"}}
	if got, err := d.Seen(ctx, k); err == nil {
		t.Fatalf("Seen on a closed client = %v, nil; want an error", got)
	}
	if err := d.Remember(ctx, k, time.Minute); err == nil {
		t.Fatal("Remember on a closed client = nil; want an error")
	}
}
