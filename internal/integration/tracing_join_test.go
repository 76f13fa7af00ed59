package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/internal/tracectx"
	"github.com/sagaflow/sagaflow/workflows"
)

// These tests record every span of the process (one at a time) and reset
// the simulators: they do not run in parallel.

// clientSpan starts the caller's span, a client span as an HTTP client's
// instrumentation makes, and returns it with the traceparent it sends.
func clientSpan(name string) (trace.Span, map[string]string) {
	ctx, span := otel.Tracer("test-client").Start(context.Background(), name, trace.WithSpanKind(trace.SpanKindClient))
	return span, map[string]string{"traceparent": tracectx.Capture(ctx).TraceParent}
}

// chain is the names and kinds of span and its recorded ancestors, from the
// root down, and whether the root is want (the caller's span).
func chain(spans []sdktrace.ReadOnlySpan, span sdktrace.ReadOnlySpan, want trace.SpanID) (names []string, kinds []trace.SpanKind, rooted bool) {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	for s := span; s != nil; s = byID[s.Parent().SpanID()] {
		names = append([]string{s.Name()}, names...)
		kinds = append([]trace.SpanKind{s.SpanKind()}, kinds...)
		if !s.Parent().IsValid() {
			return names, kinds, false
		}
		if s.Parent().SpanID() == want {
			return names, kinds, true
		}
	}
	return names, kinds, false
}

