package telemetry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/telemetry"
)

func TestJoin_counts_ends_compensations_and_late_refunds_with_bounded_reasons(t *testing.T) {
	m := newMetrics(t)
	j := telemetry.NewJoinMetrics(m, "payment_declined", "cancelled")
	j.Ended("confirmed", "", false)
	j.Ended("compensated", "cancelled", true)
	j.Ended("compensated", "cancelled", false)
	j.Ended("failed", "a free text\x00 that must not become a series", false)
	j.UnknownOutcome("applied")
	j.Settled("void", "voided")
	wantSeries(t, m, []series{
		{"sagaflow_join_outcomes_total", "outcome=confirmed reason=", 1},
		{"sagaflow_join_outcomes_total", "outcome=compensated reason=cancelled", 2},
		{"sagaflow_join_outcomes_total", "outcome=failed reason=other", 1},
		{"sagaflow_join_compensations_total", "reason=cancelled", 2},
		{"sagaflow_join_late_refunds_total", "", 1},
		{"sagaflow_payment_unknown_outcomes_total", "resolution=applied", 1},
		{"sagaflow_payment_settlements_total", "call=void status=voided", 1},
	})
}

// series is one series' expected value.
type series struct {
	name, labels string
	want         float64
}

func wantSeries(t *testing.T, m *telemetry.Metrics, want []series) {
	t.Helper()
	for _, c := range want {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestBus_counts_dead_letters_lag_and_the_oldest_unacked(t *testing.T) {
	m := newMetrics(t)
	b := telemetry.NewBusMetrics(m)
	if got := value(t, m, "sagaflow_ingest_oldest_unacked_age_seconds", ""); got != 0 {
		t.Fatalf("oldest unacked before any ingest = %v, want 0", got)
	}
	held := time.Now().Add(-time.Minute)
	b.WatchOldest(func() time.Time { return held })
	if got := value(t, m, "sagaflow_ingest_oldest_unacked_age_seconds", ""); got < 60 || got > 600 {
		t.Fatalf("oldest unacked = %v, want about 60", got)
	}
	held = time.Time{}
	if got := value(t, m, "sagaflow_ingest_oldest_unacked_age_seconds", ""); got != 0 {
		t.Fatalf("oldest unacked with nothing held = %v, want 0", got)
	}
	b.DeadLettered("unknown_tenant", 2)
	b.HandedOver(time.Now().Add(-3 * time.Second))
	if got := value(t, m, "sagaflow_bus_dead_letters_total", "reason=unknown_tenant"); got != 2 {
		t.Fatalf("dead letters = %v, want 2", got)
	}
	// gathered prints a histogram as its count
	if s := gathered(t, m, "sagaflow_ingest_lag_seconds"); s != "sagaflow_ingest_lag_seconds count=1\n" {
		t.Fatalf("lag histogram = %q, want one observation", s)
	}
}

func TestQueues_reports_a_failed_inspection_as_down(t *testing.T) {
	m := newMetrics(t)
	telemetry.RegisterQueues(m, func(context.Context, string) (int, int, error) { return 0, 0, errors.New("broker away") }, []string{"q"}, 0)
	if got := value(t, m, "sagaflow_bus_queue_up", "queue=q"); got != 0 {
		t.Fatalf("up = %v, want 0", got)
	}
	if got := value(t, m, "sagaflow_bus_queue_messages", "queue=q"); got != -1 {
		t.Fatalf("messages of a queue not inspected = %v, want no series", got)
	}
}

func TestSync_counts_parked_by_market_and_tenant_and_breakers(t *testing.T) {
	m := newMetrics(t)
	s := telemetry.NewSyncMetrics(m)
	s.Parked("souk", "acme", 3)
	s.Push("souk", "retry")
	s.BreakerChanged("souk", "closed", "open")
	telemetry.RegisterBreakers(m, func(each func(string, string, int)) { each("souk", "open", 2) })
	wantSeries(t, m, []series{
		{"sagaflow_sync_parked_total", "market=souk tenant=acme", 3},
		{"sagaflow_sync_pushes_total", "market=souk result=retry", 1},
		{"sagaflow_market_breaker_transitions_total", "market=souk state=open", 1},
		{"sagaflow_market_breakers", "market=souk state=open", 2},
	})
}

// The SDK's schedule-to-start latencies reach the registry under these
// names, with the task_queue label: the dashboard and docs/observability.md
// use them rather than a metric of our own.
func TestTemporal_schedule_to_start_latency_has_its_task_queue(t *testing.T) {
	m := newMetrics(t)
	h := m.Temporal().WithTags(map[string]string{"task_queue": "sync", "activity_type": "PushItems"})
	h.Timer("temporal_activity_schedule_to_start_latency").Record(40 * time.Millisecond)
	h.Timer("temporal_workflow_task_schedule_to_start_latency").Record(10 * time.Millisecond)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"temporal_activity_schedule_to_start_latency_seconds":      false,
		"temporal_workflow_task_schedule_to_start_latency_seconds": false,
	}
	for _, mf := range mfs {
		if _, ok := want[mf.GetName()]; !ok {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "task_queue" && l.GetValue() == "sync" {
					want[mf.GetName()] = true
				}
			}
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("no %s{task_queue=\"sync\"} in the registry", name)
		}
	}
}

func TestBus_archived_dead_letters_start_at_zero_per_reason(t *testing.T) {
	m := newMetrics(t)
	b := telemetry.NewBusMetrics(m)
	b.ArchivedReasons([]string{"invalid", "delivery_limit"})
	b.Archived("invalid")
	b.Archived("invalid")
	wantSeries(t, m, []series{
		{"sagaflow_bus_dead_letters_archived_total", "reason=invalid", 2},
		// There before its first letter, so increase() sees that one too.
		{"sagaflow_bus_dead_letters_archived_total", "reason=delivery_limit", 0},
	})
}
