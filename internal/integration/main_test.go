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
	app *app.App
	api *httptest.Server
	env *testenv.Env
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

	wctx, stopWorkers := context.WithCancel(ctx)
	var g errgroup.Group
	g.Go(func() error { return workers.Run(wctx, a.Workers()) })
	code := m.Run()
	stopWorkers()
	if err := g.Wait(); err != nil {
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
