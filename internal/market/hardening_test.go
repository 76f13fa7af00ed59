package market_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// A tenant whose channels point at a dead base URL opens only its own
// channels' breakers: another tenant's channel of the same market, at a
// live base URL, keeps pushing.
func TestBreaker_dead_base_url_of_one_tenant_does_not_stop_another(t *testing.T) {
	testenv.Chaos(t, "9. one tenant's channels at a dead base_url", "another tenant's push to the same market goes through; its breaker stays closed")
	t.Parallel()
	f := fixtures[0]
	m, live := f.start(t, sim.MarketConfig{})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on

	c := newClient(market.Options{BreakerFailures: 2, BreakerOpenFor: time.Hour, Timeout: time.Second})
	items := f.items("x", 1, 1)
	// Tenant A: three channels at the dead URL, each failing until open.
	for i := range 3 {
		ch := fmt.Sprintf("tenant-a-ch%d", i)
		for range 3 {
			if _, err := c.Push(context.Background(), f.target(deadURL, ch), items); !errors.Is(err, market.ErrTransient) {
				t.Fatalf("%s: %v, want transient", ch, err)
			}
		}
		if st := c.BreakerState(ch); st != "open" {
			t.Fatalf("breaker of %s is %s, want open", ch, st)
		}
	}
	// Tenant B: a channel of the same market at the live URL.
	res, err := c.Push(context.Background(), f.target(live, "tenant-b-ch"), items)
	if err != nil {
		t.Fatalf("tenant B's push: %v (tenant A's failures must not open B's breaker)", err)
	}
	wantOutcomes(t, res, items, market.Applied)
	if st := c.BreakerState("tenant-b-ch"); st != "closed" {
		t.Fatalf("breaker of B %s, want closed", st)
	}
	if s := m.Stats(); s.Applied != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Two tenants share the real endpoint; the market answers 503 to tenant
// A's account only (its shard is down). A's breaker opens; B's, for the
// same host and port, stays closed. This is why a breaker is keyed by
// channel and not by endpoint.
func TestBreaker_one_accounts_5xx_at_a_shared_endpoint_stay_its_own(t *testing.T) {
	testenv.Chaos(t, "9. a shared market endpoint failing one account only", "only that account's channel breaker opens")
	t.Parallel()
	f := fixtures[1]
	m, url := f.start(t, sim.MarketConfig{DownAccount: "tok-tenant-a"})
	c := newClient(market.Options{BreakerFailures: 2, BreakerOpenFor: time.Hour})
	items := f.items("x", 1, 1)
	for range 3 {
		if _, err := c.Push(context.Background(), f.target(url, "tenant-a"), items); !errors.Is(err, market.ErrTransient) {
			t.Fatalf("tenant A: %v, want transient", err)
		}
	}
	if st := c.BreakerState("tenant-a"); st != "open" {
		t.Fatalf("breaker of A %s, want open", st)
	}
	for i := range 3 {
		if _, err := c.Push(context.Background(), f.target(url, "tenant-b"), f.items("x", 1, int64(i+1))); err != nil {
			t.Fatalf("tenant B, push %d: %v", i, err)
		}
	}
	if s := m.Stats(); s.DownRejections != 2 || s.Applied != 3 {
		t.Fatalf("stats %+v, want 2 rejections of A (then its breaker held) and B's 3 applied", s)
	}
}

// The state of channels the client no longer sees goes away: at most
// MaxChannels are kept, and none idle past ChannelIdle.
func TestClient_channel_state_is_bounded(t *testing.T) {
	t.Parallel()
	f := fixtures[0]
	_, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{MaxChannels: 3, ChannelIdle: time.Hour})
	for i := range 10 {
		ch := fmt.Sprintf("ch%d", i)
		if _, err := c.Push(context.Background(), f.target(url, ch), f.items(ch, 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.TrackedChannels(); n != 3 {
		t.Fatalf("%d channels tracked, want 3", n)
	}
	idle := newClient(market.Options{ChannelIdle: time.Nanosecond})
	if _, err := idle.Push(context.Background(), f.target(url, "once"), f.items("once", 1, 1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if n := idle.TrackedChannels(); n != 0 {
		t.Fatalf("%d idle channels tracked, want 0", n)
	}
}

func TestPublicAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1": false, "127.8.9.10": false, "::1": false, "10.0.0.1": false, "10.255.255.255": false,
		"172.16.0.1": false, "192.168.1.1": false, "169.254.169.254": false, "fe80::1": false, "fc00::1": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "ff02::1": false, "100.64.0.1": false,
		"::ffff:10.0.0.1": false, "::ffff:127.0.0.1": false, "64:ff9b::a00:1": false, "255.255.255.255": false,
		"8.8.8.8": true, "93.184.216.34": true, "2606:4700::1111": true, "::ffff:8.8.8.8": true,
	} {
		if got := market.PublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}

// Outside dev the client never connects to a loopback address: not by IP,
// not through a name that resolves to one. No request reaches the server.
func TestPush_refuses_non_public_addresses(t *testing.T) {
	testenv.Chaos(t, "10. a base_url resolving to loopback ([::1], localhost, 127.0.0.1)", "refused at dial time; the server sees no request")
	t.Parallel()
	var hits atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	urls := []string{srv.URL, "http://localhost:" + port}
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		srv6 := httptest.NewUnstartedServer(h)
		srv6.Listener = l
		srv6.Start()
		t.Cleanup(srv6.Close)
		urls = append(urls, srv6.URL)
	}
	c := market.NewClient(market.Options{})
	f := fixtures[0]
	for _, u := range urls {
		_, err := c.Push(context.Background(), f.target(u, "ch"), f.items("ch", 1, 1))
		if !errors.Is(err, market.ErrAddressRefused) || !market.IsPermanent(err) || errors.Is(err, market.ErrTransient) {
			t.Errorf("push to %s: %v, want a permanent ErrAddressRefused", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the loopback server", n)
	}
}

// A redirect is not followed, least of all to another host: it is a
// permanent refusal that names the status.
func TestPush_does_not_follow_redirects(t *testing.T) {
	testenv.Chaos(t, "10. a market answering with a redirect elsewhere", "not followed; the other server sees no request")
	t.Parallel()
	var reached atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reached.Add(1) }))
	t.Cleanup(other.Close)
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/v2/listings:batch", status)
		}))
		t.Cleanup(srv.Close)
		c := newClient(market.Options{})
		_, err := c.Push(context.Background(), fixtures[0].target(srv.URL, "ch"), fixtures[0].items("ch", 1, 1))
		var rej *market.RejectedError
		if !errors.As(err, &rej) || rej.Status != status || !market.IsPermanent(err) {
			t.Errorf("%d: %v, want a permanent rejection", status, err)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// No byte of a foreign reply reaches an error text: only the market, the
// status and a classified reason.
func TestPush_errors_never_echo_the_reply(t *testing.T) {
	testenv.Chaos(t, "10. a hostile market reply", "no byte of it in any error, last_error or parked item")
	t.Parallel()
	const leak = "root:x:0:0:SECRET-METADATA-TOKEN"
	for _, tt := range []struct {
		status int
		body   string
	}{
		{500, leak}, {503, `{"error":{"code":"x","message":"` + leak + `"}}`}, {400, leak},
		{401, `<error code="` + leak + `">` + leak + `</error>`}, {404, leak}, {408, leak},
		{200, leak}, {200, `{"results":[{"sku":"` + leak + `","status":"applied"}]}`},
		{200, `{"results":[{"sku":"P0","status":"` + leak + `"}]}`},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tt.status)
			_, _ = w.Write([]byte(tt.body))
		}))
		t.Cleanup(srv.Close)
		c := newClient(market.Options{})
		_, err := c.Push(context.Background(), fixtures[0].target(srv.URL, "ch"), fixtures[0].items("ch", 1, 1))
		if err == nil {
			t.Fatalf("%d %q: no error", tt.status, tt.body)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%d: error %q echoes the reply", tt.status, err)
		}
		if !strings.Contains(err.Error(), "shopwave") {
			t.Errorf("%d: error %q does not name the market", tt.status, err)
		}
	}
}

// A base URL is scheme, host and port: anything more is refused before a
// call, whatever reached the client.
func TestPush_refuses_base_urls_with_more_than_scheme_host_port(t *testing.T) {
	t.Parallel()
	f := fixtures[0]
	m, url := f.start(t, sim.MarketConfig{})
	c := newClient(market.Options{})
	for _, u := range []string{url + "/x?", url + "?a=b", url + "/path", url + "#frag", strings.Replace(url, "http://", "http://u:p@", 1), "ftp://h", "http://"} {
		if _, err := c.Push(context.Background(), f.target(u, "ch"), f.items("ch", 1, 1)); !errors.Is(err, market.ErrInvalidTarget) {
			t.Errorf("push to %q: %v, want ErrInvalidTarget", u, err)
		}
	}
	if _, err := c.Push(context.Background(), f.target(url+"/", "ch"), f.items("ch", 1, 1)); err != nil {
		t.Fatalf("trailing slash: %v", err)
	}
	if s := m.Stats(); s.Requests != 1 {
		t.Fatalf("%d requests, want 1", s.Requests)
	}
}
