package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.temporal.io/api/serviceerror"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/ingest/redisdedupe"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// fixture is one test's own database, Redis prefix and vhost, with the
// topology declared.
type fixture struct {
	env      *testenv.Env
	store    *store.Store
	redis    *queue.Redis
	conn     *rabbit.Conn
	log      *slog.Logger
	products *products
	sink     *sink
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := testenv.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	s, err := store.Open(ctx, env.Config.DatabaseURL, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := queue.Open(ctx, env.Config.RedisURL, env.Config.RedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	conn, err := rabbit.Dial(ctx, env.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rabbit.DeclareTopology(ch); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &fixture{env: env, store: s, redis: r, conn: conn, log: log, products: &products{}, sink: &sink{}}
}

// consumer returns a Consumer over the fixture's fakes with o (DedupeTTL
// short, so test keys expire).
func (f *fixture) consumer(o ingest.Options) *ingest.Consumer {
	return f.consumerOver(o, f.products)
}

// consumerOver is consumer with p as the store of products.
func (f *fixture) consumerOver(o ingest.Options, p ingest.Products) *ingest.Consumer {
	if o.DedupeTTL == 0 {
		o.DedupeTTL = 10 * time.Minute
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 500 * time.Millisecond
	}
	return ingest.New(f.conn, redisdedupe.New(f.redis), f.store, p, f.sink, f.log, o)
}

func (f *fixture) tenant(t *testing.T) tenant.Tenant {
	t.Helper()
	tn, err := tenant.New("t" + testenv.RunID())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return tn
}

// run starts c and returns a stop function that waits for Run to return.
func run(t *testing.T, c *ingest.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// msg is one message to publish.
type msg struct {
	key  string
	body []byte
	id   string // AMQP message-id property (optional)
	// headers replace the default {"x-test": "yes"} if set.
	headers amqp.Table
}

// change is a valid product.changed message.
func change(tenantName, sku string, version int64, messageID string) msg {
	p, _ := json.Marshal(catalog.Product{SKU: sku, Name: "Product " + sku, Price: catalog.Money{Amount: 1000, Currency: "KRW"},
		Stock: version, Attributes: map[string]string{}, Version: version})
	body, _ := json.Marshal(catalog.Envelope{MessageID: messageID, TenantID: tenantName, Type: catalog.TypeProductChanged,
		OccurredAt: time.Now(), Payload: p})
	return msg{key: catalog.RoutingKey(tenantName), body: body, id: messageID}
}

// publish sends msgs to the catalog exchange over a connection of its own
// and waits for the broker's confirms.
func (f *fixture) publish(t *testing.T, msgs ...msg) {
	t.Helper()
	conn, err := amqp.Dial(f.env.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var dcs []*amqp.DeferredConfirmation
	for _, m := range msgs {
		headers := m.headers
		if headers == nil {
			headers = amqp.Table{"x-test": "yes"}
		}
		dc, err := ch.PublishWithDeferredConfirm(catalog.Exchange, m.key, false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: m.id, Body: m.body,
			Headers: headers,
		})
		if err != nil {
			t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for _, dc := range dcs {
		if !dc.Wait() {
			t.Fatal("publish not confirmed")
		}
	}
}

// get takes n messages off queue (basic.get, auto-ack).
func (f *fixture) get(t *testing.T, queue string, n int) []amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial(f.env.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	var got []amqp.Delivery
	eventually(t, 20*time.Second, fmt.Sprintf("%d messages in %s", n, queue), func() bool {
		for len(got) < n {
			d, ok, err := ch.Get(queue, true)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return false
			}
			got = append(got, d)
		}
		return true
	})
	return got
}

// ready is how many messages wait in queue (unacked ones not counted).
func (f *fixture) ready(t *testing.T, queue string) int {
	t.Helper()
	conn, err := amqp.Dial(f.env.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

// products is a fake ingest.Products: upsert-if-newer in memory.
type products struct {
	mu        sync.Mutex
	failFirst int
	calls     int
	versions  map[string]int64 // schema/sku -> version
	// refuse: SKUs for which the whole call fails for good, as PostgreSQL
	// refuses a statement for one row.
	refuse map[string]bool
}

func (p *products) ApplyChanges(_ context.Context, schema string, ps []catalog.Product) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls <= p.failFirst {
		return 0, errors.New("database unavailable (test)")
	}
	if !slices.IsSortedFunc(ps, func(a, b catalog.Product) int { return strings.Compare(a.SKU, b.SKU) }) {
		return 0, errors.New("products not sorted by SKU")
	}
	for _, pr := range ps {
		if p.refuse[pr.SKU] {
			return 0, fmt.Errorf("apply: %w", &pgconn.PgError{Severity: "ERROR", Code: "22P05", Message: "unsupported Unicode escape sequence (test)"})
		}
	}
	if p.versions == nil {
		p.versions = map[string]int64{}
	}
	n := 0
	for _, pr := range ps {
		k := schema + "/" + pr.SKU
		if pr.Version > p.versions[k] {
			p.versions[k] = pr.Version
			n++
		}
	}
	return n, nil
}

func (p *products) version(schema, sku string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.versions[schema+"/"+sku]
}

// sink is a fake ingest.Sink that records what it accepted.
type sink struct {
	mu        sync.Mutex
	failFirst int
	calls     int
	batches   [][]ingest.Change
	// refuse: SKUs for which Temporal refuses the whole call for good.
	refuse map[string]bool
}

func (s *sink) Deliver(_ context.Context, changes []ingest.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.failFirst {
		return errors.New("temporal unavailable (test)")
	}
	for _, c := range changes {
		if s.refuse[c.Product.SKU] {
			return fmt.Errorf("signal %s: %w", c.Tenant, serviceerror.NewInvalidArgument("refused (test)"))
		}
	}
	s.batches = append(s.batches, slices.Clone(changes))
	return nil
}

// accepted is every change the sink accepted, in order.
func (s *sink) accepted() []ingest.Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []ingest.Change
	for _, b := range s.batches {
		all = append(all, b...)
	}
	return all
}

// acceptedIDs counts the accepted changes per message ID.
func (s *sink) acceptedIDs() map[string]int {
	ids := map[string]int{}
	for _, c := range s.accepted() {
		ids[c.MessageID]++
	}
	return ids
}

// testWriter sends log lines to t.Log, so they show only for failed tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually waits for cond (testenv.Eventually).
var eventually = testenv.Eventually
