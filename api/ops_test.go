package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/queue"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// failedJoins holds one failed join.
type failedJoins struct{ MeetingStore }

func (failedJoins) Join(_ context.Context, id string) (meeting.Join, error) {
	if id != aJoinID {
		return meeting.Join{}, meeting.ErrJoinNotFound
	}
	return meeting.Join{JoinID: id, Status: meeting.JoinFailed, Reason: "meeting_full", TraceID: "0af7651916cd43dd8448eb211c80319c"}, nil
}

// A join links to its workflow in the Web UI and carries its trace id.
func TestJoin_links_to_the_web_ui_with_its_trace_id(t *testing.T) {
	t.Parallel()
	h := testHandler(t, Deps{
		Tenants:      demoTenants(),
		Meetings:     func(string) MeetingStore { return failedJoins{} },
		Ops:          OpsConfig{UIURL: "http://127.0.0.1:8233", Namespace: "sagaflow"},
		MaxBodyBytes: 1024,
	})
	rec, _ := do(h, http.MethodGet, "/v1/joins/"+aJoinID, "demo-key", "")
	var j struct {
		Status, WorkflowID, UIURL, TraceID string
	}
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	j.Status, _ = raw["status"].(string)
	j.WorkflowID, _ = raw["workflow_id"].(string)
	j.UIURL, _ = raw["ui_url"].(string)
	j.TraceID, _ = raw["trace_id"].(string)
	if j.Status != meeting.JoinFailed || j.WorkflowID != "demo:join:"+aJoinID ||
		j.UIURL != "http://127.0.0.1:8233/namespaces/sagaflow/workflows/demo:join:"+aJoinID || j.TraceID != "0af7651916cd43dd8448eb211c80319c" {
		t.Fatalf("join %+v (%s)", j, rec.Body)
	}
}

// opsFake is one tenant's ops sources; block makes ParkedByMarket wait
// until the test ends, ignoring its context; fail makes DeadLettersByReason
// fail.
type opsFake struct {
	schema  string
	block   chan struct{}
	fail    bool
	calls   *[]string
	mu      *sync.Mutex
	issued  int
	campaig string
}

func (f opsFake) record() {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.calls = append(*f.calls, f.schema)
}

func (f opsFake) ParkedByMarket(context.Context) (map[string]int, error) {
	f.record()
	if f.block != nil {
		<-f.block
	}
	return map[string]int{"souk": 2, "shopwave": 1}, nil
}

func (f opsFake) DeadLettersByReason(context.Context) (map[string]int, error) {
	if f.fail {
		return nil, errors.New("relation dead_letters does not exist")
	}
	return map[string]int{"invalid": 4}, nil
}

func (f opsFake) OpenJoins(context.Context, time.Time, int) ([]meeting.OpenJoin, error) {
	since := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	return []meeting.OpenJoin{{JoinID: "j_compensating", Status: meeting.JoinCharged, Since: since, TraceID: "t-1"},
		{JoinID: "j_reserved", Status: meeting.JoinReserved, Since: since}}, nil
}

func (f opsFake) ActiveCampaigns(context.Context) ([]coupon.Campaign, error) {
	return []coupon.Campaign{{ID: f.campaig, Name: "Black Friday", Stock: 100, Issued: f.issued}}, nil
}

// liveJoins answers the status query of the join workflows.
type liveJoins struct{ client.Client }

