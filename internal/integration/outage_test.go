package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// outageLength is how long the outage tests keep a server down
// (SAGAFLOW_OUTAGE, default 60 s: longer than every per-attempt timeout of
// every saga, so only a retry budget without end gets through it).
func outageLength(t testing.TB) time.Duration {
	if s := os.Getenv("SAGAFLOW_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SAGAFLOW_OUTAGE=%q: %v", s, err)
		}
		return d
	}
	return 60 * time.Second
}

// stackCmd runs deploy/stack.sh with args (stop postgres, start postgres,
// ...). It first checks that the stack's private PostgreSQL is the one this
// run uses: these tests never stop a server someone else gave us.
func stackCmd(t testing.TB, args ...string) {
	t.Helper()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	u, err := url.Parse(stack.app.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	pgPort := os.Getenv("SAGAFLOW_PG_PORT")
	if pgPort == "" {
		pgPort = "54320"
	}
	if h := u.Hostname(); (h != "127.0.0.1" && h != "localhost") || u.Port() != pgPort {
		t.Fatalf("this test stops the private PostgreSQL that deploy/stack.sh runs on 127.0.0.1:%s; DATABASE_URL names %s", pgPort, u.Host)
	}
	cmd := exec.Command(filepath.Join(root, "deploy", "stack.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/stack.sh %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestOutage_postgres_down_a_minute_every_saga_converges stops PostgreSQL
// for SAGAFLOW_OUTAGE (60 s) while joins, a coupon campaign and a sync run
// are in flight, then checks that each converges with its invariants: every
// accepted join terminal, no seat leaked, the gateway's ledger exact; the
// campaign's stock issued exactly, one per user, in rank order; every market
// at the latest version of every SKU, nothing parked.
func TestOutage_postgres_down_a_minute_every_saga_converges(t *testing.T) {
	outage := outageLength(t)
	report := testenv.Chaos(t, fmt.Sprintf("PostgreSQL down %s mid joins, campaign and sync", outage),
		"every accepted join ends; no seat leaked; ledger exact; coupon stock exact in rank order; every market at the latest version")
	resetSims(t)
	if err := stack.sims.Payments.SetConfig(sim.PaymentConfig{Latency: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	defer resetSims(t)
	run := testenv.RunID()

	// Joins: 4 meetings of 15 seats, more joins than seats.
	const meetings, capacity = 4, 15
	ms := make([]meeting.Meeting, meetings)
	fee := map[string]int64{}
	for i := range ms {
		ms[i] = createMeeting(t, demoKey(), map[string]any{"title": fmt.Sprintf("outage %d", i), "capacity": capacity,
			"fee": map[string]any{"amount": 1000 * (i + 1), "currency": "KRW"}})
		fee[ms[i].ID] = int64(1000 * (i + 1))
	}
	// A campaign whose issuing is under way when PostgreSQL stops.
	c := createCampaign(t, 600, -time.Second, time.Hour)
	// A sync tenant on the three markets; the bus keeps bringing changes
	// through the outage (the publisher is another system: it does not know).
	markets := []string{"bazaar", "shopwave", "souk"}
	st := newSyncTenant(t, syncTenantName("out"), markets...)
	const skus = 100
	var verMu sync.Mutex
	latest := map[string]int64{}
	product := func(i int, v int64) catalog.Product {
		return catalog.Product{SKU: fmt.Sprintf("OUT-%03d", i), Name: fmt.Sprintf("outage product %d v%d", i, v),
			Price: catalog.Money{Amount: int64(1000 + 10*i), Currency: "KRW"}, Stock: int64(i), Version: v}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Joins, 5 at a time, until stop: those answered 202 must all end.
	b := &joinBurst{run: run, capacity: capacity, meetings: ms, fee: fee}
	var postedMu sync.Mutex
	var joinRefused atomic.Int64
	var seq atomic.Int64
	for range 5 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := seq.Add(1)
				m := ms[int(i)%meetings]
				var out struct {
					JoinID string `json:"join_id"`
				}
				code, err := rawCall(demoKey(), http.MethodPost, "/v1/meetings/"+m.ID+"/joins",
					map[string]any{"user_id": fmt.Sprintf("out-%s-%d", run, i), "payment_token": "tok_ok"}, &out,
					map[string]string{"Idempotency-Key": b.idemKey(int(i))})
				if err == nil && code == http.StatusAccepted {
					postedMu.Lock()
					b.joins = append(b.joins, postedJoin{out.JoinID, m.ID})
					postedMu.Unlock()
				} else {
					joinRefused.Add(1) // 503 while PostgreSQL is down: nothing accepted
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	// Bus changes, 25 versions of 25 SKUs every 100 ms, until stop.
	var published atomic.Int64
	wg.Go(func() {
		next := map[int]int64{}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			events := make([]busEvent, 0, 25)
			for j := range 25 {
				sku := (i*25 + j) % skus
				next[sku]++
				events = append(events, changeEvent(t, st.t.Name, product(sku, next[sku])))
			}
			publishAll(t, events, nil)
			published.Add(int64(len(events)))
			verMu.Lock()
			for sku, v := range next {
				latest[product(sku, v).SKU] = v
			}
			verMu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	})

	// The campaign's first burst: PostgreSQL stops while it runs.
	time.Sleep(2 * time.Second)
	downAt := time.Now()
	answers := burst(t, c.ID, 4000, 2000, 800, func() { stackCmd(t, "stop", "postgres") })
	report.Observe("%d coupon requests in the first burst", len(answers))
	time.Sleep(time.Until(downAt.Add(outage)))
	stackCmd(t, "start", "postgres")
	t.Logf("PostgreSQL was down %s", time.Since(downAt).Round(time.Second))
	// Once it is back: a second burst fills what is left of the stock.
	time.Sleep(3 * time.Second)
	answers = append(answers, burst(t, c.ID, 4000, 4000, -1, nil)...)
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	recovered := time.Now()

	// Joins: every accepted join terminal, then seats and money exact.
	byStatus := assertJoinInvariants(t, b, 4*time.Minute)
	if byStatus[meeting.JoinConfirmed] == 0 {
		t.Errorf("no join was confirmed: %v", byStatus)
	}
	report.Observe("joins: %d accepted %v, %d answered 503 while down", len(b.joins), byStatus, joinRefused.Load())

	// The campaign: exactly the stock, in order, one per user.
	checkCampaignRefusals(t, c, answers, false)

	// Sync: every market at the latest version of every SKU.
	var lag string
	testenv.Eventually(t, 4*time.Minute, "every market at the latest version", func() bool {
		verMu.Lock()
		defer verMu.Unlock()
		for _, m := range markets {
			listings := stack.sims.Markets[m].Listings(credentials(st.t.Name, m))
			behind := 0
			for sku, v := range latest {
				if listings[sku].Version != v {
					behind++
				}
			}
			if behind > 0 {
				lag = fmt.Sprintf("%s: %d of %d SKUs behind", m, behind, len(latest))
				return false
			}
		}
		return true
	})
	var dlq struct{ Items []parkedDoc }
	if code := call(t, st.key, http.MethodGet, "/v1/dlq", nil, &dlq); code != http.StatusOK || len(dlq.Items) != 0 {
		t.Errorf("parking lot after the outage: %d %+v", code, dlq.Items)
	}
	report.Observe("%d bus changes", published.Load())
	report.Observe("all converged %s after PostgreSQL came back", time.Since(recovered).Round(time.Second))
	t.Logf("converged %s after recovery (%s)", time.Since(recovered).Round(time.Second), lag)
}
