// Package app wires one sagaflow process together from its configuration:
// the clients of PostgreSQL, Redis, RabbitMQ and Temporal (optionally an
// embedded Temporal server), the workers and the HTTP handler. Every
// subcommand of cmd/sagaflow and the integration tests build on it, so that
// what is tested is what runs. app.go is the composition root; sims.go hosts
// the simulators, temporal.go the namespace set-up and the adapter that
// starts recorded workflow starts, sync.go the sync's wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/deadletter"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/ingest/redisdedupe"
	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/internal/notify"
	"github.com/sagaflow/sagaflow/internal/outbox"
	"github.com/sagaflow/sagaflow/internal/payment"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/ratelimit"
	"github.com/sagaflow/sagaflow/internal/secret"
	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workers"
	"github.com/sagaflow/sagaflow/workflows"
)

// App is one process's set of clients. Close it once.
type App struct {
	Config   config.Config
	Log      *slog.Logger
	Metrics  *telemetry.Metrics
	Store    *store.Store
	Redis    *queue.Redis
	Rabbit   *rabbit.Conn
	Temporal client.Client
	Payments *payment.Client
	Notifier *notify.Client
	Markets  *market.Client
	Sync     *telemetry.SyncMetrics
	Joins    *telemetry.JoinMetrics
	Bus      *telemetry.BusMetrics
	Outbox   *telemetry.OutboxMetrics
	// Secrets seals channel credentials and payment tokens at rest.
	Secrets *secret.Keyring
	Coupons *telemetry.CouponMetrics
	// acts are the activity sets, built once in Open.
	acts *activities.Activities
	// Dev is the embedded Temporal server, nil when TEMPORAL_ADDRESS is set
	// or the process was not asked to embed one.
	Dev Embedded

	closers []func()
}

// Embedded is a Temporal server running inside this process (see
// internal/devserver); a build with -tags nodev has none.
type Embedded interface {
	Address() string
	UIURL() string
	Stop()
}

// Options say what a process needs.
type Options struct {
	// EmbedTemporal starts the embedded server unless TEMPORAL_ADDRESS is set.
	EmbedTemporal bool
	// InMemory keeps the embedded server's state in memory (tests).
	InMemory bool
	// Migrate applies the PostgreSQL migrations and prepares the Temporal
	// namespace (registration, search attributes) before returning.
	Migrate bool
}

