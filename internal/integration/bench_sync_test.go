package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/ingest/redisdedupe"
	"github.com/sagaflow/sagaflow/internal/otlpsink"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkSync_end_to_end measures the marketplace sync from publish to
// applied: BENCH_SYNC_RATE change events a second (default 2500) for
// BENCH_SYNC_SECONDS (default 60), published with confirms straight to the
// exchange for 2 new tenants, each connected to the three markets. The
// figure is events per second from the first publish until every market
// holds the last version of every SKU, and the catch-up: how long after the
// last publish that took (small means the sync kept pace). In the same run
// it measures the raw RabbitMQ rate: the same number of messages of the
// same size, published with confirms to a quorum queue of the same broker
// and consumed with manual acks. Run it with `make bench-sync`.
//
// BENCH_SYNC_MODE chooses the workload (syncWorkloads): hot (the default,
// 2 × 2,000 SKUs, so that most events are coalesced away), spread (every
// event a new version of a distinct SKU of a catalogue of 2 × 100,000, so
// that every event costs a market write) or both. With BENCH_CLUSTER=1
// each workload runs on the embedded stack and then on the cluster of
// `make cluster`, with one worker process and with two (benchTargets), and
// a table of all the runs ends the output.
//
// With BENCH_SYNC_TRACING=both it measures instead what exporting traces
// costs (`make bench-tracing`): the same workload, on fresh tenants each
// time, after one warm-up run that is not counted (a process's first run is
// the slowest), in BENCH_SYNC_ROUNDS pairs (default 2) in the order off on,
// on off, off on, … (ABBA, so that a drift of this shared machine's load
// falls on both alike), "off" with the provider of a process with no OTLP endpoint (it
// samples nothing) and "on" with the provider telemetry.SetupTracing builds
// for OTEL_EXPORTER_OTLP_ENDPOINT pointing at an in-process OTLP sink
// (internal/otlpsink) and OTEL_TRACES_SAMPLER=always_on: every span
// recorded and exported through the batch span processor. It reports, as
// the median over the pairs, on/off of the events/s end to end and of the
// process's CPU time per event (steadier than a rate on a shared machine),
// and the spans the sink received. With
// BENCH_SYNC_TRACEPARENT=1 every event carries a traceparent of its own, as
// the outbox relay's messages do; without, each message starts a root trace
// at the ingest, as one from a publisher without trace context does.
// BENCH_SYNC_TRACING=on or off runs BENCH_SYNC_ROUNDS runs of that mode
// only, to profile it (go test -cpuprofile).
func BenchmarkSync_end_to_end(b *testing.B) {
	rate := envInt("BENCH_SYNC_RATE", 2500)
	seconds := envInt("BENCH_SYNC_SECONDS", 60)
	switch mode := os.Getenv("BENCH_SYNC_TRACING"); mode {
	case "both", "on", "off":
		benchSyncTracing(b, rate, seconds, envInt("BENCH_SYNC_ROUNDS", 2), os.Getenv("BENCH_SYNC_TRACEPARENT") == "1", mode)
		return
	}
	loads := syncWorkloads(b, os.Getenv("BENCH_SYNC_MODE"))
	targets := benchTargets(b)
	for range b.N {
		var table []string
		for _, w := range loads {
			for ti, t := range targets {
				t.prepare(b)
				r := runSync(b, t, w, rate, seconds, fmt.Sprintf("%s%d", w.tag, ti))
				e2e := r.rate()
				raw := rawRabbitRate(b, t.amqpURL, r.published, r.size)
				if len(targets) == 1 && len(loads) == 1 {
					b.ReportMetric(e2e, "events/s")
					b.ReportMetric(raw, "raw-msg/s")
				}
				fmt.Printf("sync %s on %s: %s (target >= 2000)\n  %s\n", w.name, t.name, r, r.cpu)
				fmt.Printf("raw rabbitmq, same run: %d messages of %d bytes, confirms + manual acks, quorum queue: %.0f msg/s; sync/raw = %.2f\n",
					r.published, r.size, raw, e2e/raw)
				if t.workers == nil {
					fmt.Printf("ingest: %+v\n", stack.ingestStats())
				}
				table = append(table, fmt.Sprintf("%-7s %-18s %9.0f %10s %10.0f %8.2f", w.name, t.name, e2e,
					(r.applied-r.pubDone).Round(100*time.Millisecond), raw, e2e/raw))
			}
		}
		fmt.Printf("\nsync end to end, %d events/s offered for %d s (target: >= 2000 events/s; sync/raw >= 0.40)\n", rate, seconds)
		fmt.Printf("%-7s %-18s %9s %10s %10s %8s\n", "mode", "target", "events/s", "catch-up", "raw msg/s", "sync/raw")
		for _, l := range table {
			fmt.Println(l)
		}
	}
}

