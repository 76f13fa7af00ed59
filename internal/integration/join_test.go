package integration

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// These tests change the payment simulator's knobs, so they do not run in
// parallel (Go runs them before the parallel tests of the package).

func createMeeting(t *testing.T, key string, body map[string]any) meeting.Meeting {
	t.Helper()
	var m meeting.Meeting
	if code := call(t, key, http.MethodPost, "/v1/meetings", body, &m); code != http.StatusCreated {
		t.Fatalf("POST /v1/meetings = %d", code)
	}
	return m
}

// postJoin posts a join with an Idempotency-Key and returns the status and
// the decoded answer.
func postJoin(t *testing.T, key, meetingID, idemKey string, body map[string]any) (int, map[string]any) {
	t.Helper()
	var out map[string]any
	code := callWithHeaders(t, key, http.MethodPost, "/v1/meetings/"+meetingID+"/joins", body, &out, map[string]string{"Idempotency-Key": idemKey})
	return code, out
}

func waitJoin(t *testing.T, key, joinID string, done func(meeting.Join) bool) meeting.Join {
	t.Helper()
	var j meeting.Join
	eventually(t, 60*time.Second, "join "+joinID+" reaches the expected state", func() bool {
		if code := call(t, key, http.MethodGet, "/v1/joins/"+joinID, nil, &j); code != http.StatusOK {
			t.Fatalf("GET join = %d", code)
		}
		return done(j)
	})
	return j
}