// subsequence reports whether want appears in got in order.
func subsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// One join is one trace: the caller's request span, the workflow start the
// request recorded (sent by the starter in the request's context), the
// workflow, the charge activity, and the HTTP call to the gateway; every
// span of the join hangs off the caller's.
func TestTracing_join_is_one_trace_from_the_request_to_the_gateway(t *testing.T) {
	rec := testenv.RecordSpans(t)
	resetSims(t)
	m := createMeeting(t, demoKey(), map[string]any{"title": "Traced", "capacity": 2, "fee": map[string]any{"amount": 1200, "currency": "KRW"}})
	client, headers := clientSpan("POST /v1/meetings/{id}/joins")
	headers["Idempotency-Key"] = "traced-" + testenv.RunID()
	var out map[string]any
	code := callWithHeaders(t, demoKey(), http.MethodPost, "/v1/meetings/"+m.ID+"/joins", map[string]any{"user_id": "tracy", "payment_token": "tok_ok", "channels": []string{"email"}}, &out, headers)
	client.End()
	if code != http.StatusAccepted {
		t.Fatalf("POST join = %d %v", code, out)
	}
	joinID := out["join_id"].(string)
	if j := waitJoin(t, demoKey(), joinID, func(j meeting.Join) bool { return meeting.Terminal(j.Status) }); j.Status != meeting.JoinConfirmed {
		t.Fatalf("join = %+v, want confirmed", j)
	}

	want := []string{
		"StartWorkflow:" + workflows.JoinWorkflowType, "RunWorkflow:" + workflows.JoinWorkflowType,
		"StartActivity:Charge", "RunActivity:Charge", "payment charge", "payment POST",
	}
	traceID := client.SpanContext().TraceID()
	var spans []sdktrace.ReadOnlySpan
	var names []string
	var kinds []trace.SpanKind
	var gateway sdktrace.ReadOnlySpan
	eventually(t, 30*time.Second, "the join's spans down to the gateway call end", func() bool {
		spans = testenv.SpansOfTrace(rec, traceID)
		for _, s := range spans {
			if s.Name() != "payment POST" {
				continue
			}
			n, k, rooted := chain(spans, s, client.SpanContext().SpanID())
			if rooted && subsequence(n, want) {
				names, kinds, gateway = n, k, s
				return true
			}
		}
		return false
	})
	t.Logf("chain: %s", strings.Join(names, " → "))
	kindOf := map[string]trace.SpanKind{}
	for i, n := range names {
		kindOf[n] = kinds[i]
	}
	for name, kind := range map[string]trace.SpanKind{
		"StartWorkflow:" + workflows.JoinWorkflowType: trace.SpanKindClient,
		"RunWorkflow:" + workflows.JoinWorkflowType:   trace.SpanKindServer,
		"StartActivity:Charge":                        trace.SpanKindClient,
		"RunActivity:Charge":                          trace.SpanKindServer,
		"payment charge":                              trace.SpanKindInternal,
		"payment POST":                                trace.SpanKindClient,
	} {
		if kindOf[name] != kind {
			t.Errorf("span %s is %v, want %v", name, kindOf[name], kind)
		}
	}
	if got := attr(gateway, "http.response.status_code"); got != "200" && got != "201" {
		t.Errorf("gateway call status %q, want 2xx", got)
	}
	// The seat and the notification are in the same trace, hanging off the
	// caller's span too.
	for _, name := range []string{"seat reserve", "seat confirm", "notify POST"} {
		found := false
		for _, s := range spans {
			if s.Name() == name {
				_, _, rooted := chain(spans, s, client.SpanContext().SpanID())
				found = found || rooted
			}
		}
		if !found {
			t.Errorf("no %q span connected to the caller's in trace %s", name, traceID)
		}
	}
	// No span of the join's workflow is in another trace (but the status
	// queries of the GETs above, each in its own request's trace).
	for _, s := range rec.Ended() {
		query := strings.HasPrefix(s.Name(), "QueryWorkflow:") || strings.HasPrefix(s.Name(), "HandleQuery:")
		if !query && attr(s, "temporalWorkflowID") == workflows.JoinWorkflowID("demo", joinID) && s.SpanContext().TraceID() != traceID {
			t.Errorf("span %s of the join is in trace %s, not the request's %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
	}
}

// hostileTraceParents are headers a client can send (net/http refuses NUL
// and control characters; api's tests cover those) that must never be
// continued: each names trace hostileTraceID.
const hostileTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

var hostileTraceParents = map[string]string{
	"huge":       "00-" + hostileTraceID + "-00f067aa0ba902b7-01" + strings.Repeat("-0", 16<<10),
	"version_ff": "ff-" + hostileTraceID + "-00f067aa0ba902b7-01",
	"zero_span":  "00-" + hostileTraceID + "-0000000000000000-01",
	"bad_flags":  "00-" + hostileTraceID + "-00f067aa0ba902b7-zz",
}

func noSpanInHostileTrace(t *testing.T, rec *tracetest.SpanRecorder) {
	t.Helper()
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() == hostileTraceID || s.Parent().TraceID().String() == hostileTraceID {
			t.Fatalf("span %s continues the hostile trace", s.Name())
		}
		for _, l := range s.Links() {
			if l.SpanContext.TraceID().String() == hostileTraceID {
				t.Fatalf("span %s links to the hostile trace", s.Name())
			}
		}
	}
}

func TestTracing_join_with_a_hostile_traceparent_starts_a_new_root(t *testing.T) {
	rec := testenv.RecordSpans(t)
	resetSims(t)
	m := createMeeting(t, demoKey(), map[string]any{"title": "Hostile", "capacity": 10, "fee": map[string]any{"amount": 100, "currency": "KRW"}})
	for name, h := range hostileTraceParents {
		var out map[string]any
		code := callWithHeaders(t, demoKey(), http.MethodPost, "/v1/meetings/"+m.ID+"/joins", map[string]any{"user_id": "h-" + name, "payment_token": "tok_ok"}, &out,
			map[string]string{"Idempotency-Key": "hostile-" + name + "-" + testenv.RunID(), "traceparent": h, "tracestate": strings.Repeat("k=v,", 4<<10)})
		if code != http.StatusAccepted {
			t.Fatalf("%s: POST join = %d %v", name, code, out)
		}
		joinID := out["join_id"].(string)
		waitJoin(t, demoKey(), joinID, func(j meeting.Join) bool { return meeting.Terminal(j.Status) })
		var tp, ts string
		if err := stack.app.Store.Pool().QueryRow(context.Background(), `SELECT traceparent, tracestate FROM sagaflow.workflow_starts WHERE workflow_id = $1`,
			workflows.JoinWorkflowID("demo", joinID)).Scan(&tp, &ts); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tp, hostileTraceID) || len(tp) > tracectx.MaxTraceParent || len(ts) > tracectx.MaxTraceState {
			t.Fatalf("%s: stored traceparent %q (tracestate %d bytes)", name, tp, len(ts))
		}
		// The workflow was started all the same, in a trace of its own.
		eventually(t, 30*time.Second, name+": the join's workflow spans end", func() bool {
			for _, s := range rec.Ended() {
				if s.Name() == "StartWorkflow:"+workflows.JoinWorkflowType && attr(s, "temporalWorkflowID") == workflows.JoinWorkflowID("demo", joinID) {
					return true
				}
			}
			return false
		})
	}
	noSpanInHostileTrace(t, rec)
}

