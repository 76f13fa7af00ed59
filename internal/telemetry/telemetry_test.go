package telemetry_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

func newMetrics(t *testing.T) *telemetry.Metrics {
	t.Helper()
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

// env is the test's own database, vhost and Redis prefix on the stack.
func env(t *testing.T) *testenv.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := testenv.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// gathered is the registry's exposition of the named metrics.
func gathered(t *testing.T, m *telemetry.Metrics, names ...string) string {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				for _, s := range mf.GetMetric() {
					b.WriteString(n)
					for _, l := range s.GetLabel() {
						b.WriteString(" " + l.GetName() + "=" + l.GetValue())
					}
					switch {
					case s.Gauge != nil:
						b.WriteString(" " + ftoa(s.GetGauge().GetValue()))
					case s.Counter != nil:
						b.WriteString(" " + ftoa(s.GetCounter().GetValue()))
					case s.Histogram != nil:
						b.WriteString(" count=" + ftoa(float64(s.GetHistogram().GetSampleCount())))
					}
					b.WriteString("\n")
				}
			}
		}
	}
	return b.String()
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// value is the value of the series of name whose labels print as labels
// ("a=x b=y", sorted by name; "" for none), or -1 if there is none.
func value(t *testing.T, m *telemetry.Metrics, name, labels string) float64 {
	t.Helper()
	for _, line := range strings.Split(gathered(t, m, name), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != name || strings.Join(f[1:len(f)-1], " ") != labels {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return -1
}

func TestQueues_reports_the_depth_of_real_queues(t *testing.T) {
	e := env(t)
	ctx := context.Background()
	conn, err := rabbit.Dial(ctx, e.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ch.Close() }()
	q := "metrics-test-" + testenv.RunID()
	if _, err := ch.QueueDeclare(q, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		for range n {
			if err := ch.PublishWithContext(ctx, "", q, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := newMetrics(t)
	missing := "metrics-missing-" + testenv.RunID()
	telemetry.RegisterQueues(m, conn.Inspect, []string{q, missing}, 0) // no cache: each scrape asks
	publish(3)
	testenv.Eventually(t, 10*time.Second, "3 messages ready", func() bool {
		return strings.Contains(gathered(t, m, "sagaflow_bus_queue_messages"), "queue="+q+" 3")
	})
	publish(2)
	testenv.Eventually(t, 10*time.Second, "5 messages ready", func() bool {
		return strings.Contains(gathered(t, m, "sagaflow_bus_queue_messages"), "queue="+q+" 5")
	})
	up := gathered(t, m, "sagaflow_bus_queue_up")
	if !strings.Contains(up, "queue="+q+" 1") || !strings.Contains(up, "queue="+missing+" 0") {
		t.Fatalf("queue_up = %q, want 1 for %s and 0 for the missing queue", up, q)
	}
}

func TestQueues_asks_at_most_once_per_interval(t *testing.T) {
	m := newMetrics(t)
	calls := 0
	telemetry.RegisterQueues(m, func(context.Context, string) (int, int, error) { calls++; return calls, 0, nil }, []string{"q"}, time.Hour)
	for range 3 {
		gathered(t, m, "sagaflow_bus_queue_messages")
	}
	if calls != 1 {
		t.Fatalf("inspected %d times in three scrapes within the interval, want 1", calls)
	}
}

func TestOutbox_reports_backlog_and_age_per_tenant(t *testing.T) {
	e := env(t)
	ctx := context.Background()
	s, err := store.Open(ctx, e.Config.DatabaseURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tn, err := tenant.New("m" + testenv.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(t)
	om := telemetry.NewOutboxMetrics(m, s.Pool(), 0)
	if got := gathered(t, m, "sagaflow_outbox_backlog"); !strings.Contains(got, "tenant="+tn.Name+" 0") {
		t.Fatalf("backlog of an empty outbox = %q, want 0", got)
	}
	for range 2 {
		if _, err := s.Pool().Exec(ctx, `INSERT INTO `+tn.Schema+`.outbox (message_id, exchange, routing_key, type, payload, created_at)
			VALUES (gen_random_uuid(), 'x', 'k', 't', '{}', now() - interval '90 seconds')`); err != nil {
			t.Fatal(err)
		}
	}
	if got := gathered(t, m, "sagaflow_outbox_backlog"); !strings.Contains(got, "tenant="+tn.Name+" 2") {
		t.Fatalf("backlog = %q, want 2", got)
	}
	if age := value(t, m, "sagaflow_outbox_oldest_age_seconds", "tenant="+tn.Name); age < 90 || age > 600 {
		t.Fatalf("oldest age = %v, want about 90s", age)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE `+tn.Schema+`.outbox SET sent_at = now()`); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, m, "sagaflow_outbox_backlog", "sagaflow_outbox_oldest_age_seconds", "sagaflow_outbox_up"); !strings.Contains(got, "sagaflow_outbox_backlog tenant="+tn.Name+" 0") ||
		!strings.Contains(got, "sagaflow_outbox_oldest_age_seconds tenant="+tn.Name+" 0") || !strings.Contains(got, "sagaflow_outbox_up 1") {
		t.Fatalf("after the relay: %q, want backlog 0, age 0, up 1", got)
	}
	if got := value(t, m, "sagaflow_outbox_published_total", ""); got != 0 {
		t.Fatalf("published before a relay is watched = %v, want 0", got)
	}
	om.WatchRelay(func() int64 { return 7 })
	if got := value(t, m, "sagaflow_outbox_published_total", ""); got != 7 {
		t.Fatalf("published = %v, want the relay's 7", got)
	}
}

func TestCoupons_issue_lag_is_the_worst_campaign_of_the_tenant(t *testing.T) {
	e := env(t)
	ctx := context.Background()
	rdb, err := queue.Open(ctx, e.Config.RedisURL, e.Config.RedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rdb.Close() }()
	m := newMetrics(t)
	c := telemetry.NewCouponMetrics(m, rdb.Queued, 0)
	now := time.Now()
	ask := func(id string, users ...string) {
		for _, u := range users {
			a, err := rdb.Ask(ctx, "acme", id, u)
			if err != nil {
				t.Fatal(err)
			}
			c.Requested("acme", id, a.Outcome.String())
		}
	}
	for _, id := range []string{"c1", "c2"} {
		if err := rdb.OpenCampaign(ctx, queue.Campaign{Tenant: "acme", ID: id, Stock: 10, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	ask("c1", "u1", "u2")
	ask("c2", "u1", "u2", "u3", "u1") // the last is a duplicate
	got := gathered(t, m, "sagaflow_coupon_issue_lag_max", "sagaflow_coupon_requests_total")
	for _, want := range []string{
		"sagaflow_coupon_issue_lag_max tenant=acme 3",
		"sagaflow_coupon_requests_total outcome=accepted tenant=acme 5",
		"sagaflow_coupon_requests_total outcome=duplicate tenant=acme 1",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("got\n%s\nwant a line %q", got, want)
		}
	}
	if err := rdb.Issued(ctx, "acme", "c2", []string{"u1", "u2", "u3"}); err != nil {
		t.Fatal(err)
	}
	c.Issued("acme", 3)
	got = gathered(t, m, "sagaflow_coupon_issue_lag_max", "sagaflow_coupon_issued_total")
	if !strings.Contains(got, "sagaflow_coupon_issue_lag_max tenant=acme 2") || !strings.Contains(got, "sagaflow_coupon_issued_total tenant=acme 3") {
		t.Fatalf("after issuing c2: %s, want lag 2 (c1) and 3 issued", got)
	}
}
