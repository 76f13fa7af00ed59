// Package config holds sagaflow's one configuration struct. It is read once at
// start-up from the environment, with command-line flags overriding the
// environment, and validated before anything connects anywhere.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/sagaflow/sagaflow/internal/secret"
)

// Config is the whole configuration of every sagaflow process. The defaults
// work against the local stack that deploy/stack.sh starts. Every field has an
// `env` key, an `envDefault` and a `help` text; `sagaflow help` prints them.
type Config struct {
	HTTPAddr        string        `env:"SAGAFLOW_HTTP_ADDR" envDefault:":8080" help:"address the REST API listens on"`
	MaxBodyBytes    int64         `env:"SAGAFLOW_MAX_BODY_BYTES" envDefault:"1048576" help:"largest request body the API reads, in bytes"`
	ShutdownTimeout time.Duration `env:"SAGAFLOW_SHUTDOWN_TIMEOUT" envDefault:"30s" help:"how long a stopping process waits for requests and activities in flight"`
	APIKeyCacheTTL  time.Duration `env:"SAGAFLOW_API_KEY_CACHE_TTL" envDefault:"30s" help:"how long a resolved API key is cached in memory (a revoked key works at most this long)"`

	HTTPReadHeaderTimeout time.Duration `env:"SAGAFLOW_HTTP_READ_HEADER_TIMEOUT" envDefault:"5s" help:"how long a client may take to send a request's headers"`
	HTTPReadTimeout       time.Duration `env:"SAGAFLOW_HTTP_READ_TIMEOUT" envDefault:"30s" help:"how long a client may take to send a whole request, body included"`
	HTTPWriteTimeout      time.Duration `env:"SAGAFLOW_HTTP_WRITE_TIMEOUT" envDefault:"60s" help:"how long a request may take from its headers to the end of its answer"`
	HTTPIdleTimeout       time.Duration `env:"SAGAFLOW_HTTP_IDLE_TIMEOUT" envDefault:"120s" help:"how long an idle keep-alive connection stays open"`
	HTTPMaxHeaderBytes    int           `env:"SAGAFLOW_HTTP_MAX_HEADER_BYTES" envDefault:"65536" help:"largest request headers the servers read, in bytes"`

	WorkerHTTPAddr string `env:"SAGAFLOW_WORKER_HTTP_ADDR" envDefault:":9091" help:"address 'sagaflow worker' serves /healthz, /readyz and /metrics on (empty: none)"`

	TemporalAddress     string `env:"TEMPORAL_ADDRESS" help:"host:port of an external Temporal frontend; empty: 'dev' embeds its own server, the other commands use 127.0.0.1:7233"`
	TemporalNamespace   string `env:"TEMPORAL_NAMESPACE" envDefault:"sagaflow" help:"Temporal namespace of every workflow"`
	PayloadKeys         string `env:"SAGAFLOW_PAYLOAD_KEYS" help:"AES-256 keys that encrypt every Temporal payload, as id:base64key pairs separated by commas (the first encrypts, all decrypt; empty: payloads in the clear)"`
	TemporalCompression string `env:"TEMPORAL_GRPC_COMPRESSION" envDefault:"gzip" help:"compression of the requests to Temporal: gzip (the SDK's default: less traffic to a distant server, such as Temporal Cloud) or none (no compressing on either end, for a server close by: the same cluster, the same machine)"`

	TemporalUIURL string `env:"SAGAFLOW_TEMPORAL_UI_URL" envDefault:"http://127.0.0.1:8233" help:"base URL of the Temporal Web UI that parked items, dead letters and failed joins link to (ui_url)"`

	OpsStuckAfter time.Duration `env:"SAGAFLOW_OPS_STUCK_AFTER" envDefault:"5m" help:"how long a join may stay compensating before GET /v1/ops/summary reports it stuck"`

	WorkflowStartsRetention time.Duration `env:"SAGAFLOW_WORKFLOW_STARTS_RETENTION" envDefault:"24h" help:"how long a started row of sagaflow.workflow_starts is kept before it is deleted"`

	DevBindIP       string `env:"SAGAFLOW_DEV_BIND_IP" envDefault:"127.0.0.1" help:"IP the embedded Temporal server and its Web UI bind to"`
	DevTemporalPort int    `env:"SAGAFLOW_DEV_TEMPORAL_PORT" envDefault:"7233" help:"gRPC port of the embedded Temporal server"`
	DevUIPort       int    `env:"SAGAFLOW_DEV_UI_PORT" envDefault:"8233" help:"port of the embedded Temporal Web UI (0: no UI)"`
	DataDir         string `env:"SAGAFLOW_DATA_DIR" envDefault:".data" help:"directory for the embedded Temporal server's SQLite file"`

	UIAddr string `env:"SAGAFLOW_UI_ADDR" envDefault:"127.0.0.1:8233" help:"address 'sagaflow ui' serves the Temporal Web UI on, for the cluster at TEMPORAL_ADDRESS"`

	DatabaseURL      string `env:"DATABASE_URL" envDefault:"postgres://sagaflow:sagaflow@127.0.0.1:54320/sagaflow?sslmode=disable" help:"PostgreSQL connection URL"`
	DatabaseMaxConns int32  `env:"SAGAFLOW_DB_MAX_CONNS" envDefault:"20" help:"largest number of PostgreSQL connections per process"`
	RedisURL         string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:63790/0" help:"Redis connection URL"`
	RedisPrefix      string `env:"SAGAFLOW_REDIS_PREFIX" envDefault:"sagaflow:" help:"prefix of every Redis key sagaflow writes"`
	AMQPURL          string `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:56720/" help:"RabbitMQ AMQP 0-9-1 URL"`

	PaymentURL     string        `env:"SAGAFLOW_PAYMENT_URL" envDefault:"http://127.0.0.1:8091" help:"base URL of the payment gateway (the simulator in dev)"`
	PaymentTimeout time.Duration `env:"SAGAFLOW_PAYMENT_TIMEOUT" envDefault:"3s" help:"how long a call to the payment gateway may take before its outcome counts as unknown"`
	NotifyURL      string        `env:"SAGAFLOW_NOTIFY_URL" envDefault:"http://127.0.0.1:8092" help:"base URL of the notification service (the simulator in dev)"`

	SimPaymentAddr        string        `env:"SAGAFLOW_SIM_PAYMENT_ADDR" envDefault:"127.0.0.1:8091" help:"address of the payment gateway simulator ('sim' and 'dev')"`
	SimNotifyAddr         string        `env:"SAGAFLOW_SIM_NOTIFY_ADDR" envDefault:"127.0.0.1:8092" help:"address of the notification sink simulator ('sim' and 'dev')"`
	SimLatency            time.Duration `env:"SAGAFLOW_SIM_LATENCY" envDefault:"0s" help:"latency the simulators add to every request"`
	SimDeclineRate        float64       `env:"SAGAFLOW_SIM_DECLINE_RATE" envDefault:"0" help:"share of new charges the payment simulator declines (0..1)"`
	SimErrorRate          float64       `env:"SAGAFLOW_SIM_ERROR_RATE" envDefault:"0" help:"share of payment requests the simulator answers 503 without applying (0..1)"`
	SimTimeoutAfterCommit float64       `env:"SAGAFLOW_SIM_TIMEOUT_AFTER_COMMIT_RATE" envDefault:"0" help:"share of new charges the simulator applies but never answers (0..1)"`
	SimNotifyFailRate     float64       `env:"SAGAFLOW_SIM_NOTIFY_FAIL_RATE" envDefault:"0" help:"share of notifications the sink fails with 503 (0..1)"`

	SimShopwaveAddr       string  `env:"SAGAFLOW_SIM_SHOPWAVE_ADDR" envDefault:"127.0.0.1:8093" help:"address of the shopwave marketplace simulator ('sim' and 'dev')"`
	SimSoukAddr           string  `env:"SAGAFLOW_SIM_SOUK_ADDR" envDefault:"127.0.0.1:8094" help:"address of the souk marketplace simulator ('sim' and 'dev')"`
	SimBazaarAddr         string  `env:"SAGAFLOW_SIM_BAZAAR_ADDR" envDefault:"127.0.0.1:8095" help:"address of the bazaar marketplace simulator ('sim' and 'dev')"`
	SimMarketErrorRate    float64 `env:"SAGAFLOW_SIM_MARKET_ERROR_RATE" envDefault:"0" help:"share of marketplace calls the simulators answer 5xx (0..1)"`
	SimMarketThrottleRate float64 `env:"SAGAFLOW_SIM_MARKET_THROTTLE_RATE" envDefault:"0" help:"share of marketplace calls the simulators answer 429 with Retry-After (0..1)"`

	ShopwaveURL   string        `env:"SAGAFLOW_MARKET_SHOPWAVE_URL" envDefault:"http://127.0.0.1:8093" help:"default base URL of shopwave channels (the simulator in dev)"`
	SoukURL       string        `env:"SAGAFLOW_MARKET_SOUK_URL" envDefault:"http://127.0.0.1:8094" help:"default base URL of souk channels (the simulator in dev)"`
	BazaarURL     string        `env:"SAGAFLOW_MARKET_BAZAAR_URL" envDefault:"http://127.0.0.1:8095" help:"default base URL of bazaar channels (the simulator in dev)"`
	MarketTimeout time.Duration `env:"SAGAFLOW_MARKET_TIMEOUT" envDefault:"10s" help:"how long one call to a marketplace may take"`
	MarketRate    float64       `env:"SAGAFLOW_MARKET_RATE" envDefault:"0" help:"calls per second one process makes to each market, over all channels (0: no limit beyond each channel's)"`

	Env                  string `env:"SAGAFLOW_ENV" envDefault:"production" help:"production or dev; 'sagaflow dev' is always dev. Outside dev channels take only https base URLs of allowed hosts at public addresses, and SAGAFLOW_SECRET_KEYS is required"`
	MarketHostsShopwave  string `env:"SAGAFLOW_MARKET_HOSTS_SHOPWAVE" help:"hosts (host or host:port, comma-separated) a shopwave channel's base_url may name, besides SAGAFLOW_MARKET_SHOPWAVE_URL's"`
	MarketHostsSouk      string `env:"SAGAFLOW_MARKET_HOSTS_SOUK" help:"hosts a souk channel's base_url may name, besides SAGAFLOW_MARKET_SOUK_URL's"`
	MarketHostsBazaar    string `env:"SAGAFLOW_MARKET_HOSTS_BAZAAR" help:"hosts a bazaar channel's base_url may name, besides SAGAFLOW_MARKET_BAZAAR_URL's"`
	MaxChannelsPerTenant int    `env:"SAGAFLOW_MAX_CHANNELS_PER_TENANT" envDefault:"50" help:"most channels one tenant may have"`
	SecretKeys           string `env:"SAGAFLOW_SECRET_KEYS" help:"keys that encrypt channel credentials at rest: id:base64(32 bytes),... newest first; the first encrypts, all decrypt (dev uses a fixed public key when empty)"`

	SyncShards      int           `env:"SAGAFLOW_SYNC_SHARDS" envDefault:"8" help:"sync workflows per tenant; a SKU always maps to the same one"`
	SyncMaxAttempts int           `env:"SAGAFLOW_SYNC_MAX_ATTEMPTS" envDefault:"12" help:"attempts of a push to a channel before its items are parked (backoff 1s doubling to 30s, with jitter)"`
	SyncBatch       int           `env:"SAGAFLOW_SYNC_BATCH" envDefault:"500" help:"most SKUs one push to a channel carries"`
	SyncPushLinger  time.Duration `env:"SAGAFLOW_SYNC_PUSH_LINGER" envDefault:"1s" help:"a push of less than a full batch holds its channel this long after it started, so the changes that arrive meanwhile go in the next push, once per SKU (0: none; at most 30s)"`
	IngestConsumers int           `env:"SAGAFLOW_INGEST_CONSUMERS" envDefault:"2" help:"competing consumers of the ingest queue per worker process"`
	IngestPrefetch  int           `env:"SAGAFLOW_INGEST_PREFETCH" envDefault:"5000" help:"unacknowledged messages each ingest consumer may hold, and the most it hands over to Temporal at once"`
	IngestFlush     time.Duration `env:"SAGAFLOW_INGEST_FLUSH" envDefault:"200ms" help:"how long the ingest gathers changes before handing them to Temporal"`

	WorkflowPollers       int `env:"SAGAFLOW_WORKER_WORKFLOW_POLLERS" envDefault:"8" help:"workflow task pollers per task queue"`
	ActivityPollers       int `env:"SAGAFLOW_WORKER_ACTIVITY_POLLERS" envDefault:"8" help:"activity task pollers per task queue"`
	MaxConcurrentActivity int `env:"SAGAFLOW_WORKER_MAX_ACTIVITIES" envDefault:"200" help:"activities one worker runs at once per task queue"`
	MaxConcurrentWorkflow int `env:"SAGAFLOW_WORKER_MAX_WORKFLOW_TASKS" envDefault:"100" help:"workflow tasks one worker runs at once per task queue"`
	// CouponTenantActivities is below MaxConcurrentActivity so that one
	// tenant's campaigns always leave slots to the others.
	CouponTenantActivities int `env:"SAGAFLOW_COUPON_TENANT_ACTIVITIES" envDefault:"20" help:"coupon-issuing activities of one tenant one worker process runs at once (0: no bound); the tenant's other campaigns wait on a timer"`

	DemoKey string `env:"SAGAFLOW_DEMO_KEY" envDefault:"demo-key" help:"API key 'dev' gives the seeded tenant demo (empty: none)"`
	AcmeKey string `env:"SAGAFLOW_ACME_KEY" envDefault:"acme-key" help:"API key 'dev' gives the seeded tenant acme (empty: none)"`

	PprofAddr string `env:"SAGAFLOW_PPROF_ADDR" help:"address to serve net/http/pprof on, for profiling (empty: off)"`

	LogLevel  string `env:"SAGAFLOW_LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	LogFormat string `env:"SAGAFLOW_LOG_FORMAT" envDefault:"json" help:"json or text"`
}

// DefaultTemporalAddress is where the non-dev commands look for Temporal when
// TEMPORAL_ADDRESS is empty: the embedded server of a running 'sagaflow dev'.
const DefaultTemporalAddress = "127.0.0.1:7233"

// maxIngestPrefetch is ingest.MaxPrefetch (config does not import the
// ingest): AMQP's prefetch is a 16-bit count.
const maxIngestPrefetch = 65535

// maxPushLinger bounds SAGAFLOW_SYNC_PUSH_LINGER well inside a push's
// 2-minute start-to-close timeout.
const maxPushLinger = 30 * time.Second

// Var describes one configuration variable, for help output and flags.
type Var struct {
	Env     string
	Flag    string
	Default string
	Help    string
}

// Vars lists every configuration variable in declaration order.
func Vars() []Var {
	t := reflect.TypeFor[Config]()
	vars := make([]Var, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("env")
		vars = append(vars, Var{
			Env:     key,
			Flag:    FlagName(key),
			Default: f.Tag.Get("envDefault"),
			Help:    f.Tag.Get("help"),
		})
	}
	return vars
}

// FlagName is the command-line flag for an environment key:
// SAGAFLOW_HTTP_ADDR → http-addr, DATABASE_URL → database-url.
func FlagName(envKey string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(envKey, "SAGAFLOW_")), "_", "-")
}

// Load reads the configuration from environ (os.Environ() form) with
// overrides (environment key → value, from flags) on top, and validates it.
func Load(environ []string, overrides map[string]string) (Config, error) {
	vals := env.ToMap(environ)
	for k, v := range overrides {
		vals[k] = v
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: vals}); err != nil {
		return Config{}, parseError(err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// FromEnv is Load with the process environment and no overrides.
func FromEnv() (Config, error) { return Load(os.Environ(), nil) }

// Validate reports every problem in c at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("SAGAFLOW_HTTP_ADDR", "want host:port, got %q", c.HTTPAddr)
	}
	if c.WorkerHTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.WorkerHTTPAddr); err != nil {
			bad("SAGAFLOW_WORKER_HTTP_ADDR", "want host:port, got %q", c.WorkerHTTPAddr)
		}
	}
	if c.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			bad("SAGAFLOW_PPROF_ADDR", "want host:port, got %q", c.PprofAddr)
		}
	}
	if c.MaxBodyBytes < 1024 {
		bad("SAGAFLOW_MAX_BODY_BYTES", "must be at least 1024, got %d", c.MaxBodyBytes)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SAGAFLOW_SHUTDOWN_TIMEOUT", "must be positive")
	}
	if c.APIKeyCacheTTL < 0 {
		bad("SAGAFLOW_API_KEY_CACHE_TTL", "must not be negative")
	}
	for _, t := range []struct {
		env string
		d   time.Duration
	}{{"SAGAFLOW_HTTP_READ_HEADER_TIMEOUT", c.HTTPReadHeaderTimeout}, {"SAGAFLOW_HTTP_READ_TIMEOUT", c.HTTPReadTimeout},
		{"SAGAFLOW_HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout}, {"SAGAFLOW_HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout}} {
		if t.d <= 0 {
			bad(t.env, "must be positive, got %s", t.d)
		}
	}
	if c.HTTPMaxHeaderBytes < 4096 {
		bad("SAGAFLOW_HTTP_MAX_HEADER_BYTES", "must be at least 4096, got %d", c.HTTPMaxHeaderBytes)
	}
	if c.TemporalAddress != "" {
		if _, _, err := net.SplitHostPort(c.TemporalAddress); err != nil {
			bad("TEMPORAL_ADDRESS", "want host:port, got %q", c.TemporalAddress)
		}
	}
	if c.TemporalNamespace == "" {
		bad("TEMPORAL_NAMESPACE", "must not be empty")
	}
	if c.TemporalCompression != "gzip" && c.TemporalCompression != "none" {
		bad("TEMPORAL_GRPC_COMPRESSION", "want gzip or none, got %q", c.TemporalCompression)
	}
	checkBaseURL := func(key, raw string) {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			bad(key, "want an http or https base URL without credentials, query or fragment, got %q", redact(raw))
		}
	}
	checkBaseURL("SAGAFLOW_TEMPORAL_UI_URL", c.TemporalUIURL)
	if c.OpsStuckAfter <= 0 {
		bad("SAGAFLOW_OPS_STUCK_AFTER", "must be positive, got %s", c.OpsStuckAfter)
	}
	if c.WorkflowStartsRetention <= 0 {
		bad("SAGAFLOW_WORKFLOW_STARTS_RETENTION", "must be positive")
	}
	if net.ParseIP(c.DevBindIP) == nil {
		bad("SAGAFLOW_DEV_BIND_IP", "not an IP address: %q", c.DevBindIP)
	}
	if c.DevTemporalPort < 1 || c.DevTemporalPort > 65535 {
		bad("SAGAFLOW_DEV_TEMPORAL_PORT", "not a port: %d", c.DevTemporalPort)
	}
	if c.DevUIPort < 0 || c.DevUIPort > 65535 {
		bad("SAGAFLOW_DEV_UI_PORT", "not a port: %d", c.DevUIPort)
	}
	checkURL := func(key, raw string, schemes ...string) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			bad(key, "not a URL with a host: %q", redact(raw))
			return
		}
		for _, s := range schemes {
			if u.Scheme == s {
				return
			}
		}
		bad(key, "scheme %q, want one of %s", u.Scheme, strings.Join(schemes, ", "))
	}
	checkURL("DATABASE_URL", c.DatabaseURL, "postgres", "postgresql")
	checkURL("REDIS_URL", c.RedisURL, "redis", "rediss")
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		// The keys put their own hash tag after the prefix (internal/queue):
		// a brace before it would change which part Redis Cluster hashes.
		bad("SAGAFLOW_REDIS_PREFIX", "must not contain { or }, got %q", c.RedisPrefix)
	}
	checkURL("AMQP_URL", c.AMQPURL, "amqp", "amqps")
	checkURL("SAGAFLOW_PAYMENT_URL", c.PaymentURL, "http", "https")
	checkURL("SAGAFLOW_NOTIFY_URL", c.NotifyURL, "http", "https")
	if c.PaymentTimeout <= 0 {
		bad("SAGAFLOW_PAYMENT_TIMEOUT", "must be positive")
	}
	checkURL("SAGAFLOW_MARKET_SHOPWAVE_URL", c.ShopwaveURL, "http", "https")
	checkURL("SAGAFLOW_MARKET_SOUK_URL", c.SoukURL, "http", "https")
	checkURL("SAGAFLOW_MARKET_BAZAAR_URL", c.BazaarURL, "http", "https")
	if c.MarketTimeout <= 0 {
		bad("SAGAFLOW_MARKET_TIMEOUT", "must be positive")
	}
	if c.MarketRate < 0 {
		bad("SAGAFLOW_MARKET_RATE", "must not be negative")
	}
	if c.Env != EnvProduction && c.Env != EnvDev {
		bad("SAGAFLOW_ENV", "want %s or %s, got %q", EnvProduction, EnvDev, c.Env)
	}
	if c.SecretKeys != "" {
		if _, err := secret.Parse(c.SecretKeys); err != nil {
			// The error names the key's id or position, never its bytes.
			bad("SAGAFLOW_SECRET_KEYS", "%v", err)
		}
	}
	for key, list := range map[string]string{"SAGAFLOW_MARKET_HOSTS_SHOPWAVE": c.MarketHostsShopwave,
		"SAGAFLOW_MARKET_HOSTS_SOUK": c.MarketHostsSouk, "SAGAFLOW_MARKET_HOSTS_BAZAAR": c.MarketHostsBazaar} {
		for _, h := range splitList(list) {
			if !validHostEntry(h) {
				bad(key, "want host or host:port, got %q", h)
			}
		}
	}
	if c.MaxChannelsPerTenant < 1 {
		bad("SAGAFLOW_MAX_CHANNELS_PER_TENANT", "must be at least 1, got %d", c.MaxChannelsPerTenant)
	}
	if c.IngestFlush <= 0 {
		bad("SAGAFLOW_INGEST_FLUSH", "must be positive")
	}
	if c.IngestPrefetch > maxIngestPrefetch {
		bad("SAGAFLOW_INGEST_PREFETCH", "must be at most %d (AMQP's prefetch is a 16-bit count), got %d", maxIngestPrefetch, c.IngestPrefetch)
	}
	if c.SyncPushLinger < 0 || c.SyncPushLinger > maxPushLinger {
		bad("SAGAFLOW_SYNC_PUSH_LINGER", "must be between 0 and %s, got %s", maxPushLinger, c.SyncPushLinger)
	}
	for key, addr := range map[string]string{"SAGAFLOW_SIM_PAYMENT_ADDR": c.SimPaymentAddr, "SAGAFLOW_SIM_NOTIFY_ADDR": c.SimNotifyAddr,
		"SAGAFLOW_SIM_SHOPWAVE_ADDR": c.SimShopwaveAddr, "SAGAFLOW_SIM_SOUK_ADDR": c.SimSoukAddr, "SAGAFLOW_SIM_BAZAAR_ADDR": c.SimBazaarAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "want host:port, got %q", addr)
		}
	}
	for key, r := range map[string]float64{
		"SAGAFLOW_SIM_DECLINE_RATE":              c.SimDeclineRate,
		"SAGAFLOW_SIM_ERROR_RATE":                c.SimErrorRate,
		"SAGAFLOW_SIM_TIMEOUT_AFTER_COMMIT_RATE": c.SimTimeoutAfterCommit,
		"SAGAFLOW_SIM_NOTIFY_FAIL_RATE":          c.SimNotifyFailRate,
		"SAGAFLOW_SIM_MARKET_ERROR_RATE":         c.SimMarketErrorRate,
		"SAGAFLOW_SIM_MARKET_THROTTLE_RATE":      c.SimMarketThrottleRate,
	} {
		if r < 0 || r > 1 {
			bad(key, "must be between 0 and 1, got %v", r)
		}
	}
	if c.CouponTenantActivities < 0 {
		bad("SAGAFLOW_COUPON_TENANT_ACTIVITIES", "must be 0 (no bound) or more, got %d", c.CouponTenantActivities)
	}
	if c.DatabaseMaxConns < 2 {
		bad("SAGAFLOW_DB_MAX_CONNS", "must be at least 2, got %d", c.DatabaseMaxConns)
	}
	for key, n := range map[string]int{
		"SAGAFLOW_WORKER_WORKFLOW_POLLERS":   c.WorkflowPollers,
		"SAGAFLOW_WORKER_ACTIVITY_POLLERS":   c.ActivityPollers,
		"SAGAFLOW_WORKER_MAX_ACTIVITIES":     c.MaxConcurrentActivity,
		"SAGAFLOW_WORKER_MAX_WORKFLOW_TASKS": c.MaxConcurrentWorkflow,
		"SAGAFLOW_SYNC_SHARDS":               c.SyncShards,
		"SAGAFLOW_SYNC_MAX_ATTEMPTS":         c.SyncMaxAttempts,
		"SAGAFLOW_SYNC_BATCH":                c.SyncBatch,
		"SAGAFLOW_INGEST_CONSUMERS":          c.IngestConsumers,
		"SAGAFLOW_INGEST_PREFETCH":           c.IngestPrefetch,
	} {
		if n < 1 {
			bad(key, "must be at least 1, got %d", n)
		}
	}
	if _, err := c.SlogLevel(); err != nil {
		bad("SAGAFLOW_LOG_LEVEL", "%v", err)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("SAGAFLOW_LOG_FORMAT", "want json or text, got %q", c.LogFormat)
	}
	if len(errs) == 0 {
		return nil
	}
	// Sorted so that the message does not depend on map order above.
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	slices.Sort(msgs)
	return errors.New("config: " + strings.Join(msgs, "; "))
}

// parseError rewrites the parser's errors to name the environment variable
// (what the user set) instead of the Go field.
func parseError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("config: %w", err)
	}
	t := reflect.TypeFor[Config]()
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				msgs = append(msgs, fmt.Sprintf("%s: %v", f.Tag.Get("env"), pe.Err))
				continue
			}
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New("config: " + strings.Join(msgs, "; "))
}

// SlogLevel is LogLevel as a slog.Level.
func (c Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// TemporalHostPort is where a client dials Temporal: TEMPORAL_ADDRESS if set,
// else the embedded dev server's port on the dev bind IP.
func (c Config) TemporalHostPort() string {
	if c.TemporalAddress != "" {
		return c.TemporalAddress
	}
	return net.JoinHostPort(c.DevBindIP, strconv.Itoa(c.DevTemporalPort))
}

// The values of SAGAFLOW_ENV.
const (
	EnvProduction = "production"
	EnvDev        = "dev"
)

// Dev reports whether the process runs as dev: simulators on loopback,
// http base URLs, and a fixed secret key are allowed.
func (c Config) Dev() bool { return c.Env == EnvDev }

// MarketHosts are, per market, the hosts ("host" or "host:port", lower
// case) a channel's base_url may name: the configured list, the host of the
// market's default URL, and in dev the simulator's address.
func (c Config) MarketHosts() map[string][]string {
	out := map[string][]string{}
	for _, m := range []struct{ name, list, url, sim string }{
		{"shopwave", c.MarketHostsShopwave, c.ShopwaveURL, c.SimShopwaveAddr},
		{"souk", c.MarketHostsSouk, c.SoukURL, c.SimSoukAddr},
		{"bazaar", c.MarketHostsBazaar, c.BazaarURL, c.SimBazaarAddr},
	} {
		hosts := splitList(m.list)
		if u, err := url.Parse(m.url); err == nil && u.Host != "" {
			hosts = append(hosts, u.Host)
		}
		if c.Dev() {
			hosts = append(hosts, m.sim)
		}
		for i := range hosts {
			hosts[i] = strings.ToLower(hosts[i])
		}
		slices.Sort(hosts)
		out[m.name] = slices.Compact(hosts)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validHostEntry: a host name or IP, optionally with a port, nothing else.
func validHostEntry(h string) bool {
	u, err := url.Parse("https://" + h)
	return err == nil && u.Host == h && u.Hostname() != "" && u.User == nil && u.Path == "" && !strings.ContainsAny(h, "/?#@")
}

// redact hides the password of a URL in error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
