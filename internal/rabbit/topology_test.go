package rabbit_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/testenv/servers"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func channel(t *testing.T) *amqp.Channel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := servers.Rabbit(t, env).Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestDeclareTopology_is_idempotent_and_routes(t *testing.T) {
	ch := channel(t)
	for i := range 2 {
		if err := rabbit.DeclareTopology(ch); err != nil {
			t.Fatalf("declare #%d: %v", i+1, err)
		}
	}
	// A second process declaring on its own channel must not conflict.
	if err := rabbit.DeclareTopology(channel(t)); err != nil {
		t.Fatalf("declare on another connection: %v", err)
	}

	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	publish := func(key string) {
		t.Helper()
		dc, err := ch.PublishWithDeferredConfirm(catalog.Exchange, key, false, false, amqp.Publishing{Body: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		if !dc.Wait() {
			t.Fatalf("publish %s: nacked", key)
		}
	}
	publish(catalog.RoutingKey("acme"))
	publish("no.such.key")

	get := func(queue string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			d, ok, err := ch.Get(queue, true)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				return string(d.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("nothing in %s", queue)
		return ""
	}
	if got := get(catalog.IngestQueue); got != catalog.RoutingKey("acme") {
		t.Errorf("ingest queue got %q", got)
	}
	if got := get(catalog.DeadQueue); got != "no.such.key" {
		t.Errorf("dead queue got %q, want the unroutable message", got)
	}
}