func (liveJoins) QueryWorkflow(_ context.Context, id, _, _ string, _ ...any) (converter.EncodedValue, error) {
	status := meeting.JoinReserved
	if strings.HasSuffix(id, "j_compensating") {
		status = meeting.JoinCompensating
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(meeting.Join{Status: status})
	if err != nil {
		return nil, err
	}
	return client.NewValue(&commonpb.Payloads{Payloads: []*commonpb.Payload{p}}), nil
}

// acceptedQueue: campaign c has accepted 30 requests.
type acceptedQueue struct{ FirstCome }

func (acceptedQueue) State(context.Context, string, string) (queue.CampaignState, error) {
	return queue.CampaignState{Exists: true, Accepted: 30}, nil
}

type summary struct {
	Tenant  string `json:"tenant"`
	Partial bool   `json:"partial"`
	Parked  *struct {
		Total int            `json:"total"`
		By    map[string]int `json:"by"`
	} `json:"parked"`
	DeadLetters *struct {
		Total int            `json:"total"`
		By    map[string]int `json:"by"`
	} `json:"dead_letters"`
	StuckJoins *struct {
		After string          `json:"after"`
		Items []stuckJoinJSON `json:"items"`
	} `json:"stuck_joins"`
	Lagging []laggingCampaignJSON `json:"lagging_campaigns"`
	Errors  []sourceError         `json:"errors"`
}

func opsHandler(t *testing.T, fake func(schema string) opsFake) http.Handler {
	t.Helper()
	return testHandler(t, Deps{
		Temporal: liveJoins{}, Tenants: twoTenants{}, Queue: acceptedQueue{},
		OpsStore:     func(schema string) OpsStore { return fake(schema) },
		Ops:          OpsConfig{UIURL: "http://ui.test", Namespace: "sagaflow", StuckAfter: 5 * time.Minute, SourceTimeout: 200 * time.Millisecond},
		MaxBodyBytes: 1024,
	})
}

func getSummary(t *testing.T, h http.Handler, key string) summary {
	t.Helper()
	rec, _ := do(h, http.MethodGet, "/v1/ops/summary", key, "")
	return decodeReply[summary](t, rec, http.StatusOK, "summary")
}

// The summary counts parked items and dead letters, finds the join whose
// workflow compensates, and tells a growing issue lag from the one before.
func TestOpsSummary_reports_what_needs_an_operator(t *testing.T) {
	t.Parallel()
	var calls []string
	var mu sync.Mutex
	issued := 25
	h := opsHandler(t, func(schema string) opsFake {
		return opsFake{schema: schema, calls: &calls, mu: &mu, issued: issued, campaig: aUUID}
	})
	s := getSummary(t, h, "demo-key")
	if s.Tenant != "demo" || s.Partial || len(s.Errors) != 0 {
		t.Fatalf("summary %+v", s)
	}
	if s.Parked == nil || s.Parked.Total != 3 || s.Parked.By["souk"] != 2 || s.DeadLetters == nil || s.DeadLetters.By["invalid"] != 4 {
		t.Fatalf("counts: parked %+v, dead letters %+v", s.Parked, s.DeadLetters)
	}
	if s.StuckJoins == nil || len(s.StuckJoins.Items) != 1 || s.StuckJoins.After != "5m0s" {
		t.Fatalf("stuck joins %+v, want the compensating one only", s.StuckJoins)
	}
	if j := s.StuckJoins.Items[0]; j.JoinID != "j_compensating" || j.Status != meeting.JoinCompensating || j.TraceID != "t-1" ||
		j.UIURL != "http://ui.test/namespaces/sagaflow/workflows/demo:join:j_compensating" {
		t.Fatalf("stuck join %+v", j)
	}
	if len(s.Lagging) != 1 || s.Lagging[0].Lag != 5 || s.Lagging[0].Growing || s.Lagging[0].PreviousLag != nil {
		t.Fatalf("first look at the campaign: %+v", s.Lagging)
	}
	issued = 22 // fewer issued while 30 stay accepted: the lag grows to 8
	s = getSummary(t, h, "demo-key")
	if len(s.Lagging) != 1 || s.Lagging[0].Lag != 8 || !s.Lagging[0].Growing || s.Lagging[0].PreviousLag == nil || *s.Lagging[0].PreviousLag != 5 {
		t.Fatalf("second look: %+v, want lag 8 growing from 5", s.Lagging)
	}
	if s := getSummary(t, h, "acme-key"); s.Tenant != "acme" {
		t.Fatalf("acme's summary is %s's", s.Tenant)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(calls) != "[tenant_demo tenant_demo tenant_acme]" {
		t.Fatalf("sources read schemas %v, want each caller's own", calls)
	}
}

// A source that hangs (ignoring its context) or fails makes the answer
// partial, naming it; the other sources still answer.
func TestOpsSummary_slow_or_failing_source_is_partial_not_hung(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	defer close(block)
	var calls []string
	var mu sync.Mutex
	h := opsHandler(t, func(schema string) opsFake {
		return opsFake{schema: schema, block: block, fail: true, calls: &calls, mu: &mu, issued: 30, campaig: aUUID}
	})
	s := getSummary(t, h, "demo-key")
	if !s.Partial || s.Parked != nil || s.DeadLetters != nil || s.StuckJoins == nil || s.Lagging == nil {
		t.Fatalf("summary %+v: want partial without parked and dead letters", s)
	}
	sources := map[string]string{}
	for _, e := range s.Errors {
		sources[e.Source] = e.Error
	}
	if len(sources) != 2 || !strings.Contains(sources["parked"], "no answer within") || !strings.Contains(sources["dead_letters"], "does not exist") {
		t.Fatalf("errors %+v, want parked (slow) and dead_letters (failed)", s.Errors)
	}
}
