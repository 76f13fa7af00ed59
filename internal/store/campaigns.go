package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/starter"
)

// Campaigns is the PostgreSQL adapter of one tenant's coupon campaigns.
// Safe for concurrent use.
type Campaigns struct{ inSchema }

// Campaigns returns the adapter for the tenant whose schema is schema.
func (s *Store) Campaigns(schema string) *Campaigns { return &Campaigns{inSchema{s, schema}} }

// Create stores a new campaign and, in the same transaction, the start of
// its workflow, made by start from the campaign's new id.
func (c *Campaigns) Create(ctx context.Context, in coupon.Campaign, start func(coupon.Campaign) (starter.Start, error)) (coupon.Campaign, error) {
	in.ID = uuid.NewString()
	err := pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO `+c.table("campaigns")+` (id, name, stock, starts_at, ends_at)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, in.ID, in.Name, in.Stock, in.StartsAt, in.EndsAt).Scan(&in.CreatedAt); err != nil {
			return err
		}
		st, err := start(in)
		if err != nil {
			return err
		}
		return starter.Enqueue(ctx, tx, st)
	})
	if err != nil {
		return coupon.Campaign{}, fmt.Errorf("create campaign: %w", err)
	}
	return in, nil
}

// Get returns the campaign, or coupon.ErrNotFound.
func (c *Campaigns) Get(ctx context.Context, id string) (coupon.Campaign, error) {
	if _, err := uuid.Parse(id); err != nil {
		return coupon.Campaign{}, coupon.ErrNotFound
	}
	var cp coupon.Campaign
	var uid uuid.UUID
	var status string
	err := c.s.pool.QueryRow(ctx, `SELECT id, name, stock, starts_at, ends_at, status, issued, accepted, created_at, done_at
		FROM `+c.table("campaigns")+` WHERE id = $1`, id).Scan(&uid, &cp.Name, &cp.Stock, &cp.StartsAt, &cp.EndsAt,
		&status, &cp.Issued, &cp.Accepted, &cp.CreatedAt, &cp.DoneAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return coupon.Campaign{}, coupon.ErrNotFound
	}
	if err != nil {
		return coupon.Campaign{}, fmt.Errorf("read campaign %s: %w", id, err)
	}
	cp.ID = uid.String()
	cp.Done = status == "done"
	return cp, nil
}

// Issue stores the coupons in one statement, skipping those issued already
// (same user or same rank), and returns how many it added. An error that
// wraps coupon.ErrUnwritable means PostgreSQL refused the data (see
// Unwritable): at least one of the coupons can never be stored, and none
// of them was.
func (c *Campaigns) Issue(ctx context.Context, campaignID string, coupons []coupon.Coupon) (int, error) {
	if len(coupons) == 0 {
		return 0, nil
	}
	users := make([]string, len(coupons))
	ranks := make([]int64, len(coupons))
	codes := make([]string, len(coupons))
	for i, cp := range coupons {
		users[i], ranks[i], codes[i] = cp.UserID, cp.Rank, cp.Code
	}
	var added int
	err := pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO `+c.table("coupons")+` (campaign_id, user_id, rank, code)
			SELECT $1, u, r, k FROM unnest($2::text[], $3::int[], $4::text[]) AS t(u, r, k)
			ON CONFLICT DO NOTHING`, campaignID, users, ranks, codes)
		if err != nil {
			return err
		}
		added = int(tag.RowsAffected())
		if added == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE `+c.table("campaigns")+` SET issued = issued + $2 WHERE id = $1`, campaignID, added)
		return err
	})
	if Unwritable(err) {
		return 0, fmt.Errorf("issue coupons of %s: %w: %w", campaignID, coupon.ErrUnwritable, err)
	}
	if err != nil {
		return 0, fmt.Errorf("issue coupons of %s: %w", campaignID, err)
	}
	return added, nil
}

// Unwritable reports whether err is PostgreSQL refusing the data itself:
// SQLSTATE class 22 (data exception: a NUL or invalid UTF-8 in text, a
// number out of range) or 23 (integrity constraint violation). The same
// rows are refused again on every retry. Everything else is taken as
// transient and left to the caller's retries: a lost or refused connection
// (class 08, or no SQLSTATE at all), an administrator or crash shutdown
// (57P01-57P03), a serialization failure (40001) or deadlock (40P01), a
// timeout or a cancelled context.
func Unwritable(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	return strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23")
}

// Coupon returns the user's coupon, or coupon.ErrNotFound.
func (c *Campaigns) Coupon(ctx context.Context, campaignID, user string) (coupon.Coupon, error) {
	if _, err := uuid.Parse(campaignID); err != nil {
		return coupon.Coupon{}, coupon.ErrNotFound
	}
	cp := coupon.Coupon{CampaignID: campaignID, UserID: user}
	err := c.s.pool.QueryRow(ctx, `SELECT rank, code, issued_at FROM `+c.table("coupons")+`
		WHERE campaign_id = $1 AND user_id = $2`, campaignID, user).Scan(&cp.Rank, &cp.Code, &cp.IssuedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return coupon.Coupon{}, coupon.ErrNotFound
	}
	if err != nil {
		return coupon.Coupon{}, fmt.Errorf("read coupon: %w", err)
	}
	return cp, nil
}

// Finish marks the campaign done with the number of accepted requests, once
// every accepted user holds a coupon but the setAside ones (requests that
// could never be written); it fails if the counts disagree. A done
// campaign's set-aside count is then accepted - issued.
func (c *Campaigns) Finish(ctx context.Context, campaignID string, accepted, setAside int, at time.Time) error {
	tag, err := c.s.pool.Exec(ctx, `UPDATE `+c.table("campaigns")+` SET status = 'done', accepted = $2, done_at = $4
		WHERE id = $1 AND issued + $3 = $2`, campaignID, accepted, setAside, at)
	if err != nil {
		return fmt.Errorf("finish campaign %s: %w", campaignID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("finish campaign %s: issued coupons and %d set aside do not match the %d accepted requests", campaignID, setAside, accepted)
	}
	return nil
}
