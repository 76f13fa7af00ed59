package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Migrations are plain SQL files named NNN_what.sql, applied in order, each
// once, in one transaction per run. shared/ builds the "sagaflow" schema;
// tenant/ runs inside every tenant's schema (search_path set to it), for
// existing tenants on Migrate and for new ones when they are created.
//
//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(dir string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, path.Join("migrations", dir))
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s/%s: want NNN_name.sql", dir, e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	return ms, nil
}

// lockMigrations serialises every schema change across processes (an api
// and a worker starting together) until the transaction ends.
func lockMigrations(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('sagaflow.migrate'))`)
	return err
}

// Migrate brings the shared schema and every tenant's schema up to date.
// Safe to run from several processes at once and again at every start.
func (s *Store) Migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockMigrations(ctx, tx); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			CREATE SCHEMA IF NOT EXISTS sagaflow;
			CREATE TABLE IF NOT EXISTS sagaflow.schema_migrations (
				scope      text NOT NULL,
				version    int NOT NULL,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (scope, version)
			)`); err != nil {
			return fmt.Errorf("migrate: bookkeeping table: %w", err)
		}
		if err := apply(ctx, tx, "shared", "sagaflow"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT schema_name FROM sagaflow.tenants ORDER BY name`)
		if err != nil {
			return fmt.Errorf("migrate: list tenants: %w", err)
		}
		schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("migrate: list tenants: %w", err)
		}
		for _, schema := range schemas {
			if err := migrateTenant(ctx, tx, schema); err != nil {
				return err
			}
		}
		return nil
	})
}

func migrateTenant(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate %s: search_path: %w", schema, err)
	}
	if err := apply(ctx, tx, "tenant", schema); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `RESET search_path`)
	return err
}

// apply runs the migrations of dir not yet recorded for scope.
func apply(ctx context.Context, tx pgx.Tx, dir, scope string) error {
	ms, err := loadMigrations(dir)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM sagaflow.schema_migrations WHERE scope = $1`, scope)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", scope, err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrate %s: %w", scope, err)
	}
	for _, m := range ms {
		if slices.Contains(done, int32(m.version)) {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate %s: %s: %w", scope, m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sagaflow.schema_migrations (scope, version, name) VALUES ($1, $2, $3)`,
			scope, m.version, m.name); err != nil {
			return fmt.Errorf("migrate %s: record %s: %w", scope, m.name, err)
		}
	}
	return nil
}
