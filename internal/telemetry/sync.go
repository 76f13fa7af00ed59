package telemetry

import "github.com/prometheus/client_golang/prometheus"

// SyncMetrics count the marketplace sync's work. Safe for concurrent use.
type SyncMetrics struct {
	items       *prometheus.CounterVec
	parked      *prometheus.CounterVec
	pushes      *prometheus.CounterVec
	transitions *prometheus.CounterVec
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
			Help: "Items parked (out of retries or refused by the market), by market and tenant. Alert on any increase.",
		}, []string{"market", "tenant"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_sync_pushes_total",
			Help: "Push activity attempts, by market and result (ok, retry: the market failed transiently or the breaker stayed open, rejected: the market refused the call for good).",
		}, []string{"market", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_market_breaker_transitions_total",
			Help: "Circuit breaker state changes of this process's channels, by market and the state entered (open, half-open, closed).",
		}, []string{"market", "state"}),
	}
	m.Registry.MustRegister(s.items, s.parked, s.pushes, s.transitions)
	return s
}

// Pushed counts n items of market that ended in outcome.
func (s *SyncMetrics) Pushed(market, outcome string, n int) {
	s.items.WithLabelValues(market, outcome).Add(float64(n))
}

// Parked counts n items of tenant's channel of market parked.
func (s *SyncMetrics) Parked(market, tenant string, n int) {
	s.parked.WithLabelValues(market, tenant).Add(float64(n))
}

// Push counts one push attempt to market that ended in result.
func (s *SyncMetrics) Push(market, result string) { s.pushes.WithLabelValues(market, result).Inc() }

// BreakerChanged counts a channel breaker of market entering state (the
// market.Options.OnBreakerChange hook).
func (s *SyncMetrics) BreakerChanged(market, _, to string) {
	s.transitions.WithLabelValues(market, to).Inc()
}

// RegisterBreakers registers sagaflow_market_breakers, the channels per
// market and breaker state that this process knows, read at each scrape
// from counts, which calls each once per market and state
// (market.Client.EachBreaker; in memory, no cache needed). Per market and
// not per channel: channels are capped per tenant but not in all, and
// a process holds up to market.DefaultMaxChannels of them; which channel
// is open the push's warning log says (market.ErrCircuitOpen, channel id).
func RegisterBreakers(m *Metrics, counts func(each func(market, state string, channels int))) {
	d := prometheus.NewDesc("sagaflow_market_breakers",
		"Channels this process pushed to lately, by market and circuit breaker state (closed, half-open, open). Alert on open > 0 for minutes.",
		[]string{"market", "state"}, nil)
	m.Registry.MustRegister(&funcCollector{desc: d, collect: func(ch chan<- prometheus.Metric) {
		counts(func(market, state string, n int) { ch <- gauge(d, float64(n), market, state) })
	}})
}

// funcCollector is a collector of one descriptor whose metrics come from
// collect at each scrape.
type funcCollector struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f *funcCollector) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }
