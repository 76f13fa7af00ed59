package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// A first-come campaign in Redis, all keys under one hash tag so that a
// cluster keeps them on one node (Lua needs that):
//
//	meta   hash   starts_ms, ends_ms, stock     the window and the stock
//	              done                         set when the campaign is over
//	              asleep                       its workflow waits for a request
//	left   string units not yet taken            the atomic stock counter
//	seq    string arrivals accepted so far       the next rank is seq+1
//	queue  zset   user → rank                    accepted, not yet issued
//	users  hash   user → rank                    every accepted user
//	aside  hash   user → {rank, reason} (JSON)   accepted, can never be issued
//	trace  hash   user → traceparent             the trace of a queued request
//
// Request touches only these keys, in one Lua script: the answer takes one
// round trip, and AOF with appendfsync always makes an accepted request
// survive a crash of redis-server (the reply is sent after the fsync).
//
// A traced request leaves its W3C traceparent in trace (at most
// tracectx.MaxTraceParent bytes, checked by the script too) until it is
// issued or set aside; the issuer links its batch's span to them.

// Outcome of a first-come request.
type Outcome int

// The outcomes; the API answers them 202, 409, 410, 410, 425, 404.
const (
	Accepted Outcome = iota + 1
	Duplicate
	SoldOut
	Closed
	NotOpen
	NoCampaign
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case SoldOut:
		return "sold_out"
	case Closed:
		return "closed"
	case NotOpen:
		return "not_open"
	case NoCampaign:
		return "no_campaign"
	}
	return "unknown"
}

// Campaign is what Redis needs to know of a campaign.
type Campaign struct {
	Tenant   string
	ID       string
	Stock    int
	StartsAt time.Time
	EndsAt   time.Time
}

type campaignKeys struct{ meta, left, seq, queue, users, aside, trace string }

func (r *Redis) keys(tenant, id string) campaignKeys {
	base := r.prefix + "campaign:{" + tenant + ":" + id + "}:"
	return campaignKeys{meta: base + "meta", left: base + "left", seq: base + "seq", queue: base + "queue", users: base + "users", aside: base + "aside", trace: base + "trace"}
}

func (k campaignKeys) all() []string {
	return []string{k.meta, k.left, k.seq, k.queue, k.users, k.aside, k.trace}
}

