package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/secret"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// OutboxChannel is the PostgreSQL NOTIFY channel that wakes the outbox
// relay once a transaction that wrote an outbox row commits; the payload is
// the schema of the tenant whose outbox has the row.
const OutboxChannel = "sagaflow_outbox"

// Catalog is the PostgreSQL adapter of one tenant's products, channels,
// synced versions and parked items: every query names the tenant's schema,
// so a tenant never reaches another's rows. Safe for concurrent use.
type Catalog struct{ inSchema }

// Catalog returns the adapter for the tenant whose schema is schema.
func (s *Store) Catalog(schema string) *Catalog { return &Catalog{inSchema{s, schema}} }

// canonicalID returns id in the form PostgreSQL's uuid type reads, or false
// if it is no UUID: a malformed id must be "not found", not a 22P02 error
// (uuid.Parse also takes forms such as "urn:uuid:…" that PostgreSQL does not).
func canonicalID(id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

const productColumns = `sku, name, price_amount, price_currency, stock, attributes, version`

// scanProduct reads productColumns; no row is catalog.ErrNotFound.
func scanProduct(row pgx.Row) (catalog.Product, error) {
	var p catalog.Product
	err := row.Scan(&p.SKU, &p.Name, &p.Price.Amount, &p.Price.Currency, &p.Stock, &p.Attributes, &p.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.Product{}, catalog.ErrNotFound
	}
	if err != nil {
		return catalog.Product{}, err
	}
	if p.Attributes == nil {
		p.Attributes = map[string]string{}
	}
	return p, nil
}

// sameContent reports whether a and b differ in nothing but their version.
func sameContent(a, b catalog.Product) bool {
	return a.Name == b.Name && a.Price == b.Price && a.Stock == b.Stock && maps.Equal(a.Attributes, b.Attributes)
}

// PutProduct stores p (its Version is ignored) as tenantName's product and
// returns it as stored. It is an idempotent PUT: if the stored product has
// the same content it is returned with changed=false and nothing is written.
// Otherwise, in one transaction with the product's row locked, the product
// gets the next version (1 for a new SKU) and an outbox row announces it:
// a catalog.Envelope of type catalog.TypeProductChanged for catalog.Exchange
// with routing key catalog.RoutingKey(tenantName), carrying traceID, and a
// NOTIFY on OutboxChannel wakes the relay. Concurrent PUTs of one SKU get
// distinct consecutive versions. An invalid p fails with catalog.ErrInvalid.
func (c *Catalog) PutProduct(ctx context.Context, tenantName string, p catalog.Product, traceID string) (catalog.Product, bool, error) {
	if err := p.Validate(); err != nil {
		return catalog.Product{}, false, err
	}
	if p.Attributes == nil {
		p.Attributes = map[string]string{}
	}
	p.TraceID = traceID
	ctx, span := startSpan(ctx, "catalog.put_product", attribute.String("sagaflow.tenant", tenantName))
	defer span.End()
	// The change's trace id is the W3C trace id of its context (the
	// request's trace, or the root this span started); traceID is kept
	// only where there is no tracer provider at all.
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		traceID = sc.TraceID().String()
	}
	var out catalog.Product
	var changed bool
	err := pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		stored, at, wrote, err := c.writeProduct(ctx, tx, p)
		if err != nil || !wrote {
			out, changed = stored, false
			return err
		}
		if err := c.enqueueChange(ctx, tx, tenantName, stored, at, traceID); err != nil {
			return err
		}
		out, changed = stored, true
		return nil
	})
	if err != nil {
		span.SetStatus(codes.Error, "put product failed")
		return catalog.Product{}, false, fmt.Errorf("put product %s: %w", p.SKU, err)
	}
	return out, changed, nil
}

