package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// syncTenant is a tenant of a sync test with its key and channels.
type syncTenant struct {
	t        tenant.Tenant
	key      string
	channels map[string]channelDoc // by market
}

type channelDoc struct {
	ID              string `json:"id"`
	Market          string `json:"market"`
	BaseURL         string `json:"base_url"`
	RateLimitPerSec int    `json:"rate_limit_per_sec"`
}

type productDoc struct {
	SKU        string            `json:"sku"`
	Name       string            `json:"name"`
	Price      catalog.Money     `json:"price"`
	Stock      int64             `json:"stock"`
	Attributes map[string]string `json:"attributes"`
	Version    int64             `json:"version"`
}

type parkedDoc struct {
	ID       string    `json:"id"`
	SKU      string    `json:"sku"`
	Channel  string    `json:"channel"`
	Market   string    `json:"market"`
	Version  int64     `json:"version"`
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	Since    time.Time `json:"since"`
}

type productSyncDoc struct {
	SKU      string `json:"sku"`
	Version  int64  `json:"version"`
	Channels []struct {
		Channel       string `json:"channel"`
		Market        string `json:"market"`
		Status        string `json:"status"`
		Version       int64  `json:"version"`
		SyncedVersion int64  `json:"synced_version"`
		LastError     string `json:"last_error"`
		ParkedID      string `json:"parked_id"`
	} `json:"channels"`
}

// credentials is what a tenant's channel to market authenticates with; the
// simulators keep each account's listings apart by it.
func credentials(tn, market string) string { return tn + "-" + market }

// newSyncTenant creates a tenant with a key and one channel per market.
func newSyncTenant(t testing.TB, name string, markets ...string) *syncTenant {
	t.Helper()
	tn, key := embedded().createTenant(t, name)
	st := &syncTenant{t: tn, key: key, channels: map[string]channelDoc{}}
	for _, m := range markets {
		var ch channelDoc
		body := map[string]any{"market": m, "credentials": credentials(tn.Name, m), "rate_limit_per_sec": 1000}
		if code := call(t, key, http.MethodPost, "/v1/channels", body, &ch); code != http.StatusCreated {
			t.Fatalf("create %s channel: %d %+v", m, code, ch)
		}
		if ch.BaseURL != stack.marketURLs[m] {
			t.Fatalf("channel base_url %q: want the market's default %q", ch.BaseURL, stack.marketURLs[m])
		}
		st.channels[m] = ch
	}
	return st
}

func syncTenantName(tag string) string { return "sy" + tag + testenv.RunID()[:6] }

// busEvent is one message published straight to the exchange.
type busEvent struct {
	key  string
	body []byte
	id   string
	// traceparent, when set, goes in the message's headers, as an
	// instrumented publisher (the outbox relay, or any OpenTelemetry
	// producer) sends it.
	traceparent string
}

func changeEvent(t testing.TB, tn string, p catalog.Product) busEvent {
	t.Helper()
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%s-%s-v%d", tn, p.SKU, p.Version)
	body, err := json.Marshal(catalog.Envelope{
		MessageID: id, TenantID: tn, Type: catalog.TypeProductChanged,
		OccurredAt: time.Now().UTC(), TraceID: "it-" + id, Payload: payload,
	})
	if err != nil {
		t.Fatal(err)
	}
	return busEvent{key: catalog.RoutingKey(tn), body: body, id: id}
}

// malformedEvents are messages the ingest must dead-letter, each kind.
func malformedEvents(tn string, n int) []busEvent {
	var out []busEvent
	for i := range n {
		id := fmt.Sprintf("%s-bad-%d", tn, i)
		valid := fmt.Sprintf(`{"message_id":%q,"tenant_id":%q,"type":"product.changed","occurred_at":"2026-11-22T00:00:00Z","payload":{"sku":"BAD-%d","name":"x","price":{"amount":10,"currency":"KRW"},"stock":1,"version":1}}`, id, tn, i)
		var e busEvent
		switch i % 6 {
		case 0:
			e = busEvent{key: catalog.RoutingKey(tn), body: []byte(`{"message_id":` + id)}
		case 1:
			e = busEvent{key: catalog.RoutingKey(tn), body: []byte(strings.Replace(valid, `"product.changed"`, `"order.placed"`, 1))}
		case 2:
			e = busEvent{key: catalog.RoutingKey("zz" + tn), body: []byte(valid)} // routing key of another tenant
		case 3:
			e = busEvent{key: catalog.RoutingKey("nosuch_tenant"), body: []byte(strings.Replace(valid, `"tenant_id":"`+tn+`"`, `"tenant_id":"nosuch_tenant"`, 1))}
		case 4:
			e = busEvent{key: catalog.RoutingKey(tn), body: []byte(strings.Replace(valid, `"stock":1`, `"stock":-1`, 1))}
		case 5:
			e = busEvent{key: catalog.RoutingKey(tn), body: []byte(strings.Replace(valid, `,"version":1`, ``, 1))}
		}
		e.id = id
		out = append(out, e)
	}
	return out
}

