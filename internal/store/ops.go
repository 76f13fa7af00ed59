package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/meeting"
)

// Ops reads, for one tenant, what an operator may have to act on: parked
// items by market, dead letters by reason, joins that have not moved for a
// while, and the campaigns still issuing. Safe for concurrent use.
type Ops struct{ inSchema }

// Ops returns the operator's reader of the tenant whose schema is schema.
func (s *Store) Ops(schema string) *Ops { return &Ops{inSchema{s, schema}} }

// ParkedByMarket counts the parked items by market; markets with none are
// absent.
func (o *Ops) ParkedByMarket(ctx context.Context) (map[string]int, error) {
	return o.countBy(ctx, `SELECT market, count(*) FROM `+o.table("parked_items")+` GROUP BY market`, "parked items")
}

// DeadLettersByReason counts the dead letters waiting for an operator, by
// reason.
func (o *Ops) DeadLettersByReason(ctx context.Context) (map[string]int, error) {
	return o.s.DeadLetters(o.schema).CountsByReason(ctx)
}

func (o *Ops) countBy(ctx context.Context, sql, what string) (map[string]int, error) {
	rows, err := o.s.pool.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("count %s of %s: %w", what, o.schema, err)
	}
	out := map[string]int{}
	var k string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil }); err != nil {
		return nil, fmt.Errorf("count %s of %s: %w", what, o.schema, err)
	}
	return out, nil
}

// OpenJoins lists up to limit joins that have not ended and whose row has
// not changed since before, oldest first: the candidates for a join stuck
// in compensation (the saga stores its state when it ends; the workflow's
// query tells where it is meanwhile).
func (o *Ops) OpenJoins(ctx context.Context, before time.Time, limit int) ([]meeting.OpenJoin, error) {
	rows, err := o.s.pool.Query(ctx, `SELECT id, status, trace_id, updated_at FROM `+o.table("joins")+`
		WHERE status NOT IN ($1, $2, $3) AND updated_at < $4 ORDER BY updated_at, id LIMIT $5`,
		meeting.JoinConfirmed, meeting.JoinCompensated, meeting.JoinFailed, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list open joins of %s: %w", o.schema, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (meeting.OpenJoin, error) {
		var j meeting.OpenJoin
		err := r.Scan(&j.JoinID, &j.Status, &j.TraceID, &j.Since)
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("list open joins of %s: %w", o.schema, err)
	}
	return out, nil
}

// ActiveCampaigns lists the campaigns not done yet, with how many coupons
// each has issued.
func (o *Ops) ActiveCampaigns(ctx context.Context) ([]coupon.Campaign, error) {
	rows, err := o.s.pool.Query(ctx, `SELECT id, name, stock, starts_at, ends_at, issued, created_at FROM `+o.table("campaigns")+`
		WHERE status = 'active' ORDER BY created_at, id LIMIT 1000`)
	if err != nil {
		return nil, fmt.Errorf("list active campaigns of %s: %w", o.schema, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (coupon.Campaign, error) {
		var cp coupon.Campaign
		var id uuid.UUID
		err := r.Scan(&id, &cp.Name, &cp.Stock, &cp.StartsAt, &cp.EndsAt, &cp.Issued, &cp.CreatedAt)
		cp.ID = id.String()
		return cp, err
	})
	if err != nil {
		return nil, fmt.Errorf("list active campaigns of %s: %w", o.schema, err)
	}
	return out, nil
}
