package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/testenv/servers"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func open(t *testing.T, opts ...store.Option) *store.Store {
	t.Helper()
	return servers.Store(t, env, append([]store.Option{store.WithDevSecrets()}, opts...)...)
}

func newTenant(t *testing.T) tenant.Tenant {
	t.Helper()
	tn, err := tenant.New("t" + testenv.RunID())
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

func TestMigrate_is_idempotent_and_safe_concurrently(t *testing.T) {
	s := open(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.Migrate(context.Background()) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
}

func TestCreateTenant_creates_schema_with_tenant_tables(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	tn := newTenant(t)
	if err := s.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	ok, err := s.SchemaExists(ctx, tn.Schema)
	if err != nil || !ok {
		t.Fatalf("schema %s missing: %v", tn.Schema, err)
	}
	var n int
	err = s.Pool().QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'outbox'`, tn.Schema).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("outbox table not in tenant schema: n=%d err=%v", n, err)
	}
	if err := s.CreateTenant(ctx, tn); !errors.Is(err, tenant.ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	if err := s.EnsureTenant(ctx, tn); err != nil {
		t.Fatalf("EnsureTenant on an existing tenant: %v", err)
	}
	// A later Migrate must leave the tenant's applied migrations alone.
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.Tenant(ctx, tn.Name)
	if err != nil || got != tn {
		t.Fatalf("Tenant(%s) = %+v, %v", tn.Name, got, err)
	}
}

func TestAPIKeys_resolve_only_to_their_tenant(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, b := newTenant(t), newTenant(t)
	for _, tn := range []tenant.Tenant{a, b} {
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := tenant.NewKey()
	h := tenant.HashKey(key)
	if err := s.AddAPIKey(ctx, a.Name, h, "test"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAPIKey(ctx, a.Name, h, "again"); err != nil {
		t.Fatalf("re-adding the same key for the same tenant: %v", err)
	}
	if err := s.AddAPIKey(ctx, b.Name, h, "steal"); err == nil {
		t.Fatal("the same key was given to a second tenant")
	}
	got, stored, err := s.TenantByKeyHash(ctx, h)
	if err != nil || got.Name != a.Name || stored != h {
		t.Fatalf("TenantByKeyHash = %+v, %v", got, err)
	}
	other, _ := tenant.NewKey()
	if _, _, err := s.TenantByKeyHash(ctx, tenant.HashKey(other)); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("unknown key: got %v, want ErrNotFound", err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE sagaflow.api_keys SET revoked_at = now() WHERE key_hash = $1`, h[:]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TenantByKeyHash(ctx, h); !errors.Is(err, tenant.ErrNotFound) {
		t.Fatalf("revoked key: got %v, want ErrNotFound", err)
	}
}

// pageAll walks a keyset-paged list two items a page, at most pages pages:
// page reads the page after a cursor (zero for the first), key gives an
// item's cursor and its name. It returns the names in order.
func pageAll[T any](t *testing.T, pages int, page func(afterAt time.Time, afterID string) ([]T, error), key func(T) (at time.Time, id, name string)) []string {
	t.Helper()
	var all []string
	var at time.Time
	var after string
	for range pages {
		items, err := page(at, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			_, _, name := key(it)
			all = append(all, name)
		}
		if len(items) < 2 {
			break
		}
		at, after, _ = key(items[len(items)-1])
	}
	return all
}
