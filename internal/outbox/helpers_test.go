package outbox_test

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/testenv/servers"
)

// fixture is one test's own database, vhost and tenants.
type fixture struct {
	env   *testenv.Env
	store *store.Store
	conn  *rabbit.Conn
	log   *slog.Logger
	warns *atomic.Int64 // log records at Warn and above
}

func setup(t *testing.T) *fixture {
	t.Helper()
	env := testenv.ForTest(t)
	s := servers.Store(t, env)
	conn := servers.Rabbit(t, env)
	warns := new(atomic.Int64)
	log := slog.New(slog.NewTextHandler(testWriter{t, warns}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &fixture{env: env, store: s, conn: conn, log: log, warns: warns}
}

func (f *fixture) tenant(t *testing.T) tenant.Tenant {
	t.Helper()
	return servers.Tenant(t, f.store, "t")
}

// testWriter sends log lines to t.Log, so they show only for failed tests,
// and counts them.
type testWriter struct {
	t     *testing.T
	lines *atomic.Int64
}

func (w testWriter) Write(p []byte) (int, error) {
	w.lines.Add(1)
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually waits for cond (testenv.Eventually).
var eventually = testenv.Eventually

// drain reads queue until want returns true or the deadline passes, and
// returns what it read.
func drain(t *testing.T, amqpURL, queue string, timeout time.Duration, done func([]amqp.Delivery) bool) []amqp.Delivery {
	t.Helper()
	ch, closeConn := testenv.AMQPChannel(t, amqpURL)
	defer closeConn()
	if err := ch.Qos(1000, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []amqp.Delivery
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for !done(got) {
		select {
		case d := <-ds:
			got = append(got, d)
		case <-timer.C:
			t.Fatalf("timed out draining %s: got %d messages", queue, len(got))
		}
	}
	return got
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
