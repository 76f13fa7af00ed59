package telemetry

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// maxOutboxCount bounds the rows the outbox collector counts per tenant: a
// backlog beyond it is an incident whatever its size, and counting it all
// every scrape would add to the load that caused it.
const maxOutboxCount = 100_000

// OutboxMetrics watch the tenants' outboxes and their relay. Safe for
// concurrent use.
type OutboxMetrics struct {
	published atomic.Pointer[func() int64]
}

// NewOutboxMetrics registers in m a collector that asks PostgreSQL, at most
// every interval, how many rows each tenant's outbox holds unsent
// (sagaflow_outbox_backlog, counted up to 100000) and how old the oldest
// is (sagaflow_outbox_oldest_age_seconds), by tenant; and the relay's
// counter of published rows.
func NewOutboxMetrics(m *Metrics, pool *pgxpool.Pool, interval time.Duration) *OutboxMetrics {
	o := &OutboxMetrics{}
	backlog := prometheus.NewDesc("sagaflow_outbox_backlog",
		"Unsent rows of the tenant's outbox (counted up to 100000).", []string{"tenant"}, nil)
	age := prometheus.NewDesc("sagaflow_outbox_oldest_age_seconds",
		"Age of the tenant's oldest unsent outbox row; 0 when none is unsent.", []string{"tenant"}, nil)
	up := prometheus.NewDesc("sagaflow_outbox_up",
		"1 if the last reading of every tenant's outbox succeeded, 0 if one or more failed (their series are then absent).", nil, nil)
	m.Registry.MustRegister(&cachedCollector{
		descs: []*prometheus.Desc{backlog, age, up}, interval: interval, timeout: scrapeTimeout,
		gather: func(ctx context.Context) []prometheus.Metric {
			rows, err := readOutboxes(ctx, pool)
			ok := 1.0
			if err != nil {
				ok = 0
			}
			out := []prometheus.Metric{gauge(up, ok)}
			for _, r := range rows {
				out = append(out, gauge(backlog, float64(r.count), r.tenant), gauge(age, r.age, r.tenant))
			}
			return out
		},
	})
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sagaflow_outbox_published_total",
		Help: "Outbox rows this process's relay published (confirmed by the broker).",
	}, func() float64 {
		if f := o.published.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
	return o
}

// WatchRelay makes sagaflow_outbox_published_total report what published
// returns (outbox.Relay.Published). The last call wins.
func (o *OutboxMetrics) WatchRelay(published func() int64) { o.published.Store(&published) }

type outboxRow struct {
	tenant string
	count  int64
	age    float64
}

// readOutboxes reads every tenant's outbox; a tenant whose read fails is
// left out, and the first failure returned with what was read.
func readOutboxes(ctx context.Context, pool *pgxpool.Pool) ([]outboxRow, error) {
	rows, err := pool.Query(ctx, `SELECT name, schema_name FROM sagaflow.tenants ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("telemetry: list tenants: %w", err)
	}
	type tenant struct{ name, schema string }
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant, error) {
		var t tenant
		return t, r.Scan(&t.name, &t.schema)
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry: list tenants: %w", err)
	}
	var out []outboxRow
	var first error
	for _, t := range ts {
		table := pgx.Identifier{t.schema, "outbox"}.Sanitize()
		// Both through the partial index of unsent rows; ids grow with
		// created_at, so the lowest unsent id is the oldest row.
		r := outboxRow{tenant: t.name}
		err := pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM (SELECT 1 FROM `+table+` WHERE sent_at IS NULL LIMIT $1) u),
			coalesce((SELECT extract(epoch FROM now() - created_at)::float8 FROM `+table+` WHERE sent_at IS NULL ORDER BY id LIMIT 1), 0)`,
			maxOutboxCount).Scan(&r.count, &r.age)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("telemetry: read outbox of %s: %w", t.name, err)
			}
			continue
		}
		out = append(out, r)
	}
	return out, first
}
