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
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/internal/app"
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
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
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
	stack.restartWorkers = func(pause time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if err := stop(); err != nil {
			panic(err)
		}
		time.Sleep(pause)
		start()
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
