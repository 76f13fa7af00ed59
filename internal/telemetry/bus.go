package telemetry

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultScrapeEvery is how often a collector that asks another system
// (RabbitMQ, PostgreSQL, Redis) asks it at most; scrapes in between get
// the last answer. Prometheus scrapes every 15s (deploy/observability).
const DefaultScrapeEvery = 10 * time.Second

// scrapeTimeout bounds one gathering of such a collector: a slow broker
// or database must not hold up /metrics.
const scrapeTimeout = 3 * time.Second

// BusMetrics count what the bus's consumer (internal/ingest) does. Safe
// for concurrent use.
type BusMetrics struct {
	deadLetters *prometheus.CounterVec
	archived    *prometheus.CounterVec
	lag         prometheus.Histogram
	oldest      atomic.Pointer[func() time.Time]
}

// NewBusMetrics registers the ingest's metrics in m.
func NewBusMetrics(m *Metrics) *BusMetrics {
	b := &BusMetrics{
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_bus_dead_letters_total",
			Help: "Messages the ingest dead-lettered itself, by reason (invalid_message, unknown_tenant, store_refused, temporal_refused, superseded). Those the broker dead-letters after its delivery limit only show in sagaflow_bus_queue_messages of the dead queue.",
		}, []string{"reason"}),
		archived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_bus_dead_letters_archived_total",
			Help: "Dead letters the archiver moved from the bus's dead queue into PostgreSQL (GET /v1/deadletters), by reason (invalid, unknown_tenant, refused, delivery_limit, rejected, expired, maxlen, unroutable); a redelivered letter counts once.",
		}, []string{"reason"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sagaflow_ingest_lag_seconds",
			Help:    "Time from a change's commit (the message's timestamp, whole seconds; its receipt if it has none) to the ack of its batch, per acked message (handed over to Temporal, dead-lettered or dropped as a repeat).",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
		}),
	}
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sagaflow_ingest_oldest_unacked_age_seconds",
		Help: "Age (since its commit, or since its receipt if it has no timestamp) of the oldest message this process holds unacked; 0 when it holds none. Grows while a batch waits for PostgreSQL or Temporal.",
	}, func() float64 {
		f := b.oldest.Load()
		if f == nil {
			return 0
		}
		t := (*f)()
		if t.IsZero() {
			return 0
		}
		return max(0, time.Since(t).Seconds())
	})
	m.Registry.MustRegister(b.deadLetters, b.archived, b.lag, oldest)
	return b
}

// DeadLettered counts n messages dead-lettered for reason (a class, not
// the free text of the header).
func (b *BusMetrics) DeadLettered(reason string, n int) {
	b.deadLetters.WithLabelValues(reason).Add(float64(n))
}

// Archived counts one dead letter archived for reason (a class).
func (b *BusMetrics) Archived(reason string) {
	b.archived.WithLabelValues(reason).Inc()
}

// ArchivedReasons starts the archived count of each reason at zero, so that
// increase() sees a reason's first dead letter too.
func (b *BusMetrics) ArchivedReasons(reasons []string) {
	for _, r := range reasons {
		b.archived.WithLabelValues(r)
	}
}

// HandedOver records the lag of one message committed at published.
func (b *BusMetrics) HandedOver(published time.Time) {
	b.lag.Observe(max(0, time.Since(published).Seconds()))
}

// WatchOldest makes sagaflow_ingest_oldest_unacked_age_seconds report the
// age of what oldest returns (the zero time: nothing held). The last call
// wins.
func (b *BusMetrics) WatchOldest(oldest func() time.Time) { b.oldest.Store(&oldest) }

// QueueInspector reports a queue's ready messages and consumers, as a
// passive declare answers them (rabbit.Conn.Inspect implements it).
type QueueInspector func(ctx context.Context, queue string) (messages, consumers int, err error)

// RegisterQueues registers a collector of the queues' depth and consumers,
// asking inspect at most every interval: sagaflow_bus_queue_messages,
// sagaflow_bus_queue_consumers and sagaflow_bus_queue_up by queue.
func RegisterQueues(m *Metrics, inspect QueueInspector, queues []string, interval time.Duration) {
	messages := prometheus.NewDesc("sagaflow_bus_queue_messages",
		"Messages ready in the queue (not yet delivered to a consumer), as a passive declare reports them. On the dead queue: alert on any.", []string{"queue"}, nil)
	consumers := prometheus.NewDesc("sagaflow_bus_queue_consumers",
		"Consumers attached to the queue.", []string{"queue"}, nil)
	up := prometheus.NewDesc("sagaflow_bus_queue_up",
		"1 if the last inspection of the queue succeeded, 0 if not (its other series are then absent).", []string{"queue"}, nil)
	m.Registry.MustRegister(&cachedCollector{
		descs: []*prometheus.Desc{messages, consumers, up}, interval: interval, timeout: scrapeTimeout,
		gather: func(ctx context.Context) []prometheus.Metric {
			var out []prometheus.Metric
			for _, q := range queues {
				n, c, err := inspect(ctx, q)
				if err != nil {
					out = append(out, gauge(up, 0, q))
					continue
				}
				out = append(out, gauge(up, 1, q), gauge(messages, float64(n), q), gauge(consumers, float64(c), q))
			}
			return out
		},
	})
}
