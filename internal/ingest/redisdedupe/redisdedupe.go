// Package redisdedupe is the Redis implementation of ingest.Deduper: one
// key per (tenant, message ID), holding 1 until its TTL ends.
package redisdedupe

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/queue"
)

// Deduper keeps the delivered message IDs in Redis, one key per pair (see
// Key). Safe for concurrent use.
type Deduper struct {
	rdb *queue.Redis
}

var _ ingest.Deduper = (*Deduper)(nil)

// New returns a Deduper over rdb.
func New(rdb *queue.Redis) *Deduper { return &Deduper{rdb: rdb} }

// Key is the Redis key of k: rdb.Key("ingest", "msgid", tenant, message
// ID). A tenant name is [a-z0-9_] and never holds the ":" that Key puts
// after it, so the tenant ends at the first ":" after the prefix and no two
// pairs share a key, whatever printable ASCII the message ID holds.
// "msgid" and not the tenant-less scheme's "msg": no key of the old scheme
// can be read as one of the new.
func (d *Deduper) Key(k ingest.DedupeKey) string {
	return d.rdb.Key("ingest", "msgid", k.Tenant, k.MessageID)
}

// Seen reports which keys exist, in one round trip.
func (d *Deduper) Seen(ctx context.Context, keys []ingest.DedupeKey) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := d.rdb.Client.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Exists(ctx, d.Key(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisdedupe: check %d message ids: %w", len(keys), err)
	}
	out := make([]bool, len(keys))
	for i, c := range cmds {
		out[i] = c.Val() > 0
	}
	return out, nil
}

// Remember sets every key for ttl, in one round trip.
func (d *Deduper) Remember(ctx context.Context, keys []ingest.DedupeKey, ttl time.Duration) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := d.rdb.Client.Pipeline()
	for _, k := range keys {
		pipe.Set(ctx, d.Key(k), 1, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisdedupe: remember %d message ids: %w", len(keys), err)
	}
	return nil
}