// A coupon request leaves its trace context in Redis; the issuing
// activity's batch span links to it.
func TestTracing_coupon_request_is_linked_from_the_issuing_activity(t *testing.T) {
	rec := testenv.RecordSpans(t)
	c := createCampaign(t, 10, -time.Second, 30*time.Second)
	client, headers := clientSpan("POST /v1/campaigns/{id}/requests")
	var out struct {
		Rank int64 `json:"rank"`
	}
	code := callWithHeaders(t, demoKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": "traced-user"}, &out, headers)
	client.End()
	if code != http.StatusAccepted {
		t.Fatalf("POST request = %d", code)
	}
	// And hostile ones: accepted, never linked.
	for name, h := range hostileTraceParents {
		if code := callWithHeaders(t, demoKey(), http.MethodPost, "/v1/campaigns/"+c.ID+"/requests", map[string]any{"user_id": "hostile-" + name}, nil, map[string]string{"traceparent": h}); code != http.StatusAccepted {
			t.Fatalf("%s: POST request = %d", name, code)
		}
	}
	var batch sdktrace.ReadOnlySpan
	var link sdktrace.Link
	eventually(t, 30*time.Second, "a batch span links to the request", func() bool {
		for _, s := range testenv.SpansNamed(rec, "coupon issue") {
			if attr(s, "sagaflow.campaign.id") != c.ID {
				continue
			}
			for _, l := range s.Links() {
				// The caller's span, or the server span of the request
				// (a child of the caller's) where the API traces requests.
				if l.SpanContext.TraceID() == client.SpanContext().TraceID() {
					batch, link = s, l
					return true
				}
			}
		}
		return false
	})
	var activity sdktrace.ReadOnlySpan
	eventually(t, 30*time.Second, "the issuing activity's span ends", func() bool {
		for _, s := range rec.Ended() {
			if s.SpanContext().SpanID() == batch.Parent().SpanID() {
				activity = s
				return true
			}
		}
		return false
	})
	if activity.Name() != "RunActivity:IssueNext" || activity.SpanKind() != trace.SpanKindServer {
		t.Fatalf("the batch span's parent is %s (%v), want RunActivity:IssueNext", activity.Name(), activity.SpanKind())
	}
	if batch.SpanContext().TraceID() == client.SpanContext().TraceID() {
		t.Fatal("the batch span is in the request's trace; it should link to it (a batch serves many traces)")
	}
	if linked := link.SpanContext.SpanID(); linked != client.SpanContext().SpanID() {
		var server sdktrace.ReadOnlySpan
		for _, s := range testenv.SpansOfTrace(rec, client.SpanContext().TraceID()) {
			if s.SpanContext().SpanID() == linked {
				server = s
			}
		}
		if server == nil || server.SpanKind() != trace.SpanKindServer || server.Parent().SpanID() != client.SpanContext().SpanID() {
			t.Fatalf("the batch links to span %s, neither the caller's nor its request's server span", linked)
		}
	}
	if got := attr(batch, "sagaflow.coupon.rank_first"); got == "" {
		t.Fatalf("batch span without its rank range: %v", batch.Attributes())
	}
	noSpanInHostileTrace(t, rec)
}
