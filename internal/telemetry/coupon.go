package telemetry

import "github.com/prometheus/client_golang/prometheus"

// CouponMetrics count what the coupon campaigns do. Safe for concurrent use.
type CouponMetrics struct {
	setAside *prometheus.CounterVec
}

// NewCouponMetrics registers the campaigns' counters in m.
func NewCouponMetrics(m *Metrics) *CouponMetrics {
	c := &CouponMetrics{
		setAside: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_coupon_set_aside_total",
			Help: "Accepted coupon requests set aside because PostgreSQL can never store them, by tenant. Alert on any increase.",
		}, []string{"tenant"}),
	}
	m.Registry.MustRegister(c.setAside)
	return c
}

// SetAside counts n requests of tenant set aside.
func (c *CouponMetrics) SetAside(tenant string, n int) {
	c.setAside.WithLabelValues(tenant).Add(float64(n))
}
