package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/devserver"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workers"
)

func (c *cli) logger() *slog.Logger {
	level, _ := c.cfg.SlogLevel()
	return telemetry.NewLogger(os.Stderr, c.cfg.LogFormat, level)
}

// tracing installs the process's tracer provider (telemetry.SetupTracing,
// configured by the standard OTEL_* variables) and returns what flushes it
// when the command ends.
func (c *cli) tracing(ctx context.Context, service string, log *slog.Logger) (func(), error) {
	shutdown, err := telemetry.SetupTracing(ctx, service, log)
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("traces not flushed", "error", err)
		}
	}, nil
}

// open installs tracing for service and opens the application; stop closes
// the application, then flushes the traces. dev, api and worker start the same way.
func (c *cli) open(ctx context.Context, service string, log *slog.Logger, opts app.Options) (a *app.App, stop func(), err error) {
	stopTracing, err := c.tracing(ctx, service, log)
	if err != nil {
		return nil, nil, err
	}
	a, err = app.Open(ctx, c.cfg, log, opts)
	if err != nil {
		stopTracing()
		return nil, nil, err
	}
	return a, func() {
		a.Close()
		stopTracing()
	}, nil
}

// goAPI runs in g what the api command runs: the outbox relay and the REST
// API on l. dev runs the same next to the workers.
func (c *cli) goAPI(ctx context.Context, g *errgroup.Group, a *app.App, l net.Listener, log *slog.Logger) {
	g.Go(func() error { return a.RunRelay(ctx) })
	g.Go(func() error { return app.Serve(ctx, l, a.Handler(), c.cfg, log) })
}

// goWorker runs in g what the worker command runs: the Temporal workers,
// the workflow starter, the bus ingest and the dead-letter archiver. The
// starter runs next to the workers so that its starts are eager: the
// first workflow task comes back with the start, to a worker of this
// process, instead of through the server's matching service (on the
// cluster, about one task dispatch and two PostgreSQL writes less per
// workflow).
func (c *cli) goWorker(ctx context.Context, g *errgroup.Group, a *app.App) {
	g.Go(func() error { return workers.Run(ctx, a.Workers()) })
	g.Go(func() error { return a.Starter().Run(ctx) })
	g.Go(func() error { return a.Ingest().Run(ctx) })
	g.Go(func() error { return a.DeadLetterArchiver().Run(ctx) })
}

func (c *cli) devCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run the whole system in one process: embedded Temporal with Web UI, workers, API; seeds tenants demo and acme",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, log, start := cmd.Context(), c.logger(), time.Now()
			c.cfg.Env = config.EnvDev // simulators on loopback, the dev secret key
			a, stop, err := c.open(ctx, "sagaflow-dev", log, app.Options{EmbedTemporal: true, Migrate: true})
			if err != nil {
				return err
			}
			defer stop()
			if err := a.Seed(ctx); err != nil {
				return err
			}
			l, err := net.Listen("tcp", c.cfg.HTTPAddr)
			if err != nil {
				return fmt.Errorf("api: %w", err)
			}
			sims, err := app.NewSimulators(c.cfg)
			if err != nil {
				return err
			}
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return sims.Serve(gctx, c.cfg, log) })
			c.goWorker(gctx, g, a)
			c.goAPI(gctx, g, a, l, log)
			c.banner(a, l.Addr(), time.Since(start))
			err = g.Wait()
			log.Info("stopped")
			return err
		},
	}
}

