package integration

import (
	"net/http"
	"net/http/httptest"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/workflows"
)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func mustRequest(method, path string) *http.Request { return httptest.NewRequest(method, path, nil) }

func startOptions(id, tenant string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                    id,
		TaskQueue:             workflows.TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchAttributeTenant.ValueSet(tenant)),
	}
}
