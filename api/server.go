// Package api is sagaflow's REST API (gin): it starts, queries and signals
// workflows for the tenant that the caller's API key names. Every /v1 route
// is tenant-scoped; another tenant's resources do not exist for the caller.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/sdk/client"

	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
)

// TenantResolver finds the tenant owning an API key, by the key's hash.
type TenantResolver interface {
	TenantByKeyHash(ctx context.Context, hash tenant.KeyHash) (tenant.Tenant, tenant.KeyHash, error)
}

// Check reports whether one dependency is reachable (for /readyz).
type Check func(ctx context.Context) error

// Deps are the API's collaborators, built once per process.
type Deps struct {
	Temporal  client.Client
	Tenants   TenantResolver
	Meetings  func(schema string) MeetingStore
	Campaigns func(schema string) CampaignStore
	Queue     FirstCome
	Catalog   func(schema string) CatalogStore
	Markets   []MarketInfo
	Sync      SyncConfig
	Ops       OpsConfig
	// OpsStore reads what GET /v1/ops/summary reports of a tenant.
	OpsStore func(schema string) OpsStore
	// DeadLetters and Replayer serve /v1/deadletters (nil: 501).
	DeadLetters func(schema string) DeadLetterStore
	Replayer    DeadLetterReplayer
	Checks      map[string]Check
	Metrics     *telemetry.Metrics
	// Coupons counts the answers to coupon requests; nil counts nothing.
	Coupons      CouponMetrics
	Logger       *slog.Logger
	MaxBodyBytes int64
	KeyCacheTTL  time.Duration
	// Secrets seals each join's payment token (meeting.TokenAAD) before it
	// is stored for the saga; nil stores it as it came (tests only).
	Secrets Sealer
	// BadKeyTTL is how long a key that matched no tenant is refused
	// without a lookup (0: 10s).
	BadKeyTTL time.Duration
	// AuthFailureLimit failed authentications from one address within
	// AuthFailureWindow make it wait, with 429, until the window ends
	// (0: 20 in a minute).
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
}

// Sealer encrypts a secret bound to aad (internal/secret.Keyring).
type Sealer interface {
	Seal(plain string, aad []byte) (string, error)
}

// Server holds the handlers' dependencies.
type Server struct {
	deps Deps
	lags lagMemory
}

func init() { gin.SetMode(gin.ReleaseMode) }

// NewHandler returns the HTTP handler of the whole API.
func NewHandler(d Deps) http.Handler {
	if d.Coupons == nil {
		d.Coupons = noCouponMetrics{}
	}
	s := &Server{deps: d}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	r.Use(traced(), requestContext(d.Logger, d.MaxBodyBytes), accessLog(newHTTPMetrics(d.Metrics.Registry)), recovery())
	r.NoRoute(func(c *gin.Context) { abort(c, http.StatusNotFound, "not_found", "no route "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		abort(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/metrics", gin.WrapH(d.Metrics.Handler()))

	v1 := r.Group("/v1", authenticate(d.Tenants, &keyCache{ttl: d.KeyCacheTTL, m: map[tenant.KeyHash]cachedTenant{}},
		newAuthGuard(d.BadKeyTTL, d.AuthFailureLimit, d.AuthFailureWindow)))
	v1.GET("/workflows/:id", s.getWorkflow)
	v1.POST("/probes", s.startProbe)
	v1.POST("/meetings", s.createMeeting)
	v1.GET("/meetings/:id", s.getMeeting)
	v1.POST("/meetings/:id/close", s.closeMeeting)
	v1.POST("/meetings/:id/joins", s.createJoin)
	v1.GET("/joins/:id", s.getJoin)
	v1.POST("/joins/:id/cancel", s.cancelJoin)
	v1.POST("/campaigns", s.createCampaign)
	v1.GET("/campaigns/:id", s.getCampaign)
	v1.POST("/campaigns/:id/requests", s.requestCoupon)
	v1.GET("/campaigns/:id/coupons/:user_id", s.getCoupon)
	v1.PUT("/products/:sku", s.putProduct)
	v1.GET("/products/:sku", s.getProduct)
	v1.GET("/products/:sku/sync", s.getProductSync)
	v1.GET("/ops/summary", s.opsSummary)
	v1.GET("/deadletters", s.listDeadLetters)
	v1.POST("/deadletters/replay", s.replayDeadLetters)
	v1.GET("/markets", s.listMarkets)
	v1.POST("/channels", s.createChannel)
	v1.GET("/channels", s.listChannels)
	v1.DELETE("/channels/:id", s.deleteChannel)
	// The parking lot: /v1/parked is its name; /v1/dlq, its first one, is
	// an alias kept for existing callers (the bus's dead-letter queue is
	// /v1/deadletters).
	for _, prefix := range []string{"/parked", "/dlq"} {
		v1.GET(prefix, s.listParked)
		v1.POST(prefix+"/retry", s.parkedBulk(workflows.ParkingRetry))
		v1.POST(prefix+"/discard", s.parkedBulk(workflows.ParkingDiscard))
		v1.POST(prefix+"/:id/retry", s.parkedAction(workflows.ParkingRetry))
		v1.POST(prefix+"/:id/discard", s.parkedAction(workflows.ParkingDiscard))
	}
	return r
}

// HTTPLimits bound what one connection may hold of the server: how long the
// client may take to send the headers and the whole request, how long the
// handler has to answer, how long an idle keep-alive connection stays, and
// how large the headers may be. A zero field takes the default below.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// Defaults of HTTPLimits (internal/config has the same).
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// NewHTTPServer is the http.Server for h with limits: without them a client
// that sends its headers or body slowly (slow loris) holds a goroutine and
// a connection forever.
func NewHTTPServer(h http.Handler, l HTTPLimits) *http.Server {
	or := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	maxHeader := l.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       or(l.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      or(l.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       or(l.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    maxHeader,
	}
}
