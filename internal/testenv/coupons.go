package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Querier is what CouponHolders reads through: a *pgxpool.Pool or a
// *pgx.Conn.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CouponHolders reads the coupons of campaign campaignID from schema and
// checks the rule every coupon test holds them to: their ranks run 1, 2,
// ... in order with no gap or repeat but the ranks in aside (set aside,
// they hold no coupon), and no user holds two. It returns each holder's
// rank.
func CouponHolders(t testing.TB, q Querier, schema, campaignID string, aside map[int64]bool) map[string]int64 {
	t.Helper()
	rows, err := q.Query(context.Background(),
		`SELECT user_id, rank FROM `+pgx.Identifier{schema}.Sanitize()+`.coupons WHERE campaign_id = $1 ORDER BY rank`, campaignID)
	if err != nil {
		t.Fatalf("read the coupons: %v", err)
	}
	holds := map[string]int64{}
	want := int64(1)
	for rows.Next() {
		var user string
		var rank int64
		if err := rows.Scan(&user, &rank); err != nil {
			t.Fatal(err)
		}
		for aside[want] {
			want++
		}
		if rank != want {
			t.Fatalf("rank %d follows %d: a gap or a repeat", rank, want-1)
		}
		want++
		if _, dup := holds[user]; dup {
			t.Errorf("user %s holds two coupons", user)
		}
		holds[user] = rank
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return holds
}

// Campaign is what the coupon tests read of the API's campaign answer
// (GET /v1/campaigns/{id}).
type Campaign struct {
	ID       string `json:"id"`
	Stock    int    `json:"stock"`
	Accepted int    `json:"accepted"`
	Issued   int    `json:"issued"`
	SetAside int    `json:"set_aside"`
	Status   string `json:"status"`
}
