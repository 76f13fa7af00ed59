package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/sagaflow/sagaflow/internal/valid"
	"github.com/sagaflow/sagaflow/workflows"
)

// workflowView is what GET /v1/workflows/{id} answers.
type workflowView struct {
	WorkflowID    string          `json:"workflow_id"`
	RunID         string          `json:"run_id"`
	Type          string          `json:"type"`
	Status        string          `json:"status"`
	TaskQueue     string          `json:"task_queue"`
	StartTime     *time.Time      `json:"start_time"`
	CloseTime     *time.Time      `json:"close_time"`
	HistoryLength int64           `json:"history_length"`
	State         json.RawMessage `json:"state"`
	StateError    string          `json:"state_error,omitempty"`
}

// getWorkflow describes a workflow of the caller's tenant and adds its
// status query's answer. A workflow of another tenant is a 404, exactly like
// one that does not exist.
func (s *Server) getWorkflow(c *gin.Context) {
	t := tenantFrom(c)
	id := c.Param("id")
	if msg := valid.TokenProblem(id, maxWorkflowIDLen); msg != "" {
		fail(c, valid.New("id", "%s", msg))
		return
	}
	if owner, ok := workflows.TenantOfWorkflowID(id); !ok || owner != t.Name {
		fail(c, notFound("no workflow "+id))
		return
	}
	ctx := c.Request.Context()
	desc, err := s.deps.Temporal.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		fail(c, err)
		return
	}
	info := desc.GetWorkflowExecutionInfo()
	if searchAttributeString(info.GetSearchAttributes(), workflows.SearchAttributeTenant.GetName()) != t.Name {
		fail(c, notFound("no workflow "+id))
		return
	}
	v := workflowView{
		WorkflowID:    info.GetExecution().GetWorkflowId(),
		RunID:         info.GetExecution().GetRunId(),
		Type:          info.GetType().GetName(),
		Status:        strings.TrimPrefix(enumspb.WorkflowExecutionStatus_name[int32(info.GetStatus())], "WORKFLOW_EXECUTION_STATUS_"),
		TaskQueue:     info.GetTaskQueue(),
		HistoryLength: info.GetHistoryLength(),
		State:         json.RawMessage("null"),
	}
	if ts := info.GetStartTime(); ts != nil {
		st := ts.AsTime()
		v.StartTime = &st
	}
	if ts := info.GetCloseTime(); ts != nil {
		ct := ts.AsTime()
		v.CloseTime = &ct
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if resp, err := s.deps.Temporal.QueryWorkflow(qctx, v.WorkflowID, v.RunID, workflows.QueryStatus); err != nil {
		v.StateError = "status query failed: " + err.Error()
	} else {
		var state any
		if err := resp.Get(&state); err != nil {
			v.StateError = "status query result: " + err.Error()
		} else if b, err := json.Marshal(state); err == nil {
			v.State = b
		}
	}
	c.JSON(http.StatusOK, v)
}

// searchAttributeString decodes a keyword search attribute, "" if absent.
func searchAttributeString(sa *commonpb.SearchAttributes, name string) string {
	p, ok := sa.GetIndexedFields()[name]
	if !ok {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}
