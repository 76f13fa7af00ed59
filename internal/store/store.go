// Package store is sagaflow's PostgreSQL adapter (pgx/v5): the connection
// pool, the embedded migrations, and the tenants with their API keys. Each
// tenant's data lives in its own schema; the shared schema "sagaflow" holds
// only the tenant registry. Store is safe for concurrent use.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagaflow/sagaflow/internal/tenant"
)

// Store wraps a pgx pool.
type Store struct {
	pool     *pgxpool.Pool
	channels channelOptions // see Option (catalog.go)
}

// Open connects to url with at most maxConns connections and checks that the
// server answers; opts configure the channels (WithSecrets,
// WithMaxChannels).
func Open(ctx context.Context, url string, maxConns int32, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse DATABASE_URL: %w", err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.Tracer = QueryTracer{}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: ping %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	s := &Store{pool: pool}
	for _, o := range opts {
		o(&s.channels)
	}
	return s, nil
}

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// Pool is the underlying pool, for the adapters of other packages that keep
// their tables in a tenant's schema.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// CreateTenant creates the tenant, its schema and its tables in one
// transaction. It returns tenant.ErrExists if the name is taken.
func (s *Store) CreateTenant(ctx context.Context, t tenant.Tenant) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockMigrations(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sagaflow.tenants (name, schema_name) VALUES ($1, $2)`, t.Name, t.Schema)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return fmt.Errorf("create tenant %s: %w", t.Name, tenant.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("create tenant %s: %w", t.Name, err)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{t.Schema}.Sanitize()); err != nil {
			return fmt.Errorf("create schema %s: %w", t.Schema, err)
		}
		return migrateTenant(ctx, tx, t.Schema)
	})
}

// EnsureTenant creates the tenant unless it exists; for seeding.
func (s *Store) EnsureTenant(ctx context.Context, t tenant.Tenant) error {
	err := s.CreateTenant(ctx, t)
	if errors.Is(err, tenant.ErrExists) {
		return nil
	}
	return err
}

// AddAPIKey stores the hash of a key for the tenant. Adding the same hash
// for the same tenant again is a no-op; for another tenant it is an error.
func (s *Store) AddAPIKey(ctx context.Context, tenantName string, hash tenant.KeyHash, label string) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO sagaflow.api_keys (key_hash, tenant, label) VALUES ($1, $2, $3)
		ON CONFLICT (key_hash) DO UPDATE SET label = EXCLUDED.label
		WHERE sagaflow.api_keys.tenant = EXCLUDED.tenant`, hash[:], tenantName, label)
	if err != nil {
		return fmt.Errorf("add api key for %s: %w", tenantName, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("add api key for %s: the key belongs to another tenant", tenantName)
	}
	return nil
}

// TenantByKeyHash returns the tenant that owns the unrevoked key with this
// hash and the hash as stored, or tenant.ErrNotFound.
func (s *Store) TenantByKeyHash(ctx context.Context, hash tenant.KeyHash) (tenant.Tenant, tenant.KeyHash, error) {
	var t tenant.Tenant
	var stored []byte
	err := s.pool.QueryRow(ctx, `
		SELECT t.name, t.schema_name, k.key_hash FROM sagaflow.api_keys k
		JOIN sagaflow.tenants t ON t.name = k.tenant
		WHERE k.key_hash = $1 AND k.revoked_at IS NULL`, hash[:]).Scan(&t.Name, &t.Schema, &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return tenant.Tenant{}, tenant.KeyHash{}, tenant.ErrNotFound
	}
	if err != nil {
		return tenant.Tenant{}, tenant.KeyHash{}, fmt.Errorf("look up api key: %w", err)
	}
	var h tenant.KeyHash
	copy(h[:], stored)
	return t, h, nil
}

// Tenant returns the tenant called name, or tenant.ErrNotFound.
func (s *Store) Tenant(ctx context.Context, name string) (tenant.Tenant, error) {
	var t tenant.Tenant
	err := s.pool.QueryRow(ctx, `SELECT name, schema_name FROM sagaflow.tenants WHERE name = $1`, name).Scan(&t.Name, &t.Schema)
	if errors.Is(err, pgx.ErrNoRows) {
		return tenant.Tenant{}, tenant.ErrNotFound
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("look up tenant %s: %w", name, err)
	}
	return t, nil
}

// Tenants lists every tenant by name.
func (s *Store) Tenants(ctx context.Context) ([]tenant.Tenant, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, schema_name FROM sagaflow.tenants ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.Tenant, error) {
		var t tenant.Tenant
		err := r.Scan(&t.Name, &t.Schema)
		return t, err
	})
}

// SchemaExists reports whether the schema exists.
func (s *Store) SchemaExists(ctx context.Context, schema string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	return ok, nil
}

// inSchema is what every per-tenant adapter (Catalog, Campaigns, Meetings,
// Ops) holds: the store and the schema all its queries name, so that a
// tenant never reaches another's rows.
type inSchema struct {
	s      *Store
	schema string
}

// table is the quoted name of the table name in the adapter's schema.
func (a inSchema) table(name string) string { return pgx.Identifier{a.schema, name}.Sanitize() }
