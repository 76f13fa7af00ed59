package activities

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/sim"
)

// joinMetrics is a fake JoinMetrics that records its calls as text.
type joinMetrics struct {
	mu    sync.Mutex
	calls []string
}

func (m *joinMetrics) add(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, s)
}

func (m *joinMetrics) Ended(o, r string, late bool) { m.add(fmt.Sprintf("ended %s %s %v", o, r, late)) }
func (m *joinMetrics) UnknownOutcome(r string)      { m.add("unknown " + r) }
func (m *joinMetrics) Settled(call, status string)  { m.add("settled " + call + " " + status) }

// savedJoins is a MeetingStore whose SaveJoin succeeds.
type savedJoins struct{ MeetingStore }

func (savedJoins) SaveJoin(context.Context, meeting.Join) error { return nil }

func TestJoin_metrics_count_lost_replies_settlements_and_ends(t *testing.T) {
	t.Parallel()
	a, _ := gateway(t, sim.PaymentConfig{TimeoutAfterCommit: 1})
	m := &joinMetrics{}
	a.JoinMetrics = m
	a.Meetings = func(string) MeetingStore { return savedJoins{} }
	ctx := context.Background()
	if _, err := a.Charge(ctx, ChargeInput{IdempotencyKey: "j_m1", Amount: 100, Currency: "KRW", Token: "tok_ok"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.VoidCharge(ctx, "j_m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LookupCharge(ctx, "j_never"); err != nil {
		t.Fatal(err)
	}
	late := meeting.Join{Status: meeting.JoinCompensated, Reason: "cancelled", Payment: meeting.Payment{Status: ChargeRefunded},
		Steps: []meeting.Step{{Name: "charge", Status: "failed"}, {Name: "refund", Status: "done"}}}
	for _, j := range []meeting.Join{{Status: meeting.JoinPending}, {Status: meeting.JoinConfirmed}, late} {
		if err := a.SaveJoin(ctx, SaveJoinInput{Join: j}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"unknown applied", "settled void succeeded", "settled lookup none", "ended confirmed  false", "ended compensated cancelled true"}
	if fmt.Sprint(m.calls) != fmt.Sprint(want) {
		t.Fatalf("metrics calls\n %q\nwant\n %q", m.calls, want)
	}
}