// writeProduct locks the product's row and writes p over it with the next
// version unless the content is the same; it reports whether it wrote and
// when. A new SKU is inserted with version 1; if a concurrent PUT inserts it
// first, the insert waits for that transaction and the loop then locks the
// row it committed.
func (c *Catalog) writeProduct(ctx context.Context, tx pgx.Tx, p catalog.Product) (catalog.Product, time.Time, bool, error) {
	// Two rounds suffice (products are never deleted); the third is a guard.
	for range 3 {
		cur, err := scanProduct(tx.QueryRow(ctx, `SELECT `+productColumns+` FROM `+c.table("products")+`
			WHERE sku = $1 FOR UPDATE`, p.SKU))
		var at time.Time
		switch {
		case err == nil:
			if sameContent(cur, p) {
				return cur, time.Time{}, false, nil
			}
			p.Version = cur.Version + 1
			err = tx.QueryRow(ctx, `UPDATE `+c.table("products")+` SET name = $2, price_amount = $3, price_currency = $4,
				stock = $5, attributes = $6, version = $7, trace_id = $8, updated_at = now() WHERE sku = $1 RETURNING updated_at`,
				p.SKU, p.Name, p.Price.Amount, p.Price.Currency, p.Stock, p.Attributes, p.Version, p.TraceID).Scan(&at)
			if err != nil {
				return catalog.Product{}, time.Time{}, false, fmt.Errorf("update: %w", err)
			}
			return p, at, true, nil
		case !errors.Is(err, catalog.ErrNotFound):
			return catalog.Product{}, time.Time{}, false, fmt.Errorf("lock: %w", err)
		}
		p.Version = 1
		err = tx.QueryRow(ctx, `INSERT INTO `+c.table("products")+` (`+productColumns+`, trace_id, sku_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (sku) DO NOTHING RETURNING updated_at`,
			p.SKU, p.Name, p.Price.Amount, p.Price.Currency, p.Stock, p.Attributes, p.Version, p.TraceID, int64(catalog.ShardHash(p.SKU))).Scan(&at)
		if err == nil {
			return p, at, true, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return catalog.Product{}, time.Time{}, false, fmt.Errorf("insert: %w", err)
		}
	}
	return catalog.Product{}, time.Time{}, false, errors.New("the row neither exists nor can be inserted")
}