// publishAll publishes events with publisher confirms, in chunks; a chunk
// that fails (the broker restarting) is published again on a new
// connection, as any careful publisher would: duplicates are the ingest's
// problem, and it must drop them.
func publishAll(t *testing.T, events []busEvent, progress func(done int)) {
	t.Helper()
	const chunk = 500
	var conn *amqp.Connection
	var ch *amqp.Channel
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	connect := func() error {
		if conn != nil {
			_ = conn.Close()
		}
		var err error
		if conn, err = amqp.Dial(stack.app.Config.AMQPURL); err != nil {
			return err
		}
		if ch, err = conn.Channel(); err != nil {
			return err
		}
		return ch.Confirm(false)
	}
	// Failures may go on for 3 minutes in a row (a broker restart), counted
	// from the last chunk that went through, not from the start.
	deadline := time.Now().Add(3 * time.Minute)
	for start := 0; start < len(events); {
		end := min(start+chunk, len(events))
		err := func() error {
			if conn == nil || conn.IsClosed() {
				if err := connect(); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var confs []*amqp.DeferredConfirmation
			for _, e := range events[start:end] {
				c, err := ch.PublishWithDeferredConfirmWithContext(ctx, catalog.Exchange, e.key, false, false, amqp.Publishing{
					ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: e.id, Body: e.body,
				})
				if err != nil {
					return err
				}
				confs = append(confs, c)
			}
			for _, c := range confs {
				ok, err := c.WaitContext(ctx)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("broker nacked a message")
				}
			}
			return nil
		}()
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("publish: %v", err)
			}
			_ = conn.Close()
			time.Sleep(500 * time.Millisecond)
			continue
		}
		start = end
		deadline = time.Now().Add(3 * time.Minute)
		if progress != nil {
			progress(start)
		}
	}
}

