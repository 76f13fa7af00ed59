package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/otlpsink"
	"github.com/sagaflow/sagaflow/internal/telemetry"
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
// exchange for 2 tenants × 2,000 SKUs, each tenant connected to the three
// markets. The figure is events per second from the first publish until
// every market holds the last version of every SKU, and the catch-up: how
// long after the last publish that took (small means the sync kept pace).
// In the same run it measures the raw RabbitMQ rate: the same number of
// messages of the same size, published with confirms to a quorum queue and
// consumed with manual acks. Run it with `make bench-sync`.
//
// With BENCH_SYNC_TRACING=both it measures instead what exporting traces
// costs (`make bench-tracing`): the same workload, on fresh tenants each
// time, BENCH_SYNC_ROUNDS times (default 2) in the order off, on, on, off,
// … (ABBA, so that a drift of this shared machine's load falls on both
// alike), "off" with the provider of a process with no OTLP endpoint (it
// samples nothing) and "on" with the provider telemetry.SetupTracing builds
// for OTEL_EXPORTER_OTLP_ENDPOINT pointing at an in-process OTLP sink
// (internal/otlpsink) and OTEL_TRACES_SAMPLER=always_on: every span
// recorded and exported through the batch span processor. It reports the
// events/s of each mode (the sum of events over the sum of times), their
// ratio on/off, the process's CPU time per event in each mode (steadier
// than a rate on a shared machine) and the spans the sink received.
func BenchmarkSync_end_to_end(b *testing.B) {
	rate := envInt("BENCH_SYNC_RATE", 2500)
	seconds := envInt("BENCH_SYNC_SECONDS", 60)
	if os.Getenv("BENCH_SYNC_TRACING") == "both" {
		benchSyncTracing(b, rate, seconds, envInt("BENCH_SYNC_ROUNDS", 2))
		return
	}
	for range b.N {
		r := runSync(b, rate, seconds, "b")
		e2e := r.rate()
		raw := rawRabbitRate(b, r.published, r.size)
		b.ReportMetric(e2e, "events/s")
		b.ReportMetric(raw, "raw-msg/s")
		fmt.Printf("sync: %s (target >= 2000)\n", r)
		fmt.Printf("raw rabbitmq, same run: %d messages of %d bytes, confirms + manual acks, quorum queue: %.0f msg/s; sync/raw = %.2f\n",
			r.published, r.size, raw, e2e/raw)
		fmt.Printf("ingest: %+v\n", stack.ingestStats())
	}
}

// syncRun is what one run of the sync workload measured.
type syncRun struct {
	published, size, offered, seconds int
	pubDone, applied                  time.Duration
}

// rate is events a second end to end.
func (r syncRun) rate() float64 { return float64(r.published) / r.applied.Seconds() }

func (r syncRun) String() string {
	return fmt.Sprintf("%d events of %d bytes offered at %d/s for %ds: published in %s (%.0f/s); all applied at every market after %s: %.0f events/s end to end, catch-up after the last publish %s",
		r.published, r.size, r.offered, r.seconds, r.pubDone.Round(time.Millisecond), float64(r.published)/r.pubDone.Seconds(),
		r.applied.Round(time.Millisecond), r.rate(), (r.applied - r.pubDone).Round(time.Millisecond))
}

