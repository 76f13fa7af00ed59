package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/starter"
)

// The operator's reader: parked items by market, open joins older than the
// cut-off (not ended ones, not fresh ones), active campaigns.
func TestOps_reads_what_needs_an_operator(t *testing.T) {
	t.Parallel()
	ms, m, s, tn := newMeetingsIn(t, 5)
	ctx := context.Background()
	c := s.Catalog(tn.Schema)
	alpha := newChannel(t, c, "alpha")
	for _, sku := range []string{"O-1", "O-2"} {
		if _, err := c.Park(ctx, catalog.ParkedItem{SKU: sku, ChannelID: alpha.ID, Market: "alpha", Version: 1, Error: "e"}); err != nil {
			t.Fatal(err)
		}
	}
	ops := s.Ops(tn.Schema)
	if got, err := ops.ParkedByMarket(ctx); err != nil || got["alpha"] != 2 || len(got) != 1 {
		t.Fatalf("ParkedByMarket = %v, %v", got, err)
	}
	for _, id := range []string{"j_old", "j_done", "j_new"} {
		r := meeting.JoinRequest{MeetingID: m.ID, UserID: id, PaymentToken: "tok", TraceID: "trace-" + id}
		st := starter.Start{Tenant: tn.Name, WorkflowID: tn.Name + ":join:" + id, WorkflowType: "Join", TaskQueue: "q", Input: []byte(`{}`)}
		if _, _, _, err := ms.NewJoin(ctx, id, "key-"+id, "h", r, st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE `+pgx.Identifier{tn.Schema, "joins"}.Sanitize()+` SET updated_at = now() - interval '1 hour',
		status = CASE id WHEN 'j_done' THEN 'failed' ELSE 'charged' END WHERE id IN ('j_old', 'j_done')`); err != nil {
		t.Fatal(err)
	}
	open, err := ops.OpenJoins(ctx, time.Now().Add(-5*time.Minute), 10)
	if err != nil || len(open) != 1 || open[0].JoinID != "j_old" || open[0].Status != meeting.JoinCharged || open[0].TraceID != "trace-j_old" {
		t.Fatalf("OpenJoins = %+v, %v; want j_old only", open, err)
	}
	if cps, err := ops.ActiveCampaigns(ctx); err != nil || len(cps) != 0 {
		t.Fatalf("ActiveCampaigns = %+v, %v; want none", cps, err)
	}
	if got, err := ops.DeadLettersByReason(ctx); err != nil || len(got) != 0 {
		t.Fatalf("DeadLettersByReason = %v, %v", got, err)
	}
}
