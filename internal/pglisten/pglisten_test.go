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

// testPool is a pool on the test's database, and a context that ends
// with the test (or after a minute).
func testPool(t *testing.T) (context.Context, *pgxpool.Pool) {
	t.Helper()
	env := testenv.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool, err := pgxpool.New(ctx, env.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return ctx, pool
}

// Every NOTIFY on the channel reaches notified with its payload, and Listen
// returns when its context ends.
func TestListen_calls_notified_with_each_payload(t *testing.T) {
	ctx, pool := testPool(t)
	channel := "pglisten_test_" + testenv.RunID()
	got := make(chan string, 10)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pglisten.Listen(lctx, pool, channel, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), "test",
			nil, func(p string) { got <- p })
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

// listening hears true once the LISTEN is in place and false when its
// connection is lost; Listen then listens again and says true again, and
// the notifications sent after that arrive.
func TestListen_reports_when_it_listens_and_when_it_lost_the_connection(t *testing.T) {
	ctx, pool := testPool(t)
	channel := "pglisten_up_" + testenv.RunID()
	ups := make(chan bool, 10)
	got := make(chan string, 100)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go pglisten.Listen(lctx, pool, channel, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), "test",
		func(up bool) { ups <- up }, func(p string) { got <- p })
	next := func(want bool) {
		t.Helper()
		select {
		case up := <-ups:
			if up != want {
				t.Fatalf("listening(%v), want listening(%v)", up, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no listening(%v)", want)
		}
	}
	next(true)
	// The LISTEN is in place when it says so: a NOTIFY sent now arrives.
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'a')", channel); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("a NOTIFY sent after listening(true) did not arrive")
	}
	// Lose the connection: the backend that listens on the channel ends.
	var killed bool
	if err := pool.QueryRow(ctx, `SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query = 'LISTEN ' || $1 AND pid <> pg_backend_pid()`, channel).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the listening backend: %v %v", killed, err)
	}
	next(false)
	next(true)
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'b')", channel); err != nil {
		t.Fatal(err)
	}
	for p := ""; p != "b"; {
		select {
		case p = <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("no notification after listening again")
		}
	}
}
