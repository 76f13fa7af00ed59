package activities

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/market"
)

// applyAll is a market that applies every item, or fails every call with
// err.
type applyAll struct{ err error }

func (m applyAll) Push(_ context.Context, _ market.Target, items []market.Item) ([]market.Result, error) {
	if m.err != nil {
		return nil, m.err
	}
	out := make([]market.Result, len(items))
	for i, it := range items {
		out[i] = market.Result{SKU: it.Product.SKU, Version: it.Product.Version, Outcome: market.Applied}
	}
	return out, nil
}

// lingerFixture is a tenant with a channel and n products, and the push of
// them all.
func lingerFixture(t *testing.T, n int) (CatalogStore, PushInput) {
	t.Helper()
	_, tn := storeActivities(t)
	ctx := context.Background()
	cat := infra.store.Catalog(tn.Schema)
	ch, err := cat.CreateChannel(ctx, catalog.Channel{Market: "shopwave", BaseURL: "http://127.0.0.1:1", Credentials: "k", RateLimitPerSec: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := PushInput{Tenant: tn.Name, Schema: tn.Schema, ChannelID: ch.ID}
	for i := range n {
		p, _, err := cat.PutProduct(ctx, tn.Name, catalog.Product{SKU: fmt.Sprintf("SKU-%d", i), Name: "n",
			Price: catalog.Money{Amount: 100, Currency: "KRW"}, Stock: 1, Attributes: map[string]string{}}, "")
		if err != nil {
			t.Fatal(err)
		}
		in.Items = append(in.Items, SKUVersion{SKU: p.SKU, Version: p.Version})
	}
	return cat, in
}

func lingering(cat CatalogStore, m Markets, linger time.Duration, batch int) *SyncActivities {
	return &SyncActivities{
		Catalog: func(string) CatalogStore { return cat },
		Markets: m, Linger: linger, Batch: batch,
	}
}

// A push of less than a full batch returns no sooner than Linger after it
// started, and what it applied is recorded before it waits: the channel's
// next push, not the market's state, is what the linger holds back.
func TestPushProducts_a_partial_batch_lingers_after_recording_what_it_applied(t *testing.T) {
	cat, in := lingerFixture(t, 3)
	const linger = 400 * time.Millisecond
	a := lingering(cat, applyAll{}, linger, 10)
	env := new(testsuite.WorkflowTestSuite).NewTestActivityEnvironment()
	env.RegisterActivity(a)

	type done struct {
		res PushResult
		err error
		at  time.Duration
	}
	t0 := time.Now()
	finished := make(chan done, 1)
	go func() {
		v, err := env.ExecuteActivity(a.PushProducts, in)
		var res PushResult
		if err == nil {
			err = v.Get(&res)
		}
		finished <- done{res, err, time.Since(t0)}
	}()
	skus := []string{in.Items[0].SKU, in.Items[1].SKU, in.Items[2].SKU}
	for {
		synced, err := cat.SyncedVersions(context.Background(), in.ChannelID, skus)
		if err != nil {
			t.Fatal(err)
		}
		if len(synced) == len(skus) {
			break
		}
		select {
		case d := <-finished:
			t.Fatalf("the push ended (%v, %v) before its versions were recorded", d.res, d.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	recorded := time.Since(t0)
	d := <-finished
	if d.err != nil || len(d.res.Synced) != len(skus) {
		t.Fatalf("push = %+v, %v; want every SKU synced", d.res, d.err)
	}
	if d.at < linger {
		t.Fatalf("a push of 3 SKUs (batch 10) returned after %s, before its linger of %s", d.at, linger)
	}
	if recorded >= linger {
		t.Fatalf("the versions were recorded only after %s, not before the linger of %s", recorded, linger)
	}
}

// A full push (a backlog), a push that failed, and a push whose context
// ends do not wait out the linger.
func TestPushProducts_does_not_linger_when_full_failed_or_cancelled(t *testing.T) {
	const linger = time.Minute // any wait for it fails the test's timeout
	for _, tc := range []struct {
		name    string
		market  Markets
		batch   int
		cancel  bool
		wantErr bool
	}{
		{name: "full batch", market: applyAll{}, batch: 3},
		{name: "market refused the call", market: applyAll{err: &market.RejectedError{Market: "shopwave", Status: 401, Message: "unauthorized"}}, batch: 10, wantErr: true},
		{name: "context ended", market: applyAll{}, batch: 10, cancel: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat, in := lingerFixture(t, 3)
			a := lingering(cat, tc.market, linger, tc.batch)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if tc.cancel {
				go func() {
					time.Sleep(200 * time.Millisecond)
					cancel()
				}()
			}
			t0 := time.Now()
			res, err := a.PushProducts(ctx, in)
			if elapsed := time.Since(t0); elapsed > 10*time.Second {
				t.Fatalf("returned after %s: it waited for the linger", elapsed)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("a refused call returned no error")
				}
				return
			}
			if err != nil || len(res.Synced) != 3 {
				t.Fatalf("push = %+v, %v; want 3 SKUs synced", res, err)
			}
			if tc.cancel && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Fatal("the test's own deadline ended the push, not the cancellation")
			}
		})
	}
}

// The pushes that linger at once are bounded per process: a push that
// finds the budget full returns at once, so lingering pushes never hold more
// than their share of a worker's activity slots, whatever one tenant's
// channel count. The place is given back when the linger ends.
func TestPushProducts_lingers_within_the_process_budget(t *testing.T) {
	const linger = 1500 * time.Millisecond
	budget := NewLingerBudget(1)
	push := func(cat CatalogStore, in PushInput) time.Duration {
		a := lingering(cat, applyAll{}, linger, 10)
		a.Lingering = budget
		t0 := time.Now()
		if res, err := a.PushProducts(context.Background(), in); err != nil || len(res.Synced) != len(in.Items) {
			t.Errorf("push = %+v, %v", res, err)
		}
		return time.Since(t0)
	}
	cat1, in1 := lingerFixture(t, 2)
	cat2, in2 := lingerFixture(t, 2)
	first := make(chan time.Duration, 1)
	go func() { first <- push(cat1, in1) }()
	time.Sleep(linger / 3) // the first push holds the budget's one place
	if d := push(cat2, in2); d >= linger {
		t.Fatalf("a push with the budget full returned after %s, lingering (%s)", d, linger)
	}
	if d := <-first; d < linger {
		t.Fatalf("the push holding the budget returned after %s, before its linger of %s", d, linger)
	}
	// (A push of what the channel holds already writes nothing and does
	// not linger: each push below has SKUs of its own.)
	if cat3, in3 := lingerFixture(t, 2); push(cat3, in3) < linger {
		t.Fatal("once the budget was free again, a push returned without lingering")
	}
	budget = NewLingerBudget(0)
	if cat4, in4 := lingerFixture(t, 2); push(cat4, in4) >= linger {
		t.Fatal("with a budget of 0 a push lingered")
	}
}