// Open connects to everything the process needs, in dependency order, and
// closes what it opened if a later step fails.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (_ *App, err error) {
	a := &App{Config: cfg, Log: log}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.Metrics, err = telemetry.NewMetrics(); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.Metrics.Shutdown(context.Background()) })

	if o.EmbedTemporal && cfg.TemporalAddress == "" {
		if a.Dev, err = startEmbedded(ctx, cfg, log, o.InMemory); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, a.Dev.Stop)
	}

	keys, err := SecretKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	a.Secrets = keys
	if a.Store, err = store.Open(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns,
		store.WithSecrets(keys), store.WithMaxChannels(cfg.MaxChannelsPerTenant)); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.Store.Close)
	if o.Migrate {
		if err = a.Store.Migrate(ctx); err != nil {
			return nil, err
		}
		// Channels written before credentials were sealed, or under an
		// older key, are sealed under the newest one.
		if n, err := a.Store.ReencryptChannels(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			log.Info("channel credentials re-encrypted", "channels", n, "key", keys.Primary())
		}
	}
	if a.Redis, err = queue.Open(ctx, cfg.RedisURL, cfg.RedisPrefix); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.Redis.Close() })
	if a.Rabbit, err = rabbit.Dial(ctx, cfg.AMQPURL); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.Rabbit.Close() })
	a.Payments = payment.NewClient(cfg.PaymentURL, cfg.PaymentTimeout)
	a.Notifier = notify.NewClient(cfg.NotifyURL, 10*time.Second)
	rates := map[string]float64{}
	for _, m := range market.Names() {
		rates[m] = cfg.MarketRate
	}
	a.Sync = telemetry.NewSyncMetrics(a.Metrics)
	a.Markets = market.NewClient(market.Options{
		Timeout:          cfg.MarketTimeout,
		MarketRatePerSec: rates,
		// Each channel's rate holds across every worker process.
		Limiter: ratelimit.NewRedis(a.Redis.Client, cfg.RedisPrefix, log),
		// Only dev's simulators live on loopback.
		AllowPrivateNetworks: cfg.Dev(),
		OnBreakerChange:      a.Sync.BreakerChanged,
	})
	telemetry.RegisterBreakers(a.Metrics, a.Markets.EachBreaker)
	a.Coupons = telemetry.NewCouponMetrics(a.Metrics, a.Redis.Queued, telemetry.DefaultScrapeEvery)
	a.Joins = telemetry.NewJoinMetrics(a.Metrics, workflows.ReasonMeetingFull, workflows.ReasonMeetingClosed,
		workflows.ReasonMeetingNotFound, workflows.ReasonAlreadyJoined, workflows.ReasonDeclined,
		workflows.ReasonPaymentFailed, workflows.ReasonCancelled, workflows.ReasonAborted)
	a.Bus = telemetry.NewBusMetrics(a.Metrics)
	telemetry.RegisterQueues(a.Metrics, a.Rabbit.Inspect, []string{catalog.IngestQueue, catalog.DeadQueue}, telemetry.DefaultScrapeEvery)
	a.Outbox = telemetry.NewOutboxMetrics(a.Metrics, a.Store.Pool(), telemetry.DefaultScrapeEvery)
	a.acts = a.newActivities()

	if a.Temporal, err = temporalclient.Dial(ctx, temporalclient.Options{
		HostPort:  cfg.TemporalHostPort(),
		Namespace: cfg.TemporalNamespace,
		Logger:    log,
		Metrics:   a.Metrics.Temporal(),
		// Encrypts every payload (the join's payment token included).
		PayloadKeys: cfg.PayloadKeys,
		Compression: cfg.TemporalCompression,
	}); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.Temporal.Close)
	if o.Migrate {
		added, err := PrepareNamespace(ctx, a.Temporal, cfg.TemporalNamespace, a.Dev == nil)
		if err != nil {
			return nil, err
		}
		if len(added) > 0 {
			log.Warn("temporal: search attributes added; the server may refuse workflows that set them until its cache refreshes (up to a minute) or it restarts",
				"names", added)
		}
	}
	return a, nil
}

// SecretKeys is the keyring that seals channel credentials:
// SAGAFLOW_SECRET_KEYS, or in dev, when that is empty, the fixed public dev
// key (with a warning). Outside dev it is required.
func SecretKeys(cfg config.Config, log *slog.Logger) (*secret.Keyring, error) {
	if cfg.SecretKeys == "" {
		if !cfg.Dev() {
			return nil, errors.New("config: SAGAFLOW_SECRET_KEYS is required outside dev: channel credentials are encrypted at rest (see README, Secrets)")
		}
		log.Warn("SAGAFLOW_SECRET_KEYS is empty: channel credentials are sealed with the public dev key; never run like this outside dev")
		return secret.Parse(secret.DevKeys)
	}
	return secret.Parse(cfg.SecretKeys)
}

// ChannelPolicy is which base URLs a new channel may have: outside dev
// https only; always a host allowed for the market (config.MarketHosts).
func ChannelPolicy(cfg config.Config) catalog.ChannelPolicy {
	return catalog.ChannelPolicy{AllowHTTP: cfg.Dev(), Hosts: cfg.MarketHosts()}
}

// Close closes everything Open opened, in reverse order.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Activities are the activity sets, one per saga, over this process's
// clients, built once by Open.
func (a *App) Activities() *activities.Activities { return a.acts }

