package telemetry

import "github.com/prometheus/client_golang/prometheus"

// SyncMetrics count the marketplace sync's work. Safe for concurrent use.
type SyncMetrics struct {
	items  *prometheus.CounterVec
	parked *prometheus.CounterVec
}

// NewSyncMetrics registers the sync's counters in m.
func NewSyncMetrics(m *Metrics) *SyncMetrics {
	s := &SyncMetrics{
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_sync_items_total",
			Help: "Items pushed to marketplaces, by market and outcome (applied, duplicate, rejected).",
		}, []string{"market", "outcome"}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_sync_parked_total",
			Help: "Items parked (out of retries or refused by the market), by market. Alert on any increase.",
		}, []string{"market"}),
	}
	m.Registry.MustRegister(s.items, s.parked)
	return s
}

// Pushed counts n items of market that ended in outcome.
func (s *SyncMetrics) Pushed(market, outcome string, n int) {
	s.items.WithLabelValues(market, outcome).Add(float64(n))
}

// Parked counts n items of market parked.
func (s *SyncMetrics) Parked(market string, n int) { s.parked.WithLabelValues(market).Add(float64(n)) }
