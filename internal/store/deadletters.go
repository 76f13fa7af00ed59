package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/deadletter"
)

// AdminSchema is the schema of the administrators' dead letters: those
// whose tenant could not be told.
const AdminSchema = deadletter.AdminSchema

// DeadLetters is the PostgreSQL adapter of one schema's dead_letters: a
// tenant's (every query names its schema, so a tenant never reaches
// another's letters) or the administrators'. Safe for concurrent use.
type DeadLetters struct {
	s      *Store
	schema string
}

// DeadLetters returns the adapter of the tenant whose schema is schema, or
// of the administrators' table for AdminSchema.
func (s *Store) DeadLetters(schema string) *DeadLetters { return &DeadLetters{s: s, schema: schema} }

func (d *DeadLetters) table() string { return pgx.Identifier{d.schema, "dead_letters"}.Sanitize() }

func (d *DeadLetters) admin() bool { return d.schema == AdminSchema }

const deadLetterColumns = `id, message_id, reason, detail, transient, routing_key, headers, content_type, body, trace_id,
	deaths, dead_at, replayed_at, replays`

func scanDeadLetter(row pgx.Row) (deadletter.Letter, error) {
	var l deadletter.Letter
	var id uuid.UUID
	err := row.Scan(&id, &l.MessageID, &l.Reason, &l.Detail, &l.Transient, &l.RoutingKey, &l.Headers, &l.ContentType, &l.Body,
		&l.TraceID, &l.Deaths, &l.DeadAt, &l.ReplayedAt, &l.Replays)
	if err != nil {
		return deadletter.Letter{}, err
	}
	l.ID = id.String()
	if l.Headers == nil {
		l.Headers = map[string]any{}
	}
	return l, nil
}

// Archive stores l and reports whether it is new. It is idempotent per
// fingerprint: a redelivery of a letter waiting for an operator changes
// nothing, so the archiver may ack only after the commit and never doubles
// a letter. A letter that died again after a replay is the same row again
// waiting, with one death more and its new reason.
func (d *DeadLetters) Archive(ctx context.Context, l deadletter.Letter) (string, bool, error) {
	if l.Headers == nil {
		l.Headers = map[string]any{}
	}
	cols, vals := `id, fingerprint, message_id, reason, detail, transient, routing_key, headers, content_type, body, trace_id, dead_at`,
		`$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12`
	args := []any{uuid.New(), l.Fingerprint, l.MessageID, l.Reason, l.Detail, l.Transient, l.RoutingKey, l.Headers, l.ContentType,
		l.Body, l.TraceID, l.DeadAt}
	if d.admin() {
		cols, vals, args = cols+`, claimed`, vals+`, $13`, append(args, l.Claimed)
	}
	var id uuid.UUID
	var inserted bool
	err := d.s.pool.QueryRow(ctx, `INSERT INTO `+d.table()+` AS dl (`+cols+`) VALUES (`+vals+`)
		ON CONFLICT (fingerprint) DO UPDATE SET deaths = dl.deaths + 1, replayed_at = NULL, reason = EXCLUDED.reason,
			detail = EXCLUDED.detail, transient = EXCLUDED.transient, headers = EXCLUDED.headers, dead_at = EXCLUDED.dead_at
		WHERE dl.replayed_at IS NOT NULL
		RETURNING id, xmax = 0`, args...).Scan(&id, &inserted)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil // a redelivery of a letter already waiting
	}
	if err != nil {
		return "", false, fmt.Errorf("archive dead letter %s in %s: %w", l.MessageID, d.schema, err)
	}
	return id.String(), inserted, nil
}

