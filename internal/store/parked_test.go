package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// Each filter field of ParkedPage narrows the page; a channel id that is
// not a UUID selects nothing.
func TestParkedPage_filters(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	alpha, beta := newChannel(t, c, "alpha"), newChannel(t, c, "beta")
	old := time.Now().Add(-2 * time.Hour).Truncate(time.Microsecond)
	for _, it := range []catalog.ParkedItem{
		{SKU: "A-1", ChannelID: alpha.ID, Market: "alpha", Since: old},
		{SKU: "A-2", ChannelID: alpha.ID, Market: "alpha"},
		{SKU: "A-1", ChannelID: beta.ID, Market: "beta"},
	} {
		it.Version, it.Error = 1, "e"
		if _, err := c.Park(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    catalog.ParkedFilter
		want int
	}{
		{"none", catalog.ParkedFilter{}, 3},
		{"market", catalog.ParkedFilter{Market: "beta"}, 1},
		{"channel", catalog.ParkedFilter{ChannelID: alpha.ID}, 2},
		{"channel_not_a_uuid", catalog.ParkedFilter{ChannelID: "nope"}, 0},
		{"sku", catalog.ParkedFilter{SKU: "A-1"}, 2},
		{"since", catalog.ParkedFilter{Since: old.Add(time.Minute)}, 2},
		{"since_inclusive", catalog.ParkedFilter{Since: old, SKU: "A-1", Market: "alpha"}, 1},
		{"all_fields", catalog.ParkedFilter{Market: "alpha", ChannelID: alpha.ID, SKU: "A-2", Since: old}, 1},
		{"unknown_market", catalog.ParkedFilter{Market: "gamma"}, 0},
	}
	for _, tt := range tests {
		items, err := c.ParkedPage(ctx, tt.f, 100, time.Time{}, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != tt.want {
			t.Errorf("%s: %d items %+v, want %d", tt.name, len(items), items, tt.want)
		}
		for _, it := range items {
			if !tt.f.Matches(it) {
				t.Errorf("%s: %+v does not match the filter", tt.name, it)
			}
		}
	}
}

// A parked item carries the trace id of the change that made its version,
// from the API (PutProduct) or the bus (ApplyChanges), while its product
// still holds that version.
func TestParked_items_carry_the_trace_id_of_their_version(t *testing.T) {
	t.Parallel()
	c, _, tn := newCatalog(t)
	ctx := context.Background()
	ch := newChannel(t, c, "alpha")
	const apiTrace, busTrace = "4bf92f3577b34da6a3ce929d0e0e4736", "external-trace-7"
	p, _, err := c.PutProduct(ctx, tn.Name, product("T-1", 1), apiTrace)
	if err != nil {
		t.Fatal(err)
	}
	bus := product("T-2", 1)
	bus.Version, bus.TraceID = 4, busTrace
	if _, err := c.ApplyChanges(ctx, []catalog.Product{bus}); err != nil {
		t.Fatal(err)
	}
	a, err := c.Park(ctx, catalog.ParkedItem{SKU: "T-1", ChannelID: ch.ID, Market: "alpha", Version: p.Version, Error: "e"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Park(ctx, catalog.ParkedItem{SKU: "T-2", ChannelID: ch.ID, Market: "alpha", Version: 4, Error: "e"}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ParkedItem(ctx, a.ID)
	if err != nil || got.TraceID != apiTrace {
		t.Fatalf("ParkedItem = %+v, %v; want trace %s", got, err, apiTrace)
	}
	page, err := c.ParkedPage(ctx, catalog.ParkedFilter{SKU: "T-2"}, 10, time.Time{}, "")
	if err != nil || len(page) != 1 || page[0].TraceID != busTrace {
		t.Fatalf("ParkedPage = %+v, %v; want trace %s", page, err, busTrace)
	}
	// A newer version of T-1: the parked (older) version's trace is gone.
	changed := product("T-1", 2)
	if _, _, err := c.PutProduct(ctx, tn.Name, changed, "0af7651916cd43dd8448eb211c80319c"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ParkedItem(ctx, a.ID); err != nil || got.TraceID != "" {
		t.Fatalf("after a newer version: %+v, %v; want no trace id", got, err)
	}
}
