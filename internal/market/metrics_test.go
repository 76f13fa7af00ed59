package market_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/market"
)

// An opened breaker is reported to the hook, and counted per market and
// state; the other markets report 0 open.
func TestClient_reports_breaker_changes_and_counts(t *testing.T) {
	t.Parallel()
	f := fixtures[2]
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on
	var mu sync.Mutex
	var changes []string
	c := newClient(market.Options{BreakerFailures: 2, BreakerOpenFor: time.Hour, Timeout: time.Second,
		OnBreakerChange: func(m, from, to string) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, m+":"+from+"->"+to)
		}})
	for range 2 {
		if _, err := c.Push(context.Background(), f.target(deadURL, "metrics-ch"), f.items("x", 1, 1)); !errors.Is(err, market.ErrTransient) {
			t.Fatalf("push to a dead url: %v, want transient", err)
		}
	}
	mu.Lock()
	got := append([]string(nil), changes...)
	mu.Unlock()
	if len(got) != 1 || got[0] != f.market+":closed->open" {
		t.Fatalf("breaker changes %v, want [%s:closed->open]", got, f.market)
	}
	counts := map[string]int{}
	c.EachBreaker(func(m, state string, n int) { counts[m+":"+state] = n })
	want := map[string]int{market.Shopwave + ":open": 0, market.Souk + ":open": 0, market.Bazaar + ":open": 1}
	if len(counts) != len(want) {
		t.Fatalf("breaker counts %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Fatalf("breaker counts %v, want %v", counts, want)
		}
	}
}