// Page lists up to limit letters (1 or more) that f selects, after the
// letter (afterAt, afterID), oldest first (keyset pagination on dead_at,
// id, as ParkedPage).
func (d *DeadLetters) Page(ctx context.Context, f deadletter.Filter, limit int, afterAt time.Time, afterID string) ([]deadletter.Letter, error) {
	limit = max(limit, 1)
	after, aid := keysetAfter(afterAt, afterID)
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := d.s.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM `+d.table()+`
		WHERE ($1::timestamptz IS NULL OR (dead_at, id) > ($1::timestamptz, $2::uuid))
			AND ($4::text = '' OR reason = $4) AND ($5::timestamptz IS NULL OR dead_at >= $5)
		ORDER BY dead_at, id LIMIT $3`, after, aid, limit, f.Reason, since)
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", d.schema, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (deadletter.Letter, error) { return scanDeadLetter(r) })
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", d.schema, err)
	}
	return out, nil
}

// CountsByReason counts the letters waiting for an operator (not replayed
// since they last died), by reason.
func (d *DeadLetters) CountsByReason(ctx context.Context) (map[string]int, error) {
	rows, err := d.s.pool.Query(ctx, `SELECT reason, count(*) FROM `+d.table()+` WHERE replayed_at IS NULL GROUP BY reason`)
	if err != nil {
		return nil, fmt.Errorf("count dead letters of %s: %w", d.schema, err)
	}
	out := map[string]int{}
	var reason string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&reason, &n}, func() error { out[reason] = n; return nil }); err != nil {
		return nil, fmt.Errorf("count dead letters of %s: %w", d.schema, err)
	}
	return out, nil
}

// Replay takes, in one transaction, up to limit letters waiting for an
// operator that sel selects (oldest first; those with a truncated body are
// never replayed), hands them to publish, and marks them replayed before it
// commits. If publish fails nothing is marked. Rows are locked FOR UPDATE
// SKIP LOCKED, so two replays at once never publish one letter twice, and
// a letter once replayed is not selected again (until it dies again). It
// returns the letters published and whether more remain.
func (d *DeadLetters) Replay(ctx context.Context, sel deadletter.Selection, limit int, publish func(context.Context, []deadletter.Letter) error) ([]deadletter.Letter, bool, error) {
	if limit < 1 {
		limit = 1
	}
	var ids []uuid.UUID
	for _, id := range sel.IDs {
		if u, err := uuid.Parse(id); err == nil {
			ids = append(ids, u)
		}
	}
	if len(sel.IDs) > 0 && len(ids) == 0 {
		return nil, false, nil
	}
	var since *time.Time
	if !sel.Filter.Since.IsZero() {
		since = &sel.Filter.Since
	}
	var out []deadletter.Letter
	var more bool
	err := pgx.BeginFunc(ctx, d.s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+deadLetterColumns+` FROM `+d.table()+`
			WHERE replayed_at IS NULL AND NOT headers ? $5
				AND ($1::uuid[] IS NULL OR id = ANY($1)) AND ($2::text = '' OR reason = $2)
				AND ($3::timestamptz IS NULL OR dead_at >= $3)
			ORDER BY dead_at, id LIMIT $4 FOR UPDATE SKIP LOCKED`, ids, sel.Filter.Reason, since, limit+1, deadletter.TruncatedHeader)
		if err != nil {
			return fmt.Errorf("select: %w", err)
		}
		ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (deadletter.Letter, error) { return scanDeadLetter(r) })
		if err != nil {
			return fmt.Errorf("select: %w", err)
		}
		if more = len(ls) > limit; more {
			ls = ls[:limit]
		}
		if len(ls) == 0 {
			return nil
		}
		if err := publish(ctx, ls); err != nil {
			return err
		}
		marked := make([]string, len(ls))
		for i, l := range ls {
			marked[i] = l.ID
		}
		if _, err := tx.Exec(ctx, `UPDATE `+d.table()+` SET replayed_at = now(), replays = replays + 1 WHERE id = ANY($1::uuid[])`, marked); err != nil {
			return fmt.Errorf("mark replayed: %w", err)
		}
		out = ls
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("replay dead letters of %s: %w", d.schema, err)
	}
	return out, more, nil
}

// ArchiveDeadLetter is DeadLetters(schema).Archive, for
// internal/deadletter.Archiver.
func (s *Store) ArchiveDeadLetter(ctx context.Context, schema string, l deadletter.Letter) (string, bool, error) {
	return s.DeadLetters(schema).Archive(ctx, l)
}

// ReplayDeadLetters is DeadLetters(schema).Replay, for
// internal/deadletter.Replayer.
func (s *Store) ReplayDeadLetters(ctx context.Context, schema string, sel deadletter.Selection, limit int, publish func(context.Context, []deadletter.Letter) error) ([]deadletter.Letter, bool, error) {
	return s.DeadLetters(schema).Replay(ctx, sel, limit, publish)
}