// banner tells a person at the terminal where everything is.
func (c *cli) banner(a *app.App, apiAddr net.Addr, took time.Duration) {
	port := apiAddr.(*net.TCPAddr).Port
	w := os.Stdout
	fmt.Fprintf(w, "\nsagaflow dev is up (%.1fs)\n", took.Seconds())
	fmt.Fprintf(w, "  REST API      http://127.0.0.1:%d   (healthz, readyz, metrics, /v1/...)\n", port)
	if a.Dev != nil {
		fmt.Fprintf(w, "  Temporal      %s   (namespace %s)\n", a.Dev.Address(), c.cfg.TemporalNamespace)
		if a.Dev.UIURL() != "" {
			fmt.Fprintf(w, "  Temporal UI   %s/namespaces/%s/workflows\n", a.Dev.UIURL(), c.cfg.TemporalNamespace)
		}
	} else {
		fmt.Fprintf(w, "  Temporal      %s   (external, namespace %s)\n", c.cfg.TemporalHostPort(), c.cfg.TemporalNamespace)
	}
	fmt.Fprintf(w, "  Simulators    payment gateway http://%s, notifications http://%s   (GET /stats, PUT /admin/config)\n", c.cfg.SimPaymentAddr, c.cfg.SimNotifyAddr)
	fmt.Fprintf(w, "  Marketplaces  shopwave http://%s, souk http://%s, bazaar http://%s   (GET /stats, GET /admin/listings?account=)\n", c.cfg.SimShopwaveAddr, c.cfg.SimSoukAddr, c.cfg.SimBazaarAddr)
	for _, t := range []struct{ name, key string }{{"demo", c.cfg.DemoKey}, {"acme", c.cfg.AcmeKey}} {
		if t.key != "" {
			fmt.Fprintf(w, "  tenant %-6s Authorization: Bearer %s\n", t.name, t.key)
		}
	}
	fmt.Fprintf(w, "\n  try: curl -s -X POST -H 'Authorization: Bearer %s' http://127.0.0.1:%d/v1/probes\n", c.cfg.DemoKey, port)
	fmt.Fprintf(w, "  Ctrl-C stops everything cleanly; state is kept in %s and PostgreSQL.\n\n", c.cfg.DataDir)
}

func (c *cli) apiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "api",
		Short: "Serve the REST API against TEMPORAL_ADDRESS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, log := cmd.Context(), c.logger()
			a, stop, err := c.open(ctx, "sagaflow-api", log, app.Options{})
			if err != nil {
				return err
			}
			defer stop()
			l, err := net.Listen("tcp", c.cfg.HTTPAddr)
			if err != nil {
				return fmt.Errorf("api: %w", err)
			}
			log.Info("api listening", "addr", l.Addr().String(), "temporal", c.cfg.TemporalHostPort())
			g, gctx := errgroup.WithContext(ctx)
			c.goAPI(gctx, g, a, l, log)
			return g.Wait()
		},
	}
}

func (c *cli) workerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "worker",
		Short: "Run the Temporal workers against TEMPORAL_ADDRESS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, log := cmd.Context(), c.logger()
			a, stop, err := c.open(ctx, "sagaflow-worker", log, app.Options{})
			if err != nil {
				return err
			}
			defer stop()
			g, gctx := errgroup.WithContext(ctx)
			c.goWorker(gctx, g, a)
			if c.cfg.WorkerHTTPAddr != "" {
				l, err := net.Listen("tcp", c.cfg.WorkerHTTPAddr)
				if err != nil {
					return fmt.Errorf("worker http: %w", err)
				}
				h := app.WorkerHandler(a.Checks(), a.Metrics, log)
				g.Go(func() error { return app.Serve(gctx, l, h, c.cfg, log) })
			}
			log.Info("worker running", "temporal", c.cfg.TemporalHostPort())
			return g.Wait()
		},
	}
}

func (c *cli) simCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sim",
		Short: "Serve the simulators of the systems sagaflow calls: payment gateway, notification sink, marketplaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := c.logger()
			sims, err := app.NewSimulators(c.cfg)
			if err != nil {
				return err
			}
			log.Info("simulators running", "payment", c.cfg.SimPaymentAddr, "notify", c.cfg.SimNotifyAddr,
				"shopwave", c.cfg.SimShopwaveAddr, "souk", c.cfg.SimSoukAddr, "bazaar", c.cfg.SimBazaarAddr)
			return sims.Serve(cmd.Context(), c.cfg, log)
		},
	}
}

