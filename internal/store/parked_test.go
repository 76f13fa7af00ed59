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