// enqueueChange writes the outbox row announcing p and notifies the relay.
func (c *Catalog) enqueueChange(ctx context.Context, tx pgx.Tx, tenantName string, p catalog.Product, at time.Time, traceID string) error {
	payload, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode product: %w", err)
	}
	// The row carries the W3C context of this transaction, so that the
	// relay publishes the message in the request's trace (PutProduct made
	// traceID that context's trace id).
	tc := tracectx.Capture(ctx)
	env := catalog.Envelope{
		MessageID:  uuid.NewString(),
		TenantID:   tenantName,
		Type:       catalog.TypeProductChanged,
		OccurredAt: at.UTC(),
		TraceID:    traceID,
		Payload:    payload,
	}
	body, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	// What the project produces the ingest must accept: check the envelope
	// with the ingest's own rule before the product commits, so a bad one
	// fails this PUT instead of being dead-lettered after it.
	if _, _, err := catalog.ParseChange(body, catalog.RoutingKey(tenantName)); err != nil {
		return fmt.Errorf("envelope the ingest would refuse: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+c.table("outbox")+` (message_id, exchange, routing_key, type, payload, traceparent, tracestate)
		VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''))`, env.MessageID, catalog.Exchange, catalog.RoutingKey(tenantName), env.Type, body,
		tc.TraceParent, tc.TraceState); err != nil {
		return fmt.Errorf("enqueue change: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, OutboxChannel, c.schema); err != nil {
		return fmt.Errorf("notify outbox: %w", err)
	}
	return nil
}

// Product returns the product, or catalog.ErrNotFound.
func (c *Catalog) Product(ctx context.Context, sku string) (catalog.Product, error) {
	p, err := scanProduct(c.s.pool.QueryRow(ctx, `SELECT `+productColumns+` FROM `+c.table("products")+` WHERE sku = $1`, sku))
	if err != nil {
		return catalog.Product{}, fmt.Errorf("read product %s: %w", sku, err)
	}
	return p, nil
}

// Products returns the products of skus that exist, by SKU, in one query.
func (c *Catalog) Products(ctx context.Context, skus []string) (map[string]catalog.Product, error) {
	out := make(map[string]catalog.Product, len(skus))
	if len(skus) == 0 {
		return out, nil
	}
	rows, err := c.s.pool.Query(ctx, `SELECT `+productColumns+` FROM `+c.table("products")+` WHERE sku = ANY($1)`, skus)
	if err != nil {
		return nil, fmt.Errorf("read %d products: %w", len(skus), err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Product, error) { return scanProduct(r) })
	if err != nil {
		return nil, fmt.Errorf("read %d products: %w", len(skus), err)
	}
	for _, p := range ps {
		out[p.SKU] = p
	}
	return out, nil
}

// ApplyChanges stores products that other systems published to the bus
// (already checked by catalog.ParseChange), each only if its version is
// newer than the stored one, in one statement, and returns how many it
// wrote. Of several changes to one SKU the newest wins. It writes no outbox
// rows: the change is on the bus already.
func (c *Catalog) ApplyChanges(ctx context.Context, ps []catalog.Product) (int, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	// ON CONFLICT cannot touch a row twice in one statement: one per SKU.
	newest := make(map[string]catalog.Product, len(ps))
	for _, p := range ps {
		if cur, ok := newest[p.SKU]; !ok || p.Version > cur.Version {
			newest[p.SKU] = p
		}
	}
	// Sorted, so that concurrent batches lock rows in the same order.
	skus := slices.Sorted(maps.Keys(newest))
	n := len(skus)
	names, currencies, attrs, traces := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amounts, stocks, versions, hashes := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, sku := range skus {
		p := newest[sku]
		if p.Attributes == nil {
			p.Attributes = map[string]string{}
		}
		b, err := json.Marshal(p.Attributes)
		if err != nil {
			return 0, fmt.Errorf("apply changes: attributes of %s: %w", sku, err)
		}
		names[i], currencies[i], attrs[i], traces[i] = p.Name, p.Price.Currency, string(b), p.TraceID
		amounts[i], stocks[i], versions[i], hashes[i] = p.Price.Amount, p.Stock, p.Version, int64(catalog.ShardHash(sku))
	}
	tag, err := c.s.pool.Exec(ctx, `INSERT INTO `+c.table("products")+` AS p (`+productColumns+`, trace_id, sku_hash)
		SELECT sku, name, amount, currency, stock, attrs::jsonb, version, trace, hash
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::bigint[])
			AS t(sku, name, amount, currency, stock, attrs, version, trace, hash)
		ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_amount = EXCLUDED.price_amount,
			price_currency = EXCLUDED.price_currency, stock = EXCLUDED.stock, attributes = EXCLUDED.attributes,
			version = EXCLUDED.version, trace_id = EXCLUDED.trace_id, updated_at = now()
		WHERE p.version < EXCLUDED.version`, skus, names, amounts, currencies, stocks, attrs, versions, traces, hashes)
	if err != nil {
		return 0, fmt.Errorf("apply %d changes: %w", n, err)
	}
	return int(tag.RowsAffected()), nil
}

// ApplyChanges is Catalog(schema).ApplyChanges, so that the ingest
// (internal/ingest.Products) can take the Store itself.
func (s *Store) ApplyChanges(ctx context.Context, schema string, ps []catalog.Product) (int, error) {
	return s.Catalog(schema).ApplyChanges(ctx, ps)
}

const channelColumns = `id, market, base_url, credentials, rate_limit_per_sec, created_at`

// Option configures what a Store does with channels; pass them to Open.
type Option func(*channelOptions)

type channelOptions struct {
	keys        *secret.Keyring
	maxChannels int
}

// WithSecrets makes the store seal channel credentials with keys
// (AES-256-GCM, bound to the tenant's schema and the channel's id) and open
// them with any of its keys. Without it the store can neither write a
// channel nor read a sealed one: credentials are never written in plain
// text.
func WithSecrets(keys *secret.Keyring) Option {
	return func(o *channelOptions) { o.keys = keys }
}

// WithDevSecrets is WithSecrets with secret.DevKeys, whose key is public:
// for tests and dev only.
func WithDevSecrets() Option {
	keys, err := secret.Parse(secret.DevKeys)
	if err != nil {
		panic(err) // a constant that parses: see secret's tests
	}
	return WithSecrets(keys)
}

// WithMaxChannels caps the channels of each tenant (0: no cap).
func WithMaxChannels(n int) Option {
	return func(o *channelOptions) { o.maxChannels = n }
}

// ErrNoSecrets means the store has no keys to seal or open credentials.
var ErrNoSecrets = errors.New("store: no secret keys to seal channel credentials (SAGAFLOW_SECRET_KEYS)")

// credentialsAAD binds a sealed credential to its tenant and row, so that
// a value copied to another row or schema does not open.
func (c *Catalog) credentialsAAD(id string) []byte {
	return []byte("sagaflow channel credentials\x00" + c.schema + "\x00" + id)
}

func (c *Catalog) sealCredentials(id, plain string) (string, error) {
	if c.s.channels.keys == nil {
		return "", ErrNoSecrets
	}
	return c.s.channels.keys.Seal(plain, c.credentialsAAD(id))
}

// openCredentials returns the credentials stored for channel id: sealed
// ones opened, plain ones of rows written before sealing as they are.
func (c *Catalog) openCredentials(id, stored string) (string, error) {
	if !secret.IsSealed(stored) {
		return stored, nil
	}
	if c.s.channels.keys == nil {
		return "", ErrNoSecrets
	}
	plain, _, err := c.s.channels.keys.Open(stored, c.credentialsAAD(id))
	if err != nil {
		return "", fmt.Errorf("credentials of channel %s: %w", id, err)
	}
	return plain, nil
}

// scanChannel reads channelColumns and opens the credentials.
func (c *Catalog) scanChannel(row pgx.Row) (catalog.Channel, error) {
	var ch catalog.Channel
	var id uuid.UUID
	err := row.Scan(&id, &ch.Market, &ch.BaseURL, &ch.Credentials, &ch.RateLimitPerSec, &ch.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.Channel{}, catalog.ErrNotFound
	}
	if err != nil {
		return catalog.Channel{}, err
	}
	ch.ID = id.String()
	if ch.Credentials, err = c.openCredentials(ch.ID, ch.Credentials); err != nil {
		return catalog.Channel{}, err
	}
	return ch, nil
}

// CreateChannel stores a new channel with a fresh id, its credentials
// sealed, and returns it. The caller validates it (catalog.Channel.Validate).
// A tenant at its cap (WithMaxChannels) gets a *catalog.ChannelLimitError:
// the count and the insert run in one transaction under a lock of the
// tenant's channels, so concurrent creates cannot pass the cap together.
func (c *Catalog) CreateChannel(ctx context.Context, ch catalog.Channel) (catalog.Channel, error) {
	ch.ID = uuid.NewString()
	sealed, err := c.sealCredentials(ch.ID, ch.Credentials)
	if err != nil {
		return catalog.Channel{}, fmt.Errorf("create %s channel: %w", ch.Market, err)
	}
	err = pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		if limit := c.s.channels.maxChannels; limit > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('sagaflow.channels'), hashtext($1))`, c.schema); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+c.table("channels")).Scan(&n); err != nil {
				return fmt.Errorf("count: %w", err)
			}
			if n >= limit {
				return &catalog.ChannelLimitError{Limit: limit}
			}
		}
		return tx.QueryRow(ctx, `INSERT INTO `+c.table("channels")+` (id, market, base_url, credentials, rate_limit_per_sec)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, ch.ID, ch.Market, ch.BaseURL, sealed, ch.RateLimitPerSec).Scan(&ch.CreatedAt)
	})
	if err != nil {
		return catalog.Channel{}, fmt.Errorf("create %s channel: %w", ch.Market, err)
	}
	return ch, nil
}

// ReencryptChannels seals every channel's credentials of every tenant
// under the newest key (WithSecrets' first), plain ones included, and
// returns how many it rewrote. Run it after putting a new key first in
// SAGAFLOW_SECRET_KEYS and before removing the old one. Idempotent; one
// transaction per tenant, rows locked while rewritten.
func (s *Store) ReencryptChannels(ctx context.Context) (int, error) {
	if s.channels.keys == nil {
		return 0, ErrNoSecrets
	}
	rows, err := s.pool.Query(ctx, `SELECT schema_name FROM sagaflow.tenants ORDER BY name`)
	if err != nil {
		return 0, fmt.Errorf("reencrypt: list tenants: %w", err)
	}
	schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("reencrypt: list tenants: %w", err)
	}
	total := 0
	for _, schema := range schemas {
		n, err := s.Catalog(schema).ReencryptChannels(ctx)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// ReencryptChannels is Store.ReencryptChannels for this tenant only.
func (c *Catalog) ReencryptChannels(ctx context.Context) (int, error) {
	keys, n := c.s.channels.keys, 0
	if keys == nil {
		return 0, ErrNoSecrets
	}
	err := pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, credentials FROM `+c.table("channels")+` ORDER BY id FOR NO KEY UPDATE`)
		if err != nil {
			return err
		}
		type row struct {
			id    uuid.UUID
			value string
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.value)
		})
		if err != nil {
			return err
		}
		for _, r := range all {
			id := r.id.String()
			plain, keyID := r.value, ""
			if secret.IsSealed(r.value) {
				if plain, keyID, err = keys.Open(r.value, c.credentialsAAD(id)); err != nil {
					return fmt.Errorf("channel %s: %w", id, err)
				}
			}
			if keyID == keys.Primary() {
				continue
			}
			sealed, err := keys.Seal(plain, c.credentialsAAD(id))
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE `+c.table("channels")+` SET credentials = $2 WHERE id = $1`, r.id, sealed); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reencrypt channels of %s: %w", c.schema, err)
	}
	return n, nil
}

// Channels lists the channels, oldest first, credentials included.
func (c *Catalog) Channels(ctx context.Context) ([]catalog.Channel, error) {
	rows, err := c.s.pool.Query(ctx, `SELECT `+channelColumns+` FROM `+c.table("channels")+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	chs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Channel, error) { return c.scanChannel(r) })
	if err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	return chs, nil
}

// Channel returns the channel, credentials included, or catalog.ErrNotFound
// (also for an id that is not a UUID).
func (c *Catalog) Channel(ctx context.Context, id string) (catalog.Channel, error) {
	uid, ok := canonicalID(id)
	if !ok {
		return catalog.Channel{}, fmt.Errorf("read channel %q: %w", id, catalog.ErrNotFound)
	}
	ch, err := c.scanChannel(c.s.pool.QueryRow(ctx, `SELECT `+channelColumns+` FROM `+c.table("channels")+` WHERE id = $1`, uid))
	if err != nil {
		return catalog.Channel{}, fmt.Errorf("read channel %s: %w", id, err)
	}
	return ch, nil
}

// DeleteChannel deletes the channel with its synced versions and parked
// items, or fails with catalog.ErrNotFound.
func (c *Catalog) DeleteChannel(ctx context.Context, id string) error {
	uid, ok := canonicalID(id)
	if !ok {
		return fmt.Errorf("delete channel %q: %w", id, catalog.ErrNotFound)
	}
	// channel_products and parked_items go with it (ON DELETE CASCADE).
	tag, err := c.s.pool.Exec(ctx, `DELETE FROM `+c.table("channels")+` WHERE id = $1`, uid)
	if err != nil {
		return fmt.Errorf("delete channel %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete channel %s: %w", id, catalog.ErrNotFound)
	}
	return nil
}

// channelGone translates the foreign-key violation of a write for a channel
// that does not exist (or was deleted meanwhile) into catalog.ErrNotFound.
func channelGone(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return catalog.ErrNotFound
	}
	return err
}

// SyncedVersions returns, of skus, the version the channel has applied of
// each SKU it has applied at all. An unknown channel (or an id that is not a
// UUID) has applied nothing.
func (c *Catalog) SyncedVersions(ctx context.Context, channelID string, skus []string) (map[string]int64, error) {
	return c.versionsIn(ctx, "channel_products", "synced", channelID, skus)
}

// versionsIn reads the version of each of skus that table (channel_products
// or parked_items) holds for the channel; what names it in errors.
func (c *Catalog) versionsIn(ctx context.Context, table, what, channelID string, skus []string) (map[string]int64, error) {
	out := make(map[string]int64, len(skus))
	uid, ok := canonicalID(channelID)
	if !ok || len(skus) == 0 {
		return out, nil
	}
	rows, err := c.s.pool.Query(ctx, `SELECT sku, version FROM `+c.table(table)+`
		WHERE channel_id = $1 AND sku = ANY($2)`, uid, skus)
	if err != nil {
		return nil, fmt.Errorf("read %s versions of channel %s: %w", what, channelID, err)
	}
	var sku string
	var v int64
	if _, err := pgx.ForEachRow(rows, []any{&sku, &v}, func() error { out[sku] = v; return nil }); err != nil {
		return nil, fmt.Errorf("read %s versions of channel %s: %w", what, channelID, err)
	}
	return out, nil
}

// Unsynced reads the next stretch of the catalogue for a channel's
// backfill: up to window products in SKU order after the SKU after (from
// the start when after is ""), of which it returns those of the shard (of
// shards, catalog.Shard) whose current version the channel does not hold,
// each with the version it holds (0 for none). The shard and the versions
// are compared in PostgreSQL (products.sku_hash), so a read ships only what
// the shard's workflow has to push, however many shards share the catalogue.
func (c *Catalog) Unsynced(ctx context.Context, channelID, after string, shard, shards, window int) (catalog.Window, error) {
	uid, ok := canonicalID(channelID)
	if !ok {
		return catalog.Window{}, fmt.Errorf("read the catalogue for channel %q: %w", channelID, catalog.ErrNotFound)
	}
	if shards < 1 {
		shards, shard = 1, 0
	}
	// The last row (stretch = true) is the stretch's last SKU and size.
	rows, err := c.s.pool.Query(ctx, `WITH w AS MATERIALIZED (
			SELECT sku, version, sku_hash FROM `+c.table("products")+` WHERE sku > $2 ORDER BY sku LIMIT $3)
		SELECT w.sku, w.version, coalesce(cp.version, 0), false AS stretch
			FROM w LEFT JOIN `+c.table("channel_products")+` cp ON cp.channel_id = $1 AND cp.sku = w.sku
			WHERE w.sku_hash % $4 = $5 AND coalesce(cp.version, 0) < w.version
		UNION ALL
		SELECT coalesce(max(sku), ''), count(*), 0, true FROM w
		ORDER BY stretch, 1`, uid, after, window, int64(shards), int64(shard))
	if err != nil {
		return catalog.Window{}, fmt.Errorf("read the catalogue for channel %s: %w", channelID, err)
	}
	var (
		out     catalog.Window
		h       catalog.HeldVersion
		stretch bool
	)
	_, err = pgx.ForEachRow(rows, []any{&h.SKU, &h.Version, &h.Held, &stretch}, func() error {
		if stretch {
			out.Last, out.Scanned = h.SKU, int(h.Version)
		} else {
			out.Lacking = append(out.Lacking, h)
		}
		return nil
	})
	if err != nil {
		return catalog.Window{}, fmt.Errorf("read the catalogue for channel %s: %w", channelID, err)
	}
	return out, nil
}

// MarkSynced records, in one statement, that the channel applied these
// versions (SKU → version). A version never goes down: marking an older one
// than recorded does nothing. It fails with catalog.ErrNotFound if the
// channel does not exist (it may have been deleted meanwhile).
func (c *Catalog) MarkSynced(ctx context.Context, channelID string, versions map[string]int64) error {
	if len(versions) == 0 {
		return nil
	}
	uid, ok := canonicalID(channelID)
	if !ok {
		return fmt.Errorf("mark synced on channel %q: %w", channelID, catalog.ErrNotFound)
	}
	// Sorted, so that concurrent marks lock rows in the same order.
	skus := slices.Sorted(maps.Keys(versions))
	vs := make([]int64, len(skus))
	for i, sku := range skus {
		vs[i] = versions[sku]
	}
	_, err := c.s.pool.Exec(ctx, `INSERT INTO `+c.table("channel_products")+` AS cp (channel_id, sku, version)
		SELECT $1, sku, version FROM unnest($2::text[], $3::bigint[]) AS t(sku, version)
		ON CONFLICT (channel_id, sku) DO UPDATE SET version = EXCLUDED.version, synced_at = now()
		WHERE cp.version < EXCLUDED.version`, uid, skus, vs)
	if err != nil {
		return fmt.Errorf("mark %d synced on channel %s: %w", len(skus), channelID, channelGone(err))
	}
	return nil
}

// SyncedByChannel returns the version of sku each channel has applied, by
// channel id; channels that never applied it are absent.
func (c *Catalog) SyncedByChannel(ctx context.Context, sku string) (map[string]int64, error) {
	return byChannel[int64](ctx, c.s.pool, "read synced versions of "+sku,
		`SELECT channel_id, version FROM `+c.table("channel_products")+` WHERE sku = $1`, sku)
}

// byChannel runs query, whose rows are a channel id and a number, and
// returns the numbers by channel id; what names the read in errors.
func byChannel[N int | int64](ctx context.Context, pool *pgxpool.Pool, what, query string, args ...any) (map[string]N, error) {
	rows, err := pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := map[string]N{}
	var id uuid.UUID
	var n N
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id.String()] = n; return nil }); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

const parkedColumns = `id, channel_id, sku, market, version, error, attempts, since, workflow_id`

// parkedRead selects parkedColumns of the parked items pi with the trace
// id of the parked version, which its product holds while that version is
// current; scanParkedTraced reads it.
func (c *Catalog) parkedRead() string {
	return `SELECT pi.id, pi.channel_id, pi.sku, pi.market, pi.version, pi.error, pi.attempts, pi.since, pi.workflow_id,
		COALESCE(p.trace_id, '') FROM ` + c.table("parked_items") + ` pi
		LEFT JOIN ` + c.table("products") + ` p ON p.sku = pi.sku AND p.version = pi.version `
}

// scanParked reads parkedColumns.
func scanParked(row pgx.Row) (catalog.ParkedItem, error) { return scanParkedWith(row, false) }

// scanParkedTraced reads what parkedRead selects.
func scanParkedTraced(row pgx.Row) (catalog.ParkedItem, error) { return scanParkedWith(row, true) }

func scanParkedWith(row pgx.Row, traced bool) (catalog.ParkedItem, error) {
	var it catalog.ParkedItem
	var id, channelID uuid.UUID
	dest := []any{&id, &channelID, &it.SKU, &it.Market, &it.Version, &it.Error, &it.Attempts, &it.Since, &it.WorkflowID}
	if traced {
		dest = append(dest, &it.TraceID)
	}
	err := row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.ParkedItem{}, catalog.ErrNotFound
	}
	if err != nil {
		return catalog.ParkedItem{}, err
	}
	it.ID, it.ChannelID = id.String(), channelID.String()
	return it, nil
}

// Park puts the change in the parking lot and returns it as stored, with its
// id. It is idempotent per (channel, SKU): parking again keeps the one row,
// its id and its Since (it.Since, or now when zero, the first time), and
// updates the rest; the version never goes down. It fails with
// catalog.ErrNotFound if the channel does not exist.
func (c *Catalog) Park(ctx context.Context, it catalog.ParkedItem) (catalog.ParkedItem, error) {
	channelID, ok := canonicalID(it.ChannelID)
	if !ok {
		return catalog.ParkedItem{}, fmt.Errorf("park %s on channel %q: %w", it.SKU, it.ChannelID, catalog.ErrNotFound)
	}
	var since *time.Time
	if !it.Since.IsZero() {
		since = &it.Since
	}
	out, err := scanParked(c.s.pool.QueryRow(ctx, `INSERT INTO `+c.table("parked_items")+` AS pi (`+parkedColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8::timestamptz, now()), $9)
		ON CONFLICT (channel_id, sku) DO UPDATE SET market = EXCLUDED.market, version = GREATEST(pi.version, EXCLUDED.version),
			error = EXCLUDED.error, attempts = EXCLUDED.attempts, workflow_id = EXCLUDED.workflow_id
		RETURNING `+parkedColumns, uuid.NewString(), channelID, it.SKU, it.Market, it.Version, it.Error, it.Attempts, since, it.WorkflowID))
	if err != nil {
		return catalog.ParkedItem{}, fmt.Errorf("park %s on channel %s: %w", it.SKU, it.ChannelID, channelGone(err))
	}
	return out, nil
}

