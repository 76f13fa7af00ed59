package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

// A catalogue of SKUs of every form the hash meets (ASCII, Hangul, an
// emoji, a long one), some of which the channel holds at the current
// version, some at an older one, some not at all.
func seedBackfill(t *testing.T, c *store.Catalog, tn tenant.Tenant, ch catalog.Channel) (lacking map[string]int64, total int) {
	t.Helper()
	ctx := context.Background()
	var ps []catalog.Product
	for i := range 240 {
		sku := fmt.Sprintf("SKU-%04d", i)
		switch i % 8 {
		case 3:
			sku = fmt.Sprintf("머그컵-%d", i)
		case 5:
			sku = fmt.Sprintf("mug-☕-%d", i)
		case 7:
			sku = strings.Repeat("L", 60) + fmt.Sprint(i)
		}
		p := product(sku, int64(i))
		p.Version = int64(1 + i%3)
		ps = append(ps, p)
	}
	if _, err := c.ApplyChanges(ctx, ps); err != nil {
		t.Fatal(err)
	}
	// One through the API's path too (version 1).
	put, _, err := c.PutProduct(ctx, tn.Name, product("PUT-1", 1), "")
	if err != nil {
		t.Fatal(err)
	}
	ps = append(ps, put)

	held := map[string]int64{}
	lacking = map[string]int64{}
	for i, p := range ps {
		switch i % 4 {
		case 0: // held at the current version
			held[p.SKU] = p.Version
		case 1: // held at an older one, when there is one
			if p.Version > 1 {
				held[p.SKU] = p.Version - 1
			}
			lacking[p.SKU] = p.Version
		default: // not held
			lacking[p.SKU] = p.Version
		}
	}
	if err := c.MarkSynced(ctx, ch.ID, held); err != nil {
		t.Fatal(err)
	}
	return lacking, len(ps)
}

func TestUnsynced_reads_the_shard_and_what_the_channel_lacks(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	ch := newChannel(t, c, "alpha")
	lacking, total := seedBackfill(t, c, tn, ch)

	for _, shards := range []int{1, 3, 8} {
		found := map[string]int64{}
		scanned := 0
		for shard := range shards {
			after, reads := "", 0
			for {
				const window = 50
				w, err := c.Unsynced(ctx, ch.ID, after, shard, shards, window)
				if err != nil {
					t.Fatal(err)
				}
				reads++
				for _, h := range w.Lacking {
					if got := catalog.Shard(h.SKU, shards); got != shard {
						t.Fatalf("shards %d: shard %d read %s of shard %d", shards, shard, h.SKU, got)
					}
					if h.SKU <= after || h.SKU > w.Last {
						t.Fatalf("%s outside the stretch (%q, %q]", h.SKU, after, w.Last)
					}
					if h.Held >= h.Version {
						t.Fatalf("%s: held %d, current %d: the channel does not lack it", h.SKU, h.Held, h.Version)
					}
					if _, dup := found[h.SKU]; dup {
						t.Fatalf("%s read twice", h.SKU)
					}
					found[h.SKU] = h.Version
				}
				if shard == 0 {
					scanned += w.Scanned
				}
				if w.Scanned < window {
					break
				}
				after = w.Last
				if reads > total {
					t.Fatal("the reads never end")
				}
			}
		}
		if scanned != total {
			t.Errorf("shards %d: the stretches of one shard looked at %d products, want the catalogue's %d", shards, scanned, total)
		}
		if len(found) != len(lacking) {
			t.Errorf("shards %d: %d lacking products found, want %d", shards, len(found), len(lacking))
		}
		for sku, v := range lacking {
			if found[sku] != v {
				t.Errorf("shards %d: %s found at version %d, want %d", shards, sku, found[sku], v)
			}
		}
	}

	// Past the end: an empty stretch; a stranger's channel: not found.
	var last string
	if err := s.Pool().QueryRow(ctx, `SELECT max(sku) FROM `+pgx.Identifier{tn.Schema, "products"}.Sanitize()).Scan(&last); err != nil {
		t.Fatal(err)
	}
	w, err := c.Unsynced(ctx, ch.ID, last, 0, 1, 50)
	if err != nil || w.Scanned != 0 || len(w.Lacking) != 0 || w.Last != "" {
		t.Fatalf("past the end: %+v, %v", w, err)
	}
	for _, id := range []string{"not-a-uuid", "", "00000000-0000-0000-0000-00000000000\x00"} {
		if _, err := c.Unsynced(ctx, id, "", 0, 1, 50); !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("channel %q: %v, want ErrNotFound", id, err)
		}
	}
}

// products.sku_hash is catalog.ShardHash on every write path, and the
// schema's fnv1a32 (which filled the rows that existed before the column)
// computes the same.
func TestSKUHash_the_database_and_catalog_agree(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	seedBackfill(t, c, tn, newChannel(t, c, "alpha"))
	table := pgx.Identifier{tn.Schema, "products"}.Sanitize()
	rows, err := s.Pool().Query(ctx, `SELECT sku, sku_hash, `+pgx.Identifier{tn.Schema, "fnv1a32"}.Sanitize()+`(sku) FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var sku string
	var stored, computed int64
	if _, err := pgx.ForEachRow(rows, []any{&sku, &stored, &computed}, func() error {
		n++
		if want := int64(catalog.ShardHash(sku)); stored != want || computed != want {
			return fmt.Errorf("%q: stored %d, fnv1a32 %d, catalog.ShardHash %d", sku, stored, computed, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n < 200 {
		t.Fatalf("%d rows checked", n)
	}
}

// A tenant whose products predate migration 007 gets their hashes when the
// store migrates.
func TestMigrate_fills_the_hash_of_existing_products(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	seedBackfill(t, c, tn, newChannel(t, c, "alpha"))
	undo(t, s, tn)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var wrong, all int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE sku_hash IS DISTINCT FROM `+pgx.Identifier{tn.Schema, "fnv1a32"}.Sanitize()+`(sku)), count(*) FROM `+
		pgx.Identifier{tn.Schema, "products"}.Sanitize()).Scan(&wrong, &all); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 || all < 200 {
		t.Fatalf("%d of %d products without their hash after the migration", wrong, all)
	}
	w, err := c.Unsynced(ctx, mustChannel(t, c), "", 1, 3, 1000)
	if err != nil || w.Scanned != all {
		t.Fatalf("Unsynced after the migration: %d scanned, %v", w.Scanned, err)
	}
}

// undo takes tenant tn's schema back to before migration 007.
func undo(t *testing.T, s *store.Store, tn tenant.Tenant) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE `+pgx.Identifier{tn.Schema, "products"}.Sanitize()+` DROP COLUMN sku_hash`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `DROP FUNCTION `+pgx.Identifier{tn.Schema, "fnv1a32"}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `DELETE FROM sagaflow.schema_migrations WHERE scope = $1 AND version = 7`, tn.Schema); err != nil {
		t.Fatal(err)
	}
}

func mustChannel(t *testing.T, c *store.Catalog) string {
	t.Helper()
	chs, err := c.Channels(context.Background())
	if err != nil || len(chs) == 0 {
		t.Fatalf("channels: %v, %v", chs, err)
	}
	return chs[0].ID
}
