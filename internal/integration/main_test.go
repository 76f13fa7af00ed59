// Package integration drives sagaflow end to end: the real API handler, real
// workers, a real (embedded, in-memory) Temporal server, and the real
// PostgreSQL, Redis and RabbitMQ of the local stack, each test run in its own
// database, key prefix and virtual host. It is the one test package that
// links the Temporal server, which costs a long link: keep it that way.
package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workers"
)

// stack is the system under test, shared by the package's tests.
var stack struct {
	app  *app.App
	api  *httptest.Server
	env  *testenv.Env
	sims *app.Simulators
	// restartWorkers stops the workers (letting activities in flight end)
	// and starts new ones, as a redeploy would.
	restartWorkers func(pause time.Duration)
	// pauseWorkers stops the in-process workers until the returned func is
	// called (while a worker process of its own does the work).
	pauseWorkers func() (resume func())
	// marketURLs are the marketplace simulators' base URLs, by market.
	marketURLs map[string]string
	// restartIngest stops the ingest consumer and starts a new one, as a
	// redeploy of the worker would.
	restartIngest func()
	// ingestStats are the running ingest consumer's counters.
	ingestStats func() ingest.Stats
}

// workerProcessEnv, when set, makes this test binary a worker process
// instead: `sagaflow worker` against the parent's Temporal server, with the
// parent's configuration in the environment, until it is killed.
const workerProcessEnv = "SAGAFLOW_TEST_WORKER_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(workerProcessEnv) != "" {
		os.Exit(runWorkerProcess())
	}
	os.Exit(run(m))
}

func runWorkerProcess() int {
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	a, err := app.Open(ctx, cfg, telemetry.NewLogger(io.Discard, "text", slog.LevelInfo), app.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer a.Close()
	if err := workers.Run(ctx, a.Workers()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startWorkerProcess runs this test binary as a separate worker process
// with the stack's configuration; kill it with SIGKILL to test a crash.
func startWorkerProcess() (*exec.Cmd, error) {
	cfg := stack.app.Config
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		workerProcessEnv+"=1",
		"SAGAFLOW_ENV="+config.EnvDev,
		"TEMPORAL_ADDRESS="+stack.app.Dev.Address(),
		"TEMPORAL_NAMESPACE="+cfg.TemporalNamespace,
		"DATABASE_URL="+cfg.DatabaseURL,
		"REDIS_URL="+cfg.RedisURL,
		"SAGAFLOW_REDIS_PREFIX="+cfg.RedisPrefix,
		"AMQP_URL="+cfg.AMQPURL,
		"SAGAFLOW_PAYMENT_URL="+cfg.PaymentURL,
		"SAGAFLOW_NOTIFY_URL="+cfg.NotifyURL,
		"SAGAFLOW_PAYMENT_TIMEOUT="+cfg.PaymentTimeout.String(),
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd, cmd.Start()
}

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.New(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Close()
	stack.env = env
	cfg := env.Config
	cfg.TemporalAddress = ""
	cfg.DevTemporalPort = freePort()
	cfg.DevUIPort = 0
	cfg.DemoKey, cfg.AcmeKey = "demo-"+testenv.RunID(), "acme-"+testenv.RunID()
	cfg.APIKeyCacheTTL = 0
	cfg.Env = config.EnvDev // the simulators listen on loopback
	// A short gateway timeout makes "timeout after commit" cost little.
	cfg.PaymentTimeout = 300 * time.Millisecond
	sims, err := app.NewSimulators(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stack.sims = sims
	paySrv, notifySrv := httptest.NewServer(sims.Payments), httptest.NewServer(sims.Notifier)
	defer notifySrv.Close()
	defer paySrv.Close()
	defer sims.Payments.Close() // releases replies held by "timeout after commit"
	cfg.PaymentURL, cfg.NotifyURL = paySrv.URL, notifySrv.URL
	stack.marketURLs = map[string]string{}
	for name, m := range sims.Markets {
		srv := httptest.NewServer(m)
		defer srv.Close()
		stack.marketURLs[name] = srv.URL
	}
	cfg.ShopwaveURL, cfg.SoukURL, cfg.BazaarURL = stack.marketURLs["shopwave"], stack.marketURLs["souk"], stack.marketURLs["bazaar"]
	var logw io.Writer = io.Discard
	if os.Getenv("SAGAFLOW_TEST_LOG") != "" {
		logw = os.Stderr
	}
	log := telemetry.NewLogger(logw, "text", slog.LevelInfo)

	startCtx, startCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer startCancel()
	a, err := app.Open(startCtx, cfg, log, app.Options{EmbedTemporal: true, InMemory: true, Migrate: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open app:", err)
		return 1
	}
	defer a.Close()
	if err := a.Seed(startCtx); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		return 1
	}
	stack.app = a
	stack.api = httptest.NewServer(a.Handler())
	defer stack.api.Close()

	var mu sync.Mutex
	var g *errgroup.Group
	var stopWorkers context.CancelFunc
	start := func() {
		var wctx context.Context
		wctx, stopWorkers = context.WithCancel(ctx)
		g = &errgroup.Group{}
		g.Go(func() error { return workers.Run(wctx, a.Workers()) })
	}
	stop := func() error {
		stopWorkers()
		return g.Wait()
	}
	start()
	starterCtx, stopStarter := context.WithCancel(ctx)
	starterDone := make(chan error, 1)
	go func() { starterDone <- a.Starter().Run(starterCtx) }()
	defer func() { stopStarter(); <-starterDone }()
	relayDone := make(chan error, 1)
	go func() { relayDone <- a.RunRelay(starterCtx) }()
	defer func() { stopStarter(); <-relayDone }()
	var ingestMu sync.Mutex
	var stopIngest context.CancelFunc
	var consumer atomic.Pointer[ingest.Consumer]
	ingestDone := make(chan error, 1)
	startIngest := func() {
		var ictx context.Context
		ictx, stopIngest = context.WithCancel(ctx)
		c := a.Ingest()
		consumer.Store(c)
		go func() { ingestDone <- c.Run(ictx) }()
	}
	stack.ingestStats = func() ingest.Stats { return consumer.Load().Stats() }
	startIngest()
	defer func() { stopIngest(); <-ingestDone }()
	stack.restartIngest = func() {
		ingestMu.Lock()
		defer ingestMu.Unlock()
		stopIngest()
		if err := <-ingestDone; err != nil {
			panic(err)
		}
		startIngest()
	}
	stack.restartWorkers = func(pause time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if err := stop(); err != nil {
			panic(err)
		}
		time.Sleep(pause)
		start()
	}
	stack.pauseWorkers = func() func() {
		mu.Lock()
		if err := stop(); err != nil {
			panic(err)
		}
		return func() {
			defer mu.Unlock()
			start()
		}
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "workers:", err)
		return 1
	}
	return code
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
