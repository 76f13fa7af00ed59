//go:build cluster

package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// BinEnv is the sagaflow binary the tests create tenants with (default:
// this checkout's bin/sagaflow, which deploy/cluster.sh builds).
const BinEnv = "SAGAFLOW_CLUSTER_BIN"

var markets = []string{"bazaar", "shopwave", "souk"}

// syncRun is a tenant of its own with one channel per market, whose
// products are changed through both APIs.
type syncRun struct {
	c      *cluster
	tenant string
	key    string
	skus   int
	mu     sync.Mutex
	latest map[string]int64 // SKU → the highest version a PUT was answered
	names  map[string]string
}

// newTenant creates a tenant with `sagaflow tenant create`, as an operator
// does, and returns its API key.
func newTenant(t *testing.T, name string) string {
	t.Helper()
	bin := envOr(BinEnv, filepath.Join(root(), "bin", "sagaflow"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "tenant", "create", name)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sagaflow tenant create %s: %v: %s", name, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if _, key, ok := strings.Cut(sc.Text(), "API key (shown once, keep it): "); ok {
			return strings.TrimSpace(key)
		}
	}
	t.Fatalf("sagaflow tenant create %s printed no key: %s", name, out)
	return ""
}

// newSyncRun creates the tenant and its channels.
func newSyncRun(t *testing.T, c *cluster, tag string, skus int) *syncRun {
	t.Helper()
	s := &syncRun{c: c, tenant: "cl" + tag + strings.ToLower(runID()), skus: skus, latest: map[string]int64{}, names: map[string]string{}}
	s.key = newTenant(t, s.tenant)
	for _, m := range markets {
		body := map[string]any{"market": m, "credentials": s.tenant + "-" + m, "rate_limit_per_sec": 1000}
		var ch struct {
			ID string `json:"id"`
		}
		code, err := c.call(s.key, http.MethodPost, "/v1/channels", body, &ch, nil)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("create the %s channel: %d %v", m, code, err)
		}
	}
	return s
}

func sku(i int) string { return fmt.Sprintf("SKU-%04d", i) }