// syncScenario is the end-to-end run: 50,000 change events for two
// tenants × 2,000 SKUs × 3 markets, through the API and straight to
// RabbitMQ, with 10% 5xx and 5% 429 at the markets, souk down for 30 s, 1%
// malformed messages and duplicate deliveries; midway can restart things.
func syncScenario(t *testing.T, tag string, midway func(step int)) {
	const (
		skus      = 2000
		apiSKUs   = 200 // changed through the API (3 PUTs each), the rest through the bus
		perTenant = 25_000
		malformed = perTenant / 100
	)
	markets := []string{"bazaar", "shopwave", "souk"}
	tenants := []*syncTenant{newSyncTenant(t, syncTenantName(tag+"a"), markets...), newSyncTenant(t, syncTenantName(tag+"b"), markets...)}
	for _, m := range stack.sims.Markets {
		cfg := m.Config()
		cfg.ErrorRate, cfg.ThrottleRate, cfg.RetryAfterSeconds = 0.10, 0.05, 1
		if err := m.SetConfig(cfg); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range stack.sims.Markets {
			cfg := m.Config()
			cfg.ErrorRate, cfg.ThrottleRate, cfg.Down = 0, 0, false
			_ = m.SetConfig(cfg)
		}
	})
	rng := rand.New(rand.NewPCG(1, 2))
	product := func(tn string, i int, v int64) catalog.Product {
		return catalog.Product{
			SKU: fmt.Sprintf("SKU-%04d", i), Name: fmt.Sprintf("%s product %d v%d", tn, i, v),
			Price: catalog.Money{Amount: int64(1000 + 10*rng.IntN(1000)), Currency: "KRW"}, Stock: int64(rng.IntN(500)),
			Attributes: map[string]string{"color": []string{"red", "blue", "white"}[i%3], "tenant": tn}, Version: v,
		}
	}

	// Bus events: versions 1..n of each bus SKU, shuffled so that older
	// versions often arrive after newer ones, with 3% published twice.
	var events []busEvent
	latest := map[string]map[string]int64{} // tenant → SKU → the version it must end at
	for _, st := range tenants {
		n := perTenant - 3*apiSKUs - malformed
		next := map[int]int64{}
		for i := range n {
			sku := apiSKUs + i%(skus-apiSKUs)
			next[sku]++
			events = append(events, changeEvent(t, st.t.Name, product(st.t.Name, sku, next[sku])))
		}
		latest[st.t.Name] = map[string]int64{}
		for i := range skus {
			latest[st.t.Name][fmt.Sprintf("SKU-%04d", i)] = 3 // the API SKUs: 3 PUTs
		}
		for sku, v := range next {
			latest[st.t.Name][fmt.Sprintf("SKU-%04d", sku)] = v
		}
		events = append(events, malformedEvents(st.t.Name, malformed)...)
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	dups := len(events) * 3 / 100
	for range dups {
		at := rng.IntN(len(events))
		events = slices.Insert(events, min(len(events), at+rng.IntN(2000)), events[at])
	}

	start := time.Now()
	var wg sync.WaitGroup
	// API changes: 3 PUTs of each API SKU, 16 at a time per tenant.
	var apiFailures atomic.Int64
	for _, st := range tenants {
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := range 3 {
					for i := w; i < apiSKUs; i += 16 {
						p := product(st.t.Name, i, int64(round+1))
						body := map[string]any{"name": p.Name, "price": p.Price, "stock": p.Stock, "attributes": p.Attributes}
						code, err := rawCall(st.key, http.MethodPut, "/v1/products/"+p.SKU, body, nil, nil)
						if err != nil || code >= 300 {
							apiFailures.Add(1)
						}
					}
				}
			}()
		}
	}
	// souk goes down for 30 s a third of the way in.
	step := 0
	publishAll(t, events, func(done int) {
		for step < 10 && done >= len(events)*(step+1)/10 {
			step++
			if step == 3 {
				soukDown(t, 30*time.Second)
			}
			if midway != nil {
				midway(step)
			}
		}
	})
	wg.Wait()
	if n := apiFailures.Load(); n > 0 {
		t.Fatalf("%d API PUTs failed", n)
	}
	published := time.Since(start)

	// Every market holds the latest version of every SKU of each tenant.
	var lag string
	converged := func() bool {
		for _, st := range tenants {
			for _, m := range markets {
				listings := stack.sims.Markets[m].Listings(credentials(st.t.Name, m))
				var behind []string
				for sku, v := range latest[st.t.Name] {
					if l, ok := listings[sku]; !ok || l.Version != v {
						behind = append(behind, fmt.Sprintf("%s want v%d has v%d", sku, v, l.Version))
					}
				}
				if len(behind) > 0 {
					slices.Sort(behind)
					synced, _ := stack.app.Store.Catalog(st.t.Schema).SyncedVersions(context.Background(), st.channels[m].ID, []string{strings.Fields(behind[0])[0]})
					lag = fmt.Sprintf("%s at %s: %d of %d SKUs not at their latest version, such as %s (synced %v)",
						st.t.Name, m, len(behind), skus, behind[:min(3, len(behind))], synced)
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(syncConvergeWithin)
	for i := 0; !converged(); i++ {
		if time.Now().After(deadline) {
			dumpSyncWorkflows(t, tenants)
			t.Fatalf("markets did not converge: %s", lag)
		}
		if i%10 == 0 {
			t.Logf("after %s: %s; ingest %+v", time.Since(start).Round(time.Second), lag, stack.ingestStats())
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d events (+%d duplicates) published in %s; all markets converged after %s",
		len(events)-dups+3*apiSKUs*len(tenants), dups, published.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// Content, not only versions: a listing is the tenant's own product.
	want := map[string]map[string]catalog.Product{}
	for _, st := range tenants {
		all := make([]string, 0, skus)
		for sku := range latest[st.t.Name] {
			all = append(all, sku)
		}
		ps, err := stack.app.Store.Catalog(st.t.Schema).Products(context.Background(), all)
		if err != nil {
			t.Fatal(err)
		}
		for sku, v := range latest[st.t.Name] {
			if ps[sku].Version != v {
				t.Fatalf("tenant %s holds %s at version %d, want %d", st.t.Name, sku, ps[sku].Version, v)
			}
		}
		want[st.t.Name] = ps
	}
	for _, st := range tenants {
		listings := stack.sims.Markets["shopwave"].Listings(credentials(st.t.Name, "shopwave"))
		for sku, p := range want[st.t.Name] {
			if l := listings[sku]; l.Name != p.Name || l.AmountMinor != p.Price.Amount || l.Quantity != p.Stock || l.Attributes["tenant"] != st.t.Name {
				t.Fatalf("shopwave listing of %s %s = %+v, want %+v", st.t.Name, sku, l, p)
			}
		}
	}
	for _, m := range markets {
		s := stack.sims.Markets[m].Stats()
		if s.StaleWrites != 0 {
			t.Errorf("%s applied %d stale writes", m, s.StaleWrites)
		}
		t.Logf("%s: %+v", m, s)
	}
	// Nothing was parked: retries outlast 5xx, 429 and a 30 s outage.
	for _, st := range tenants {
		var dlq struct{ Items []parkedDoc }
		if code := call(t, st.key, http.MethodGet, "/v1/dlq", nil, &dlq); code != http.StatusOK || len(dlq.Items) != 0 {
			t.Errorf("%s parking lot: %d %+v", st.t.Name, code, dlq.Items)
		}
	}
	checkDeadLetters(t, tenants, malformed)
	checkSyncIsolation(t, tenants)
}

// dumpSyncWorkflows logs where each shard's workflow stands, to tell why
// the markets did not converge.
func dumpSyncWorkflows(t *testing.T, tenants []*syncTenant) {
	ctx := context.Background()
	for _, st := range tenants {
		for shard := range stack.app.Config.SyncShards {
			id := workflows.CatalogSyncWorkflowID(st.t.Name, shard)
			desc, err := stack.app.Temporal.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				t.Logf("%s: %v", id, err)
				continue
			}
			info := desc.GetWorkflowExecutionInfo()
			var status workflows.SyncStatus
			if v, err := stack.app.Temporal.QueryWorkflow(ctx, id, "", workflows.QueryStatus); err == nil {
				_ = v.Get(&status)
			}
			t.Logf("%s: %s history=%d pending activities=%d status=%+v", id, info.GetStatus(), info.GetHistoryLength(), len(desc.GetPendingActivities()), status)
			for _, pa := range desc.GetPendingActivities() {
				t.Logf("  %s attempt %d: %s", pa.GetActivityId(), pa.GetAttempt(), pa.GetLastFailure().GetMessage())
			}
		}
	}
}

// syncConvergeWithin bounds the wait for the markets to converge.
var syncConvergeWithin = 5 * time.Minute

// soukDown takes the souk simulator down for d.
func soukDown(t *testing.T, d time.Duration) {
	m := stack.sims.Markets["souk"]
	cfg := m.Config()
	cfg.Down = true
	if err := m.SetConfig(cfg); err != nil {
		t.Error(err)
		return
	}
	time.AfterFunc(d, func() {
		cfg := m.Config()
		cfg.Down = false
		_ = m.SetConfig(cfg)
	})
}

// checkDeadLetters takes the dead-letter queue's messages of these tenants
// and checks each malformed one is there, with a reason.
func checkDeadLetters(t *testing.T, tenants []*syncTenant, perTenant int) {
	conn, err := amqp.Dial(stack.app.Config.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, st := range tenants {
		for _, e := range malformedEvents(st.t.Name, perTenant) {
			want[e.id] = true
		}
	}
	got := map[string]string{}
	deadline := time.Now().Add(time.Minute)
	for len(got) < len(want) && time.Now().Before(deadline) {
		d, ok, err := ch.Get(catalog.DeadQueue, false)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		reason, _ := d.Headers[catalog.ReasonHeader].(string)
		if want[d.MessageId] {
			got[d.MessageId] = reason
			_ = d.Ack(false)
		} else {
			// A leftover of an earlier scenario of this run (the sync tests
			// are sequential and each run has its own vhost). Requeued, a
			// quorum queue would hand it straight back to us.
			_ = d.Ack(false)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("dead-letter queue holds %d of the %d malformed messages", len(got), len(want))
	}
	for id, reason := range got {
		if reason == "" {
			t.Errorf("dead letter %s has no reason", id)
		}
	}
	for _, kind := range []string{"not JSON", "type", "does not match", "unknown tenant", "stock", "version"} {
		found := false
		for _, reason := range got {
			found = found || strings.Contains(reason, kind)
		}
		if !found {
			t.Errorf("no dead letter's reason mentions %q", kind)
		}
	}
}

// checkSyncIsolation: no tenant sees another's products, channels or
// parked items.
func checkSyncIsolation(t *testing.T, tenants []*syncTenant) {
	a, b := tenants[0], tenants[1]
	var p productDoc
	if code := call(t, a.key, http.MethodGet, "/v1/products/SKU-0001", nil, &p); code != http.StatusOK || !strings.HasPrefix(p.Name, a.t.Name) {
		t.Errorf("tenant %s reads its SKU-0001 as %d %+v", a.t.Name, code, p)
	}
	var chs struct{ Channels []channelDoc }
	call(t, a.key, http.MethodGet, "/v1/channels", nil, &chs)
	if len(chs.Channels) != 3 {
		t.Errorf("tenant %s lists %d channels, want its 3", a.t.Name, len(chs.Channels))
	}
	for _, ch := range chs.Channels {
		for _, other := range b.channels {
			if ch.ID == other.ID {
				t.Errorf("tenant %s lists %s's channel %s", a.t.Name, b.t.Name, ch.ID)
			}
		}
	}
	if code := call(t, a.key, http.MethodDelete, "/v1/channels/"+b.channels["souk"].ID, nil, nil); code != http.StatusNotFound {
		t.Errorf("tenant %s deleting %s's channel: %d, want 404", a.t.Name, b.t.Name, code)
	}
}

// TestSync_50k_changes_reach_every_market_despite_faults is the issue's
// integration run without restarts.
func TestSync_50k_changes_reach_every_market_despite_faults(t *testing.T) {
	syncScenario(t, "f", nil)
}

// TestSync_50k_changes_survive_restarts is the same run with the worker,
// the ingest consumer and rabbitmq-server restarted midway.
func TestSync_50k_changes_survive_restarts(t *testing.T) {
	testenv.Chaos(t, "50,000 changes with workers, ingest and rabbitmq-server restarted", "every market at the latest version; nothing stale, nothing parked")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	syncScenario(t, "r", func(step int) {
		switch step {
		case 4:
			t.Log("restarting the workers")
			stack.restartWorkers(0)
		case 5:
			t.Log("restarting the ingest consumer")
			stack.restartIngest()
		case 6:
			t.Log("restarting rabbitmq-server")
			began := time.Now()
			cmd := exec.Command(filepath.Join(root, "deploy", "stack.sh"), "restart", "rabbitmq")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("restart rabbitmq: %v: %s", err, out)
			}
			t.Logf("rabbitmq-server restarted in %s", time.Since(began).Round(time.Millisecond))
		}
	})
}

// TestSync_parks_refused_items_and_operators_recover_them: bazaar sells only
// in KRW, so a USD product is refused and parked; the operator retries,
// discards, or a fixed version supersedes it. Another tenant sees none of it.
func TestSync_parks_refused_items_and_operators_recover_them(t *testing.T) {
	p1 := newSyncTenant(t, syncTenantName("p"), "bazaar", "shopwave")
	p2 := newSyncTenant(t, syncTenantName("q"), "bazaar")
	put := func(st *syncTenant, sku string, price catalog.Money) productDoc {
		var p productDoc
		body := map[string]any{"name": "Tea cup " + sku, "price": price, "stock": 5, "attributes": map[string]string{}}
		if code := call(t, st.key, http.MethodPut, "/v1/products/"+sku, body, &p); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("put %s: %d", sku, code)
		}
		return p
	}
	parked := func(st *syncTenant) []parkedDoc {
		var dlq struct{ Items []parkedDoc }
		if code := call(t, st.key, http.MethodGet, "/v1/dlq", nil, &dlq); code != http.StatusOK {
			t.Fatalf("dlq: %d", code)
		}
		return dlq.Items
	}
	syncOf := func(st *syncTenant, sku, market string) (status string, version int64, lastError string) {
		var doc productSyncDoc
		if code := call(t, st.key, http.MethodGet, "/v1/products/"+sku+"/sync", nil, &doc); code != http.StatusOK {
			t.Fatalf("sync of %s: %d", sku, code)
		}
		for _, c := range doc.Channels {
			if c.Market == market {
				return c.Status, c.Version, c.LastError
			}
		}
		t.Fatalf("sync of %s: no %s channel in %+v", sku, market, doc)
		return "", 0, ""
	}

	put(p1, "CUP-1", catalog.Money{Amount: 1250, Currency: "USD"})
	var items []parkedDoc
	eventually(t, time.Minute, "the USD product is parked for bazaar", func() bool { items = parked(p1); return len(items) == 1 })
	it := items[0]
	if it.SKU != "CUP-1" || it.Channel != p1.channels["bazaar"].ID || it.Market != "bazaar" || it.Version != 1 || it.Attempts != 1 || !strings.Contains(it.Error, "KRW") {
		t.Fatalf("parked item %+v", it)
	}
	eventually(t, 30*time.Second, "shopwave took the USD product", func() bool {
		status, v, _ := syncOf(p1, "CUP-1", "shopwave")
		return status == catalog.SyncSynced && v == 1
	})
	eventually(t, 30*time.Second, "bazaar shows CUP-1 parked for its currency", func() bool {
		status, _, lastErr := syncOf(p1, "CUP-1", "bazaar")
		return status == catalog.SyncParked && strings.Contains(lastErr, "KRW")
	})
	// Operators find the workflows holding parked items in Temporal too.
	eventually(t, 30*time.Second, "the workflow is marked SagaflowParked > 0", func() bool {
		resp, err := stack.app.Temporal.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("SagaflowTenant = '%s' AND SagaflowParked > 0", p1.t.Name),
		})
		return err == nil && len(resp.GetExecutions()) == 1 &&
			resp.GetExecutions()[0].GetExecution().GetWorkflowId() == workflows.CatalogSyncWorkflowID(p1.t.Name, catalog.Shard("CUP-1", stack.app.Config.SyncShards))
	})

	// Another tenant sees none of it and cannot act on it.
	if got := parked(p2); len(got) != 0 {
		t.Fatalf("tenant %s sees parked items %+v", p2.t.Name, got)
	}
	if code := call(t, p2.key, http.MethodPost, "/v1/dlq/"+it.ID+"/retry", nil, nil); code != http.StatusNotFound {
		t.Fatalf("another tenant's retry: %d, want 404", code)
	}
	if code := call(t, p2.key, http.MethodGet, "/v1/products/CUP-1", nil, nil); code != http.StatusNotFound {
		t.Fatalf("another tenant reads CUP-1: %d, want 404", code)
	}

	// Retry: still USD, so parked again (a new entry).
	var ack map[string]string
	if code := call(t, p1.key, http.MethodPost, "/v1/dlq/"+it.ID+"/retry", nil, &ack); code != http.StatusAccepted || ack["status"] != "accepted" {
		t.Fatalf("retry: %d %v", code, ack)
	}
	eventually(t, time.Minute, "the retried item is parked again", func() bool {
		items = parked(p1)
		return len(items) == 1 && items[0].ID != it.ID
	})
	// A fixed version supersedes it: synced, and the parking lot is empty.
	if p := put(p1, "CUP-1", catalog.Money{Amount: 15000, Currency: "KRW"}); p.Version != 2 {
		t.Fatalf("fixed CUP-1 has version %d, want 2", p.Version)
	}
	eventually(t, time.Minute, "the fixed version reaches bazaar and leaves the parking lot", func() bool {
		status, v, _ := syncOf(p1, "CUP-1", "bazaar")
		return status == catalog.SyncSynced && v == 2 && len(parked(p1)) == 0
	})
	if l := stack.sims.Markets["bazaar"].Listings(credentials(p1.t.Name, "bazaar"))["CUP-1"]; l.Version != 2 || l.AmountMinor != 15000 {
		t.Fatalf("bazaar listing of CUP-1: %+v", l)
	}

	// Discard: the item leaves the parking lot and is not pushed again.
	put(p1, "CUP-2", catalog.Money{Amount: 990, Currency: "USD"})
	eventually(t, time.Minute, "CUP-2 is parked", func() bool { items = parked(p1); return len(items) == 1 })
	before := stack.sims.Markets["bazaar"].Stats().Items
	if code := call(t, p1.key, http.MethodPost, "/v1/dlq/"+items[0].ID+"/discard", nil, nil); code != http.StatusAccepted {
		t.Fatalf("discard: %d", code)
	}
	// The row goes in a local activity, the workflow's own state when that
	// workflow task completes: both must clear.
	eventually(t, 30*time.Second, "the discarded item leaves the parking lot and the workflow", func() bool {
		status, _, _ := syncOf(p1, "CUP-2", "bazaar")
		return len(parked(p1)) == 0 && status != catalog.SyncParked
	})
	if code := call(t, p1.key, http.MethodPost, "/v1/dlq/"+items[0].ID+"/discard", nil, nil); code != http.StatusNotFound {
		t.Fatalf("discarding it again: %d, want 404", code)
	}
	time.Sleep(time.Second)
	if after := stack.sims.Markets["bazaar"].Stats().Items; after != before {
		t.Fatalf("bazaar got %d more items after the discard", after-before)
	}

	cancelAndRecord(t, p1.t.Name, "CUP-1", "sync_parked_retried_fixed.json")
}

// cancelAndRecord cancels the sync workflow of sku's shard, which ends it
// cleanly, and records its now complete history for the replay test.
func cancelAndRecord(t *testing.T, tenantName, sku, file string) {
	t.Helper()
	ctx := context.Background()
	wfID := workflows.CatalogSyncWorkflowID(tenantName, catalog.Shard(sku, stack.app.Config.SyncShards))
	if err := stack.app.Temporal.CancelWorkflow(ctx, wfID, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the cancelled sync workflow closes", func() bool {
		desc, err := stack.app.Temporal.DescribeWorkflowExecution(ctx, wfID, "")
		return err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED
	})
	recordHistory(t, started{WorkflowID: wfID}, file)
}

// TestSync_bad_input_is_refused_with_reasons covers the API's 4xx answers.
func TestSync_bad_input_is_refused_with_reasons(t *testing.T) {
	st := newSyncTenant(t, syncTenantName("i"))
	cases := []struct {
		name, method, path string
		body               any
		status             int
		mention            string
	}{
		{"product_without_price", http.MethodPut, "/v1/products/A-1", map[string]any{"name": "x", "stock": 1}, 400, "price"},
		{"product_with_unknown_currency", http.MethodPut, "/v1/products/A-1", map[string]any{"name": "x", "stock": 1, "price": map[string]any{"amount": 1, "currency": "GBP"}}, 400, "currency"},
		{"product_with_negative_stock", http.MethodPut, "/v1/products/A-1", map[string]any{"name": "x", "stock": -1, "price": map[string]any{"amount": 1, "currency": "KRW"}}, 400, "stock"},
		{"product_with_bad_sku", http.MethodPut, "/v1/products/a%20b", map[string]any{"name": "x", "stock": 1, "price": map[string]any{"amount": 1, "currency": "KRW"}}, 400, "sku"},
		{"product_with_unknown_field", http.MethodPut, "/v1/products/A-1", map[string]any{"name": "x", "stock": 1, "price": map[string]any{"amount": 1, "currency": "KRW"}, "colour": "red"}, 400, "unknown field"},
		{"unknown_product", http.MethodGet, "/v1/products/NOPE", nil, 404, "NOPE"},
		{"channel_of_unknown_market", http.MethodPost, "/v1/channels", map[string]any{"market": "ebay", "credentials": "x"}, 400, "market"},
		{"channel_without_credentials", http.MethodPost, "/v1/channels", map[string]any{"market": "souk"}, 400, "credentials"},
		{"channel_with_rate_0", http.MethodPost, "/v1/channels", map[string]any{"market": "souk", "credentials": "x", "rate_limit_per_sec": 0}, 400, "rate_limit_per_sec"},
		{"delete_malformed_channel_id", http.MethodDelete, "/v1/channels/not-a-uuid", nil, 400, "id"},
		{"delete_unknown_channel", http.MethodDelete, "/v1/channels/00000000-0000-0000-0000-000000000000", nil, 404, "channel"},
		{"retry_unknown_parked_item", http.MethodPost, "/v1/dlq/00000000-0000-0000-0000-000000000000/retry", nil, 404, "parked"},
		{"dlq_limit_out_of_range", http.MethodGet, "/v1/dlq?limit=0", nil, 400, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e errorDoc
			if code := call(t, st.key, tc.method, tc.path, tc.body, &e); code != tc.status || !strings.Contains(e.Error.Message, tc.mention) {
				t.Fatalf("%d %+v, want %d mentioning %q", code, e, tc.status, tc.mention)
			}
		})
	}
	var markets struct {
		Markets []struct{ Name, Format, BaseURL string }
	}
	if code := call(t, st.key, http.MethodGet, "/v1/markets", nil, &markets); code != http.StatusOK || len(markets.Markets) != 3 {
		t.Fatalf("markets: %d %+v", code, markets)
	}
}

