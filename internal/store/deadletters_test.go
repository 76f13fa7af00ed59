package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/deadletter"
	"github.com/sagaflow/sagaflow/internal/store"
)

func letter(msgID, reason string, at time.Time) deadletter.Letter {
	body := []byte(`{"message_id":"` + msgID + `"}`)
	return deadletter.Letter{MessageID: msgID, Reason: reason, Detail: "why " + msgID, Transient: deadletter.Transient(reason),
		RoutingKey: "product.changed.x", Headers: map[string]any{"x-sagaflow-reason": "why"}, Body: body,
		Fingerprint: deadletter.Fingerprint("product.changed.x", msgID, body), DeadAt: at}
}

// A redelivered letter is archived once; one that dies again after a
// replay waits again, with one death more.
func TestDeadLetters_archive_is_idempotent_per_fingerprint(t *testing.T) {
	t.Parallel()
	_, s, tn := newCatalog(t)
	ctx := context.Background()
	dl := s.DeadLetters(tn.Schema)
	l := letter("m-1", deadletter.ReasonInvalid, time.Now())
	id, inserted, err := dl.Archive(ctx, l)
	if err != nil || !inserted || id == "" {
		t.Fatalf("first Archive = %q %v %v", id, inserted, err)
	}
	if id2, inserted, err := dl.Archive(ctx, l); err != nil || inserted || id2 != "" {
		t.Fatalf("redelivery: %q %v %v, want nothing new", id2, inserted, err)
	}
	page, err := dl.Page(ctx, deadletter.Filter{}, 10, time.Time{}, "")
	if err != nil || len(page) != 1 || page[0].ID != id || page[0].Deaths != 1 || page[0].Headers["x-sagaflow-reason"] != "why" {
		t.Fatalf("Page = %+v, %v", page, err)
	}
	if _, _, err := dl.Replay(ctx, deadletter.Selection{IDs: []string{id}}, 10, func(context.Context, []deadletter.Letter) error { return nil }); err != nil {
		t.Fatal(err)
	}
	l.Reason = deadletter.ReasonDeliveryLimit
	if id3, inserted, err := dl.Archive(ctx, l); err != nil || inserted || id3 != id {
		t.Fatalf("died again: %q %v %v, want the same row back", id3, inserted, err)
	}
	page, _ = dl.Page(ctx, deadletter.Filter{}, 10, time.Time{}, "")
	if len(page) != 1 || page[0].Deaths != 2 || page[0].ReplayedAt != nil || page[0].Reason != deadletter.ReasonDeliveryLimit || page[0].Replays != 1 {
		t.Fatalf("after a second death: %+v", page)
	}
}

// Filters, pages and counts; the administrators' table keeps the tenant a
// message claimed.
func TestDeadLetters_pages_filters_counts(t *testing.T) {
	t.Parallel()
	_, s, tn := newCatalog(t)
	ctx := context.Background()
	dl := s.DeadLetters(tn.Schema)
	base := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	for i := range 5 {
		reason := deadletter.ReasonInvalid
		if i%2 == 1 {
			reason = deadletter.ReasonDeliveryLimit
		}
		if _, _, err := dl.Archive(ctx, letter(fmt.Sprintf("p-%d", i), reason, base.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	all := pageAll(t, 5, func(at time.Time, after string) ([]deadletter.Letter, error) {
		return dl.Page(ctx, deadletter.Filter{}, 2, at, after)
	}, func(l deadletter.Letter) (time.Time, string, string) { return l.DeadAt, l.ID, l.MessageID })
	if fmt.Sprint(all) != "[p-0 p-1 p-2 p-3 p-4]" {
		t.Fatalf("paged %v", all)
	}
	if page, _ := dl.Page(ctx, deadletter.Filter{Reason: deadletter.ReasonDeliveryLimit}, 10, time.Time{}, ""); len(page) != 2 {
		t.Fatalf("reason filter: %d letters, want 2", len(page))
	}
	if page, _ := dl.Page(ctx, deadletter.Filter{Since: base.Add(3 * time.Minute)}, 10, time.Time{}, ""); len(page) != 2 {
		t.Fatalf("since filter: %d letters, want 2", len(page))
	}
	counts, err := dl.CountsByReason(ctx)
	if err != nil || counts[deadletter.ReasonInvalid] != 3 || counts[deadletter.ReasonDeliveryLimit] != 2 {
		t.Fatalf("CountsByReason = %v, %v", counts, err)
	}
	admin := s.DeadLetters(store.AdminSchema)
	l := letter("orphan-"+tn.Name, deadletter.ReasonUnknownTenant, time.Now())
	l.Claimed = "nobody"
	if _, inserted, err := admin.Archive(ctx, l); err != nil || !inserted {
		t.Fatalf("admin Archive: %v %v", inserted, err)
	}
	var claimed string
	if err := s.Pool().QueryRow(ctx, `SELECT claimed FROM sagaflow.dead_letters WHERE message_id = $1`, l.MessageID).Scan(&claimed); err != nil || claimed != "nobody" {
		t.Fatalf("claimed = %q, %v", claimed, err)
	}
	if page, _ := dl.Page(ctx, deadletter.Filter{Reason: deadletter.ReasonUnknownTenant}, 10, time.Time{}, ""); len(page) != 0 {
		t.Fatalf("the tenant sees the administrators' letter: %+v", page)
	}
}

// A replay publishes each letter once: a failed publish marks nothing, a
// second replay finds nothing, and two at once never share a letter.
func TestDeadLetters_replay_publishes_each_letter_once(t *testing.T) {
	t.Parallel()
	_, s, tn := newCatalog(t)
	ctx := context.Background()
	dl := s.DeadLetters(tn.Schema)
	for i := range 30 {
		if _, _, err := dl.Archive(ctx, letter(fmt.Sprintf("r-%d", i), deadletter.ReasonDeliveryLimit, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("broker down")
	if _, _, err := dl.Replay(ctx, deadletter.Selection{}, 100, func(context.Context, []deadletter.Letter) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed publish: %v", err)
	}
	if counts, _ := dl.CountsByReason(ctx); counts[deadletter.ReasonDeliveryLimit] != 30 {
		t.Fatalf("a failed publish marked letters: %v", counts)
	}
	var mu sync.Mutex
	published := map[string]int{}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				ls, more, err := dl.Replay(ctx, deadletter.Selection{}, 7, func(_ context.Context, ls []deadletter.Letter) error {
					mu.Lock()
					defer mu.Unlock()
					for _, l := range ls {
						published[l.ID]++
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if len(ls) == 0 && !more {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(published) != 30 {
		t.Fatalf("%d letters published, want 30", len(published))
	}
	for id, n := range published {
		if n != 1 {
			t.Fatalf("letter %s published %d times", id, n)
		}
	}
	ls, _, err := dl.Replay(ctx, deadletter.Selection{}, 100, func(context.Context, []deadletter.Letter) error {
		t.Fatal("replayed again")
		return nil
	})
	if err != nil || len(ls) != 0 {
		t.Fatalf("second replay: %d, %v", len(ls), err)
	}
}