// syncWorkload is the catalogue the sync benchmark changes: skus products
// per tenant, event n of a tenant being SKU n%skus at version n/skus+1.
// A spread workload first seeds every SKU at version 1 in the catalogue
// (as products the markets have not been sent yet), so its events are
// version 2 and later.
type syncWorkload struct {
	name, tag string
	skus      int
	seeded    bool
	// traced gives every event a sampled W3C traceparent of its own, as
	// an instrumented publisher sends; without it the ingest starts a
	// root trace per message (an external publisher without one).
	traced bool
}

// syncWorkloads are the workloads BENCH_SYNC_MODE names: hot, spread or
// both ("" is hot). BENCH_SYNC_SKUS sets the spread catalogue per tenant.
func syncWorkloads(b *testing.B, mode string) []syncWorkload {
	hot := syncWorkload{name: "hot", tag: "h", skus: 2000}
	spread := syncWorkload{name: "spread", tag: "s", skus: envInt("BENCH_SYNC_SKUS", 100_000), seeded: true}
	switch mode {
	case "", "hot":
		return []syncWorkload{hot}
	case "spread":
		return []syncWorkload{spread}
	case "both":
		return []syncWorkload{hot, spread}
	}
	b.Fatalf("BENCH_SYNC_MODE=%q: want hot, spread or both", mode)
	return nil
}

// sku is the workload's name of SKU i.
func (w syncWorkload) sku(i int) string {
	if w.skus > 10_000 {
		return fmt.Sprintf("SKU-%06d", i)
	}
	return fmt.Sprintf("SKU-%04d", i)
}

// product is version v of SKU i of tenant tn.
func (w syncWorkload) product(tn string, i int, v int64) catalog.Product {
	return catalog.Product{SKU: w.sku(i), Name: fmt.Sprintf("%s product %d v%d", tn, i, v),
		Price: catalog.Money{Amount: int64(1000 + 10*(i%1000)), Currency: "KRW"}, Stock: int64(i % 500),
		Attributes: map[string]string{"color": "red", "tenant": tn}, Version: v}
}

