package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/telemetry"
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
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Deps{
		Tenants:  demoTenants(),
		Meetings: func(string) MeetingStore { return failedJoins{} },
		Ops:      OpsConfig{UIURL: "http://127.0.0.1:8233", Namespace: "sagaflow"},
		Metrics:  m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxBodyBytes: 1024,
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
