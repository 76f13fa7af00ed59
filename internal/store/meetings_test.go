package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/store"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

func newMeetings(t *testing.T, capacity int) (*store.Meetings, meeting.Meeting) {
	ms, m, _, _ := newMeetingsIn(t, capacity)
	return ms, m
}

func newMeetingsIn(t *testing.T, capacity int) (*store.Meetings, meeting.Meeting, *store.Store, tenant.Tenant) {
	t.Helper()
	s := open(t)
	tn := newTenant(t)
	if err := s.CreateTenant(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	ms := s.Meetings(tn.Schema)
	m, err := ms.Create(context.Background(), meeting.Meeting{Title: "t", Capacity: capacity, Fee: meeting.Money{Amount: 100, Currency: "KRW"}})
	if err != nil {
		t.Fatal(err)
	}
	return ms, m, s, tn
}

func TestReserve_never_exceeds_capacity_under_concurrency(t *testing.T) {
	ms, m := newMeetings(t, 7)
	ctx := context.Background()
	var ok, full atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			err := ms.Reserve(ctx, m.ID, fmt.Sprintf("j%d", i), fmt.Sprintf("u%d", i))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, meeting.ErrMeetingFull):
				full.Add(1)
			default:
				t.Errorf("reserve: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := ms.Get(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 7 || full.Load() != 33 || got.Reserved != 7 {
		t.Fatalf("ok=%d full=%d reserved=%d, want 7/33/7", ok.Load(), full.Load(), got.Reserved)
	}
}

func TestSeats_are_idempotent_per_join(t *testing.T) {
	ms, m := newMeetings(t, 2)
	ctx := context.Background()
	for range 3 {
		if err := ms.Reserve(ctx, m.ID, "j1", "alice"); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := ms.Confirm(ctx, m.ID, "j1"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := ms.Get(ctx, m.ID)
	if got.Reserved != 0 || got.Confirmed != 1 {
		t.Fatalf("after repeated reserve/confirm: %+v", got)
	}
	for range 2 {
		if err := ms.Release(ctx, m.ID, "j1"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = ms.Get(ctx, m.ID)
	if got.Reserved != 0 || got.Confirmed != 0 {
		t.Fatalf("after repeated release: %+v", got)
	}
	// A released join does not take a seat again (a late retry of reserve).
	if err := ms.Reserve(ctx, m.ID, "j1", "alice"); err == nil {
		t.Fatal("a released join reserved again")
	}
	if err := ms.Release(ctx, m.ID, "never-reserved"); err != nil {
		t.Fatalf("releasing a join without a seat: %v", err)
	}
}

func TestConfirm_fails_when_closed_or_user_already_in(t *testing.T) {
	ms, m := newMeetings(t, 5)
	ctx := context.Background()
	for _, j := range []string{"a1", "a2"} {
		if err := ms.Reserve(ctx, m.ID, j, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms.Confirm(ctx, m.ID, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := ms.Confirm(ctx, m.ID, "a2"); !errors.Is(err, meeting.ErrAlreadyJoined) {
		t.Fatalf("second confirmed seat for one user: %v", err)
	}
	if js, _ := ms.JoinStart(ctx, m.ID, "a3", "alice"); !js.UserConfirmed {
		t.Fatal("UserConfirmed false for a confirmed user")
	}
	if err := ms.Reserve(ctx, m.ID, "b1", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Close(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := ms.Confirm(ctx, m.ID, "b1"); !errors.Is(err, meeting.ErrMeetingClosed) {
		t.Fatalf("confirm in a closed meeting: %v", err)
	}
	if err := ms.Reserve(ctx, m.ID, "c1", "carol"); !errors.Is(err, meeting.ErrMeetingClosed) {
		t.Fatalf("reserve in a closed meeting: %v", err)
	}
	if _, err := ms.Get(ctx, "not-a-uuid"); !errors.Is(err, meeting.ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}

// A join is recorded, and a seat taken for another join, while a seat
// transaction holds the meeting's row: the foreign-key checks of both do
// not wait for it.
func TestJoins_are_recorded_while_a_seat_transaction_holds_the_meeting(t *testing.T) {
	ms, m, s, tn := newMeetingsIn(t, 5)
	ctx := context.Background()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM "`+tn.Schema+`".meetings WHERE id = $1 `+store.SeatLock, m.ID); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r := meeting.JoinRequest{MeetingID: m.ID, UserID: "alice", PaymentToken: "tok"}
	start := starter.Start{Tenant: tn.Name, WorkflowID: tn.Name + ":join:j1", WorkflowType: "Join", TaskQueue: "q", Input: []byte(`{"join_id":"j1"}`)}
	if _, _, created, err := ms.NewJoin(wctx, "j1", "key1", "h1", r, start); err != nil || !created {
		t.Fatalf("NewJoin while the meeting is held = %v, %v: recording a join waits for the seat transactions", created, err)
	}
	if _, err := s.Pool().Exec(wctx, `INSERT INTO "`+tn.Schema+`".seats (join_id, meeting_id, user_id, state) VALUES ('j2', $1, 'bob', 'reserved')`, m.ID); err != nil {
		t.Fatalf("a seat row while the meeting is held: %v", err)
	}
	// And a second seat transaction does wait for it.
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := ms.Reserve(rctx, m.ID, "j3", "carol"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reserve while another seat transaction holds the meeting = %v, want it to wait", err)
	}
}

func TestJoins_are_recorded_once_per_id_with_their_start(t *testing.T) {
	ms, m, s, tn := newMeetingsIn(t, 5)
	ctx := context.Background()
	r := meeting.JoinRequest{MeetingID: m.ID, UserID: "alice", PaymentToken: "tok", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	start := starter.Start{Tenant: tn.Name, WorkflowID: tn.Name + ":join:j1", WorkflowType: "Join", TaskQueue: "q", Input: []byte(`{"join_id":"j1"}`)}
	j, hash, created, err := ms.NewJoin(ctx, "j1", "key1", "h1", r, start)
	if err != nil || !created || hash != "h1" || j.Status != meeting.JoinPending {
		t.Fatalf("first NewJoin = %+v %q %v %v", j, hash, created, err)
	}
	_, hash, created, err = ms.NewJoin(ctx, "j1", "key1", "h2", r, start)
	if err != nil || created || hash != "h1" {
		t.Fatalf("second NewJoin = %q %v %v, want the stored hash h1", hash, created, err)
	}
	var starts int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM sagaflow.workflow_starts WHERE workflow_id = $1 AND started_at IS NULL`, start.WorkflowID).Scan(&starts); err != nil || starts != 1 {
		t.Fatalf("the join's start was recorded %d times (%v), want once with the join", starts, err)
	}
	j.Status, j.Reason = meeting.JoinFailed, "meeting_full"
	j.Steps = []meeting.Step{{Name: "reserve_seat", Status: "failed"}}
	if err := ms.SaveJoin(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := ms.Join(ctx, "j1")
	if err != nil || got.Status != meeting.JoinFailed || len(got.Steps) != 1 || got.TraceID != r.TraceID {
		t.Fatalf("Join = %+v, %v (want trace id %s kept)", got, err, r.TraceID)
	}
	if _, err := ms.Join(ctx, "nope"); !errors.Is(err, meeting.ErrJoinNotFound) {
		t.Fatalf("unknown join: %v", err)
	}
}