// runSync runs the workload of BenchmarkSync_end_to_end once, on two new
// tenants whose names carry tag.
func runSync(b *testing.B, rate, seconds int, tag string) syncRun {
	const skus = 2000
	markets := []string{"bazaar", "shopwave", "souk"}
	var tenants []*syncTenant
	for _, t := range []string{"a", "b"} {
		tenants = append(tenants, newSyncTenant(b, syncTenantName(tag+t), markets...))
	}
	// Versions go round the SKUs: event i of a tenant is SKU i%skus at
	// version i/skus+1.
	total := rate * seconds
	perTenant := total / len(tenants)
	event := func(i int) busEvent {
		st := tenants[i%len(tenants)]
		n := i / len(tenants)
		sku, v := n%skus, int64(n/skus+1)
		p := catalog.Product{SKU: fmt.Sprintf("SKU-%04d", sku), Name: fmt.Sprintf("%s product %d v%d", st.t.Name, sku, v),
			Price: catalog.Money{Amount: int64(1000 + 10*(n%1000)), Currency: "KRW"}, Stock: int64(n % 500),
			Attributes: map[string]string{"color": "red", "tenant": st.t.Name}, Version: v}
		return changeEvent(b, st.t.Name, p)
	}
	r := syncRun{size: len(event(0).body), offered: rate, seconds: seconds}

	start := time.Now()
	r.published = publishPaced(b, total, rate, event)
	r.pubDone = time.Since(start)
	lastVersion := func(sku int) int64 {
		// the highest n < perTenant with n%skus == sku
		if perTenant <= sku {
			return 0
		}
		return int64((perTenant-1-sku)/skus + 1)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		behind := 0
		for _, st := range tenants {
			for _, m := range markets {
				ls := stack.sims.Markets[m].Listings(credentials(st.t.Name, m))
				for sku := range skus {
					if ls[fmt.Sprintf("SKU-%04d", sku)].Version < lastVersion(sku) {
						behind++
					}
				}
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not applied after 10 minutes: %d (tenant, market, SKU) behind", behind)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.applied = time.Since(start)
	for _, m := range markets {
		if s := stack.sims.Markets[m].Stats(); s.StaleWrites != 0 {
			b.Fatalf("%s applied %d stale writes", m, s.StaleWrites)
		}
	}
	return r
}

// benchSyncTracing is BenchmarkSync_end_to_end with BENCH_SYNC_TRACING=both.
func benchSyncTracing(b *testing.B, rate, seconds, rounds int) {
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

	type total struct {
		events  int
		elapsed time.Duration
		spans   int64
		cpu     time.Duration
	}
	var sum [2]total // off, on
	for i := range 2 * rounds {
		mode := i % 4 // off on on off
		withExport := mode == 1 || mode == 2
		tp, name := off, "off"
		if withExport {
			tp, name = on, "on"
		}
		testenv.UseTracerProvider(b, tp)
		spans, cpu0 := sink.Spans(), cpuTime(b)
		r := runSync(b, rate, seconds, fmt.Sprintf("t%d", i))
		if withExport {
			if err := on.ForceFlush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		cpu := cpuTime(b) - cpu0
		got := sink.Spans() - spans
		k := 0
		if withExport {
			k = 1
		}
		sum[k].events += r.published
		sum[k].elapsed += r.applied
		sum[k].spans += got
		sum[k].cpu += cpu
		fmt.Printf("sync tracing %-3s run %d: %s; spans exported %d; process CPU %s (%.0f µs/event)\n",
			name, i+1, r, got, cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(r.published))
	}
	rOff := float64(sum[0].events) / sum[0].elapsed.Seconds()
	rOn := float64(sum[1].events) / sum[1].elapsed.Seconds()
	if sum[1].spans == 0 {
		b.Fatal("tracing on: the sink received no span")
	}
	if sum[0].spans != 0 {
		b.Fatalf("tracing off: the sink received %d spans", sum[0].spans)
	}
	b.ReportMetric(rOff, "off-events/s")
	b.ReportMetric(rOn, "on-events/s")
	cpuOff := float64(sum[0].cpu.Microseconds()) / float64(sum[0].events)
	cpuOn := float64(sum[1].cpu.Microseconds()) / float64(sum[1].events)
	b.ReportMetric(rOn/rOff, "on/off")
	b.ReportMetric(cpuOn/cpuOff, "cpu-on/off")
	fmt.Printf("sync tracing: off %.0f events/s, on (exported, always_on) %.0f events/s, on/off = %.3f (%d runs each, offered %d/s for %ds); process CPU per event off %.0f µs, on %.0f µs, on/off = %.3f; %d spans exported, %.2f per event; sink rejected %d requests\n",
		rOff, rOn, rOn/rOff, rounds, rate, seconds, cpuOff, cpuOn, cpuOn/cpuOff, sum[1].spans, float64(sum[1].spans)/float64(sum[1].events), sink.Rejected())
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

// publishPaced publishes n events at rate a second (in 10 ms slices) with
// publisher confirms, 2,000 at most unconfirmed, and returns how many.
func publishPaced(b *testing.B, n, rate int, event func(int) busEvent) int {
	ch, closeConn := testenv.AMQPChannel(b, stack.app.Config.AMQPURL)
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
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, catalog.Exchange, e.key, false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: e.id, Body: e.body,
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

// rawRabbitRate publishes n messages of size bytes to a fresh quorum queue
// with confirms (2,000 unconfirmed at most) while a consumer (prefetch 2000,
// manual acks) takes them, and returns messages a second end to end.
func rawRabbitRate(b *testing.B, n, size int) float64 {
	conn, err := amqp.Dial(stack.app.Config.AMQPURL)
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
