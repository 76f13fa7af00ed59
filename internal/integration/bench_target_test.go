package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// benchClusterEnv, set to 1, makes the join and sync benchmarks measure the
// cluster of deploy/cluster.sh (`make cluster`) too, in the same run: the
// embedded stack of this test binary first, then the cluster with one
// worker process (worker2 stopped) and with two. `make bench-join
// CLUSTER=1` and `make bench-sync CLUSTER=1` set it and export what
// `deploy/cluster.sh env` prints.
const benchClusterEnv = "BENCH_CLUSTER"

// benchTarget is a system a benchmark runs against: the embedded stack of
// this test binary, or the cluster. Safe for concurrent use.
type benchTarget struct {
	name     string
	apis     []string // API base URLs, used in turn as a load balancer would
	next     *atomic.Uint64
	demoKey  string
	temporal client.Client
	store    *store.Store // where a benchmark creates its tenants
	amqpURL  string
	// redis is the Redis the target's ingest keeps its dedupe marks in,
	// with the target's key prefix (nil: unknown, nothing is cleaned).
	redis *queue.Redis
	// listings and stats read the market simulators.
	listings func(b *testing.B, account, market string) map[string]sim.MarketListing
	stats    func(b *testing.B, market string) sim.MarketStats
	// workers sets how many worker processes serve the target (the
	// cluster's), or is nil (the embedded stack's one set of workers).
	workers func(b *testing.B, n int)
	procs   int // the worker processes workers sets before a measurement
}

// prepare brings the target to the shape it is measured in.
func (t *benchTarget) prepare(b *testing.B) {
	if t.workers != nil {
		t.workers(b, t.procs)
	}
}

// call sends one request to the target's next API (callAt).
func (t *benchTarget) call(key, method, path string, body, out any, headers map[string]string) (int, error) {
	api := t.apis[int(t.next.Add(1))%len(t.apis)]
	return callAt(api, key, method, path, body, out, headers)
}

// createTenant creates a tenant in the target's database with an API key.
func (t *benchTarget) createTenant(b testing.TB, name string) (tenant.Tenant, string) {
	b.Helper()
	ctx := context.Background()
	tn, err := tenant.New(name)
	if err != nil {
		b.Fatal(err)
	}
	if err := t.store.CreateTenant(ctx, tn); err != nil {
		b.Fatal(err)
	}
	key, _ := tenant.NewKey()
	if err := t.store.AddAPIKey(ctx, tn.Name, tenant.HashKey(key), "integration test"); err != nil {
		b.Fatal(err)
	}
	return tn, key
}

// embedded is the stack of this test binary.
func embedded() *benchTarget {
	return &benchTarget{
		name: "embedded", apis: []string{stack.api.URL}, next: new(atomic.Uint64), demoKey: demoKey(), temporal: stack.app.Temporal,
		store: stack.app.Store, amqpURL: stack.app.Config.AMQPURL, redis: stack.app.Redis,
		listings: func(_ *testing.B, account, market string) map[string]sim.MarketListing {
			return stack.sims.Markets[market].Listings(account)
		},
		stats: func(_ *testing.B, market string) sim.MarketStats { return stack.sims.Markets[market].Stats() },
	}
}

// benchTargets is the embedded stack, then, with BENCH_CLUSTER=1, the
// cluster with one worker process and with two (in that order, so that
// the run ends with the cluster as it was).
func benchTargets(b *testing.B) []*benchTarget {
	ts := []*benchTarget{embedded()}
	if os.Getenv(benchClusterEnv) != "1" {
		return ts
	}
	c := connectCluster(b)
	for _, n := range []int{1, 2} {
		t := *c
		t.name, t.procs = fmt.Sprintf("cluster, %d worker", n), n
		if n > 1 {
			t.name += "s"
		}
		ts = append(ts, &t)
	}
	// Whatever happens, the cluster ends the run with both workers.
	b.Cleanup(func() { c.workers(b, 2) })
	return ts
}