// seed writes every SKU of the workload at version 1 into tn's catalogue,
// as the ingest writes changes from other systems (no outbox, no sync), and
// records version 1 as held by each of the channels, as if they had been
// synced before the run: otherwise each shard workflow, started by the
// run's first signal, would backfill its part of the catalogue to the
// markets during the measurement.
func (w syncWorkload) seed(b *testing.B, t *benchTarget, tn tenant.Tenant, channels []string) {
	const batch = 5000
	ctx := context.Background()
	for from := 0; from < w.skus; from += batch {
		ps := make([]catalog.Product, 0, batch)
		held := make(map[string]int64, batch)
		for i := from; i < min(from+batch, w.skus); i++ {
			ps = append(ps, w.product(tn.Name, i, 1))
			held[w.sku(i)] = 1
		}
		if _, err := t.store.ApplyChanges(ctx, tn.Schema, ps); err != nil {
			b.Fatal(err)
		}
		for _, id := range channels {
			if err := t.store.Catalog(tn.Schema).MarkSynced(ctx, id, held); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// newTenants creates the run's two tenants ("a" and "b") with create, which
// returns a tenant and its channels, seeds each when w is seeded, and
// returns their names.
func (w syncWorkload) newTenants(b *testing.B, t *benchTarget, create func(n string) (tenant.Tenant, []string)) []string {
	var names []string
	for _, n := range []string{"a", "b"} {
		tn, channels := create(n)
		if w.seeded {
			w.seed(b, t, tn, channels)
		}
		names = append(names, tn.Name)
	}
	return names
}

// firstVersion is the version of each SKU's first event: 2 where the
// catalogue was seeded at version 1.
func (w syncWorkload) firstVersion() int64 {
	if w.seeded {
		return 2
	}
	return 1
}

// event is event i of a run over tenants, which take turns: event n of a
// tenant is SKU n%skus at version firstVersion()+n/skus. It carries no
// trace context.
func (w syncWorkload) event(b *testing.B, tenants []string, i int) busEvent {
	tn := tenants[i%len(tenants)]
	n := i / len(tenants)
	return changeEvent(b, tn, w.product(tn, n%w.skus, w.firstVersion()+int64(n/w.skus)))
}

// syncRun is what one run of the sync workload measured.
type syncRun struct {
	published, size, offered, seconds int
	// writes is how many SKU writes the markets applied (of markets): one
	// per event and market when nothing was coalesced.
	writes, markets  int
	pubDone, applied time.Duration
	cpu              string // processCPU from the first publish to applied
}

// rate is events a second end to end.
func (r syncRun) rate() float64 { return float64(r.published) / r.applied.Seconds() }

func (r syncRun) String() string {
	return fmt.Sprintf("%d events of %d bytes offered at %d/s for %ds: published in %s (%.0f/s); all applied at every market after %s: %.0f events/s end to end, catch-up after the last publish %s; %d market writes (%.2f per event and market)",
		r.published, r.size, r.offered, r.seconds, r.pubDone.Round(time.Millisecond), float64(r.published)/r.pubDone.Seconds(),
		r.applied.Round(time.Millisecond), r.rate(), (r.applied - r.pubDone).Round(time.Millisecond),
		r.writes, float64(r.writes)/float64(max(r.published*r.markets, 1)))
}

// runSync runs workload w once on target t, on two new tenants whose names
// carry tag.
func runSync(b *testing.B, t *benchTarget, w syncWorkload, rate, seconds int, tag string) syncRun {
	markets := []string{"bazaar", "shopwave", "souk"}
	tenants := w.newTenants(b, t, func(n string) (tenant.Tenant, []string) {
		return newBenchSyncTenant(b, t, syncTenantName(tag+n), markets)
	})
	first := w.firstVersion()
	total := rate * seconds
	perTenant := total / len(tenants)
	seed := time.Now().UnixNano()
	event := func(i int) busEvent {
		e := w.event(b, tenants, i)
		if w.traced {
			e.traceparent = fmt.Sprintf("00-%016x%016x-%016x-01", seed, i+1, i+1)
		}
		return e
	}
	r := syncRun{size: len(event(0).body), offered: rate, seconds: seconds}
	// lastVersion is the version of the last event of a tenant for SKU i:
	// the highest n < perTenant with n%skus == i (0: none).
	lastVersion := func(i int) int64 {
		if perTenant <= i {
			return 0
		}
		return first + int64((perTenant-1-i)/w.skus)
	}
	// want is the market writes that must at least be applied: one per
	// (tenant, SKU, market) with an event; polling the markets' counts
	// until then spares reading every listing while far behind.
	want := len(tenants) * len(markets) * min(perTenant, w.skus)
	applied := func() int {
		n := 0
		for _, m := range markets {
			n += t.stats(b, m).Applied
		}
		return n
	}
	before := applied()
	poll := 200 * time.Millisecond
	if w.skus > 10_000 {
		poll = time.Second // reading a spread catalogue's listings takes a while
	}

	cpu0 := processCPU()
	start := time.Now()
	r.published = publishPaced(b, t.amqpURL, total, rate, event)
	r.pubDone = time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		behind := want - (applied() - before)
		if behind <= 0 {
			behind = 0
			for _, tn := range tenants {
				for _, m := range markets {
					ls := t.listings(b, credentials(tn, m), m)
					for i := range w.skus {
						if v := lastVersion(i); v > 0 && ls[w.sku(i)].Version < v {
							behind++
						}
					}
				}
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not applied after 10 minutes: %d (tenant, market, SKU) behind", t.name, behind)
		}
		time.Sleep(poll)
	}
	r.applied = time.Since(start)
	r.cpu = processCPU().since(cpu0)
	r.writes, r.markets = applied()-before, len(markets)
	for _, m := range markets {
		if s := t.stats(b, m); s.StaleWrites != 0 {
			b.Fatalf("%s: %s applied %d stale writes", t.name, m, s.StaleWrites)
		}
	}
	forgetDedupe(b, t.redis, tenants)
	return r
}

// forgetDedupe deletes the ingest's dedupe marks of the run's tenants (one
// per event, kept for a day): a day of benchmark runs left millions of them
// in the stack's Redis, whose AOF rewrites then fell on later runs, and a
// KEYS over them outlasted a test's read timeout.
func forgetDedupe(b *testing.B, rdb *queue.Redis, tenants []string) {
	if rdb == nil {
		return
	}
	ctx := context.Background()
	d := redisdedupe.New(rdb)
	deleted := 0
	for _, tn := range tenants {
		it := rdb.Client.Scan(ctx, 0, d.Key(ingest.DedupeKey{Tenant: tn})+"*", 10000).Iterator()
		var batch []string
		flush := func() {
			if len(batch) > 0 {
				if err := rdb.Client.Unlink(ctx, batch...).Err(); err != nil {
					b.Fatal(err)
				}
				deleted += len(batch)
				batch = batch[:0]
			}
		}
		for it.Next(ctx) {
			if batch = append(batch, it.Val()); len(batch) == 1000 {
				flush()
			}
		}
		if err := it.Err(); err != nil {
			b.Fatal(err)
		}
		flush()
	}
	fmt.Printf("  deleted the %d dedupe marks of the run's %d tenants\n", deleted, len(tenants))
}

// newBenchSyncTenant creates a tenant on t with one channel per market,
// each at its default base URL (the target's simulators), and returns it
// with the channels' ids.
func newBenchSyncTenant(b *testing.B, t *benchTarget, name string, markets []string) (tenant.Tenant, []string) {
	tn, key := t.createTenant(b, name)
	var ids []string
	for _, m := range markets {
		body := map[string]any{"market": m, "credentials": credentials(tn.Name, m), "rate_limit_per_sec": 1000}
		var ch channelDoc
		if code, err := t.call(key, http.MethodPost, "/v1/channels", body, &ch, nil); err != nil || code != http.StatusCreated {
			b.Fatalf("%s: create the %s channel: %d %v", t.name, m, code, err)
		}
		ids = append(ids, ch.ID)
	}
	return tn, ids
}

// benchSyncTracing is BenchmarkSync_end_to_end with BENCH_SYNC_TRACING=only:
// both (ABBA), on or off.
func benchSyncTracing(b *testing.B, rate, seconds, rounds int, traced bool, only string) {
	sink, err := otlpsink.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sink.Close() }()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	provider := func(env map[string]string) *sdktrace.TracerProvider {
		for k, v := range env {
			b.Setenv(k, v)
		}
		tp, _, err := telemetry.NewTracerProvider(ctx, "sagaflow-bench", quiet)
		if err != nil {
			b.Fatal(err)
		}
		return tp
	}
	off := provider(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""})
	defer func() { _ = off.Shutdown(ctx) }()
	on := provider(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": sink.Endpoint(), "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_TRACES_SAMPLER": "always_on"})
	defer func() { _ = on.Shutdown(ctx) }()

	var (
		exported int64 // spans, by the counted "on" runs
		onEvents int
	)
	// A run's figures: its rate end to end and the process's CPU per event.
	type figures struct{ rate, cpu float64 }
	run := func(i int, withExport bool) figures {
		tp, name := off, "off"
		if withExport {
			tp, name = on, "on"
		}
		testenv.UseTracerProvider(b, tp)
		waitQuiet(b)
		spans, cpu0 := sink.Spans(), cpuTime(b)
		suffix := fmt.Sprintf("t%d", i)
		if i < 0 {
			suffix = "tw"
		}
		r := runSync(b, embedded(), syncWorkload{name: "hot", skus: 2000, traced: traced}, rate, seconds, suffix)
		if withExport {
			if err := on.ForceFlush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		cpu := cpuTime(b) - cpu0
		got := sink.Spans() - spans
		if !withExport && got != 0 {
			b.Fatalf("tracing off: the sink received %d spans", got)
		}
		if withExport && got == 0 {
			b.Fatal("tracing on: the sink received no span")
		}
		if i >= 0 && withExport {
			exported += got
			onEvents += r.published
		}
		label := fmt.Sprintf("run %d", i+1)
		if i < 0 {
			label = "warm-up (not counted)"
		}
		fmt.Printf("sync tracing %-3s %s: %s; spans exported %d; process CPU %s (%.0f µs/event)\n",
			name, label, r, got, cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(r.published))
		return figures{rate: float64(r.published) / r.applied.Seconds(), cpu: float64(cpu.Microseconds()) / float64(r.published)}
	}
	if only != "both" {
		for i := range rounds {
			run(i, only == "on")
		}
		return
	}
	// The first run of a process is slower than the next ones (connections,
	// caches, the server's first shards): it would weigh on "off" alone.
	run(-1, false)
	// ABBA: off on, on off, off on, … and one ratio per pair.
	var rateRatios, cpuRatios []float64
	for i := range rounds {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		var f [2]figures // off, on
		for j, withExport := range order {
			k := 0
			if withExport {
				k = 1
			}
			f[k] = run(2*i+j, withExport)
		}
		rateRatios = append(rateRatios, f[1].rate/f[0].rate)
		cpuRatios = append(cpuRatios, f[1].cpu/f[0].cpu)
	}
	rateRatio, cpuRatio := median(rateRatios), median(cpuRatios)
	b.ReportMetric(rateRatio, "on/off")
	b.ReportMetric(cpuRatio, "cpu-on/off")
	publisher := "publisher without trace context (a root trace per message)"
	if traced {
		publisher = "publisher sending a traceparent per message"
	}
	fmt.Printf("sync tracing, %s: on (exported, always_on) / off, median of %d ABBA pairs (offered %d/s for %ds, after a warm-up run): events/s end to end %.3f (pairs %s), process CPU per event %.3f (pairs %s); %d spans exported, %.2f per event; sink rejected %d requests\n",
		publisher, rounds, rate, seconds, rateRatio, ratios(rateRatios), cpuRatio, ratios(cpuRatios), exported, float64(exported)/float64(onEvents), sink.Rejected())
}

// waitQuiet waits, at most 90 s, until the machine's CPUs were at least
// 85% idle over 2 s, so that no run of a comparison starts in the tail of
// the one before (the embedded server finishing its tasks, PostgreSQL's
// autovacuum), which would weigh on one mode of a pair only.
func waitQuiet(b *testing.B) {
	idle := 0.0
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); {
		i0, t0 := cpuStat(b)
		time.Sleep(2 * time.Second)
		i1, t1 := cpuStat(b)
		if idle = float64(i1-i0) / float64(max(t1-t0, 1)); idle >= 0.85 {
			break
		}
	}
	fmt.Printf("machine %.0f%% idle before the run\n", 100*idle)
}

// cpuStat is machineTicks, failing the benchmark when /proc/stat cannot
// be read.
func cpuStat(b *testing.B) (idle, total uint64) {
	idle, total, err := machineTicks()
	if err != nil {
		b.Fatal(err)
	}
	return idle, total
}

// median is the median of xs (not empty); it sorts xs.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func ratios(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(s, " ")
}

// cpuTime is the user and system CPU time this process has used so far
// (the whole process: server, simulators, publisher and OTLP sink).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// publishPaced publishes n events to the broker at amqpURL at rate a second (in 10 ms slices) with
// publisher confirms, 2,000 at most unconfirmed, and returns how many.
func publishPaced(b *testing.B, amqpURL string, n, rate int, event func(int) busEvent) int {
	ch, closeConn := testenv.AMQPChannel(b, amqpURL)
	defer closeConn()
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	inflight := make(chan *amqp.DeferredConfirmation, 2000)
	var nacked atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for c := range inflight {
			if ok, err := c.WaitContext(ctx); err != nil || !ok {
				nacked.Add(1)
			}
		}
	})
	start := time.Now()
	for i := range n {
		if due := start.Add(time.Duration(i) * time.Second / time.Duration(rate)); time.Until(due) > 10*time.Millisecond {
			time.Sleep(time.Until(due))
		}
		e := event(i)
		var headers amqp.Table
		if e.traceparent != "" {
			headers = amqp.Table{"traceparent": e.traceparent}
		}
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, catalog.Exchange, e.key, false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: e.id, Body: e.body, Headers: headers,
		})
		if err != nil {
			b.Fatal(err)
		}
		inflight <- c
	}
	close(inflight)
	wg.Wait()
	if n := nacked.Load(); n > 0 {
		b.Fatalf("%d publishes not confirmed", n)
	}
	return n
}

