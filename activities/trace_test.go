package activities

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// seats is a MeetingStore whose Reserve fails with err.
type seats struct{ err error }

func (s seats) Reserve(context.Context, string, string, string) error { return s.err }
func (seats) Confirm(context.Context, string, string) error           { return nil }
func (seats) Release(context.Context, string, string) error           { return nil }
func (seats) SaveJoin(context.Context, meeting.Join) error            { return nil }

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// only returns the one span of spans called name, failing otherwise.
func only(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %q in the trace, want 1", len(found), name)
	}
	return found[0]
}

func TestJoinSpans_chain_down_to_the_gateway_and_label_compensations(t *testing.T) {
	rec := testenv.RecordSpans(t)
	a, _ := gateway(t, sim.PaymentConfig{})
	a.Meetings = func(string) MeetingStore { return seats{err: meeting.ErrMeetingFull} }
	ctx, root := otel.Tracer("test").Start(context.Background(), "RunActivity")
	seat := SeatInput{Schema: "t_acme", MeetingID: "m1", JoinID: "j_trace", UserID: "ann@example.com"}
	if err := a.ReserveSeat(ctx, seat); !isNonRetryable(err, ErrTypeMeetingFull) {
		t.Fatalf("ReserveSeat = %v, want MeetingFull", err)
	}
	res, err := a.Charge(ctx, ChargeInput{IdempotencyKey: "j_trace", Amount: 1500, Currency: "KRW", Token: "tok_ok"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Refund(ctx, RefundInput{PaymentID: res.PaymentID, IdempotencyKey: "j_trace", Reason: "meeting_closed"}); err != nil {
		t.Fatal(err)
	}
	seat.Reason = "meeting_closed"
	if err := a.ReleaseSeat(ctx, seat); err != nil {
		t.Fatal(err)
	}
	root.End()
	spans := testenv.SpansOfTrace(rec, root.SpanContext().TraceID())

	reserve := attrs(only(t, spans, "seat reserve"))
	if reserve[attrOutcome].AsString() != ErrTypeMeetingFull || reserve[attrMeetingID].AsString() != "m1" {
		t.Fatalf("reserve attributes %v, want outcome MeetingFull for meeting m1", reserve)
	}
	charge := only(t, spans, "payment charge")
	if charge.Parent().SpanID() != root.SpanContext().SpanID() || attrs(charge)[attrPaymentStatus].AsString() != ChargeSucceeded {
		t.Fatalf("charge span: parent %v attributes %v", charge.Parent().SpanID(), attrs(charge))
	}
	var calls int
	for _, s := range spans {
		if s.Name() == "payment POST" && s.Parent().SpanID() == charge.SpanContext().SpanID() && s.SpanKind() == trace.SpanKindClient {
			calls++
		}
	}
	if calls != 1 {
		t.Fatalf("%d gateway client spans under the charge, want 1", calls)
	}
	for _, name := range []string{"payment refund", "seat release"} {
		m := attrs(only(t, spans, name))
		if !m[attrCompensation].AsBool() || m[attrCompensationOf].AsString() != "meeting_closed" {
			t.Fatalf("%s attributes %v, want a compensation for meeting_closed", name, m)
		}
	}
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if v := kv.Value.String(); strings.Contains(v, "ann@example.com") || strings.Contains(v, "tok_ok") {
				t.Fatalf("span %s holds personal or card data: %s=%s", s.Name(), kv.Key, v)
			}
		}
	}
}

func TestIssueNext_links_its_batch_to_the_requests_traces(t *testing.T) {
	rec := testenv.RecordSpans(t)
	a, tn := storeActivities(t)
	const n = MaxBatchLinks + 2
	ref := openCampaign(t, a, tn, n+1)
	var requests []trace.SpanContext
	for _, u := range users("u", 1, n) {
		ctx, span := otel.Tracer("test").Start(context.Background(), "POST coupon request")
		if ans, err := infra.queue.Ask(ctx, ref.Tenant, ref.CampaignID, u); err != nil || ans.Outcome != queue.Accepted {
			t.Fatalf("request of %s: %+v %v", u, ans, err)
		}
		span.End()
		requests = append(requests, span.SpanContext())
	}
	// One request not traced: it gets no link.
	requestCoupons(t, ref, "untraced")
	res := mustIssueNext(t, activityEnv(a), a, IssueInput{Campaign: ref, Max: n + 1, Wait: time.Second})
	if res.Issued != n+1 {
		t.Fatalf("result %+v, want %d issued", res, n+1)
	}
	var batch sdktrace.ReadOnlySpan
	for _, s := range testenv.SpansNamed(rec, "coupon issue") {
		if attrs(s)[attrCampaignID].AsString() == ref.CampaignID {
			batch = s
		}
	}
	if batch == nil {
		t.Fatal("no coupon issue span for the campaign")
	}
	links := batch.Links()
	if len(links) != MaxBatchLinks {
		t.Fatalf("%d links, want the cap %d", len(links), MaxBatchLinks)
	}
	for i, l := range links { // the lowest ranks first
		if l.SpanContext.TraceID() != requests[i].TraceID() || l.SpanContext.SpanID() != requests[i].SpanID() {
			t.Fatalf("link %d = %v, want request %d's span %v", i, l.SpanContext, i+1, requests[i])
		}
	}
	m := attrs(batch)
	if m[attrLinked].AsInt64() != MaxBatchLinks || m[attrUnlinked].AsInt64() != n-MaxBatchLinks || m[attrBatchSize].AsInt64() != n+1 {
		t.Fatalf("batch attributes %v", m)
	}
}