// newActivities builds the activity sets, each with only the clients its
// saga uses, and the per-schema store closures once.
func (a *App) newActivities() *activities.Activities {
	return &activities.Activities{
		Probe: &activities.ProbeActivities{Postgres: a.Store, Redis: a.Redis, RabbitMQ: a.Rabbit},
		Join: &activities.JoinActivities{
			Meetings:    func(schema string) activities.MeetingStore { return a.Store.Meetings(schema) },
			Payments:    a.Payments,
			JoinMetrics: a.Joins,
			Notifier:    a.Notifier,
			Secrets:     a.Secrets,
		},
		Coupon: &activities.CouponActivities{
			Campaigns: func(schema string) activities.CampaignStore { return a.Store.Campaigns(schema) },
			Queue:     a.Redis,
			// Set-aside requests counted, issuing bounded per tenant.
			CouponMetrics: a.Coupons,
			IssueLimit:    &activities.TenantLimit{Max: a.Config.CouponTenantActivities},
			Log:           a.Log,
		},
		Sync: &activities.SyncActivities{
			Catalog:     func(schema string) activities.CatalogStore { return a.Store.Catalog(schema) },
			Markets:     a.Markets,
			SyncMetrics: a.Sync,
			Log:         a.Log,
			Linger:      a.Config.SyncPushLinger,
			Batch:       a.Config.SyncBatch,
			// A quarter of a worker's activity slots at most: the rest
			// stays free for pushes that work.
			Lingering: activities.NewLingerBudget(a.Config.MaxConcurrentActivity / 4),
		},
	}
}

// Workers builds the process's workers (not started).
func (a *App) Workers() map[string]worker.Worker {
	return workers.New(a.Temporal, a.Activities(), workers.Options{
		WorkflowPollers:       a.Config.WorkflowPollers,
		ActivityPollers:       a.Config.ActivityPollers,
		MaxConcurrentActivity: a.Config.MaxConcurrentActivity,
		MaxConcurrentWorkflow: a.Config.MaxConcurrentWorkflow,
		StopTimeout:           a.Config.ShutdownTimeout,
	})
}

// Handler is the REST API over this process's clients.
func (a *App) Handler() http.Handler {
	return api.NewHandler(api.Deps{
		Temporal:     a.Temporal,
		Tenants:      a.Store,
		Meetings:     func(schema string) api.MeetingStore { return a.Store.Meetings(schema) },
		Campaigns:    func(schema string) api.CampaignStore { return a.Store.Campaigns(schema) },
		Queue:        a.Redis,
		Catalog:      func(schema string) api.CatalogStore { return a.Store.Catalog(schema) },
		Markets:      MarketInfos(a.Config),
		Sync:         api.SyncConfig{Shards: a.Config.SyncShards, Options: SyncOptions(a.Config), Channels: ChannelPolicy(a.Config)},
		Ops:          api.OpsConfig{UIURL: a.Config.TemporalUIURL, Namespace: a.Config.TemporalNamespace, StuckAfter: a.Config.OpsStuckAfter},
		OpsStore:     func(schema string) api.OpsStore { return a.Store.Ops(schema) },
		DeadLetters:  func(schema string) api.DeadLetterStore { return a.Store.DeadLetters(schema) },
		Replayer:     deadletter.NewReplayer(a.Rabbit, a.Store),
		Checks:       a.Checks(),
		Metrics:      a.Metrics,
		Coupons:      a.Coupons,
		Logger:       a.Log,
		MaxBodyBytes: a.Config.MaxBodyBytes,
		KeyCacheTTL:  a.Config.APIKeyCacheTTL,
		Secrets:      a.Secrets,
	})
}

// Seed creates the demo tenants (demo and acme) with the configured keys,
// idempotently: restarting dev keeps them and their data.
func (a *App) Seed(ctx context.Context) error { return SeedDemo(ctx, a.Store, a.Config) }

