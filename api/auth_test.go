package api

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

func newGuardedHandler(t *testing.T, f *fakeTenants, limit int) http.Handler {
	t.Helper()
	return testHandler(t, Deps{Tenants: f,
		MaxBodyBytes: 1024, KeyCacheTTL: time.Minute, AuthFailureLimit: limit, AuthFailureWindow: time.Minute})
}

func fromAddr(h http.Handler, addr, key string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/v1/workflows/acme:probe:1", nil)
	req.RemoteAddr = addr
	req.Header.Set("Authorization", "Bearer "+key)
	// A forged forwarding header must not move the failures to another address.
	req.Header.Set("X-Forwarded-For", strconv.FormatInt(time.Now().UnixNano()%250, 10)+".0.0.1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAuth_unknown_keys_are_cached_and_not_looked_up_again(t *testing.T) {
	t.Parallel()
	f := demoTenants()
	h := newGuardedHandler(t, f, 1000)
	for range 5 {
		if rec := fromAddr(h, "192.0.2.1:1000", "guessed-key"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("unknown key = %d", rec.Code)
		}
	}
	if n := f.lookups.Load(); n != 1 {
		t.Fatalf("%d store lookups for 5 requests with one unknown key, want 1", n)
	}
}

func TestAuth_repeated_failures_from_one_address_get_429_with_retry_after(t *testing.T) {
	testenv.Chaos(t, "11. a flood of bad API keys from one address", "cached refusals; 429 with Retry-After; cached keys unaffected")
	t.Parallel()
	f := demoTenants()
	h := newGuardedHandler(t, f, 3)
	if rec := fromAddr(h, "192.0.2.9:1", "demo-key"); rec.Code == http.StatusUnauthorized {
		t.Fatalf("valid key = %d", rec.Code) // cached from now on
	}
	for i := range 3 {
		if rec := fromAddr(h, "192.0.2.9:1", "guess-"+strconv.Itoa(i)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i, rec.Code)
		}
	}
	lookups := f.lookups.Load()
	rec := fromAddr(h, "192.0.2.9:2", "guess-next")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("after 3 failures = %d %s, want 429", rec.Code, rec.Body)
	}
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("Retry-After = %q, want 1..60 seconds", rec.Header().Get("Retry-After"))
	}
	if f.lookups.Load() != lookups {
		t.Fatal("a blocked address still reached the store")
	}
	// A valid key already cached is not slowed, and another address is not blocked.
	if rec := fromAddr(h, "192.0.2.9:3", "demo-key"); rec.Code == http.StatusTooManyRequests || rec.Code == http.StatusUnauthorized {
		t.Fatalf("cached valid key from the blocked address = %d", rec.Code)
	}
	if rec := fromAddr(h, "198.51.100.7:1", "guess-other"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("another address = %d, want 401", rec.Code)
	}
}

func TestAuthGuard_is_bounded(t *testing.T) {
	t.Parallel()
	g := newAuthGuard(time.Minute, 5, time.Minute)
	now := time.Now()
	for i := range 3 * maxGuardEntries {
		h := tenant.KeyHash{byte(i), byte(i >> 8), byte(i >> 16)}
		g.failed("10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250), &h, now)
	}
	if len(g.bad) > maxGuardEntries || len(g.ips) > maxGuardEntries {
		t.Fatalf("guard holds %d keys and %d addresses, bound %d", len(g.bad), len(g.ips), maxGuardEntries)
	}
}