// TestSync_status_shows_retrying_while_a_market_is_down: a push to a market
// that is down is retried (its attempts and last error shown), and synced
// once the market is back, with nothing parked.
func TestSync_status_shows_retrying_while_a_market_is_down(t *testing.T) {
	st := newSyncTenant(t, syncTenantName("d"), "souk", "shopwave")
	m := stack.sims.Markets["souk"]
	cfg := m.Config()
	cfg.Down = true
	if err := m.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	up := func() {
		cfg := m.Config()
		cfg.Down = false
		_ = m.SetConfig(cfg)
	}
	t.Cleanup(up)
	body := map[string]any{"name": "Kettle", "price": map[string]any{"amount": 4990, "currency": "EUR"}, "stock": 2}
	if code := call(t, st.key, http.MethodPut, "/v1/products/KETTLE-1", body, nil); code != http.StatusCreated {
		t.Fatalf("put: %d", code)
	}
	statusOf := func(market string) (string, string, int64) {
		var doc struct {
			Channels []struct {
				Market    string `json:"market"`
				Status    string `json:"status"`
				LastError string `json:"last_error"`
				Attempts  int64  `json:"attempts"`
			}
		}
		if code := call(t, st.key, http.MethodGet, "/v1/products/KETTLE-1/sync", nil, &doc); code != http.StatusOK {
			t.Fatalf("sync: %d", code)
		}
		for _, c := range doc.Channels {
			if c.Market == market {
				return c.Status, c.LastError, c.Attempts
			}
		}
		return "", "", 0
	}
	eventually(t, 30*time.Second, "souk shows retrying with its last error", func() bool {
		status, lastErr, attempts := statusOf("souk")
		return status == catalog.SyncRetrying && strings.Contains(lastErr, "unavailable") && attempts >= 1
	})
	// souk's first failure can come back before shopwave's push has been
	// recorded, so shopwave is given time; what matters is that it gets
	// there while souk is still down.
	eventually(t, 30*time.Second, "shopwave, which is up, synced while souk is down", func() bool {
		status, _, _ := statusOf("shopwave")
		return status == catalog.SyncSynced
	})
	if status, _, _ := statusOf("souk"); status == catalog.SyncSynced {
		t.Fatalf("souk synced while it is down")
	}
	up()
	eventually(t, time.Minute, "souk synced once it is back", func() bool {
		status, _, _ := statusOf("souk")
		return status == catalog.SyncSynced
	})
	var dlq struct{ Items []parkedDoc }
	if call(t, st.key, http.MethodGet, "/v1/dlq", nil, &dlq); len(dlq.Items) != 0 {
		t.Fatalf("parked: %+v", dlq.Items)
	}
}

