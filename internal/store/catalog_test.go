package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

func newCatalog(t *testing.T) (*store.Catalog, *store.Store, tenant.Tenant) {
	t.Helper()
	s := open(t)
	tn := newTenant(t)
	if err := s.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	return s.Catalog(tn.Schema), s, tn
}

func product(sku string, stock int64) catalog.Product {
	return catalog.Product{SKU: sku, Name: "Mug " + sku, Price: catalog.Money{Amount: 1200, Currency: "KRW"},
		Stock: stock, Attributes: map[string]string{"color": "blue"}}
}

func newChannel(t *testing.T, c *store.Catalog, market string) catalog.Channel {
	t.Helper()
	ch, err := c.CreateChannel(context.Background(), catalog.Channel{Market: market, BaseURL: "http://127.0.0.1:1/" + market,
		Credentials: "secret-" + market, RateLimitPerSec: 5})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

type outboxRow struct {
	messageID, exchange, routingKey, typ string
	payload                              []byte
}

func outboxRows(t *testing.T, s *store.Store, tn tenant.Tenant) []outboxRow {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT message_id::text, exchange, routing_key, type, payload FROM `+
		pgx.Identifier{tn.Schema, "outbox"}.Sanitize()+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
		var o outboxRow
		err := r.Scan(&o.messageID, &o.exchange, &o.routingKey, &o.typ, &o.payload)
		return o, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// parseOutbox checks the row as the ingest would and returns its product.
func parseOutbox(t *testing.T, o outboxRow, tn tenant.Tenant, traceID string) catalog.Product {
	t.Helper()
	env, p, err := catalog.ParseChange(o.payload, o.routingKey)
	if err != nil {
		t.Fatalf("outbox payload does not parse: %v\n%s", err, o.payload)
	}
	if o.exchange != catalog.Exchange || o.routingKey != catalog.RoutingKey(tn.Name) || o.typ != catalog.TypeProductChanged {
		t.Fatalf("outbox row goes to %s %s as %s", o.exchange, o.routingKey, o.typ)
	}
	if env.MessageID != o.messageID || env.TenantID != tn.Name || env.TraceID != traceID || time.Since(env.OccurredAt) > time.Minute {
		t.Fatalf("envelope %+v, want message id %s, tenant %s, trace %q, occurred now", env, o.messageID, tn.Name, traceID)
	}
	return p
}

func TestPutProduct_versions_each_change_and_announces_it_in_the_outbox(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, env.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN "+store.OutboxChannel); err != nil {
		t.Fatal(err)
	}

	in := product("MUG-1", 5)
	in.Version = 42 // ignored
	got, changed, err := c.PutProduct(ctx, tn.Name, in, "trace-1")
	if err != nil || !changed || got.Version != 1 {
		t.Fatalf("first put = %+v, %v, %v; want version 1, changed", got, changed, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		n, err := listener.WaitForNotification(waitCtx)
		if err != nil {
			t.Fatalf("no notification on %s: %v", store.OutboxChannel, err)
		}
		if n.Payload == tn.Schema {
			break
		}
	}
	rows := outboxRows(t, s, tn)
	if len(rows) != 1 {
		t.Fatalf("%d outbox rows after the first put, want 1", len(rows))
	}
	if p := parseOutbox(t, rows[0], tn, "trace-1"); p.Version != 1 || p.Stock != 5 || p.Attributes["color"] != "blue" {
		t.Fatalf("announced product %+v", p)
	}

	t.Run("same_content_writes_nothing", func(t *testing.T) {
		again := product("MUG-1", 5)
		again.Version = 7
		got, changed, err := c.PutProduct(ctx, tn.Name, again, "trace-2")
		if err != nil || changed || got.Version != 1 {
			t.Fatalf("repeated put = %+v, %v, %v; want version 1, unchanged", got, changed, err)
		}
		if n := len(outboxRows(t, s, tn)); n != 1 {
			t.Fatalf("%d outbox rows after an idempotent put, want 1", n)
		}
	})

	t.Run("a_change_gets_the_next_version", func(t *testing.T) {
		next := product("MUG-1", 5)
		next.Attributes["size"] = "L"
		got, changed, err := c.PutProduct(ctx, tn.Name, next, "")
		if err != nil || !changed || got.Version != 2 {
			t.Fatalf("changed put = %+v, %v, %v; want version 2", got, changed, err)
		}
		rows := outboxRows(t, s, tn)
		if len(rows) != 2 {
			t.Fatalf("%d outbox rows, want 2", len(rows))
		}
		if p := parseOutbox(t, rows[1], tn, ""); p.Version != 2 || p.Attributes["size"] != "L" {
			t.Fatalf("announced product %+v", p)
		}
		stored, err := c.Product(ctx, "MUG-1")
		if err != nil || stored.Version != 2 || stored.Attributes["size"] != "L" {
			t.Fatalf("Product = %+v, %v", stored, err)
		}
	})

	t.Run("no_attributes_read_back_as_empty", func(t *testing.T) {
		bare := product("MUG-2", 1)
		bare.Attributes = nil
		if _, _, err := c.PutProduct(ctx, tn.Name, bare, ""); err != nil {
			t.Fatal(err)
		}
		bare.Attributes = map[string]string{}
		got, changed, err := c.PutProduct(ctx, tn.Name, bare, "")
		if err != nil || changed || got.Attributes == nil || got.Version != 1 {
			t.Fatalf("put of {} after nil = %+v, %v, %v; want unchanged", got, changed, err)
		}
	})

	t.Run("invalid_product_is_refused", func(t *testing.T) {
		bad := product("bad sku", 1)
		if _, _, err := c.PutProduct(ctx, tn.Name, bad, ""); !errors.Is(err, catalog.ErrInvalid) {
			t.Fatalf("invalid product: %v, want ErrInvalid", err)
		}
	})

	if _, err := c.Product(ctx, "NOPE"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("unknown sku: %v, want ErrNotFound", err)
	}
}

func TestPutProduct_concurrent_puts_get_consecutive_versions(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	const n = 24
	versions := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Every put differs in stock, so each is a change; the first of
			// them inserts the new SKU while the others race it.
			p, changed, err := c.PutProduct(ctx, tn.Name, product("RACE-1", int64(i)), "")
			if err != nil || !changed {
				t.Errorf("put %d: changed=%v err=%v", i, changed, err)
				return
			}
			versions[i] = p.Version
		})
	}
	wg.Wait()
	slices.Sort(versions)
	for i, v := range versions {
		if v != int64(i+1) {
			t.Fatalf("versions %v, want 1..%d each once", versions, n)
		}
	}
	rows := outboxRows(t, s, tn)
	if len(rows) != n {
		t.Fatalf("%d outbox rows, want %d", len(rows), n)
	}
	announced := make([]int64, 0, n)
	for _, o := range rows {
		announced = append(announced, parseOutbox(t, o, tn, "").Version)
	}
	// The relay publishes in id order, so the versions must come in order.
	if !slices.IsSorted(announced) || announced[n-1] != n {
		t.Fatalf("outbox versions in id order %v, want 1..%d", announced, n)
	}
	if p, err := c.Product(ctx, "RACE-1"); err != nil || p.Version != n {
		t.Fatalf("stored %+v, %v; want version %d", p, err, n)
	}
}

func TestApplyChanges_stores_only_newer_versions(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	if _, _, err := c.PutProduct(ctx, tn.Name, product("A", 1), ""); err != nil {
		t.Fatal(err)
	}
	at := func(sku string, stock, version int64) catalog.Product {
		p := product(sku, stock)
		p.Version = version
		return p
	}
	tests := []struct {
		name    string
		changes []catalog.Product
		want    int
		wantA   catalog.Product
	}{
		{"newest_of_duplicates_wins", []catalog.Product{at("A", 30, 3), at("A", 20, 2), at("B", 10, 1), at("A", 40, 1)}, 2, at("A", 30, 3)},
		{"older_and_same_versions_are_skipped", []catalog.Product{at("A", 21, 2), at("A", 31, 3), at("B", 11, 1)}, 0, at("A", 30, 3)},
		{"a_newer_one_is_applied", []catalog.Product{at("A", 50, 5)}, 1, at("A", 50, 5)},
		{"nothing_to_apply", nil, 0, at("A", 50, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := c.ApplyChanges(ctx, tt.changes)
			if err != nil || n != tt.want {
				t.Fatalf("ApplyChanges = %d, %v; want %d", n, err, tt.want)
			}
			got, err := c.Product(ctx, "A")
			if err != nil || got.Version != tt.wantA.Version || got.Stock != tt.wantA.Stock {
				t.Fatalf("A = %+v, %v; want version %d stock %d", got, err, tt.wantA.Version, tt.wantA.Stock)
			}
		})
	}
	if n := len(outboxRows(t, s, tn)); n != 1 {
		t.Fatalf("%d outbox rows, want only the put's", n)
	}
	got, err := c.Products(ctx, []string{"A", "B", "MISSING"})
	if err != nil || len(got) != 2 || got["B"].Version != 1 || got["B"].Stock != 10 || got["A"].Version != 5 {
		t.Fatalf("Products = %+v, %v", got, err)
	}
	if p, changed, err := c.PutProduct(ctx, tn.Name, product("A", 99), ""); err != nil || !changed || p.Version != 6 {
		t.Fatalf("put after applied changes = %+v, %v, %v; want version 6", p, changed, err)
	}
	if got, err := c.Products(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Products(nil) = %v, %v", got, err)
	}
}

func TestChannels_are_stored_with_their_credentials(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	a := newChannel(t, c, "alpha")
	b := newChannel(t, c, "beta")
	if _, err := uuid.Parse(a.ID); err != nil || a.CreatedAt.IsZero() {
		t.Fatalf("created channel %+v", a)
	}
	got, err := c.Channel(ctx, a.ID)
	if err != nil || got.Market != "alpha" || got.Credentials != "secret-alpha" || got.RateLimitPerSec != 5 || got.BaseURL != a.BaseURL {
		t.Fatalf("Channel = %+v, %v", got, err)
	}
	all, err := c.Channels(ctx)
	if err != nil || len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID || all[1].Credentials != "secret-beta" {
		t.Fatalf("Channels = %+v, %v", all, err)
	}
}

func TestMarkSynced_never_lowers_a_version(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	a, b := newChannel(t, c, "alpha"), newChannel(t, c, "beta")
	if err := c.MarkSynced(ctx, a.ID, map[string]int64{"X": 3, "Y": 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkSynced(ctx, a.ID, map[string]int64{"X": 2, "Y": 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkSynced(ctx, b.ID, map[string]int64{"X": 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.MarkSynced(ctx, b.ID, nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.SyncedVersions(ctx, a.ID, []string{"X", "Y", "Z"})
	if err != nil || len(got) != 2 || got["X"] != 3 || got["Y"] != 2 {
		t.Fatalf("SyncedVersions = %v, %v; want X:3 Y:2", got, err)
	}
	byChannel, err := c.SyncedByChannel(ctx, "X")
	if err != nil || len(byChannel) != 2 || byChannel[a.ID] != 3 || byChannel[b.ID] != 1 {
		t.Fatalf("SyncedByChannel = %v, %v", byChannel, err)
	}
	if err := c.MarkSynced(ctx, uuid.NewString(), map[string]int64{"X": 1}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("mark on an unknown channel: %v, want ErrNotFound", err)
	}
}

func TestPark_keeps_one_row_per_channel_and_sku(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	ch := newChannel(t, c, "alpha")
	first, err := c.Park(ctx, catalog.ParkedItem{SKU: "P-1", ChannelID: ch.ID, Market: "alpha", Version: 2,
		Error: "timeout", Attempts: 5, WorkflowID: "wf-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(first.ID); err != nil || first.Since.IsZero() || first.WorkflowID != "wf-1" || first.Market != "alpha" {
		t.Fatalf("parked %+v", first)
	}
	again, err := c.Park(ctx, catalog.ParkedItem{SKU: "P-1", ChannelID: ch.ID, Market: "alpha", Version: 3,
		Error: "rejected", Attempts: 1, WorkflowID: "wf-2", Since: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || !again.Since.Equal(first.Since) || again.Version != 3 || again.Error != "rejected" ||
		again.Attempts != 1 || again.WorkflowID != "wf-2" {
		t.Fatalf("parked again %+v, want the same row (%s, since %v) updated", again, first.ID, first.Since)
	}
	older := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	other, err := c.Park(ctx, catalog.ParkedItem{SKU: "P-2", ChannelID: ch.ID, Market: "alpha", Version: 1, Error: "e", Since: older})
	if err != nil || !other.Since.Equal(older) {
		t.Fatalf("parked with a since = %+v, %v", other, err)
	}
	items, err := c.ParkedItems(ctx, 0)
	if err != nil || len(items) != 2 || items[0].ID != other.ID || items[1].ID != first.ID {
		t.Fatalf("ParkedItems = %+v, %v; want P-2 then P-1", items, err)
	}
	if items, err := c.ParkedItems(ctx, 1); err != nil || len(items) != 1 || items[0].ID != other.ID {
		t.Fatalf("ParkedItems(1) = %+v, %v", items, err)
	}
	if items, err := c.ParkedBySKU(ctx, "P-1"); err != nil || len(items) != 1 || items[0].ID != first.ID {
		t.Fatalf("ParkedBySKU = %+v, %v", items, err)
	}
	got, err := c.ParkedItem(ctx, first.ID)
	if err != nil || got.ID != again.ID || got.Version != again.Version || got.WorkflowID != "wf-2" || got.ChannelID != ch.ID {
		t.Fatalf("ParkedItem = %+v, %v", got, err)
	}
	for range 2 {
		if err := c.Unpark(ctx, first.ID); err != nil {
			t.Fatalf("unpark: %v", err)
		}
	}
	if _, err := c.ParkedItem(ctx, first.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("unparked item: %v, want ErrNotFound", err)
	}
	if _, err := c.Park(ctx, catalog.ParkedItem{SKU: "P-3", ChannelID: uuid.NewString(), Market: "alpha", Version: 1}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("park on an unknown channel: %v, want ErrNotFound", err)
	}
}

func TestDeleteChannel_deletes_its_synced_versions_and_parked_items(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	gone, kept := newChannel(t, c, "alpha"), newChannel(t, c, "beta")
	for _, ch := range []catalog.Channel{gone, kept} {
		if err := c.MarkSynced(ctx, ch.ID, map[string]int64{"D-1": 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Park(ctx, catalog.ParkedItem{SKU: "D-2", ChannelID: ch.ID, Market: ch.Market, Version: 1, Error: "e"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteChannel(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteChannel(ctx, gone.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := c.Channel(ctx, gone.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("deleted channel: %v, want ErrNotFound", err)
	}
	if byChannel, err := c.SyncedByChannel(ctx, "D-1"); err != nil || len(byChannel) != 1 || byChannel[kept.ID] != 1 {
		t.Fatalf("SyncedByChannel = %v, %v; want only the kept channel", byChannel, err)
	}
	items, err := c.ParkedItems(ctx, 0)
	if err != nil || len(items) != 1 || items[0].ChannelID != kept.ID {
		t.Fatalf("ParkedItems = %+v, %v; want only the kept channel's", items, err)
	}
	if err := c.MarkSynced(ctx, gone.ID, map[string]int64{"D-1": 2}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("mark on a deleted channel: %v, want ErrNotFound", err)
	}
}

func TestCatalog_malformed_ids_are_not_found(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	for _, tt := range []struct{ name, id string }{
		{"empty", ""},
		{"not_a_uuid", "not-a-uuid"},
		{"sql", "'; DROP TABLE channels; --"},
		{"urn_form", "urn:uuid:" + uuid.NewString()},
		{"unknown_uuid", uuid.NewString()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Channel(ctx, tt.id); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("Channel: %v", err)
			}
			if err := c.DeleteChannel(ctx, tt.id); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("DeleteChannel: %v", err)
			}
			if _, err := c.ParkedItem(ctx, tt.id); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("ParkedItem: %v", err)
			}
			if err := c.Unpark(ctx, tt.id); err != nil {
				t.Errorf("Unpark: %v", err)
			}
			if got, err := c.SyncedVersions(ctx, tt.id, []string{"X"}); err != nil || len(got) != 0 {
				t.Errorf("SyncedVersions = %v, %v", got, err)
			}
			if err := c.MarkSynced(ctx, tt.id, map[string]int64{"X": 1}); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("MarkSynced: %v", err)
			}
			if _, err := c.Park(ctx, catalog.ParkedItem{SKU: "X", ChannelID: tt.id, Market: "m", Version: 1}); !errors.Is(err, catalog.ErrNotFound) {
				t.Errorf("Park: %v", err)
			}
		})
	}
}

func TestCatalog_tenants_never_see_each_other(t *testing.T) {
	t.Parallel()
	a, s, ta := newCatalog(t)
	tb := newTenant(t)
	ctx := context.Background()
	if err := s.CreateTenant(ctx, tb); err != nil {
		t.Fatal(err)
	}
	b := s.Catalog(tb.Schema)
	if _, _, err := a.PutProduct(ctx, ta.Name, product("SHARED", 1), ""); err != nil {
		t.Fatal(err)
	}
	ch := newChannel(t, a, "alpha")
	if err := a.MarkSynced(ctx, ch.ID, map[string]int64{"SHARED": 1}); err != nil {
		t.Fatal(err)
	}
	parked, err := a.Park(ctx, catalog.ParkedItem{SKU: "SHARED", ChannelID: ch.ID, Market: "alpha", Version: 1, Error: "e"})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := b.Product(ctx, "SHARED"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("B reads A's product: %v", err)
	}
	if got, err := b.Products(ctx, []string{"SHARED"}); err != nil || len(got) != 0 {
		t.Errorf("B lists A's products: %v, %v", got, err)
	}
	if chs, err := b.Channels(ctx); err != nil || len(chs) != 0 {
		t.Errorf("B lists A's channels: %v, %v", chs, err)
	}
	if _, err := b.Channel(ctx, ch.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("B reads A's channel: %v", err)
	}
	if err := b.DeleteChannel(ctx, ch.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("B deletes A's channel: %v", err)
	}
	if got, err := b.SyncedByChannel(ctx, "SHARED"); err != nil || len(got) != 0 {
		t.Errorf("B reads A's synced versions: %v, %v", got, err)
	}
	if got, err := b.SyncedVersions(ctx, ch.ID, []string{"SHARED"}); err != nil || len(got) != 0 {
		t.Errorf("B reads A's synced versions: %v, %v", got, err)
	}
	if err := b.MarkSynced(ctx, ch.ID, map[string]int64{"SHARED": 9}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("B marks on A's channel: %v", err)
	}
	if items, err := b.ParkedItems(ctx, 0); err != nil || len(items) != 0 {
		t.Errorf("B lists A's parked items: %v, %v", items, err)
	}
	if _, err := b.ParkedItem(ctx, parked.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("B reads A's parked item: %v", err)
	}
	if err := b.Unpark(ctx, parked.ID); err != nil {
		t.Errorf("B unparks A's item: %v", err)
	}
	if n, err := b.ApplyChanges(ctx, []catalog.Product{{SKU: "SHARED", Name: "B's", Price: catalog.Money{Amount: 1, Currency: "KRW"}, Version: 9}}); err != nil || n != 1 {
		t.Errorf("B's own change of SKU SHARED = %d, %v", n, err)
	}

	// A's rows are untouched by all of B's calls.
	if p, err := a.Product(ctx, "SHARED"); err != nil || p.Version != 1 || p.Name != "Mug SHARED" {
		t.Errorf("A's product = %+v, %v", p, err)
	}
	if _, err := a.ParkedItem(ctx, parked.ID); err != nil {
		t.Errorf("A's parked item after B's unpark: %v", err)
	}
	if got, err := a.SyncedVersions(ctx, ch.ID, []string{"SHARED"}); err != nil || got["SHARED"] != 1 {
		t.Errorf("A's synced versions = %v, %v", got, err)
	}
	if n := len(outboxRows(t, s, tb)); n != 0 {
		t.Errorf("B's outbox has %d rows from A's put", n)
	}
}

func TestStore_ApplyChanges_writes_into_the_named_schema(t *testing.T) {
	t.Parallel()
	c, s, tn := newCatalog(t)
	ctx := context.Background()
	p := product("VIA-STORE", 3)
	p.Version = 4
	if n, err := s.ApplyChanges(ctx, tn.Schema, []catalog.Product{p}); err != nil || n != 1 {
		t.Fatalf("Store.ApplyChanges = %d, %v", n, err)
	}
	if got, err := c.Product(ctx, "VIA-STORE"); err != nil || got.Version != 4 {
		t.Fatalf("Product = %+v, %v", got, err)
	}
}

// The queries a bounded sync run uses instead of holding parked items:
// pages with a keyset cursor, parked versions, unparking what a synced
// version supersedes, and counts per workflow.
func TestParked_pages_counts_and_supersedes(t *testing.T) {
	t.Parallel()
	c, _, _ := newCatalog(t)
	ctx := context.Background()
	ch := newChannel(t, c, "alpha")
	since := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	for i := range 5 { // one instant for all: the id breaks the tie
		if _, err := c.Park(ctx, catalog.ParkedItem{SKU: fmt.Sprintf("P-%d", i), ChannelID: ch.ID, Market: "alpha", Version: 2, Error: "e", WorkflowID: "wf-1", Since: since}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Park(ctx, catalog.ParkedItem{SKU: "Q-1", ChannelID: ch.ID, Market: "alpha", Version: 1, Error: "e", WorkflowID: "wf-2"}); err != nil {
		t.Fatal(err)
	}
	all := pageAll(t, 4, func(afterSince time.Time, afterID string) ([]catalog.ParkedItem, error) {
		return c.ParkedPage(ctx, catalog.ParkedFilter{}, 2, afterSince, afterID)
	}, func(it catalog.ParkedItem) (time.Time, string, string) { return it.Since, it.ID, it.SKU })
	distinct := map[string]bool{}
	for _, sku := range all {
		distinct[sku] = true
	}
	if len(all) != 6 || len(distinct) != 6 || all[5] != "Q-1" {
		t.Fatalf("paged %v: want the 5 P- (in id order) then Q-1, each once", all)
	}
	counts, err := c.ParkedCounts(ctx, "wf-1")
	if err != nil || counts[ch.ID] != 5 || len(counts) != 1 {
		t.Fatalf("ParkedCounts = %v, %v", counts, err)
	}
	vs, err := c.ParkedVersions(ctx, ch.ID, []string{"P-0", "P-1", "NONE"})
	if err != nil || len(vs) != 2 || vs["P-0"] != 2 {
		t.Fatalf("ParkedVersions = %v, %v", vs, err)
	}
	// Synced at 2 supersedes P-0 (parked at 2); at 1, not P-1 (parked at 2).
	n, err := c.UnparkSynced(ctx, ch.ID, map[string]int64{"P-0": 2, "P-1": 1, "NONE": 9})
	if err != nil || n != 1 {
		t.Fatalf("UnparkSynced = %d, %v; want 1", n, err)
	}
	if counts, _ := c.ParkedCounts(ctx, "wf-1"); counts[ch.ID] != 4 {
		t.Fatalf("after UnparkSynced: %v", counts)
	}
}
