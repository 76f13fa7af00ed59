package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
)

// MeetingStore is one tenant's meetings and joins.
type MeetingStore interface {
	Create(ctx context.Context, m meeting.Meeting) (meeting.Meeting, error)
	Get(ctx context.Context, id string) (meeting.Meeting, error)
	Close(ctx context.Context, id string) (meeting.Meeting, error)
	JoinStart(ctx context.Context, meetingID, joinID, userID string) (meeting.JoinStart, error)
	NewJoin(ctx context.Context, joinID, idempotencyKey, requestHash string, r meeting.JoinRequest) (meeting.Join, string, bool, error)
	Join(ctx context.Context, joinID string) (meeting.Join, error)
}

func (s *Server) meetings(c *gin.Context) MeetingStore { return s.deps.Meetings(tenantFrom(c).Schema) }

type createMeetingBody struct {
	Title          string        `json:"title"`
	Capacity       int           `json:"capacity"`
	Fee            meeting.Money `json:"fee"`
	CancelDeadline *time.Time    `json:"cancel_deadline"`
}

func (s *Server) createMeeting(c *gin.Context) {
	var body createMeetingBody
	if err := bindJSON(c, &body, false); err != nil {
		fail(c, err)
		return
	}
	m := meeting.Meeting{Title: strings.TrimSpace(body.Title), Capacity: body.Capacity, Fee: body.Fee, CancelDeadline: body.CancelDeadline}
	if err := m.Validate(); err != nil {
		fail(c, badRequest(err.Error()))
		return
	}
	m, err := s.meetings(c).Create(c.Request.Context(), m)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, m)
}

func (s *Server) getMeeting(c *gin.Context) {
	m, err := s.meetings(c).Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

// closeMeeting closes a meeting: joins in flight then fail at confirm and are
// refunded.
func (s *Server) closeMeeting(c *gin.Context) {
	m, err := s.meetings(c).Close(c.Request.Context(), c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

type joinBody struct {
	UserID       string   `json:"user_id"`
	PaymentToken string   `json:"payment_token"`
	Channels     []string `json:"channels"`
}

type joinAccepted struct {
	JoinID string `json:"join_id"`
	Status string `json:"status"`
}

// createJoin starts the join saga once per Idempotency-Key: the same key with
// the same body answers with the same join; with another body, 422.
func (s *Server) createJoin(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	key := c.GetHeader("Idempotency-Key")
	if key == "" || len(key) > 255 {
		fail(c, badRequest("send an Idempotency-Key header (1-255 characters) so that a retried request joins once"))
		return
	}
	var body joinBody
	if err := bindJSON(c, &body, false); err != nil {
		fail(c, err)
		return
	}
	req, err := meeting.JoinRequest{MeetingID: c.Param("id"), UserID: body.UserID, PaymentToken: body.PaymentToken, Channels: body.Channels}.Normalize()
	if err != nil {
		fail(c, badRequest(err.Error()))
		return
	}
	store := s.meetings(c)
	joinID := meeting.JoinID(t.Name, key)
	js, err := store.JoinStart(ctx, req.MeetingID, joinID, req.UserID)
	if err != nil {
		fail(c, err)
		return
	}
	status := meeting.JoinPending
	switch {
	case js.Existing != nil && js.ExistingHash != req.Hash():
		fail(c, keyReused())
		return
	case js.Existing != nil:
		// A retry: answer with the join it made, and make sure its saga runs.
		status = js.Existing.Status
	case js.UserConfirmed:
		fail(c, &httpError{http.StatusConflict, "already_joined", "user " + req.UserID + " has already joined this meeting"})
		return
	default:
		_, hash, _, err := store.NewJoin(ctx, joinID, key, req.Hash(), req)
		if err != nil {
			fail(c, err)
			return
		}
		if hash != req.Hash() { // a concurrent request with the same key and another body won
			fail(c, keyReused())
			return
		}
	}
	if err := s.startJoin(ctx, t, js.Meeting, req, joinID); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, joinAccepted{JoinID: joinID, Status: status})
}

func keyReused() error {
	return &httpError{http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used for a different request"}
}

// startJoin starts the saga unless it runs or ran: one workflow per join.
func (s *Server) startJoin(ctx context.Context, t tenant.Tenant, m meeting.Meeting, req meeting.JoinRequest, joinID string) error {
	_, err := s.deps.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        workflows.JoinWorkflowID(t.Name, joinID),
		TaskQueue: workflows.TaskQueueJoin,
		// Where a worker shares this client (dev), the first workflow task
		// comes back with the start: one round trip less per join.
		EnableEagerStart:         true,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SearchAttributeTenant.ValueSet(t.Name)),
	}, workflows.Join, workflows.JoinInput{
		Tenant: t.Name, Schema: t.Schema, JoinID: joinID,
		MeetingID: m.ID, MeetingTitle: m.Title, UserID: req.UserID, PaymentToken: req.PaymentToken,
		Channels: req.Channels, Fee: m.Fee, CancelDeadline: m.CancelDeadline,
	})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil // it ran to its end already
	}
	return err
}

// getJoin answers from the running saga's status query, or from PostgreSQL
// once it has ended (or when no worker answers the query).
func (s *Server) getJoin(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	j, err := s.meetings(c).Join(ctx, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	if j.Status == meeting.JoinPending || j.Status == meeting.JoinConfirmed {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if v, err := s.deps.Temporal.QueryWorkflow(qctx, workflows.JoinWorkflowID(t.Name, j.JoinID), "", workflows.QueryStatus); err == nil {
			var live meeting.Join
			if err := v.Get(&live); err == nil {
				j = live
			}
		}
	}
	c.JSON(http.StatusOK, j)
}

// cancelJoin sends the cancel update; the saga's validator refuses it after
// the cancel deadline (409).
func (s *Server) cancelJoin(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	j, err := s.meetings(c).Join(ctx, c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	_, err = s.deps.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.JoinWorkflowID(t.Name, j.JoinID),
		UpdateName:   workflows.UpdateCancel,
		WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	var appErr *temporal.ApplicationError
	var notFound *serviceerror.NotFound
	switch {
	case err == nil:
		c.JSON(http.StatusAccepted, joinAccepted{JoinID: j.JoinID, Status: meeting.JoinCompensating})
	case errors.As(err, &appErr):
		fail(c, &httpError{http.StatusConflict, "cannot_cancel", appErr.Message()})
	case errors.As(err, &notFound):
		msg := "the join has ended already"
		if j.Status == meeting.JoinConfirmed {
			msg = workflows.ErrCancelTooLate.Error()
		}
		fail(c, &httpError{http.StatusConflict, "cannot_cancel", msg})
	default:
		fail(c, err)
	}
}
