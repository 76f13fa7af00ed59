// Package servers opens, for one test, what the tests of the bus and the
// store build on a testenv.Env: a migrated store, a RabbitMQ connection, a
// tenant. It is apart from testenv because testenv is imported by tests
// inside packages the store depends on (telemetry), which must not import
// the store.
package servers

import (
	"context"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// Store opens the store of env's database (10 connections, opts) with the
// migrations applied, closed when t ends.
func Store(t testing.TB, env *testenv.Env, opts ...store.Option) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, env.Config.DatabaseURL, 10, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// Rabbit dials env's virtual host, closed when t ends.
func Rabbit(t testing.TB, env *testenv.Env) *rabbit.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := rabbit.Dial(ctx, env.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Tenant creates in s a tenant named prefix and a fresh run id.
func Tenant(t testing.TB, s *store.Store, prefix string) tenant.Tenant {
	t.Helper()
	tn, err := tenant.New(prefix + testenv.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return tn
}