// rawRabbitRate publishes n messages of size bytes, on the broker at amqpURL, to a fresh quorum queue
// with confirms (2,000 unconfirmed at most) while a consumer (prefetch 2000,
// manual acks) takes them, and returns messages a second end to end.
func rawRabbitRate(b *testing.B, amqpURL string, n, size int) float64 {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	pub, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	q := "bench-raw-" + testenv.RunID()
	if _, err := pub.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = pub.QueueDelete(q, false, false, false) }()
	if err := pub.Confirm(false); err != nil {
		b.Fatal(err)
	}
	cons, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := cons.Qos(2000, 0, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := cons.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = 'x'
	}
	ctx := context.Background()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		got := 0
		for d := range deliveries {
			_ = d.Ack(false)
			if got++; got == n {
				close(done)
				return
			}
		}
	}()
	inflight := make(chan *amqp.DeferredConfirmation, 2000)
	go func() {
		for c := range inflight {
			_, _ = c.WaitContext(ctx)
		}
	}()
	for i := range n {
		c, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: strconv.Itoa(i), Body: body,
		})
		if err != nil {
			b.Fatal(err)
		}
		inflight <- c
	}
	close(inflight)
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		b.Fatal("raw consumer did not get every message")
	}
	return float64(n) / time.Since(start).Seconds()
}
