package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// Main is a package's TestMain when all its tests share one Env: it creates
// the Env, stores it in *env, runs the tests, removes the Env and exits with
// the tests' code. A server out of reach ends the run with its error.
func Main(m *testing.M, env **Env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	e, err := New(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	e.Close()
	os.Exit(code)
}

// ForTest is a fresh Env for the test t alone, removed when t ends.
func ForTest(t testing.TB) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}
