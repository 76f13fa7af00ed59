package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// issueWatch is how long a campaign with nothing left to issue stays
// watched after its last accepted request: its lag is then 0 and it drops
// out of the tenant's maximum.
const issueWatch = 10 * time.Minute

// CouponMetrics count what the coupon campaigns do. Safe for concurrent use.
type CouponMetrics struct {
	setAside *prometheus.CounterVec
	requests *prometheus.CounterVec
	issued   *prometheus.CounterVec

	mu      sync.RWMutex
	watched map[campaignKey]time.Time // last accepted request seen, to the second
}

type campaignKey struct{ tenant, id string }

// Queued reports how many accepted requests of the campaign wait to be
// issued (queue.Redis.Queued implements it).
type Queued func(ctx context.Context, tenant, id string) (int64, error)

// NewCouponMetrics registers the campaigns' counters in m, and, when
// queued is not nil, sagaflow_coupon_issue_lag_max: per tenant, the
// accepted requests not yet issued of its campaign furthest behind, among
// the campaigns this process accepted requests for lately, read at most
// every interval.
func NewCouponMetrics(m *Metrics, queued Queued, interval time.Duration) *CouponMetrics {
	c := &CouponMetrics{
		setAside: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_coupon_set_aside_total",
			Help: "Accepted coupon requests set aside because PostgreSQL can never store them, by tenant. Alert on any increase.",
		}, []string{"tenant"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_coupon_requests_total",
			Help: "Coupon requests answered, by tenant and outcome (accepted, duplicate, sold_out, closed, not_open, no_campaign). Accept rate: accepted over all.",
		}, []string{"tenant", "outcome"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_coupon_issued_total",
			Help: "Coupons issued (written to PostgreSQL and taken off the queue), by tenant.",
		}, []string{"tenant"}),
		watched: map[campaignKey]time.Time{},
	}
	m.Registry.MustRegister(c.setAside, c.requests, c.issued)
	if queued != nil {
		lag := prometheus.NewDesc("sagaflow_coupon_issue_lag_max",
			"Accepted coupon requests not yet issued (accepted - issued - set aside) of the tenant's campaign furthest behind, among those this process accepted requests for in the last 10 minutes or that still have some.",
			[]string{"tenant"}, nil)
		m.Registry.MustRegister(&cachedCollector{descs: []*prometheus.Desc{lag}, interval: interval, timeout: scrapeTimeout,
			gather: func(ctx context.Context) []prometheus.Metric { return c.gatherLag(ctx, lag, queued) }})
	}
	return c
}

// gatherLag reads the queue of every watched campaign and returns the
// maximum per tenant; a campaign at 0 for longer than issueWatch is no
// longer watched.
func (c *CouponMetrics) gatherLag(ctx context.Context, d *prometheus.Desc, queued Queued) []prometheus.Metric {
	c.mu.Lock()
	keys := make(map[campaignKey]time.Time, len(c.watched))
	for k, at := range c.watched {
		keys[k] = at
	}
	c.mu.Unlock()
	worst := map[string]int64{}
	for k, at := range keys {
		n, err := queued(ctx, k.tenant, k.id)
		if err != nil {
			continue // not known now: the tenant's series may go absent
		}
		worst[k.tenant] = max(worst[k.tenant], n)
		if n == 0 && time.Since(at) > issueWatch {
			c.mu.Lock()
			if c.watched[k] == at {
				delete(c.watched, k)
			}
			c.mu.Unlock()
		}
	}
	out := make([]prometheus.Metric, 0, len(worst))
	for t, n := range worst {
		out = append(out, gauge(d, float64(n), t))
	}
	return out
}

// SetAside counts n requests of tenant set aside.
func (c *CouponMetrics) SetAside(tenant string, n int) {
	c.setAside.WithLabelValues(tenant).Add(float64(n))
}

// Requested counts a request for tenant's campaign id answered with
// outcome; an accepted one makes the campaign watched for its issue lag.
func (c *CouponMetrics) Requested(tenant, id, outcome string) {
	c.requests.WithLabelValues(tenant, outcome).Inc()
	if outcome != "accepted" {
		return
	}
	k, now := campaignKey{tenant, id}, time.Now()
	c.mu.RLock()
	fresh := now.Sub(c.watched[k]) < time.Second
	c.mu.RUnlock()
	if fresh { // a burst takes the write lock once a second, not per request
		return
	}
	c.mu.Lock()
	c.watched[k] = now
	c.mu.Unlock()
}

// Issued counts n coupons of tenant issued.
func (c *CouponMetrics) Issued(tenant string, n int) {
	c.issued.WithLabelValues(tenant).Add(float64(n))
}
