// Package queue is sagaflow's Redis adapter: the client every Redis-backed
// part shares (first-come queues, dedupe keys), with all keys under one
// prefix so that runs and deployments sharing a server never collide.
package queue

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis is a go-redis client with a key prefix. Safe for concurrent use.
type Redis struct {
	Client *redis.Client
	prefix string
}

// Open connects to url and checks that the server answers.
func Open(ctx context.Context, url, prefix string) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("queue: parse REDIS_URL: %w", err)
	}
	// No silent retries: a request whose reply was lost (redis-server died
	// after running it) must reach the caller as an error, not be re-sent
	// and answered "already requested" to a user who never saw the first
	// answer. Callers retry where that is safe (activities, by policy).
	opts.MaxRetries = -1
	// Redis runs with appendfsync always: it fsyncs once per event-loop
	// round for every write that round, so throughput is the number of
	// requests in flight per fsync. A large pool lets a burst share fsyncs
	// (group commit); the default (10 per CPU) caps it at ~2k writes/s here.
	if opts.PoolSize < 256 {
		opts.PoolSize = 256
	}
	r := &Redis{Client: redis.NewClient(opts), prefix: prefix}
	if err := r.Ping(ctx); err != nil {
		_ = r.Client.Close()
		return nil, err
	}
	return r, nil
}

// Key returns parts joined by ":" under the prefix.
func (r *Redis) Key(parts ...string) string {
	return r.prefix + strings.Join(parts, ":")
}

// Prefix is the prefix of every key this client writes.
func (r *Redis) Prefix() string { return r.prefix }

// Ping reports whether the server answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: redis ping: %w", err)
	}
	return nil
}

// Close closes the client.
func (r *Redis) Close() error { return r.Client.Close() }