// openScript creates the campaign once: a second call changes nothing, so
// the API and the campaign workflow may both call it.
var openScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'starts_ms', ARGV[1], 'ends_ms', ARGV[2], 'stock', ARGV[3])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], 0)
return 1
`)

// OpenCampaign writes the campaign's window and stock unless they exist.
func (r *Redis) OpenCampaign(ctx context.Context, c Campaign) error {
	k := r.keys(c.Tenant, c.ID)
	err := openScript.Run(ctx, r.Client, []string{k.meta, k.left, k.seq},
		c.StartsAt.UnixMilli(), c.EndsAt.UnixMilli(), c.Stock).Err()
	if err != nil {
		return fmt.Errorf("queue: open campaign %s: %w", c.ID, err)
	}
	return nil
}

// requestScript is the whole request path: window, duplicate, stock, rank.
// The window is judged by the Redis server's clock, the one clock every API
// process shares. ARGV[2], the request's traceparent, is kept (in KEYS[6])
// only for an accepted request, and only if it is no longer than ARGV[3].
var requestScript = redis.NewScript(`
local meta = redis.call('HMGET', KEYS[1], 'starts_ms', 'ends_ms', 'done')
if not meta[1] then return {6, 0} end
if meta[3] then return {tonumber(meta[3]), 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then return {5, 0} end
local rank = redis.call('HGET', KEYS[5], ARGV[1])
if rank then return {2, tonumber(rank)} end
if now >= tonumber(meta[2]) then return {4, 0} end
if tonumber(redis.call('GET', KEYS[2])) <= 0 then return {3, 0} end
redis.call('DECR', KEYS[2])
rank = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[4], rank, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], rank)
if ARGV[2] ~= '' and #ARGV[2] <= tonumber(ARGV[3]) then redis.call('HSET', KEYS[6], ARGV[1], ARGV[2]) end
return {1, rank, redis.call('HDEL', KEYS[1], 'asleep')}
`)

// Request asks for one unit of the campaign's stock for user. An accepted
// request gets the next rank (1, 2, ...: the order of acceptance, no gaps);
// a user who asked before gets Duplicate with the rank they got.
func (r *Redis) Request(ctx context.Context, tenant, id, user string) (Outcome, int64, error) {
	a, err := r.Ask(ctx, tenant, id, user)
	return a.Outcome, a.Rank, err
}

// Answer is the answer to a request.
type Answer struct {
	Outcome Outcome
	Rank    int64
	// Wake: this request is the first since the campaign's workflow went
	// to sleep (MarkAsleep); the caller should wake it (one signal per
	// sleep, however many requests follow).
	Wake bool
}

// Ask is Request, and tells whether the campaign's workflow is to be woken.
// An accepted request keeps the trace context of ctx's span, if it is
// sampled (see tracectx.CaptureSampled: never a caller's header as it
// came), with its entry, for the issuer to link to.
func (r *Redis) Ask(ctx context.Context, tenant, id, user string) (Answer, error) {
	k := r.keys(tenant, id)
	tp := tracectx.CaptureSampled(ctx).TraceParent
	res, err := requestScript.Run(ctx, r.Client, []string{k.meta, k.left, k.seq, k.queue, k.users, k.trace}, user, tp, tracectx.MaxTraceParent).Int64Slice()
	if err != nil {
		return Answer{}, fmt.Errorf("queue: request %s: %w", id, err)
	}
	if len(res) != 2 && len(res) != 3 {
		return Answer{}, fmt.Errorf("queue: request %s: unexpected reply %v", id, res)
	}
	a := Answer{Outcome: Outcome(res[0]), Rank: res[1]}
	if len(res) == 3 {
		a.Wake = res[2] == 1
	}
	return a, nil
}

// asleepScript marks the campaign's workflow asleep if nothing waits in
// the queue, in one step: a request accepted after it finds the mark (and
// wakes the workflow), one accepted before it is in the queue (and the
// mark is not set).
var asleepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'asleep', 1)
return 1
`)

// MarkAsleep records that the campaign's workflow waits for a request, so
// that the next accepted request says Wake; it does nothing and returns
// false if requests are waiting in the queue already.
func (r *Redis) MarkAsleep(ctx context.Context, tenant, id string) (bool, error) {
	k := r.keys(tenant, id)
	n, err := asleepScript.Run(ctx, r.Client, []string{k.meta, k.queue}).Int()
	if err != nil {
		return false, fmt.Errorf("queue: mark %s asleep: %w", id, err)
	}
	return n == 1, nil
}

// Entry is an accepted request waiting to be issued.
type Entry struct {
	User string
	Rank int64
	// Trace is the request's trace context (a traceparent only), empty if
	// it was not traced. Check it before use (tracectx.Carrier.Clean):
	// Redis may hold anything.
	Trace tracectx.Carrier
}

// pendingScript is ZRANGE WITHSCORES over the queue (KEYS[1]) up to
// ARGV[1], each entry with its traceparent from KEYS[2] (empty if none):
// user, rank, traceparent, user, ... HMGET goes in chunks, as unpack is
// bounded by Lua's stack.
var pendingScript = redis.NewScript(`
local z = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]), 'WITHSCORES')
local out = {}
for c = 1, #z, 1000 do
  local users = {}
  for i = c, math.min(c + 999, #z), 2 do users[#users + 1] = z[i] end
  local tp = redis.call('HMGET', KEYS[2], unpack(users))
  for j = 1, #users do
    out[#out + 1] = users[j]
    out[#out + 1] = z[c + 2 * j - 1]
    out[#out + 1] = tp[j] or ''
  end
end
return out
`)

