package api

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"maps"
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
	"github.com/sagaflow/sagaflow/internal/valid"
)

const (
	ctxRequestID = "sagaflow.request_id"
	ctxLogger    = "sagaflow.logger"
	ctxTenant    = "sagaflow.tenant"
)

// requestContext gives each request an id (the caller's X-Request-Id if it
// is a valid token of at most 128 characters, else this process's prefix and
// a counter: unique, and cheaper than a UUID on the hot path) and a body
// size limit. A bad X-Request-Id is replaced, not refused: it only names the
// request in logs and answers. The logger that carries the id is made only
// when something is logged.
func requestContext(base *slog.Logger, maxBody int64) gin.HandlerFunc {
	prefix := uuid.NewString()[:8] + "-"
	var seq atomic.Uint64
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-Id")
		if valid.TokenProblem(id, maxRequestIDLen) != "" {
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

// Defaults of the guard against guessed keys (Deps.BadKeyTTL,
// Deps.AuthFailureLimit, Deps.AuthFailureWindow).
const (
	defaultBadKeyTTL         = 10 * time.Second
	defaultAuthFailureLimit  = 20
	defaultAuthFailureWindow = time.Minute
	// maxGuardEntries bounds each of the guard's maps: a flood of keys or
	// addresses empties them rather than growing them.
	maxGuardEntries = 10000
)

// authGuard keeps bad keys away from PostgreSQL: a key hash that matched no
// tenant is remembered for badTTL (a negative cache), and a client address
// that failed limit times within window is answered 429 until the window
// ends. Keys already in the key cache never meet it, so valid keys pay
// nothing. Safe for concurrent use.
type authGuard struct {
	badTTL time.Duration
	limit  int
	window time.Duration

	mu  sync.Mutex
	bad map[tenant.KeyHash]time.Time
	ips map[string]failureWindow
}

type failureWindow struct {
	failures int
	ends     time.Time
}

func newAuthGuard(badTTL time.Duration, limit int, window time.Duration) *authGuard {
	if badTTL <= 0 {
		badTTL = defaultBadKeyTTL
	}
	if limit <= 0 {
		limit = defaultAuthFailureLimit
	}
	if window <= 0 {
		window = defaultAuthFailureWindow
	}
	return &authGuard{badTTL: badTTL, limit: limit, window: window,
		bad: map[tenant.KeyHash]time.Time{}, ips: map[string]failureWindow{}}
}

// blocked reports whether ip has failed too often, and for how long more.
func (g *authGuard) blocked(ip string, now time.Time) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w, ok := g.ips[ip]
	if !ok || !now.Before(w.ends) || w.failures < g.limit {
		return 0, false
	}
	return w.ends.Sub(now), true
}

// knownBad reports whether h failed a lookup less than badTTL ago.
func (g *authGuard) knownBad(h tenant.KeyHash, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.bad[h]
	return ok && now.Before(until)
}

// failed records a failed authentication of ip, with key hash h if it was
// looked up.
func (g *authGuard) failed(ip string, h *tenant.KeyHash, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h != nil {
		if len(g.bad) >= maxGuardEntries {
			clear(g.bad)
		}
		g.bad[*h] = now.Add(g.badTTL)
	}
	w, ok := g.ips[ip]
	if !ok || !now.Before(w.ends) {
		if len(g.ips) >= maxGuardEntries {
			maps.DeleteFunc(g.ips, func(_ string, w failureWindow) bool { return !now.Before(w.ends) })
			if len(g.ips) >= maxGuardEntries {
				clear(g.ips)
			}
		}
		w = failureWindow{ends: now.Add(g.window)}
	}
	w.failures++
	g.ips[ip] = w
}

// authenticate resolves "Authorization: Bearer <key>" to a tenant, or
// answers 401. Keys are looked up by their SHA-256 digest: timing of that
// lookup says nothing usable about a key, and the digest the store returns is
// compared again in constant time. A key not in the cache is refused without
// a lookup when it failed one recently, and a client address (the peer, not
// a forwarded header a client could forge) that keeps failing gets 429 with
// Retry-After.
func authenticate(tenants TenantResolver, cache *keyCache, guard *authGuard) gin.HandlerFunc {
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
			ip := c.RemoteIP()
			if wait, blocked := guard.blocked(ip, now); blocked {
				c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
				abort(c, http.StatusTooManyRequests, "too_many_failures", "too many failed authentications from this address; retry later")
				return
			}
			if guard.knownBad(h, now) {
				guard.failed(ip, nil, now)
				unknownKey(c)
				return
			}
			got, stored, err := tenants.TenantByKeyHash(c.Request.Context(), h)
			if err != nil || subtle.ConstantTimeCompare(stored[:], h[:]) != 1 {
				if err != nil && !errors.Is(err, tenant.ErrNotFound) {
					fail(c, err)
					return
				}
				guard.failed(ip, &h, now)
				unknownKey(c)
				return
			}
			t = got
			cache.put(h, t, now)
		}
		c.Set(ctxTenant, t)
		c.Next()
	}
}

func unknownKey(c *gin.Context) {
	c.Header("WWW-Authenticate", `Bearer realm="sagaflow", error="invalid_token"`)
	abort(c, http.StatusUnauthorized, "unauthenticated", "unknown or revoked API key")
}

func tenantFrom(c *gin.Context) tenant.Tenant { return c.MustGet(ctxTenant).(tenant.Tenant) }
