package pglisten_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagaflow/sagaflow/internal/pglisten"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// Every NOTIFY on the channel reaches notified with its payload, and Listen
// returns when its context ends.
func TestListen_calls_notified_with_each_payload(t *testing.T) {
	env := testenv.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, env.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	channel := "pglisten_test_" + testenv.RunID()
	got := make(chan string, 10)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pglisten.Listen(lctx, pool, channel, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), "test",
			func(p string) { got <- p })
	}()
	// LISTEN takes effect asynchronously: notify until the first arrives.
	var first string
	testenv.Eventually(t, 30*time.Second, "first notification", func() bool {
		if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'a')", channel); err != nil {
			t.Fatal(err)
		}
		select {
		case first = <-got:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	if first != "a" {
		t.Fatalf("payload %q, want a", first)
	}
	for len(got) > 0 { // the extra "a"s sent while waiting
		<-got
	}
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'b')", channel); err != nil {
		t.Fatal(err)
	}
	for p := ""; p != "b"; {
		select {
		case p = <-got:
			if p != "a" && p != "b" {
				t.Fatalf("payload %q, want b", p)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no notification b")
		}
	}
	stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Listen did not return after its context ended")
	}
}
