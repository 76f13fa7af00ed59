package ingest

import (
	"context"
	"time"
)

// DedupeKey identifies a message for dedupe: message IDs are the
// publisher's, and two tenants' systems may well both send "42", so the
// tenant is part of the key.
type DedupeKey struct {
	Tenant    string
	MessageID string
}

// Deduper remembers which messages were delivered, so that a redelivered or
// republished one is dropped (after watermill's deduplicator: seen, then
// remember once handled). Implementations must be safe for concurrent use:
// the competing consumers of a process share one. Dedupe saves work and
// nothing depends on it for correctness (the versions keep a repeat
// harmless), so an error costs at most a repeat: the Consumer logs it and
// carries on. internal/ingest/redisdedupe is the Redis implementation.
type Deduper interface {
	// Seen reports, in the order of keys, whether each was remembered and
	// has not expired. On an error the result is ignored and every key is
	// treated as new.
	Seen(ctx context.Context, keys []DedupeKey) ([]bool, error)
	// Remember records keys for ttl, replacing what an earlier call
	// recorded. A key recorded twice is the same key.
	Remember(ctx context.Context, keys []DedupeKey, ttl time.Duration) error
}
