package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/workflows"
)

type startedView struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// startProbe starts a Probe workflow for the caller's tenant: a worker checks
// that the tenant's schema, Redis and RabbitMQ answer. The body, if any, must
// be an empty JSON object.
func (s *Server) startProbe(c *gin.Context) {
	var body struct{}
	if err := bindJSON(c, &body, true); err != nil {
		fail(c, err)
		return
	}
	t := tenantFrom(c)
	run, err := s.deps.Temporal.ExecuteWorkflow(c.Request.Context(), client.StartWorkflowOptions{
		ID:                    workflows.ProbeWorkflowID(t.Name, uuid.NewString()),
		TaskQueue:             workflows.TaskQueueOps,
		TypedSearchAttributes: temporal.NewSearchAttributes(workflows.SearchAttributeTenant.ValueSet(t.Name)),
	}, workflows.Probe, workflows.ProbeInput{Tenant: t.Name, Schema: t.Schema})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, startedView{WorkflowID: run.GetID(), RunID: run.GetRunID()})
}