// Pending returns up to n accepted requests not yet issued, lowest rank
// first, with their trace contexts, in one round trip.
func (r *Redis) Pending(ctx context.Context, tenant, id string, n int) ([]Entry, error) {
	if n <= 0 {
		return nil, nil
	}
	k := r.keys(tenant, id)
	vals, err := pendingScript.Run(ctx, r.Client, []string{k.queue, k.trace}, n-1).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("queue: pending %s: %w", id, err)
	}
	if len(vals)%3 != 0 {
		return nil, fmt.Errorf("queue: pending %s: unexpected reply of %d values", id, len(vals))
	}
	out := make([]Entry, 0, len(vals)/3)
	for i := 0; i < len(vals); i += 3 {
		rank, err := strconv.ParseFloat(vals[i+1], 64)
		if err != nil {
			return nil, fmt.Errorf("queue: pending %s: rank of %q: %w", id, vals[i], err)
		}
		out = append(out, Entry{User: vals[i], Rank: int64(rank), Trace: tracectx.Carrier{TraceParent: vals[i+2]}})
	}
	return out, nil
}

// Issued removes users from the pending queue (and their trace contexts),
// once their coupons are stored. They stay among the accepted users until
// the campaign is removed.
func (r *Redis) Issued(ctx context.Context, tenant, id string, users []string) error {
	if len(users) == 0 {
		return nil
	}
	members := make([]any, len(users))
	for i, u := range users {
		members[i] = u
	}
	k := r.keys(tenant, id)
	pipe := r.Client.TxPipeline()
	pipe.ZRem(ctx, k.queue, members...)
	pipe.HDel(ctx, k.trace, users...)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("queue: issued %s: %w", id, err)
	}
	return nil
}

// setAsideScript takes requests that can never be issued off the queue,
// records them with their reason, and gives their units of stock back, so
// the next request accepted takes it. Each user once: a retry changes
// nothing. KEYS: meta, left, queue, aside, trace; ARGV: user, entry, user,
// entry...
var setAsideScript = redis.NewScript(`
local n = 0
local done = redis.call('HEXISTS', KEYS[1], 'done') == 1
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i+1]) == 1 then
    n = n + 1
    if not done then redis.call('INCR', KEYS[2]) end
  end
  redis.call('ZREM', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[5], ARGV[i])
end
return n
`)

// SetAside takes the requests off the pending queue for good, with their
// reasons, and gives their units of stock back to the campaign (unless it is
// over): the stock is meant for requests that can be issued. It returns how
// many were not set aside before (it is idempotent).
func (r *Redis) SetAside(ctx context.Context, tenant, id string, items []coupon.SetAside) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	k := r.keys(tenant, id)
	args := make([]any, 0, 2*len(items))
	for _, it := range items {
		entry, err := json.Marshal(asideEntry{Rank: it.Rank, Reason: it.Reason})
		if err != nil {
			return 0, fmt.Errorf("queue: set aside %s: %w", id, err)
		}
		args = append(args, it.User, entry)
	}
	n, err := setAsideScript.Run(ctx, r.Client, []string{k.meta, k.left, k.queue, k.aside, k.trace}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: set aside %s: %w", id, err)
	}
	return n, nil
}

type asideEntry struct {
	Rank   int64  `json:"rank"`
	Reason string `json:"reason"`
}

// SetAsideList returns the campaign's set-aside requests, lowest rank first.
func (r *Redis) SetAsideList(ctx context.Context, tenant, id string) ([]coupon.SetAside, error) {
	m, err := r.Client.HGetAll(ctx, r.keys(tenant, id).aside).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: set aside of %s: %w", id, err)
	}
	out := make([]coupon.SetAside, 0, len(m))
	for user, raw := range m {
		var e asideEntry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("queue: set aside of %s: entry of %q: %w", id, user, err)
		}
		out = append(out, coupon.SetAside{User: user, Rank: e.Rank, Reason: e.Reason})
	}
	slices.SortFunc(out, func(a, b coupon.SetAside) int { return cmp.Compare(a.Rank, b.Rank) })
	return out, nil
}

// CampaignState is a campaign's counters in Redis.
type CampaignState struct {
	Exists    bool
	Stock     int64
	Left      int64 // units not yet taken
	Accepted  int64 // requests accepted
	Queued    int64 // accepted, not yet issued
	SetAside  int64 // accepted, can never be issued (see SetAside)
	StartsAt  time.Time
	EndsAt    time.Time
	ServerNow time.Time
}

