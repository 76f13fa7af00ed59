package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/ingest/redisdedupe"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// BenchmarkIngest_alone is the first half of the sync path by itself: the
// sync workload (BENCH_SYNC_MODE, BENCH_SYNC_RATE, BENCH_SYNC_SECONDS, as
// BenchmarkSync_end_to_end) published to the ingest of the embedded stack's
// configuration (its consumers, prefetch and flush; dedupe marks in Redis,
// tenants and products in PostgreSQL), whose Sink only counts what it is
// handed: no Temporal, no workflow, no market. Next to it, in the same run,
// raw RabbitMQ with the same messages. It runs on a RabbitMQ vhost of its
// own, so the stack's own ingest sees none of it.
//
// The sync end to end can go no faster than this: its ingest does all of
// this, and then signals Temporal, whose workflows push to the markets.
// ingest/raw is so the ceiling of sync/raw that the ingest leaves.
func BenchmarkIngest_alone(b *testing.B) {
	rate := envInt("BENCH_SYNC_RATE", 20000)
	seconds := envInt("BENCH_SYNC_SECONDS", 20)
	ctx := context.Background()
	cfg := stack.app.Config
	t := embedded()
	amqpURL := benchVhost(b, "bench-ingest-"+testenv.RunID())
	ch, closeConn := testenv.AMQPChannel(b, amqpURL)
	if err := rabbit.DeclareTopology(ch); err != nil {
		b.Fatal(err)
	}
	closeConn()
	var table []string
	for range b.N {
		for _, w := range syncWorkloads(b, os.Getenv("BENCH_SYNC_MODE")) {
			tenants := w.newTenants(b, t, func(n string) (tenant.Tenant, []string) {
				tn, _ := t.createTenant(b, syncTenantName("i"+w.tag+n))
				return tn, nil // no channels: the Sink pushes nothing
			})
			conn, err := rabbit.Dial(ctx, amqpURL)
			if err != nil {
				b.Fatal(err)
			}
			sink := &countingSink{}
			c := ingest.New(conn, redisdedupe.New(stack.app.Redis), stack.app.Store, stack.app.Store, sink,
				slog.New(slog.NewTextHandler(io.Discard, nil)),
				ingest.Options{Consumers: cfg.IngestConsumers, Prefetch: cfg.IngestPrefetch, FlushEvery: cfg.IngestFlush})
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- c.Run(runCtx) }()

			total := rate * seconds
			event := func(i int) busEvent { return w.event(b, tenants, i) }
			size := len(event(0).body)
			cpu0 := processCPU()
			start := time.Now()
			published := publishPaced(b, amqpURL, total, rate, event)
			pubDone := time.Since(start)
			deadline := time.Now().Add(5 * time.Minute)
			for c.Stats().Received < int64(published) || !c.OldestUnacked().IsZero() {
				if time.Now().After(deadline) {
					b.Fatalf("ingest alone: %+v after 5 minutes, %d published", c.Stats(), published)
				}
				time.Sleep(10 * time.Millisecond)
			}
			took := time.Since(start)
			cpu := processCPU().since(cpu0)
			stop()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			_ = conn.Close()
			st := c.Stats()
			if st.DeadLettered != 0 || st.Refused != 0 {
				b.Fatalf("ingest alone dead-lettered %d, refused %d: %+v", st.DeadLettered, st.Refused, st)
			}
			forgetDedupe(b, t.redis, tenants)

			alone := float64(published) / took.Seconds()
			raw := rawRabbitRate(b, amqpURL, published, size)
			fmt.Printf("ingest alone, %s: %d events of %d bytes offered at %d/s: published in %s; all acked after %s: %.0f events/s; %d changes handed to the sink in %d calls (%.2f per event)\n  %s\n",
				w.name, published, size, rate, pubDone.Round(time.Millisecond), took.Round(time.Millisecond), alone,
				sink.changes.Load(), sink.calls.Load(), float64(sink.changes.Load())/float64(published), cpu)
			fmt.Printf("raw rabbitmq, same run: %.0f msg/s; ingest/raw = %.2f\n", raw, alone/raw)
			table = append(table, fmt.Sprintf("%-7s %12.0f %10.0f %11.2f", w.name, alone, raw, alone/raw))
		}
	}
	fmt.Printf("\ningest alone (no Temporal, no markets), %d events/s offered for %d s\n%-7s %12s %10s %11s\n", rate, seconds, "mode", "events/s", "raw msg/s", "ingest/raw")
	for _, l := range table {
		fmt.Println(l)
	}
}

// countingSink takes every batch at once and counts it.
type countingSink struct{ calls, changes atomic.Int64 }

func (s *countingSink) Deliver(_ context.Context, changes []ingest.Change) error {
	s.calls.Add(1)
	s.changes.Add(int64(len(changes)))
	return nil
}

// benchVhost creates RabbitMQ vhost name (through the management API of
// RABBITMQ_MANAGEMENT_URL, deleted when b ends) and returns the AMQP URL of
// the stack's broker on it.
func benchVhost(b *testing.B, name string) string {
	b.Helper()
	mgmt := os.Getenv("RABBITMQ_MANAGEMENT_URL")
	if mgmt == "" {
		b.Fatal(`RABBITMQ_MANAGEMENT_URL is not set: eval "$(deploy/stack.sh env)" (make bench-ingest does)`)
	}
	u, err := url.Parse(stack.app.Config.AMQPURL)
	if err != nil {
		b.Fatal(err)
	}
	mgmtCall := func(method, path, body string) {
		b.Helper()
		req, err := http.NewRequest(method, strings.TrimRight(mgmt, "/")+path, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			msg, _ := io.ReadAll(resp.Body)
			b.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, msg)
		}
	}
	vh := "/api/vhosts/" + url.PathEscape(name)
	mgmtCall(http.MethodPut, vh, `{}`)
	b.Cleanup(func() { mgmtCall(http.MethodDelete, vh, "") })
	mgmtCall(http.MethodPut, "/api/permissions/"+url.PathEscape(name)+"/"+url.PathEscape(u.User.Username()),
		`{"configure":".*","write":".*","read":".*"}`)
	u.Path = "/" + name
	u.RawPath = "/" + url.PathEscape(name)
	return u.String()
}
