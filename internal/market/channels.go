package market

import (
	"container/list"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

// channelState is what the client keeps of one channel: its breaker and
// its local rate limiter (the only one without Options.Limiter, the
// fallback with it).
type channelState struct {
	id      string
	market  string
	baseURL string
	breaker *gobreaker.CircuitBreaker[[]answer]
	used    time.Time // guarded by channelCache.mu

	mu     sync.Mutex // guards perSec and lim
	perSec int
	lim    *rate.Limiter
}

// limiter returns the channel's local limiter, built anew when its rate
// changed.
func (s *channelState) limiter(perSec int) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lim == nil || s.perSec != perSec {
		s.perSec, s.lim = perSec, rate.NewLimiter(rate.Limit(perSec), max(1, perSec))
	}
	return s.lim
}

// channelCache holds the state of at most max channels, dropping the least
// recently used, and those unused for longer than idle, so that deleted
// channels do not pile up. Safe for concurrent use.
type channelCache struct {
	max  int
	idle time.Duration

	mu    sync.Mutex
	order *list.List // of *channelState, most recently used first
	byID  map[string]*list.Element
}

func newChannelCache(max int, idle time.Duration) *channelCache {
	return &channelCache{max: max, idle: idle, order: list.New(), byID: map[string]*list.Element{}}
}

// get returns the state of t's channel, made with newBreaker when the
// channel is new to the cache or its base URL changed.
func (c *channelCache) get(t Target, newBreaker func(Target) *gobreaker.CircuitBreaker[[]answer]) *channelState {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if e, ok := c.byID[t.ChannelID]; ok {
		st := e.Value.(*channelState)
		if st.baseURL == t.BaseURL {
			st.used = now
			c.order.MoveToFront(e)
			return st
		}
		c.order.Remove(e)
		delete(c.byID, t.ChannelID)
	}
	st := &channelState{id: t.ChannelID, market: t.Market, baseURL: t.BaseURL, breaker: newBreaker(t), used: now}
	c.byID[t.ChannelID] = c.order.PushFront(st)
	for c.order.Len() > c.max {
		c.remove(c.order.Back())
	}
	return st
}

// peek returns the channel's state without touching it, or nil.
func (c *channelCache) peek(id string) *channelState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		return e.Value.(*channelState)
	}
	return nil
}

// each calls f with the state of every channel held (not expired), under
// the cache's lock: f must not call the cache.
func (c *channelCache) each(f func(*channelState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(time.Now())
	for e := c.order.Front(); e != nil; e = e.Next() {
		f(e.Value.(*channelState))
	}
}

func (c *channelCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(time.Now())
	return c.order.Len()
}

// expire drops the states unused for longer than idle (from the back,
// where the oldest are).
func (c *channelCache) expire(now time.Time) {
	for e := c.order.Back(); e != nil; e = c.order.Back() {
		if now.Sub(e.Value.(*channelState).used) <= c.idle {
			return
		}
		c.remove(e)
	}
}

func (c *channelCache) remove(e *list.Element) {
	delete(c.byID, e.Value.(*channelState).id)
	c.order.Remove(e)
}
