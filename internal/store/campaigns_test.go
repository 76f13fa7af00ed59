package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/store"
)

// Only a refusal of the data itself is permanent; a lost server is not.
func TestUnwritable_tells_bad_data_from_a_lost_server(t *testing.T) {
	for code, want := range map[string]bool{
		"22021": true,  // invalid byte sequence (a NUL in text)
		"22001": true,  // string too long
		"22003": true,  // number out of range
		"23514": true,  // check violation
		"23502": true,  // not null violation
		"08006": false, // connection failure
		"08001": false, // cannot connect
		"57P01": false, // admin shutdown
		"57P03": false, // cannot connect now (starting up)
		"40001": false, // serialization failure
		"40P01": false, // deadlock
		"53300": false, // too many connections
	} {
		err := fmt.Errorf("issue: %w", &pgconn.PgError{Code: code})
		if got := store.Unwritable(err); got != want {
			t.Errorf("SQLSTATE %s: Unwritable = %v, want %v", code, got, want)
		}
	}
	for _, err := range []error{errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), context.DeadlineExceeded, nil} {
		if store.Unwritable(err) {
			t.Errorf("%v: Unwritable, want transient", err)
		}
	}
}

// A NUL in a user id: PostgreSQL refuses the whole batch, and Issue says it
// is the data (coupon.ErrUnwritable); the batch without it is written.
func TestIssue_a_nul_in_a_user_id_is_unwritable(t *testing.T) {
	s := open(t)
	tn := newTenant(t)
	ctx := context.Background()
	if err := s.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cs := s.Campaigns(tn.Schema)
	cp, err := cs.Create(ctx, coupon.Campaign{Name: "c", Stock: 5, StartsAt: now, EndsAt: now.Add(time.Hour)},
		func(cp coupon.Campaign) (starter.Start, error) {
			return starter.Start{Tenant: tn.Name, WorkflowID: "w" + cp.ID, WorkflowType: "Campaign", TaskQueue: "none", Input: json.RawMessage(`{}`)}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	batch := []coupon.Coupon{{UserID: "u1", Rank: 1, Code: "c1"}, {UserID: "a\x00b", Rank: 2, Code: "c2"}}
	if _, err := cs.Issue(ctx, cp.ID, batch); !errors.Is(err, coupon.ErrUnwritable) {
		t.Fatalf("issue with a NUL: %v, want coupon.ErrUnwritable", err)
	}
	if n, err := cs.Issue(ctx, cp.ID, batch[:1]); err != nil || n != 1 {
		t.Fatalf("issue without it: %d, %v", n, err)
	}
	if err := cs.Finish(ctx, cp.ID, 2, 0, now); err == nil {
		t.Fatal("finish with 2 accepted, 1 issued and none set aside: want an error")
	}
	if err := cs.Finish(ctx, cp.ID, 2, 1, now); err != nil {
		t.Fatalf("finish with 2 accepted = 1 issued + 1 set aside: %v", err)
	}
}