func TestJoin_through_the_api_charges_once_and_confirms(t *testing.T) {
	testenv.Chaos(t, "11. a join's payment token", "charged once; no history event holds the token in the clear")
	resetSims(t)
	m := createMeeting(t, demoKey(), map[string]any{"title": "Go meetup", "capacity": 2, "fee": map[string]any{"amount": 30000, "currency": "KRW"}})
	idem := "happy-" + testenv.RunID()
	body := map[string]any{"user_id": "alice", "payment_token": "tok_ok"}

	code, first := postJoin(t, demoKey(), m.ID, idem, body)
	if code != http.StatusAccepted || first["join_id"] == "" {
		t.Fatalf("POST join = %d %v", code, first)
	}
	joinID := first["join_id"].(string)
	j := waitJoin(t, demoKey(), joinID, func(j meeting.Join) bool { return meeting.Terminal(j.Status) })
	if j.Status != meeting.JoinConfirmed || j.Payment.Status != "succeeded" || j.Payment.ID == "" {
		t.Fatalf("join = %+v", j)
	}

	// The same key and body: the same join, no second workflow, no second charge.
	code, again := postJoin(t, demoKey(), m.ID, idem, body)
	if code != http.StatusAccepted || again["join_id"] != joinID {
		t.Fatalf("retry = %d %v, want the same join", code, again)
	}
	// The same key with another body: 422.
	if code, _ := postJoin(t, demoKey(), m.ID, idem, map[string]any{"user_id": "bob", "payment_token": "tok_ok"}); code != http.StatusUnprocessableEntity {
		t.Fatalf("key reused with another body = %d, want 422", code)
	}
	// No key: 400. The confirmed user with a new key: 409.
	if code, _ := postJoin(t, demoKey(), m.ID, "", body); code != http.StatusBadRequest {
		t.Fatalf("no Idempotency-Key = %d, want 400", code)
	}
	if code, _ := postJoin(t, demoKey(), m.ID, idem+"-again", body); code != http.StatusConflict {
		t.Fatalf("already confirmed user = %d, want 409", code)
	}
	// Another tenant sees neither the join nor the meeting.
	if code := call(t, acmeKey(), http.MethodGet, "/v1/joins/"+joinID, nil, nil); code != http.StatusNotFound {
		t.Fatalf("acme reads demo's join: %d", code)
	}
	if code := call(t, acmeKey(), http.MethodGet, "/v1/meetings/"+m.ID, nil, nil); code != http.StatusNotFound {
		t.Fatalf("acme reads demo's meeting: %d", code)
	}
	// No deadline: no refund after confirmation.
	if code := call(t, demoKey(), http.MethodPost, "/v1/joins/"+joinID+"/cancel", nil, nil); code != http.StatusConflict {
		t.Fatalf("cancel without a deadline = %d, want 409", code)
	}

	stats := stack.sims.Payments.Stats()
	if stats.ChargesByKey[joinID] != 1 || stats.NetByKey[joinID] != 30000 {
		t.Fatalf("gateway: charges %d net %d for %s", stats.ChargesByKey[joinID], stats.NetByKey[joinID], joinID)
	}
	var got meeting.Meeting
	call(t, demoKey(), http.MethodGet, "/v1/meetings/"+m.ID, nil, &got)
	if got.Confirmed != 1 || got.Reserved != 0 {
		t.Fatalf("meeting = %+v", got)
	}
	// The payment token reached the gateway, but no event of the saga's
	// history holds it in the clear: the API sealed it for the charge.
	//
	// The API put the saga's version into its input: the history has no
	// version marker and no search-attribute upsert (GetVersion's).
	events := 0
	for _, ev := range history(t, workflows.JoinWorkflowID("demo", joinID), "") {
		events++
		// The text format shows payload bytes as (escaped) text, not base64.
		if b, _ := prototext.Marshal(ev); bytes.Contains(b, []byte("tok_ok")) {
			t.Fatalf("history event %d (%s) holds the payment token in the clear", ev.GetEventId(), ev.GetEventType())
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES ||
			ev.GetMarkerRecordedEventAttributes().GetMarkerName() == "Version" {
			t.Fatalf("history event %d (%s) is GetVersion's", ev.GetEventId(), ev.GetEventType())
		}
	}
	if events == 0 {
		t.Fatal("no history read")
	}
	recordHistory(t, started{WorkflowID: workflows.JoinWorkflowID("demo", joinID)}, "join_confirmed_v1.json")
}

func TestJoin_cancel_before_deadline_refunds_and_releases(t *testing.T) {
	resetSims(t)
	deadline := time.Now().Add(time.Hour).UTC()
	m := createMeeting(t, demoKey(), map[string]any{"title": "Refundable", "capacity": 1,
		"fee": map[string]any{"amount": 5000, "currency": "KRW"}, "cancel_deadline": deadline})
	code, out := postJoin(t, demoKey(), m.ID, "cancel-"+testenv.RunID(), map[string]any{"user_id": "carol", "payment_token": "tok_ok", "channels": []string{"email"}})
	if code != http.StatusAccepted {
		t.Fatalf("POST join = %d", code)
	}
	joinID := out["join_id"].(string)
	waitJoin(t, demoKey(), joinID, func(j meeting.Join) bool { return j.Status == meeting.JoinConfirmed })

	if code := call(t, demoKey(), http.MethodPost, "/v1/joins/"+joinID+"/cancel", nil, nil); code != http.StatusAccepted {
		t.Fatalf("cancel before the deadline = %d, want 202", code)
	}
	j := waitJoin(t, demoKey(), joinID, func(j meeting.Join) bool { return j.Status == meeting.JoinCompensated })
	if j.Reason != workflows.ReasonCancelled || j.Payment.Status != "refunded" {
		t.Fatalf("cancelled join = %+v", j)
	}
	if net := stack.sims.Payments.Stats().NetByKey[joinID]; net != 0 {
		t.Fatalf("net %d after the refund", net)
	}
	var got meeting.Meeting
	call(t, demoKey(), http.MethodGet, "/v1/meetings/"+m.ID, nil, &got)
	if got.Confirmed != 0 || got.Reserved != 0 {
		t.Fatalf("seat not released: %+v", got)
	}
	if code := call(t, demoKey(), http.MethodPost, "/v1/joins/"+joinID+"/cancel", nil, nil); code != http.StatusConflict {
		t.Fatalf("second cancel = %d, want 409", code)
	}
	recordHistory(t, started{WorkflowID: workflows.JoinWorkflowID("demo", joinID)}, "join_cancelled_v1.json")
}

func TestJoin_full_meeting_fails_without_a_charge(t *testing.T) {
	resetSims(t)
	m := createMeeting(t, demoKey(), map[string]any{"title": "Tiny", "capacity": 1, "fee": map[string]any{"amount": 1000, "currency": "KRW"}})
	var ids []string
	for _, user := range []string{"dave", "erin"} {
		_, out := postJoin(t, demoKey(), m.ID, "full-"+user+"-"+testenv.RunID(), map[string]any{"user_id": user, "payment_token": "tok_ok"})
		ids = append(ids, out["join_id"].(string))
	}
	var full int
	for _, id := range ids {
		j := waitJoin(t, demoKey(), id, func(j meeting.Join) bool { return meeting.Terminal(j.Status) })
		if j.Status == meeting.JoinFailed {
			full++
			if j.Reason != workflows.ReasonMeetingFull || stack.sims.Payments.Stats().ChargesByKey[id] != 0 {
				t.Fatalf("failed join %+v was charged or has the wrong reason", j)
			}
		}
	}
	if full != 1 {
		t.Fatalf("%d joins failed for a meeting of one seat and two users, want 1", full)
	}
}

func TestJoin_bad_input_is_a_clear_400(t *testing.T) {
	for name, body := range map[string]map[string]any{
		"no_title":     {"capacity": 1, "fee": map[string]any{"amount": 1, "currency": "KRW"}},
		"zero_seats":   {"title": "x", "capacity": 0, "fee": map[string]any{"amount": 1, "currency": "KRW"}},
		"negative_fee": {"title": "x", "capacity": 1, "fee": map[string]any{"amount": -1, "currency": "KRW"}},
		"bad_currency": {"title": "x", "capacity": 1, "fee": map[string]any{"amount": 1, "currency": "won"}},
		"float_fee":    {"title": "x", "capacity": 1, "fee": map[string]any{"amount": 1.5, "currency": "KRW"}},
	} {
		var e errorDoc
		if code := call(t, demoKey(), http.MethodPost, "/v1/meetings", body, &e); code != http.StatusBadRequest || e.Error.Message == "" {
			t.Errorf("%s: %d %+v", name, code, e)
		}
	}
	m := createMeeting(t, demoKey(), map[string]any{"title": "x", "capacity": 1, "fee": map[string]any{"amount": 1, "currency": "KRW"}})
	if code, _ := postJoin(t, demoKey(), m.ID, "k-"+testenv.RunID(), map[string]any{"user_id": "", "payment_token": "tok"}); code != http.StatusBadRequest {
		t.Errorf("empty user: %d", code)
	}
	if code, _ := postJoin(t, demoKey(), m.ID, "k-"+testenv.RunID(), map[string]any{"user_id": "u", "payment_token": "tok", "channels": []string{"fax"}}); code != http.StatusBadRequest {
		t.Errorf("unknown channel: %d", code)
	}
	// A meeting id that is no canonical UUID names the param in a 400.
	if code, _ := postJoin(t, demoKey(), "not-a-meeting", "k-"+testenv.RunID(), map[string]any{"user_id": "u", "payment_token": "tok"}); code != http.StatusBadRequest {
		t.Errorf("malformed meeting id: %d", code)
	}
}

func TestJoin_500_joins_keep_money_and_seats_consistent(t *testing.T) {
	testenv.Chaos(t, "8. 500 joins: declines, 5xx, lost replies, late commits, 409 in progress, a meeting closed", "every join ends; ledger exact; no seat leaked; no double charge")
	runJoinScenario(t, false)
}

func TestJoin_500_joins_survive_a_worker_restart(t *testing.T) {
	testenv.Chaos(t, "the same 500 joins with the workers restarted midway", "every join ends; ledger exact; no seat leaked")
	runJoinScenario(t, true)
}

// runJoinScenario: 500 joins over 10 meetings whose capacity is below
// demand, with 20% declines, 10% 5xx, 5% timeout-after-commit, 5% charges
// the gateway commits late (5-10 s after answering 503: some commit
// within the charge's retries, about 8 s, and the others are voided when
// the saga gives up), and 5% 409 request_in_progress; one meeting is closed
// midway (and, if restart, the workers are stopped and started again
// midway). At the end every join is terminal, no meeting is over its
// capacity, no seat stays reserved, and the gateway holds exactly the fee
// for every confirmed join and nothing for any other, also once every late
// commit would have come (assertJoinInvariants).
func runJoinScenario(t *testing.T, restart bool) {
	resetSims(t)
	if err := stack.sims.Payments.SetConfig(sim.PaymentConfig{
		// Latency keeps joins in flight when the meeting closes, so some fail
		// at confirm and must be refunded.
		Latency: 20 * time.Millisecond, DeclineRate: 0.2, ErrorRate: 0.1, TimeoutAfterCommit: 0.05,
		LateCommitRate: 0.05, LateCommitDelay: 10 * time.Second, InProgress409Rate: 0.05,
	}); err != nil {
		t.Fatal(err)
	}
	defer resetSims(t)
	const joins = 500
	during := map[int]func(*joinBurst){joins / 2: func(b *joinBurst) { b.closeMeeting(t, 0) }}
	var restarted sync.WaitGroup
	if restart {
		during[joins*3/5] = func(*joinBurst) { restarted.Go(func() { stack.restartWorkers(2 * time.Second) }) }
	}
	b := startJoinBurst(t, burstOptions{Joins: joins, Meetings: 10, Capacity: 30, During: during})
	restarted.Wait()

	byStatus := assertJoinInvariants(t, b, 4*time.Minute)
	if byStatus[meeting.JoinConfirmed] == 0 || byStatus[meeting.JoinCompensated] == 0 || byStatus[meeting.JoinFailed] == 0 {
		t.Errorf("the scenario did not exercise every ending: %v", byStatus)
	}
	if st := stack.sims.Payments.Stats(); st.LateCommits == 0 || st.LateCancelled == 0 || st.InProgress409s == 0 {
		t.Errorf("the late-commit and 409 knobs did not bite: %d late commits, %d voided, %d 409s", st.LateCommits, st.LateCancelled, st.InProgress409s)
	}
}

func resetSims(t *testing.T) {
	t.Helper()
	if err := stack.sims.Payments.SetConfig(sim.PaymentConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := stack.sims.Notifier.SetConfig(sim.NotifyConfig{}); err != nil {
		t.Fatal(err)
	}
}