// connectCluster finds the cluster from what `deploy/cluster.sh env`
// exports, or fails with the command that starts one.
func connectCluster(b *testing.B) *benchTarget {
	b.Helper()
	apis := strings.Fields(os.Getenv("SAGAFLOW_CLUSTER_API_URLS"))
	addr, db, amqpURL := os.Getenv("TEMPORAL_ADDRESS"), os.Getenv("DATABASE_URL"), os.Getenv("AMQP_URL")
	if len(apis) == 0 || addr == "" || db == "" || amqpURL == "" {
		b.Fatalf(`%s=1: SAGAFLOW_CLUSTER_API_URLS, TEMPORAL_ADDRESS, DATABASE_URL and AMQP_URL must be set: eval "$(deploy/cluster.sh env)" (make bench-* CLUSTER=1 does)`, benchClusterEnv)
	}
	for _, api := range apis {
		resp, err := http.Get(api + "/readyz")
		if err != nil {
			b.Fatalf("no cluster API at %s (%v): start the cluster with `make cluster`", api, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("cluster API %s/readyz = %d", api, resp.StatusCode)
		}
	}
	ctx := context.Background()
	// The bare workflow's workers and client compress (or not) as the
	// cluster's processes do (TEMPORAL_GRPC_COMPRESSION from cluster.sh env).
	compression, err := temporalclient.Compression(os.Getenv("TEMPORAL_GRPC_COMPRESSION"))
	if err != nil {
		b.Fatal(err)
	}
	tc, err := client.DialContext(ctx, client.Options{HostPort: addr, Namespace: stack.app.Config.TemporalNamespace,
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: compression},
		Logger:            log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		b.Fatalf("dial the cluster's Temporal at %s: %v", addr, err)
	}
	b.Cleanup(tc.Close)
	st, err := store.Open(ctx, db, 4)
	if err != nil {
		b.Fatalf("open the cluster's database: %v", err)
	}
	b.Cleanup(st.Close)
	sims := testenv.EnvOr("SAGAFLOW_CLUSTER_SIM_HOST", "http://127.0.0.1")
	simGet := func(b *testing.B, market, path string, out any) {
		url := fmt.Sprintf("%s:%d%s", sims, testenv.ClusterSimPorts[market], path)
		resp, err := http.Get(url)
		if err != nil {
			b.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s = %d", url, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			b.Fatalf("GET %s: %v", url, err)
		}
	}
	script := testenv.EnvOr("SAGAFLOW_CLUSTER_SCRIPT", filepath.Join(testenv.RepoRoot(), "deploy", "cluster.sh"))
	if _, err := os.Stat(script); err != nil {
		b.Fatalf("the cluster script: %v (SAGAFLOW_CLUSTER_SCRIPT)", err)
	}
	// The cluster's processes keep their keys under the configuration's
	// default prefix unless the environment says otherwise.
	var rdb *queue.Redis
	if url := os.Getenv("REDIS_URL"); url != "" {
		if rdb, err = queue.Open(ctx, url, testenv.EnvOr("SAGAFLOW_REDIS_PREFIX", "sagaflow:")); err != nil {
			b.Fatalf("open the cluster's Redis: %v", err)
		}
		b.Cleanup(func() { _ = rdb.Client.Close() })
	}
	return &benchTarget{
		apis: apis, next: new(atomic.Uint64), demoKey: testenv.EnvOr("SAGAFLOW_CLUSTER_API_KEY", "demo-key"), temporal: tc, store: st, amqpURL: amqpURL,
		redis: rdb,
		listings: func(b *testing.B, account, market string) map[string]sim.MarketListing {
			var out struct {
				Listings map[string]sim.MarketListing `json:"listings"`
			}
			simGet(b, market, "/admin/listings?account="+account, &out)
			return out.Listings
		},
		stats: func(b *testing.B, market string) sim.MarketStats {
			var out sim.MarketStats
			simGet(b, market, "/stats", &out)
			return out
		},
		workers: func(b *testing.B, n int) {
			// worker1 always runs; worker2 runs when n is 2.
			verb := map[int]string{1: "stop", 2: "start"}[n]
			if verb == "" {
				b.Fatalf("the cluster has 1 or 2 worker processes, not %d", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, script, verb, "worker2").CombinedOutput()
			if err != nil {
				b.Fatalf("%s %s worker2: %v: %s", script, verb, err, out)
			}
			// A stopped worker's task-queue pollers linger at the server
			// for a minute at most; a started one needs a moment to poll.
			time.Sleep(3 * time.Second)
		},
	}
}

// cpuUse is the CPU time (user + system) every process of the machine has
// used so far, summed by command name (postgres, temporal-server,
// sagaflow, beam.smp, redis-server, this test binary, ...): the difference
// of two of them says which process a benchmark's load went to, which is
// where its ceiling is on a machine of two cores. It also keeps the
// machine's idle and total clock ticks (/proc/stat), which say whether a
// measurement was bound by the CPU or waited on something else.
type cpuUse struct {
	procs       map[string]time.Duration
	idle, total uint64
}

// processCPU reads /proc; processes that end while it reads are skipped.
func processCPU() cpuUse {
	use := cpuUse{procs: map[string]time.Duration{}}
	use.idle, use.total, _ = machineTicks() // zero when unreadable: since then leaves the machine out
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range dirs {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses,
		// so split at the last ')'.
		s := string(raw)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 13 {
			continue
		}
		var utime, stime int64
		if _, err := fmt.Sscan(fields[11], &utime); err != nil {
			continue
		}
		if _, err := fmt.Sscan(fields[12], &stime); err != nil {
			continue
		}
		use.procs[s[open+1:end]] += time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	return use
}

// since is what each command used between before and u, the largest
// first, those under 2% of the total left out.
func (u cpuUse) since(before cpuUse) string {
	type share struct {
		name string
		d    time.Duration
	}
	var all []share
	var total time.Duration
	for name, d := range u.procs {
		if d -= before.procs[name]; d > 0 {
			all = append(all, share{name, d})
			total += d
		}
	}
	slices.SortFunc(all, func(a, b share) int { return cmp.Compare(b.d, a.d) })
	var parts []string
	for _, s := range all {
		if s.d*50 >= total {
			parts = append(parts, fmt.Sprintf("%s %.1fs (%.0f%%)", s.name, s.d.Seconds(), 100*float64(s.d)/float64(total)))
		}
	}
	busy := ""
	if u.total > before.total {
		ticks := u.total - before.total
		busy = fmt.Sprintf(" (machine %.0f%% busy)", 100-100*float64(u.idle-before.idle)/float64(ticks))
	}
	return fmt.Sprintf("CPU %.1fs%s: %s", total.Seconds(), busy, strings.Join(parts, ", "))
}

// machineTicks is the machine's idle (idle + iowait) and total CPU time so
// far, in clock ticks: the cpu line of /proc/stat; a field it cannot read
// counts as zero.
func machineTicks() (idle, total uint64, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return 0, 0, fmt.Errorf("/proc/stat: no cpu line")
	}
	for i, f := range fields[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total, nil
}