// State reads the campaign's counters and the Redis server's clock.
func (r *Redis) State(ctx context.Context, tenant, id string) (CampaignState, error) {
	k := r.keys(tenant, id)
	// The order matters: the clock first, then the stock, then the queue.
	// A request accepted after the clock was read was accepted before the
	// end, and one accepted after the stock read is counted in the queue.
	pipe := r.Client.Pipeline()
	now := pipe.Time(ctx)
	meta := pipe.HMGet(ctx, k.meta, "starts_ms", "ends_ms", "stock")
	left := pipe.Get(ctx, k.left)
	seq := pipe.Get(ctx, k.seq)
	queued := pipe.ZCard(ctx, k.queue)
	aside := pipe.HLen(ctx, k.aside)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return CampaignState{}, fmt.Errorf("queue: state %s: %w", id, err)
	}
	st := CampaignState{ServerNow: now.Val()}
	vals := meta.Val()
	if len(vals) != 3 || vals[0] == nil {
		return st, nil
	}
	st.Exists = true
	st.StartsAt = time.UnixMilli(atoi(vals[0]))
	st.EndsAt = time.UnixMilli(atoi(vals[1]))
	st.Stock = atoi(vals[2])
	st.Left, _ = left.Int64()
	st.Accepted, _ = seq.Int64()
	st.Queued = queued.Val()
	st.SetAside = aside.Val()
	return st, nil
}

func atoi(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Queued returns how many accepted requests of the campaign wait to be
// issued: its issue lag (one ZCARD).
func (r *Redis) Queued(ctx context.Context, tenant, id string) (int64, error) {
	n, err := r.Client.ZCard(ctx, r.keys(tenant, id).queue).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: queued %s: %w", id, err)
	}
	return n, nil
}

// Rank returns the rank of an accepted user.
func (r *Redis) Rank(ctx context.Context, tenant, id, user string) (int64, bool, error) {
	v, err := r.Client.HGet(ctx, r.keys(tenant, id).users, user).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("queue: rank %s: %w", id, err)
	}
	return v, true, nil
}

// Accepted returns every accepted user with their rank (for reconciling).
func (r *Redis) Accepted(ctx context.Context, tenant, id string) (map[string]int64, error) {
	out := map[string]int64{}
	iter := r.Client.HScan(ctx, r.keys(tenant, id).users, 0, "", 1000).Iterator()
	for iter.Next(ctx) {
		user := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		n, err := strconv.ParseInt(iter.Val(), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("queue: accepted %s: rank of %s: %w", id, user, err)
		}
		out[user] = n
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("queue: accepted %s: %w", id, err)
	}
	return out, nil
}

// RemoveCampaign deletes the campaign's queue, users and counters, and
// leaves a small tombstone (its meta, marked done, expiring after keep) so
// that late requests are still answered from Redis alone: sold out if the
// whole stock was taken, closed otherwise. A user who was accepted and asks
// again after this gets that answer too (their coupon is in PostgreSQL).
// The set-aside requests stay as long as the tombstone, for the operator.
func (r *Redis) RemoveCampaign(ctx context.Context, tenant, id string, soldOut bool, keep time.Duration) error {
	k := r.keys(tenant, id)
	final := Closed
	if soldOut {
		final = SoldOut
	}
	pipe := r.Client.TxPipeline()
	pipe.Del(ctx, k.left, k.seq, k.queue, k.users, k.trace)
	pipe.HSet(ctx, k.meta, "done", int(final))
	pipe.PExpire(ctx, k.meta, keep)
	pipe.PExpire(ctx, k.aside, keep)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("queue: remove campaign %s: %w", id, err)
	}
	return nil
}

// DeleteCampaign deletes every key of the campaign, tombstone included.
func (r *Redis) DeleteCampaign(ctx context.Context, tenant, id string) error {
	if err := r.Client.Del(ctx, r.keys(tenant, id).all()...).Err(); err != nil {
		return fmt.Errorf("queue: delete campaign %s: %w", id, err)
	}
	return nil
}
