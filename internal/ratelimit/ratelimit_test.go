package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/internal/ratelimit"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// redisClient is a new connection to the stack's Redis, as a separate
// process would have.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	cfg, err := config.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s not reachable (run `make up`): %v", cfg.RedisURL, err)
	}
	return c
}

func item(channel string, i int) []market.Item {
	p := catalog.Product{SKU: fmt.Sprintf("P%d", i), Name: "Mug", Price: catalog.Money{Amount: 1000, Currency: "USD"}, Stock: 1,
		Attributes: map[string]string{}, Version: 1}
	return []market.Item{{Product: p, Key: fmt.Sprintf("%s:%s:1", channel, p.SKU)}}
}

// hammer pushes to the channel from workers goroutines of each client
// until ctx ends, and returns how many pushes failed otherwise than by
// being throttled or cut off by ctx.
func hammer(ctx context.Context, clients []*market.Client, target market.Target, workers int) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for ci, c := range clients {
		for w := range workers {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					_, err := c.Push(ctx, target, item(target.ChannelID, ci*100000+w*1000+i))
					_, throttled := market.RetryAfter(err)
					if err != nil && !throttled && ctx.Err() == nil {
						mu.Lock()
						bad++
						mu.Unlock()
					}
					if throttled {
						time.Sleep(5 * time.Millisecond)
					}
				}
			})
		}
	}
	wg.Wait()
	return bad
}

// Two clients, each with its own Redis connection as two worker processes
// would have, push to one channel as fast as they can: together they stay
// within the channel's rate (at most burst + rate·window calls reach the
// market), not twice it.
func TestRedis_two_clients_share_the_channel_rate(t *testing.T) {
	testenv.Chaos(t, "9. two worker processes pushing to one channel", "together they hold the channel's rate")
	m, err := sim.NewMarketplace(market.Shopwave, sim.MarketConfig{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	prefix := "sagaflow-test-" + testenv.RunID() + ":"
	var clients []*market.Client
	for range 2 {
		clients = append(clients, market.NewClient(market.Options{AllowPrivateNetworks: true,
			Limiter: ratelimit.NewRedis(redisClient(t), prefix, quiet)}))
	}
	const rate = 20
	target := market.Target{ChannelID: "ch-shared", Market: market.Shopwave, BaseURL: srv.URL, Credentials: "tok", RateLimitPerSec: rate}
	const window = 1500 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	if bad := hammer(ctx, clients, target, 4); bad != 0 {
		t.Fatalf("%d pushes failed", bad)
	}
	elapsed := time.Since(start)
	got := m.Stats().Requests
	// GCRA admits at most burst + rate·window; one call of slack for the
	// edges of the window.
	limit := rate + int(float64(rate)*elapsed.Seconds()) + 1
	t.Logf("%d calls in %s from 2 clients at %d/s (bound %d; two separate local limiters would allow %d)", got, elapsed.Round(time.Millisecond), rate, limit, 2*limit)
	if got > limit {
		t.Fatalf("%d calls reached the market in %s, want at most %d: the rate is not shared", got, elapsed, limit)
	}
	if got <= rate {
		t.Fatalf("only %d calls in %s: the limiter starves the channel", got, elapsed)
	}
}

// With Redis out of reach the push neither fails nor goes unlimited: each
// client falls back to a local limiter at the channel's rate.
func TestRedis_down_falls_back_to_a_local_limit(t *testing.T) {
	m, err := sim.NewMarketplace(market.Shopwave, sim.MarketConfig{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	lim := ratelimit.NewRedis(dead, "x:", quiet)
	if _, _, err := lim.Reserve(context.Background(), "ch", 5, time.Second); err == nil {
		t.Fatal("Reserve on a dead Redis succeeded")
	}
	if _, _, err := lim.Reserve(context.Background(), "ch", 5, time.Second); !errors.Is(err, ratelimit.ErrDown) {
		t.Fatalf("second Reserve: %v, want ErrDown without a round trip", err)
	}
	c := market.NewClient(market.Options{AllowPrivateNetworks: true, Limiter: lim})
	const rate = 10
	target := market.Target{ChannelID: "ch-down", Market: market.Shopwave, BaseURL: srv.URL, Credentials: "tok", RateLimitPerSec: rate}
	if _, err := c.Push(context.Background(), target, item("ch-down", 0)); err != nil {
		t.Fatalf("push with Redis down: %v", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if bad := hammer(ctx, []*market.Client{c}, target, 4); bad != 0 {
		t.Fatalf("%d pushes failed with Redis down", bad)
	}
	got := m.Stats().Requests
	limit := rate + int(float64(rate)*time.Since(start).Seconds()) + 1
	if got > limit {
		t.Fatalf("%d calls with Redis down, want at most %d: the fallback is not limited", got, limit)
	}
}

func TestRedis_key_has_a_hash_tag(t *testing.T) {
	if k := ratelimit.NewRedis(nil, "sagaflow:", quiet).Key("c1"); k != "sagaflow:ratelimit:{c1}" {
		t.Fatalf("key %q", k)
	}
}

// BenchmarkRedis_Reserve is the cost of one shared reservation (one
// EVALSHA, a write); each key a fresh channel so nothing waits.
func BenchmarkRedis_Reserve(b *testing.B) {
	cfg, err := config.FromEnv()
	if err != nil {
		b.Fatal(err)
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	lim := ratelimit.NewRedis(c, "sagaflow-bench-"+testenv.RunID()+":", quiet)
	ctx := context.Background()
	b.SetParallelism(16) // 32 callers: pushes of many channels at once
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, ok, err := lim.Reserve(ctx, fmt.Sprintf("ch%d", i%64), 1_000_000, time.Second); err != nil || !ok {
				b.Fatal(err, ok)
			}
		}
	})
}
