package activities

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/sagaflow/sagaflow/internal/catalog"
)

// BackfillPage walks the catalogue in pages and returns, of the shard, what
// the channel does not hold at the current version: not what it holds, and
// each SKU once.
func TestBackfillPage_pages_through_what_the_channel_lacks(t *testing.T) {
	_, tn := storeActivities(t)
	a := &SyncActivities{Catalog: func(schema string) CatalogStore { return infra.store.Catalog(schema) }}
	ctx := context.Background()
	cat := infra.store.Catalog(tn.Schema)
	ch, err := cat.CreateChannel(ctx, catalog.Channel{Market: "shopwave", BaseURL: "http://127.0.0.1:1", Credentials: "k", RateLimitPerSec: 1})
	if err != nil {
		t.Fatal(err)
	}
	const shards = 4
	held := map[string]int64{}
	var want []string
	for i := range 60 {
		sku := fmt.Sprintf("SKU-%03d", i)
		p, _, err := cat.PutProduct(ctx, tn.Name, catalog.Product{SKU: sku, Name: "n", Price: catalog.Money{Amount: 100, Currency: "KRW"}, Stock: 1, Attributes: map[string]string{}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 { // a second version
			if p, _, err = cat.PutProduct(ctx, tn.Name, catalog.Product{SKU: sku, Name: "n2", Price: catalog.Money{Amount: 100, Currency: "KRW"}, Stock: 1, Attributes: map[string]string{}}, ""); err != nil {
				t.Fatal(err)
			}
		}
		switch i % 3 {
		case 0: // holds the current version: nothing to do
			held[sku] = p.Version
		case 1: // holds an older one, or none
			if p.Version > 1 {
				held[sku] = p.Version - 1
			}
		}
		if catalog.Shard(sku, shards) == 1 && held[sku] < p.Version {
			want = append(want, sku)
		}
	}
	if err := cat.MarkSynced(ctx, ch.ID, held); err != nil {
		t.Fatal(err)
	}
	if len(want) < 4 {
		t.Fatalf("only %d SKUs to catch up in shard 1: pick other SKUs", len(want))
	}

	var got []string
	in := BackfillInput{Schema: tn.Schema, ChannelID: ch.ID, Shard: 1, Shards: shards, Max: 3}
	for calls := 0; ; calls++ {
		if calls > 60 {
			t.Fatal("no end to the pages")
		}
		page, err := a.BackfillPage(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) > in.Max {
			t.Fatalf("page of %d, max %d", len(page.Items), in.Max)
		}
		for _, it := range page.Items {
			p, err := cat.Product(ctx, it.SKU)
			if err != nil || it.Version != p.Version {
				t.Fatalf("item %+v, product version %d %v", it, p.Version, err)
			}
			got = append(got, it.SKU)
		}
		if page.Done {
			break
		}
		if page.After <= in.After {
			t.Fatalf("cursor went from %q to %q", in.After, page.After)
		}
		in.After = page.After
	}
	if !slices.Equal(got, want) {
		t.Fatalf("caught up with %v, want %v", got, want)
	}
}

func TestBackfillPage_refuses_a_missing_shard_count_or_a_shard_outside_it(t *testing.T) {
	a := &SyncActivities{}
	for _, in := range []BackfillInput{{Max: 10}, {Shards: 4, Shard: 4, Max: 10}, {Shards: 4, Shard: -1, Max: 10}, {Shards: 4}} {
		if _, err := a.BackfillPage(context.Background(), in); !isNonRetryable(err, "BadInput") {
			t.Fatalf("%+v: err = %v, want a non-retryable BadInput", in, err)
		}
	}
}