// put changes every SKU rounds times through the APIs, 16 clients at once,
// each SKU's changes in order (prices in tens of won, which bazaar
// requires); during[n] starts in its own goroutine when
// the n-th change is sent. Each PUT is retried across the APIs until
// answered (the same body is idempotent: it changes nothing twice). It
// returns when every change is answered and every fault has returned.
func (s *syncRun) put(t *testing.T, rounds int, during map[int]func()) time.Duration {
	t.Helper()
	began := time.Now()
	var sent atomic.Int64
	var clients, faults sync.WaitGroup
	for w := range 16 {
		clients.Go(func() {
			for round := range rounds {
				for i := w; i < s.skus; i += 16 {
					if f, ok := during[int(sent.Add(1))]; ok {
						faults.Go(f)
					}
					name := fmt.Sprintf("%s %s round %d", s.tenant, sku(i), round+1)
					body := map[string]any{"name": name, "price": map[string]any{"amount": 1000 + 10*(round+i), "currency": "KRW"},
						"stock": 10*i + round, "attributes": map[string]string{"tenant": s.tenant}}
					var out struct {
						Version int64 `json:"version"`
					}
					code, err := s.c.call(s.key, http.MethodPut, "/v1/products/"+sku(i), body, &out, nil)
					if err != nil || code >= 300 {
						t.Errorf("PUT %s round %d = %d %v", sku(i), round+1, code, err)
						continue
					}
					s.mu.Lock()
					if out.Version > s.latest[sku(i)] {
						s.latest[sku(i)], s.names[sku(i)] = out.Version, name
					}
					s.mu.Unlock()
					// About 160 changes a second in all: the burst lasts
					// long enough for a fault to land in its middle.
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	clients.Wait()
	faults.Wait()
	return time.Since(began)
}

// listings reads what market holds for the run's account.
func (s *syncRun) listings(t *testing.T, market string) map[string]sim.MarketListing {
	var out struct {
		Listings map[string]sim.MarketListing `json:"listings"`
	}
	s.c.simDo(t, market, http.MethodGet, "/admin/listings?account="+s.tenant+"-"+market, nil, &out)
	return out.Listings
}

// behind is what the markets do not yet hold at its latest version.
func (s *syncRun) behind(t *testing.T) (int, string) {
	var n int
	var first []string
	for _, m := range markets {
		ls := s.listings(t, m)
		for i := range s.skus {
			want := s.latest[sku(i)]
			if l, ok := ls[sku(i)]; !ok || l.Version != want {
				n++
				if len(first) < 3 {
					first = append(first, fmt.Sprintf("%s %s at v%d, want v%d", m, sku(i), l.Version, want))
				}
			}
		}
	}
	return n, strings.Join(first, ", ")
}

// assertSynced waits up to within for every market to hold the latest
// version of every SKU, then checks that it is the product the catalogue
// holds (same version and name), that no market applied a stale write and
// that nothing was parked.
func (s *syncRun) assertSynced(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	took := waitFor(t, within, "every market at the latest version of every SKU", func() (bool, string) {
		n, first := s.behind(t)
		return n == 0, fmt.Sprintf("%d listings behind, such as %s", n, first)
	})
	shopwave := s.listings(t, "shopwave")
	for i := range s.skus {
		var p struct {
			Version int64  `json:"version"`
			Name    string `json:"name"`
		}
		code, err := s.c.call(s.key, http.MethodGet, "/v1/products/"+sku(i), nil, &p, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET product %s = %d %v", sku(i), code, err)
		}
		if p.Version != s.latest[sku(i)] || p.Name != s.names[sku(i)] || shopwave[sku(i)].Name != p.Name {
			t.Errorf("%s: the catalogue holds v%d %q, the last PUT answered v%d %q, shopwave lists %q",
				sku(i), p.Version, p.Name, s.latest[sku(i)], s.names[sku(i)], shopwave[sku(i)].Name)
		}
	}
	for _, m := range markets {
		var st sim.MarketStats
		s.c.simDo(t, m, http.MethodGet, "/stats", nil, &st)
		if st.StaleWrites != 0 {
			t.Errorf("%s applied %d stale writes", m, st.StaleWrites)
		}
	}
	var dlq struct {
		Items []struct {
			SKU    string `json:"sku"`
			Market string `json:"market"`
			Error  string `json:"error"`
		} `json:"items"`
	}
	if code, err := s.c.call(s.key, http.MethodGet, "/v1/dlq", nil, &dlq, nil); err != nil || code != http.StatusOK || len(dlq.Items) != 0 {
		t.Errorf("parking lot of %s: %d %v %+v", s.tenant, code, err, dlq.Items)
	}
	return took
}

// versions is the spread of the latest versions (each SKU's PUT count,
// less the ones that changed nothing).
func (s *syncRun) versions() string {
	var vs []int64
	for _, v := range s.latest {
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return "none"
	}
	return fmt.Sprintf("v%d..v%d", slices.Min(vs), slices.Max(vs))
}

// TestCluster_sync_survives_a_temporal_restart: 2,000 product changes (10
// PUTs of each of 200 SKUs) through both APIs to a tenant with a channel
// on each of the three markets; the Temporal server is stopped and started
// again after 700 changes. Every market ends at the latest version of
// every SKU, nothing lost, nothing stale, nothing parked.
func TestCluster_sync_survives_a_temporal_restart(t *testing.T) {
	chaos := testenv.Chaos(t, "cluster: 2,000 product changes over 200 SKUs, the Temporal server restarted mid-burst",
		"every market at the latest version of every SKU; nothing stale, nothing parked")
	c := connect(t)
	s := newSyncRun(t, c, "t", 200)
	began := time.Now()
	var restart time.Duration
	put := s.put(t, 10, map[int]func(){700: func() { restart = fault(t, "restart", "temporal") }})
	if t.Failed() {
		t.FailNow()
	}
	converged := s.assertSynced(t, 5*time.Minute)
	chaos.Observe("2,000 PUTs answered in %s (%d failed over); temporal restarted in %s", put.Round(time.Millisecond), c.failed.Load(), restart)
	chaos.Observe("3 markets x 200 SKUs at %s, converged %s after the last PUT (%s in all)", s.versions(), converged.Round(time.Second), time.Since(began).Round(time.Second))
}