// SeedDemo creates the tenants demo and acme in s with the keys
// cfg.DemoKey and cfg.AcmeKey (none where a key is empty), idempotently.
func SeedDemo(ctx context.Context, s *store.Store, cfg config.Config) error {
	for name, key := range map[string]string{"demo": cfg.DemoKey, "acme": cfg.AcmeKey} {
		t, err := tenant.New(name)
		if err != nil {
			return err
		}
		if err := s.EnsureTenant(ctx, t); err != nil {
			return err
		}
		if key == "" {
			continue
		}
		if err := s.AddAPIKey(ctx, t.Name, tenant.HashKey(key), "seeded by dev"); err != nil {
			return err
		}
	}
	return nil
}

// Serve runs an HTTP server on l, with cfg's HTTP limits, until ctx ends,
// then shuts it down, letting requests in flight finish within
// cfg.ShutdownTimeout.
func Serve(ctx context.Context, l net.Listener, h http.Handler, cfg config.Config, log *slog.Logger) error {
	addr := l.Addr().String()
	timeout := cfg.ShutdownTimeout
	srv := api.NewHTTPServer(h, api.HTTPLimits{ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout, ReadTimeout: cfg.HTTPReadTimeout,
		WriteTimeout: cfg.HTTPWriteTimeout, IdleTimeout: cfg.HTTPIdleTimeout, MaxHeaderBytes: cfg.HTTPMaxHeaderBytes})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http %s: %w", addr, err)
	case <-ctx.Done():
	}
	log.Info("http server stopping", "addr", addr)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http %s shutdown: %w", addr, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Starter is the relay of the workflow starts requests record in
// PostgreSQL; run it in every worker process, next to the workers its
// eager starts hand the first workflow task to.
func (a *App) Starter() *starter.Starter {
	return starter.New(a.Store.Pool(), temporalStarter{a.Temporal}, a.Log, starter.Options{Retention: a.Config.WorkflowStartsRetention})
}

// Relay publishes the tenants' outbox rows (product changes) to RabbitMQ;
// run it in every process that serves the API. It publishes on a connection
// of its own: the broker's flow control throttles a publishing connection,
// and must not hold up the acks of the ingest's consumers on the shared one.
func (a *App) Relay(ctx context.Context) (*outbox.Relay, error) {
	conn, err := rabbit.Dial(ctx, a.Config.AMQPURL)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = conn.Close() })
	r := outbox.New(a.Store.Pool(), conn, a.Log, outbox.Options{})
	a.Outbox.WatchRelay(r.Published)
	return r, nil
}

// RunRelay runs Relay until ctx ends.
func (a *App) RunRelay(ctx context.Context) error {
	r, err := a.Relay(ctx)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// DeadLetterArchiver moves the bus's dead letters from RabbitMQ into the
// tenants' dead_letters tables; run it in every worker process, next to the
// ingest (competing consumers).
func (a *App) DeadLetterArchiver() *deadletter.Archiver {
	a.Bus.ArchivedReasons(deadletter.Reasons)
	return deadletter.NewArchiver(a.Rabbit, a.Store, a.Store, a.Log, deadletter.ArchiverOptions{Archived: a.Bus.Archived})
}

// Ingest consumes the product changes from RabbitMQ and hands them to the
// sync workflows; run it in every worker process (competing consumers).
func (a *App) Ingest() *ingest.Consumer {
	c := ingest.New(a.Rabbit, redisdedupe.New(a.Redis), a.Store, a.Store, syncSink{c: a.Temporal, shards: a.Config.SyncShards, opts: SyncOptions(a.Config)}, a.Log,
		ingest.Options{Consumers: a.Config.IngestConsumers, Prefetch: a.Config.IngestPrefetch, FlushEvery: a.Config.IngestFlush, Metrics: a.Bus})
	a.Bus.WatchOldest(c.OldestUnacked)
	return c
}
