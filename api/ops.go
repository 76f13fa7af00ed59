package api

import (
	"net/url"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/internal/meeting"
)

// OpsConfig is what the operator's routes need: where the Temporal Web UI
// is, and when a saga counts as stuck.
type OpsConfig struct {
	// UIURL is the base URL of the Temporal Web UI
	// (SAGAFLOW_TEMPORAL_UI_URL); empty: answers carry no ui_url.
	UIURL string
	// Namespace is the Temporal namespace of every workflow.
	Namespace string
	// StuckAfter is how long a join may compensate before the summary
	// reports it (SAGAFLOW_OPS_STUCK_AFTER; 0: 5 minutes).
	StuckAfter time.Duration
}

// workflowURL is the Web UI's page of the workflow id (its latest run), or
// "" without a UI.
func (s *Server) workflowURL(id string) string {
	if s.deps.Ops.UIURL == "" || id == "" {
		return ""
	}
	return strings.TrimRight(s.deps.Ops.UIURL, "/") + "/namespaces/" + url.PathEscape(s.deps.Ops.Namespace) +
		"/workflows/" + url.PathEscape(id)
}

// joinJSON is a join as GET /v1/joins/{id} shows it: with its workflow and
// the workflow's page in the Web UI.
type joinJSON struct {
	meeting.Join
	WorkflowID string `json:"workflow_id"`
	UIURL      string `json:"ui_url,omitempty"`
}