func (c *cli) uiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ui",
		Short: "Serve the Temporal Web UI for the cluster at TEMPORAL_ADDRESS on SAGAFLOW_UI_ADDR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := c.logger()
			host, portText, err := net.SplitHostPort(c.cfg.UIAddr)
			if err != nil {
				return fmt.Errorf("ui: SAGAFLOW_UI_ADDR %q: %w", c.cfg.UIAddr, err)
			}
			port, err := strconv.Atoi(portText)
			if err != nil || port < 1 || port > 65535 {
				return fmt.Errorf("ui: SAGAFLOW_UI_ADDR %q: want host:port", c.cfg.UIAddr)
			}
			if err := devserver.PortFree(host, port); err != nil {
				return fmt.Errorf("ui: %w", err)
			}
			ui := devserver.StartUI(devserver.UIOptions{
				BindIP: host, Port: port, Frontend: c.cfg.TemporalHostPort(), Namespace: c.cfg.TemporalNamespace, Logger: log,
			})
			defer ui.Stop()
			log.Info("temporal web ui", "url", ui.URL(), "temporal", c.cfg.TemporalHostPort())
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
					if err := ui.Err(); err != nil {
						return fmt.Errorf("ui: %w", err)
					}
				}
			}
		},
	}
}

func (c *cli) migrateCmd() *cobra.Command {
	var demo bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the PostgreSQL migrations and prepare the Temporal namespace, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A first start of docker compose brings Temporal up slowly: wait.
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			log := c.logger()
			s, err := c.migratedStore(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			log.Info("postgres migrated")
			if demo {
				if err := app.SeedDemo(ctx, s, c.cfg); err != nil {
					return err
				}
				log.Info("tenants demo and acme ready with SAGAFLOW_DEMO_KEY and SAGAFLOW_ACME_KEY")
			}
			tc, err := temporalclient.Dial(ctx, temporalclient.Options{
				HostPort: c.cfg.TemporalHostPort(), Namespace: c.cfg.TemporalNamespace, Logger: log,
				Compression: c.cfg.TemporalCompression,
			})
			if err != nil {
				return err
			}
			defer tc.Close()
			added, err := app.PrepareNamespace(ctx, tc, c.cfg.TemporalNamespace, true)
			if err != nil {
				return err
			}
			if len(added) > 0 {
				// deploy/cluster.sh restarts the server on this line.
				log.Info("search attributes added", "names", added)
			}
			log.Info("temporal namespace ready", "namespace", c.cfg.TemporalNamespace)
			return nil
		},
	}
	cmd.Flags().BoolVar(&demo, "demo-tenants", false, "also create the tenants demo and acme with the keys SAGAFLOW_DEMO_KEY and SAGAFLOW_ACME_KEY, as dev does (make cluster)")
	return cmd
}

// migratedStore opens the PostgreSQL store and applies the migrations, as
// migrate and tenant create both need; the caller closes it.
func (c *cli) migratedStore(ctx context.Context) (*store.Store, error) {
	s, err := store.Open(ctx, c.cfg.DatabaseURL, c.cfg.DatabaseMaxConns)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (c *cli) tenantCmd() *cobra.Command {
	tc := &cobra.Command{Use: "tenant", Short: "Manage tenants"}
	tc.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant with its schema and print a new API key (shown once; only its hash is stored)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := tenant.New(args[0])
			if err != nil {
				return err
			}
			s, err := c.migratedStore(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.CreateTenant(ctx, t); err != nil {
				return err
			}
			key, err := tenant.NewKey()
			if err != nil {
				return err
			}
			if err := s.AddAPIKey(ctx, t.Name, tenant.HashKey(key), "created by sagaflow tenant create"); err != nil {
				return err
			}
			fmt.Printf("tenant %s created (schema %s)\nAPI key (shown once, keep it): %s\n", t.Name, t.Schema, key)
			return nil
		},
	})
	return tc
}
