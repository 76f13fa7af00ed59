// Package ratelimit holds rate limits that several processes share, in
// Redis: each channel's calls to its market, so that N worker processes
// together make at most the channel's rate_limit_per_sec, not N times it.
//
// The limit is a GCRA (generic cell rate algorithm, the token bucket's
// arithmetic on one timestamp) in one Lua script, judged by the Redis
// server's clock, the one clock every process shares. A call reserves the
// next slot and is told how long to wait for it; over any window of W
// seconds a key admits at most burst + W·rate calls.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultTimeout bounds one call to Redis: a limiter that does not answer
// soon is treated as down, and the caller falls back to its own.
const DefaultTimeout = 250 * time.Millisecond

// downFor is how long a failed Redis is not asked again: the caller's
// local limiter is used meanwhile, without a round trip that would fail.
const downFor = time.Second

// ErrDown means Redis failed recently and was not asked.
var ErrDown = errors.New("ratelimit: redis unavailable")

// Redis is a shared limiter. Safe for concurrent use.
type Redis struct {
	client  redis.Scripter
	prefix  string
	timeout time.Duration
	log     *slog.Logger

	mu         sync.Mutex
	downUntil  time.Time
	lastWarned time.Time
}

// NewRedis returns a limiter on client whose keys start with prefix
// (SAGAFLOW_REDIS_PREFIX). log gets a warning when Redis fails (at most one
// every 10 s); nil means slog.Default().
func NewRedis(client redis.Scripter, prefix string, log *slog.Logger) *Redis {
	if log == nil {
		log = slog.Default()
	}
	return &Redis{client: client, prefix: prefix, timeout: DefaultTimeout, log: log}
}

// Key is the Redis key of a limit: one per id, its id in a hash tag so the
// key maps to one slot of a Redis Cluster.
func (r *Redis) Key(id string) string { return r.prefix + "ratelimit:{" + id + "}" }

// gcra reserves the next slot of KEYS[1]. ARGV: emission interval (µs),
// burst, longest acceptable wait (µs). Returns {1, wait µs} when reserved,
// {0, wait µs} when the wait would be longer (nothing reserved). The key
// holds the theoretical arrival time and expires when it no longer matters.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tau - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return {0, wait} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, wait}
`)

// Reserve claims the next slot of id at perSec calls per second with a
// burst of perSec, unless the wait for it would exceed maxWait. It
// implements market.RateLimiter. An error (Redis down, slow, or failed
// within the last second) means nothing was reserved: fall back.
func (r *Redis) Reserve(ctx context.Context, id string, perSec int, maxWait time.Duration) (time.Duration, bool, error) {
	if perSec < 1 {
		return 0, false, fmt.Errorf("ratelimit: rate must be at least 1, got %d", perSec)
	}
	now := time.Now()
	r.mu.Lock()
	down := now.Before(r.downUntil)
	r.mu.Unlock()
	if down {
		return 0, false, ErrDown
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	interval := int64(time.Second/time.Microsecond) / int64(perSec)
	res, err := gcra.Run(cctx, r.client, []string{r.Key(id)},
		strconv.FormatInt(max(1, interval), 10), perSec, strconv.FormatInt(max(0, maxWait.Microseconds()), 10)).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected reply %v", res)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, false, ctx.Err() // the caller gave up: Redis is not to blame
		}
		r.failed(now, err)
		return 0, false, fmt.Errorf("ratelimit: reserve %s: %w", id, err)
	}
	return time.Duration(res[1]) * time.Microsecond, res[0] == 1, nil
}

func (r *Redis) failed(now time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.downUntil = now.Add(downFor)
	if now.Sub(r.lastWarned) >= 10*time.Second {
		r.lastWarned = now
		r.log.Warn("shared rate limit unavailable; each process limits on its own meanwhile", "error", err)
	}
}
