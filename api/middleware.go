package api

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagaflow/sagaflow/internal/tenant"
)

const (
	ctxRequestID = "sagaflow.request_id"
	ctxLogger    = "sagaflow.logger"
	ctxTenant    = "sagaflow.tenant"
)

// requestContext gives each request an id (the caller's X-Request-Id if it
// sent a sane one, else this process's prefix and a counter: unique, and
// cheaper than a UUID on the hot path) and a body size limit. The logger
// that carries the id is made only when something is logged.
func requestContext(base *slog.Logger, maxBody int64) gin.HandlerFunc {
	prefix := uuid.NewString()[:8] + "-"
	var seq atomic.Uint64
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-Id")
		if id == "" || len(id) > 128 {
			id = prefix + strconv.FormatUint(seq.Add(1), 36)
		}
		c.Header("X-Request-Id", id)
		c.Set(ctxRequestID, id)
		c.Set(ctxLogger, base)
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBody)
		}
		c.Next()
	}
}

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// loggerFrom is the request's logger, with its request id.
func loggerFrom(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger); ok {
		return l.(*slog.Logger).With("request_id", requestID(c))
	}
	return slog.Default()
}

// accessLog logs each request once, and counts it in the metrics.
func accessLog(m *httpMetrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		elapsed := time.Since(start)
		m.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(c.Request.Method, route).Observe(elapsed.Seconds())
		if route == "/healthz" || route == "/metrics" {
			return // probes and scrapes would drown the log
		}
		// Requests are counted in the metrics; the log has the failures at
		// info and above, and every request at debug (a burst of coupon
		// requests would otherwise spend its CPU writing log lines).
		level := slog.LevelDebug
		switch {
		case status >= 500:
			level = slog.LevelError
		case status == http.StatusUnauthorized || status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
			level = slog.LevelInfo
		}
		base, _ := c.Get(ctxLogger)
		if l, ok := base.(*slog.Logger); !ok || !l.Enabled(c.Request.Context(), level) {
			return
		}
		attrs := []any{"method", c.Request.Method, "route", route, "status", status, "duration_ms", float64(elapsed.Microseconds()) / 1000}
		if t, ok := c.Get(ctxTenant); ok {
			attrs = append(attrs, "tenant", t.(tenant.Tenant).Name)
		}
		loggerFrom(c).Log(c.Request.Context(), level, "http request", attrs...)
	}
}

// recovery turns a panic in a handler into a logged JSON 500: no input may
// crash the process.
func recovery() gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, rec any) {
		loggerFrom(c).Error("handler panicked", "panic", rec)
		abort(c, http.StatusInternalServerError, "internal", "internal error (see the server log for request "+requestID(c)+")")
	})
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sagaflow_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sagaflow_http_request_duration_seconds",
			Help:    "HTTP request latency by method and route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// keyCache remembers which tenant a key hash resolved to, so that hot paths
// (the coupon requests) do not query PostgreSQL per request. A revoked key
// keeps working until its entry expires (SAGAFLOW_API_KEY_CACHE_TTL).
type keyCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[tenant.KeyHash]cachedTenant
}

type cachedTenant struct {
	tenant  tenant.Tenant
	expires time.Time
}

func (k *keyCache) get(h tenant.KeyHash, now time.Time) (tenant.Tenant, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[h]
	if !ok || now.After(e.expires) {
		return tenant.Tenant{}, false
	}
	return e.tenant, true
}

func (k *keyCache) put(h tenant.KeyHash, t tenant.Tenant, now time.Time) {
	if k.ttl <= 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) > 10000 { // bounded: a flood of valid keys cannot grow it forever
		clear(k.m)
	}
	k.m[h] = cachedTenant{tenant: t, expires: now.Add(k.ttl)}
}

// authenticate resolves "Authorization: Bearer <key>" to a tenant, or
// answers 401. Keys are looked up by their SHA-256 digest: timing of that
// lookup says nothing usable about a key, and the digest the store returns is
// compared again in constant time.
func authenticate(tenants TenantResolver, cache *keyCache) gin.HandlerFunc {
	return func(c *gin.Context) {
		scheme, key, ok := strings.Cut(c.GetHeader("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
			c.Header("WWW-Authenticate", `Bearer realm="sagaflow"`)
			abort(c, http.StatusUnauthorized, "unauthenticated", "send Authorization: Bearer <api key>")
			return
		}
		h := tenant.HashKey(strings.TrimSpace(key))
		now := time.Now()
		t, ok := cache.get(h, now)
		if !ok {
			got, stored, err := tenants.TenantByKeyHash(c.Request.Context(), h)
			if err != nil || subtle.ConstantTimeCompare(stored[:], h[:]) != 1 {
				if err != nil && !errors.Is(err, tenant.ErrNotFound) {
					fail(c, err)
					return
				}
				c.Header("WWW-Authenticate", `Bearer realm="sagaflow", error="invalid_token"`)
				abort(c, http.StatusUnauthorized, "unauthenticated", "unknown or revoked API key")
				return
			}
			t = got
			cache.put(h, t, now)
		}
		c.Set(ctxTenant, t)
		c.Next()
	}
}

func tenantFrom(c *gin.Context) tenant.Tenant { return c.MustGet(ctxTenant).(tenant.Tenant) }