// A channel connected after the products exist catches up with them: each
// shard's workflow reads the catalogue page by page and pushes what the new
// channel lacks. Later changes reach both channels as before.
func TestSync_a_channel_connected_later_gets_the_existing_catalogue(t *testing.T) {
	st := newSyncTenant(t, syncTenantName("b"), "shopwave")
	const n = 40
	put := func(sku string, amount int64) {
		body := map[string]any{"name": "Lamp " + sku, "price": map[string]any{"amount": amount, "currency": "KRW"}, "stock": 3}
		if code := call(t, st.key, http.MethodPut, "/v1/products/"+sku, body, nil); code != http.StatusCreated && code != http.StatusOK {
			t.Fatalf("put %s: %d", sku, code)
		}
	}
	skus := make([]string, n)
	for i := range skus {
		skus[i] = fmt.Sprintf("BF-%02d", i)
		put(skus[i], 15000)
	}
	// holds says market m has every SKU, and the first at version v or newer.
	holds := func(m string, v int64) func() bool {
		return func() bool {
			l := stack.sims.Markets[m].Listings(credentials(st.t.Name, m))
			for _, sku := range skus {
				if l[sku].Version < 1 {
					return false
				}
			}
			return l[skus[0]].Version >= v
		}
	}
	eventually(t, time.Minute, "shopwave holds the catalogue", holds("shopwave", 1))
	if l := stack.sims.Markets["bazaar"].Listings(credentials(st.t.Name, "bazaar")); len(l) != 0 {
		t.Fatalf("bazaar holds %d listings before it is connected", len(l))
	}

	var ch channelDoc
	body := map[string]any{"market": "bazaar", "credentials": credentials(st.t.Name, "bazaar"), "rate_limit_per_sec": 1000}
	if code := call(t, st.key, http.MethodPost, "/v1/channels", body, &ch); code != http.StatusCreated {
		t.Fatalf("connect bazaar: %d", code)
	}
	eventually(t, time.Minute, "bazaar, connected later, holds the whole catalogue", holds("bazaar", 1))

	put(skus[0], 17000)
	eventually(t, time.Minute, "a later change reaches both", func() bool {
		return holds("shopwave", 2)() && holds("bazaar", 2)()
	})
	if l := stack.sims.Markets["bazaar"].Listings(credentials(st.t.Name, "bazaar"))[skus[0]]; l.Version != 2 || l.AmountMinor != 17000 {
		t.Fatalf("bazaar listing of %s: %+v", skus[0], l)
	}
	if s := stack.sims.Markets["bazaar"].Stats(); s.StaleWrites != 0 {
		t.Fatalf("bazaar stats %+v", s)
	}

	cancelAndRecord(t, st.t.Name, skus[0], "sync_backfill.json")
}

