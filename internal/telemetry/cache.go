package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// cachedCollector is a collector whose metrics cost a round trip to another
// system (RabbitMQ, PostgreSQL, Redis): it gathers them at most once per
// interval, within timeout, and serves the last gathering in between, so
// that several scrapers (Prometheus, a curl, an autoscaler) cost one query.
// Safe for concurrent use.
type cachedCollector struct {
	descs    []*prometheus.Desc
	interval time.Duration
	timeout  time.Duration
	gather   func(ctx context.Context) []prometheus.Metric

	mu   sync.Mutex
	at   time.Time
	last []prometheus.Metric
}

// Describe sends the descriptors of every metric gather may return.
func (c *cachedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends the last gathering, gathering anew when it is older than
// the interval. Const metrics are immutable, so one gathering can be sent
// to many scrapes.
func (c *cachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || time.Since(c.at) >= c.interval {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		c.last = c.gather(ctx)
		cancel()
		c.at = time.Now()
	}
	for _, m := range c.last {
		ch <- m
	}
}

// gauge is a const gauge of d; d's labels come in order.
func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
