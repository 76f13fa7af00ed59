package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// seriesValue sums the series of name whose labels include want (a
// counter's or gauge's value, a histogram's count), and says whether any
// matched.
func seriesValue(t *testing.T, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := stack.app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	found := false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, found
}

// One product change and one coupon burst move the metrics the alerts and
// the dashboard read, as the process wires them (internal/app): the outbox
// relay, the ingest, the push, the collectors of the bus and the outbox,
// the coupon answers and issue lag, and the SDK's schedule-to-start.
func TestMetrics_move_as_a_change_and_a_coupon_burst_run(t *testing.T) {
	st := newSyncTenant(t, syncTenantName("m"), "shopwave")
	published, _ := seriesValue(t, "sagaflow_outbox_published_total", nil)
	lagged, _ := seriesValue(t, "sagaflow_ingest_lag_seconds", nil)
	applied, _ := seriesValue(t, "sagaflow_sync_items_total", map[string]string{"market": "shopwave", "outcome": "applied"})
	body := map[string]any{"name": "Metrics mug", "price": map[string]any{"amount": 15000, "currency": "KRW"}, "stock": 2}
	if code := call(t, st.key, http.MethodPut, "/v1/products/METRICS-1", body, nil); code != http.StatusCreated {
		t.Fatalf("put = %d", code)
	}
	testenv.Eventually(t, 60*time.Second, "the change relayed, ingested and pushed", func() bool {
		p, _ := seriesValue(t, "sagaflow_outbox_published_total", nil)
		l, _ := seriesValue(t, "sagaflow_ingest_lag_seconds", nil)
		a, _ := seriesValue(t, "sagaflow_sync_items_total", map[string]string{"market": "shopwave", "outcome": "applied"})
		return p > published && l > lagged && a > applied
	})
	testenv.Eventually(t, 30*time.Second, "the collectors report the tenant's outbox and the bus", func() bool {
		backlog, ok := seriesValue(t, "sagaflow_outbox_backlog", map[string]string{"tenant": st.t.Name})
		consumers, _ := seriesValue(t, "sagaflow_bus_queue_consumers", map[string]string{"queue": "sagaflow.catalog.ingest"})
		_, dead := seriesValue(t, "sagaflow_bus_queue_messages", map[string]string{"queue": "sagaflow.catalog.dead"})
		_, open := seriesValue(t, "sagaflow_market_breakers", map[string]string{"market": "shopwave", "state": "open"})
		return ok && backlog == 0 && consumers >= 1 && dead && open
	})
	// The workflow task's: activities the SDK dispatches eagerly (to a
	// worker of the same process, as here) record no schedule-to-start.
	if n, _ := seriesValue(t, "temporal_workflow_task_schedule_to_start_latency_seconds", map[string]string{"task_queue": "sagaflow-sync"}); n == 0 {
		t.Error("no workflow task schedule-to-start latency of the sagaflow-sync task queue")
	}

	accepted, _ := seriesValue(t, "sagaflow_coupon_requests_total", map[string]string{"tenant": "demo", "outcome": "accepted"})
	dups, _ := seriesValue(t, "sagaflow_coupon_requests_total", map[string]string{"tenant": "demo", "outcome": "duplicate"})
	issued, _ := seriesValue(t, "sagaflow_coupon_issued_total", map[string]string{"tenant": "demo"})
	c := createCampaign(t, 10, -time.Second, time.Hour)
	answers := burst(t, c.ID, 3, 2, -1, nil) // user-0, user-1, user-0 again
	for _, a := range answers {
		if a.code != http.StatusAccepted && a.code != http.StatusConflict {
			t.Fatalf("answers %+v, want 202s and one 409", answers)
		}
	}
	if a, _ := seriesValue(t, "sagaflow_coupon_requests_total", map[string]string{"tenant": "demo", "outcome": "accepted"}); a < accepted+2 {
		t.Errorf("accepted counted %v → %v, want at least 2 more", accepted, a)
	}
	if d, _ := seriesValue(t, "sagaflow_coupon_requests_total", map[string]string{"tenant": "demo", "outcome": "duplicate"}); d < dups+1 {
		t.Errorf("duplicates counted %v → %v, want at least 1 more", dups, d)
	}
	testenv.Eventually(t, 60*time.Second, "the coupons issued and the issue lag reported", func() bool {
		i, _ := seriesValue(t, "sagaflow_coupon_issued_total", map[string]string{"tenant": "demo"})
		_, lag := seriesValue(t, "sagaflow_coupon_issue_lag_max", map[string]string{"tenant": "demo"})
		return i >= issued+2 && lag
	})

	resp, err := http.Get(stack.api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		text.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, want := range []string{"# HELP sagaflow_outbox_oldest_age_seconds ", "# TYPE sagaflow_ingest_lag_seconds histogram", "# HELP sagaflow_coupon_issue_lag_max "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
