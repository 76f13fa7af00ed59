package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// The issue's lost change: PUT /v1/products/{sku} with "X-Request-Id: my
// trace" answered 200, and the relay then published an envelope whose
// trace_id the ingest refused, so the change was dead-lettered after the
// product had committed and no market ever got that version. Now the
// envelope's trace id is the request's W3C trace id: the change arrives.
func TestAPI_edge_a_product_put_with_an_odd_request_id_reaches_the_market(t *testing.T) {
	testenv.Chaos(t, "1. PUT /v1/products with X-Request-Id: my trace", "the change reaches the market; nothing is dead-lettered")
	st := newSyncTenant(t, syncTenantName("e"), "shopwave")
	const sku = "EDGE-1"
	put := func(amount int64, want int) {
		t.Helper()
		body := map[string]any{"name": "Edge mug", "price": map[string]any{"amount": amount, "currency": "KRW"}, "stock": 2}
		var p productDoc
		code := callWithHeaders(t, st.key, http.MethodPut, "/v1/products/"+sku, body, &p, map[string]string{"X-Request-Id": "my trace"})
		if code != want {
			t.Fatalf("put %s = %d %+v, want %d", sku, code, p, want)
		}
	}
	// Sequential (no t.Parallel): no other test publishes while this one
	// counts what the ingest dead-letters. The market alone would not tell:
	// the new channel's backfill can bring it the product from PostgreSQL.
	before := stack.ingestStats()
	put(15000, http.StatusCreated)
	put(17000, http.StatusOK)
	handled := func(s ingest.Stats) int64 { return s.Delivered + s.DeadLettered + s.Duplicates }
	eventually(t, time.Minute, "the ingest handles both changes", func() bool {
		return handled(stack.ingestStats())-handled(before) >= 2
	})
	if n := stack.ingestStats().DeadLettered - before.DeadLettered; n != 0 {
		t.Fatalf("the ingest dead-lettered %d changes the API had accepted", n)
	}
	eventually(t, time.Minute, "shopwave holds version 2 of the product put with X-Request-Id: my trace", func() bool {
		l := stack.sims.Markets["shopwave"].Listings(credentials(st.t.Name, "shopwave"))[sku]
		return l.Version == 2 && l.AmountMinor == 17000
	})
	// The market holds the version before the push records it: the push
	// writes to the market, then marks the channel's row. So the sync
	// status is waited for too, not read once (CI once read it in between).
	var s productSyncDoc
	eventually(t, time.Minute, "the product's sync status records version 2 as synced on every channel, none parked", func() bool {
		s = productSyncDoc{}
		if code := call(t, st.key, http.MethodGet, "/v1/products/"+sku+"/sync", nil, &s); code != http.StatusOK {
			t.Fatalf("sync status = %d", code)
		}
		for _, ch := range s.Channels {
			if ch.ParkedID != "" {
				t.Fatalf("channel %s: %+v, parked", ch.Market, ch)
			}
			if ch.SyncedVersion != 2 {
				return false
			}
		}
		return len(s.Channels) == 1
	})
}