// Unpark removes the item from the parking lot. Idempotent: an item that is
// gone already (or an id that is not a UUID) is no error.
func (c *Catalog) Unpark(ctx context.Context, id string) error {
	uid, ok := canonicalID(id)
	if !ok {
		return nil
	}
	if _, err := c.s.pool.Exec(ctx, `DELETE FROM `+c.table("parked_items")+` WHERE id = $1`, uid); err != nil {
		return fmt.Errorf("unpark %s: %w", id, err)
	}
	return nil
}

// ParkedItems lists at most limit parked items (all when limit <= 0),
// oldest first.
func (c *Catalog) ParkedItems(ctx context.Context, limit int) ([]catalog.ParkedItem, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	return c.listParked(ctx, `ORDER BY pi.since, pi.id LIMIT $1`, lim)
}

// listParked reads the parked items (parkedRead) that the rest of the query,
// tail, selects with args.
func (c *Catalog) listParked(ctx context.Context, tail string, args ...any) ([]catalog.ParkedItem, error) {
	rows, err := c.s.pool.Query(ctx, c.parkedRead()+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("list parked items: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.ParkedItem, error) { return scanParkedTraced(r) })
	if err != nil {
		return nil, fmt.Errorf("list parked items: %w", err)
	}
	return items, nil
}

// ParkedBySKU lists the parked items of sku (at most one per channel),
// oldest first; for the sync status of a product.
func (c *Catalog) ParkedBySKU(ctx context.Context, sku string) ([]catalog.ParkedItem, error) {
	rows, err := c.s.pool.Query(ctx, c.parkedRead()+`WHERE pi.sku = $1 ORDER BY pi.since, pi.id`, sku)
	if err != nil {
		return nil, fmt.Errorf("list parked items of %s: %w", sku, err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.ParkedItem, error) { return scanParkedTraced(r) })
	if err != nil {
		return nil, fmt.Errorf("list parked items of %s: %w", sku, err)
	}
	return items, nil
}

// ParkedItem returns the parked item, or catalog.ErrNotFound (also for an
// id that is not a UUID).
func (c *Catalog) ParkedItem(ctx context.Context, id string) (catalog.ParkedItem, error) {
	uid, ok := canonicalID(id)
	if !ok {
		return catalog.ParkedItem{}, fmt.Errorf("read parked item %q: %w", id, catalog.ErrNotFound)
	}
	it, err := scanParkedTraced(c.s.pool.QueryRow(ctx, c.parkedRead()+`WHERE pi.id = $1`, uid))
	if err != nil {
		return catalog.ParkedItem{}, fmt.Errorf("read parked item %s: %w", id, err)
	}
	return it, nil
}

// keysetAfter is the (time, id) a keyset page starts after, as query
// arguments: a nil time (and uuid.Nil) for the first page.
func keysetAfter(at time.Time, id string) (*time.Time, uuid.UUID) {
	if at.IsZero() {
		return nil, uuid.Nil
	}
	u, err := uuid.Parse(id)
	if err != nil {
		u = uuid.Nil
	}
	return &at, u
}

// ParkedPage lists up to limit parked items (1 or more) that f selects,
// after the item (afterSince, afterID), oldest first; from the oldest when
// afterSince is zero. Keyset pagination on (since, id): a page costs the
// same however many items are parked, and an item parked or removed
// meanwhile moves no other item between pages. A channel id in f that is
// not a UUID selects nothing.
func (c *Catalog) ParkedPage(ctx context.Context, f catalog.ParkedFilter, limit int, afterSince time.Time, afterID string) ([]catalog.ParkedItem, error) {
	limit = max(limit, 1)
	since, after := keysetAfter(afterSince, afterID)
	var channel *uuid.UUID
	if f.ChannelID != "" {
		u, err := uuid.Parse(f.ChannelID)
		if err != nil {
			return nil, nil
		}
		channel = &u
	}
	var from *time.Time
	if !f.Since.IsZero() {
		from = &f.Since
	}
	return c.listParked(ctx, `
		WHERE ($1::timestamptz IS NULL OR (pi.since, pi.id) > ($1::timestamptz, $2::uuid))
			AND ($4::text = '' OR pi.market = $4) AND ($5::uuid IS NULL OR pi.channel_id = $5)
			AND ($6::text = '' OR pi.sku = $6) AND ($7::timestamptz IS NULL OR pi.since >= $7)
		ORDER BY pi.since, pi.id LIMIT $3`, since, after, limit, f.Market, channel, f.SKU, from)
}

// ParkedVersions returns, of skus, the parked version of each SKU the
// channel holds parked. An unknown channel (or an id that is not a UUID)
// holds none.
func (c *Catalog) ParkedVersions(ctx context.Context, channelID string, skus []string) (map[string]int64, error) {
	return c.versionsIn(ctx, "parked_items", "parked", channelID, skus)
}

// UnparkSynced removes, in one statement, the channel's parked items that
// the synced versions (SKU → version) supersede: those parked at that
// version or older. It returns how many it removed.
func (c *Catalog) UnparkSynced(ctx context.Context, channelID string, versions map[string]int64) (int, error) {
	uid, ok := canonicalID(channelID)
	if !ok || len(versions) == 0 {
		return 0, nil
	}
	skus := slices.Sorted(maps.Keys(versions))
	vs := make([]int64, len(skus))
	for i, sku := range skus {
		vs[i] = versions[sku]
	}
	tag, err := c.s.pool.Exec(ctx, `DELETE FROM `+c.table("parked_items")+` pi
		USING unnest($2::text[], $3::bigint[]) AS t(sku, version)
		WHERE pi.channel_id = $1 AND pi.sku = t.sku AND pi.version <= t.version`, uid, skus, vs)
	if err != nil {
		return 0, fmt.Errorf("unpark synced items of channel %s: %w", channelID, err)
	}
	return int(tag.RowsAffected()), nil
}

// ParkedCounts counts the items the workflow workflowID parked, by channel
// id; channels with none are absent. It is what a sync workflow holds of
// its parked items: a count, not the items.
func (c *Catalog) ParkedCounts(ctx context.Context, workflowID string) (map[string]int, error) {
	return byChannel[int](ctx, c.s.pool, "count parked items of "+workflowID, `SELECT channel_id, count(*) FROM `+c.table("parked_items")+`
		WHERE workflow_id = $1 GROUP BY channel_id`, workflowID)
}