// TestSync_20k_parked_items_in_one_shard_keep_the_workflow_running: a
// tenant with one KRW-only bazaar channel and 20,000 USD products, all in
// one shard. Every one is refused and parked; the workflow holds counts, not
// the items, so its state and what it hands over at continue-as-new stay
// small and the server never terminates the run (before bounded state the
// parked items were carried whole: over Temporal's 2 MB payload limit). The
// parking lot pages through GET /v1/dlq, an operator's retry and discard
// work on items the workflow never held in memory, and a fixed KRW version
// supersedes its parked one.
func TestSync_20k_parked_items_in_one_shard_keep_the_workflow_running(t *testing.T) {
	testenv.Chaos(t, "6. 20,000 parked items in one sync shard", "the run stays up with bounded state; the parking lot pages; retry, discard, supersede work")
	const n = 20_000
	ctx := context.Background()
	st := newSyncTenant(t, syncTenantName("k"))
	shards := stack.app.Config.SyncShards
	const shard = 5
	wfID := workflows.CatalogSyncWorkflowID(st.t.Name, shard)
	// Started first with a short history, so the run continues as new
	// several times while the parking lot fills.
	opts := app.SyncOptions(stack.app.Config)
	opts.MaxHistory = 400
	sopts, in := workflows.CatalogSyncStart(st.t.Name, st.t.Schema, shard, opts)
	if _, err := stack.app.Temporal.SignalWithStartWorkflow(ctx, wfID, workflows.SignalChanges, []activities.SKUVersion{}, sopts, workflows.CatalogSyncWorkflowType, in); err != nil {
		t.Fatal(err)
	}
	var ch channelDoc
	body := map[string]any{"market": "bazaar", "credentials": credentials(st.t.Name, "bazaar"), "rate_limit_per_sec": 1000}
	if code := call(t, st.key, http.MethodPost, "/v1/channels", body, &ch); code != http.StatusCreated {
		t.Fatalf("connect bazaar: %d", code)
	}

	var skus []string
	for i := 0; len(skus) < n; i++ {
		if sku := fmt.Sprintf("USD-%06d", i); catalog.Shard(sku, shards) == shard {
			skus = append(skus, sku)
		}
	}
	store := stack.app.Store.Catalog(st.t.Schema)
	parkedCount := func() int {
		var c int
		if err := stack.app.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{st.t.Schema, "parked_items"}.Sanitize()).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The changes come as the ingest hands them over: products stored, then
	// signalled, 500 a signal; 2,000 at a time, as fast as bazaar refuses them.
	const wave = 2000
	for from := 0; from < n; from += wave {
		var ps []catalog.Product
		for _, sku := range skus[from : from+wave] {
			ps = append(ps, catalog.Product{SKU: sku, Name: "Mug " + sku, Price: catalog.Money{Amount: 1999, Currency: "USD"}, Stock: 3, Attributes: map[string]string{}, Version: 1})
		}
		if _, err := store.ApplyChanges(ctx, ps); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < wave; i += 500 {
			var batch []activities.SKUVersion
			for _, p := range ps[i : i+500] {
				batch = append(batch, activities.SKUVersion{SKU: p.SKU, Version: 1})
			}
			if _, err := stack.app.Temporal.SignalWithStartWorkflow(ctx, wfID, workflows.SignalChanges, batch, sopts, workflows.CatalogSyncWorkflowType, in); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, time.Minute, fmt.Sprintf("%d items parked", from+wave), func() bool { return parkedCount() == from+wave })
	}

	status := func() workflows.SyncStatus {
		v, err := stack.app.Temporal.QueryWorkflow(ctx, wfID, "", workflows.QueryStatus)
		if err != nil {
			t.Fatal(err)
		}
		var s workflows.SyncStatus
		if err := v.Get(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	eventually(t, 30*time.Second, "the workflow counts 20,000 parked", func() bool { return status().Channels[ch.ID].Parked == n })
	if s := status(); s.Runs < 1 {
		t.Fatalf("the run never continued as new: %+v", s)
	}
	desc, err := stack.app.Temporal.DescribeWorkflowExecution(ctx, wfID, "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("the sync workflow is not running: %v %v", desc.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	eventually(t, 30*time.Second, "SagaflowParked says 20,000", func() bool {
		resp, err := stack.app.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("SagaflowTenant = '%s' AND SagaflowParked = %d", st.t.Name, n),
		})
		return err == nil && len(resp.GetExecutions()) == 1
	})

	// The parking lot, a page at a time: never 20,000 in one answer.
	type page struct {
		Items      []parkedDoc `json:"items"`
		NextCursor string      `json:"next_cursor"`
	}
	var first page
	if code := call(t, st.key, http.MethodGet, "/v1/dlq", nil, &first); code != http.StatusOK || len(first.Items) != 100 || first.NextCursor == "" {
		t.Fatalf("first page: %d, %d items, cursor %q", code, len(first.Items), first.NextCursor)
	}
	seen := map[string]bool{}
	var pages int
	for cur := ""; ; pages++ {
		var p page
		if code := call(t, st.key, http.MethodGet, "/v1/dlq?limit=1000&cursor="+cur, nil, &p); code != http.StatusOK {
			t.Fatalf("page %d: %d", pages, code)
		}
		for _, it := range p.Items {
			if seen[it.ID] || !strings.Contains(it.Error, "KRW") || it.Market != "bazaar" {
				t.Fatalf("page %d: item %+v (seen before: %v)", pages, it, seen[it.ID])
			}
			seen[it.ID] = true
		}
		if p.NextCursor == "" {
			break
		}
		cur = p.NextCursor
	}
	if len(seen) != n || pages != n/1000 {
		t.Fatalf("paged through %d items in %d pages, want %d in %d", len(seen), pages, n, n/1000)
	}
	if code := call(t, st.key, http.MethodGet, "/v1/dlq?cursor=bm9wZQ", nil, nil); code != http.StatusBadRequest {
		t.Fatalf("a made-up cursor: %d, want 400", code)
	}

	syncOf := func(sku string) (string, int64, string) {
		var doc productSyncDoc
		if code := call(t, st.key, http.MethodGet, "/v1/products/"+sku+"/sync", nil, &doc); code != http.StatusOK || len(doc.Channels) != 1 {
			t.Fatalf("sync of %s: %d %+v", sku, code, doc)
		}
		return doc.Channels[0].Status, doc.Channels[0].Version, doc.Channels[0].ParkedID
	}
	retried, discarded, fixed := first.Items[0], first.Items[1], first.Items[2]
	if status, v, id := syncOf(retried.SKU); status != catalog.SyncParked || v != 1 || id != retried.ID {
		t.Fatalf("sync of parked %s: %s v%d %s", retried.SKU, status, v, id)
	}

	// Retry: still USD, so parked again (a new entry); discard: gone.
	if code := call(t, st.key, http.MethodPost, "/v1/dlq/"+retried.ID+"/retry", nil, nil); code != http.StatusAccepted {
		t.Fatalf("retry: %d", code)
	}
	if code := call(t, st.key, http.MethodPost, "/v1/dlq/"+discarded.ID+"/discard", nil, nil); code != http.StatusAccepted {
		t.Fatalf("discard: %d", code)
	}
	eventually(t, time.Minute, "the retried item is parked again and the discarded one is gone", func() bool {
		again, err := store.ParkedBySKU(ctx, retried.SKU)
		if err != nil || len(again) != 1 || again[0].ID == retried.ID {
			return false
		}
		gone, err := store.ParkedBySKU(ctx, discarded.SKU)
		return err == nil && len(gone) == 0 && status().Channels[ch.ID].Parked == n-1
	})

	// A fixed version (KRW) supersedes its parked one.
	if code := call(t, st.key, http.MethodPut, "/v1/products/"+fixed.SKU, map[string]any{"name": "Mug", "price": map[string]any{"amount": 15000, "currency": "KRW"}, "stock": 3}, nil); code != http.StatusOK {
		t.Fatalf("fix %s: %d", fixed.SKU, code)
	}
	eventually(t, time.Minute, "the fixed version reaches bazaar and leaves the parking lot", func() bool {
		status, v, _ := syncOf(fixed.SKU)
		return status == catalog.SyncSynced && v == 2 && parkedCount() == n-2 && stateParked(t, wfID, ch.ID) == n-2
	})
	if l := stack.sims.Markets["bazaar"].Listings(credentials(st.t.Name, "bazaar"))[fixed.SKU]; l.Version != 2 || l.AmountMinor != 15000 {
		t.Fatalf("bazaar listing of %s: %+v", fixed.SKU, l)
	}

	cancelAndRecord(t, st.t.Name, fixed.SKU, "sync_bounded_20k_parked.json")
}

// stateParked is the parked count the shard's workflow holds for channel.
func stateParked(t *testing.T, wfID, channel string) int {
	t.Helper()
	v, err := stack.app.Temporal.QueryWorkflow(context.Background(), wfID, "", workflows.QueryStatus)
	if err != nil {
		t.Fatal(err)
	}
	var s workflows.SyncStatus
	if err := v.Get(&s); err != nil {
		t.Fatal(err)
	}
	return s.Channels[channel].Parked
}
