package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/workflows"
)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func mustRequest(method, path string) *http.Request { return httptest.NewRequest(method, path, nil) }

// history reads every event of a workflow's run ("" for its latest run).
func history(t testing.TB, workflowID, runID string) []*historypb.HistoryEvent {
	t.Helper()
	iter := stack.app.Temporal.GetWorkflowHistory(context.Background(), workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	return events
}

func startOptions(id, tenant string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             workflows.TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchAttributeTenant.ValueSet(tenant)),
	}
}
