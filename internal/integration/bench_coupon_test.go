package integration

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/workflows"
)

// BenchmarkCoupon_issue_drain measures how fast a campaign's workflow drains
// accepted requests into PostgreSQL coupons: BENCH_COUPONS requests are
// accepted straight into Redis (200 at once), while the workflow issues; the
// figure is coupons per second from the first request to the campaign done
// (Redis cleaned up). Run it with `make bench-coupon-drain`.
func BenchmarkCoupon_issue_drain(b *testing.B) {
	n := envInt("BENCH_COUPONS", 50000)
	ctx := context.Background()
	for range b.N {
		var c campaignDoc
		now := time.Now()
		code, err := rawCall(demoKey(), http.MethodPost, "/v1/campaigns", map[string]any{
			"name": "drain", "stock": n, "starts_at": now.Add(-time.Second), "ends_at": now.Add(time.Hour),
		}, &c, nil)
		if err != nil || code != http.StatusCreated {
			b.Fatalf("create campaign: %d %v", code, err)
		}
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(n) {
						return
					}
					a, err := stack.app.Redis.Ask(ctx, "demo", c.ID, fmt.Sprintf("drain-%d", i))
					if err != nil || a.Outcome != queue.Accepted {
						b.Errorf("request %d: %v %v", i, a.Outcome, err)
						return
					}
					if a.Wake { // as the API does: the workflow may be asleep
						_ = stack.app.Temporal.SignalWorkflow(ctx, workflows.CampaignWorkflowID("demo", c.ID), "", workflows.SignalCampaignWake, nil)
					}
				}
			})
		}
		wg.Wait()
		accepted := time.Since(start)
		for {
			var doc campaignDoc
			if code, err := rawCall(demoKey(), http.MethodGet, "/v1/campaigns/"+c.ID, nil, &doc, nil); err != nil || code != http.StatusOK {
				b.Fatalf("get campaign: %d %v", code, err)
			}
			if doc.Status == "done" {
				if doc.Issued != n {
					b.Fatalf("issued %d of %d", doc.Issued, n)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		total := time.Since(start)
		b.ReportMetric(float64(n)/total.Seconds(), "coupons/s")
		b.ReportMetric(float64(n)/accepted.Seconds(), "accepted/s")
		fmt.Printf("%d coupons: accepted in %s (%.0f/s), all issued and cleaned up after %s: %.0f coupons/s (target >= 5000)\n",
			n, accepted.Round(time.Millisecond), float64(n)/accepted.Seconds(), total.Round(time.Millisecond), float64(n)/total.Seconds())
	}
}
