package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
)

// MeetingStore is one tenant's meetings and joins.
type MeetingStore interface {
	Create(ctx context.Context, m meeting.Meeting) (meeting.Meeting, error)
	Get(ctx context.Context, id string) (meeting.Meeting, error)
	Close(ctx context.Context, id string) (meeting.Meeting, error)
	JoinStart(ctx context.Context, meetingID, joinID, userID string) (meeting.JoinStart, error)
	NewJoin(ctx context.Context, joinID, idempotencyKey, requestHash string, r meeting.JoinRequest, start starter.Start) (meeting.Join, string, bool, error)
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
	m, err := parseBody(c, parseCreateMeeting)
	if err != nil {
		fail(c, err)
		return
	}
	m, err = s.meetings(c).Create(c.Request.Context(), m)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, m)
}

func (s *Server) getMeeting(c *gin.Context) { s.onMeeting(c, MeetingStore.Get) }

// closeMeeting closes a meeting: joins in flight then fail at confirm and are
// refunded.
func (s *Server) closeMeeting(c *gin.Context) { s.onMeeting(c, MeetingStore.Close) }

// onMeeting applies op to the meeting named by the path's id and answers 200
// with the meeting op returns.
func (s *Server) onMeeting(c *gin.Context, op func(MeetingStore, context.Context, string) (meeting.Meeting, error)) {
	id, err := uuidParam(c, "id")
	if err != nil {
		fail(c, err)
		return
	}
	m, err := op(s.meetings(c), c.Request.Context(), id)
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
// The saga's start carries the request's trace context (see
// tracedContext): the workflow runs in the request's trace.
func (s *Server) createJoin(c *gin.Context) {
	ctx := tracedContext(c)
	t := tenantFrom(c)
	meetingID, err := uuidParam(c, "id")
	if err != nil {
		fail(c, err)
		return
	}
	key, err := idempotencyKey(c)
	if err != nil {
		fail(c, err)
		return
	}
	req, err := parseBody(c, func(raw []byte) (meeting.JoinRequest, error) { return parseJoin(raw, meetingID) })
	if err != nil {
		fail(c, err)
		return
	}
	req.TraceID = traceID(c)
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
		// A retry: the join and the start of its saga were recorded together.
		status = js.Existing.Status
	case js.UserConfirmed:
		fail(c, &httpError{http.StatusConflict, "already_joined", "user " + req.UserID + " has already joined this meeting"})
		return
	default:
		start, err := joinStart(t, js.Meeting, req, joinID, s.deps.Secrets)
		if err != nil {
			fail(c, err)
			return
		}
		j, hash, _, err := store.NewJoin(ctx, joinID, key, req.Hash(), req, start)
		if err != nil {
			fail(c, err)
			return
		}
		if hash != req.Hash() { // a concurrent request with the same key and another body won
			fail(c, keyReused())
			return
		}
		status = j.Status
	}
	c.JSON(http.StatusAccepted, joinAccepted{JoinID: joinID, Status: status})
}

func keyReused() error {
	return &httpError{http.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used for a different request"}
}

// joinStart is the saga's start, recorded with the join and sent to
// Temporal by the starter: one workflow per join, even across crashes. The
// payment token in it is sealed (when secrets is set): only the charge
// activity opens it.
func joinStart(t tenant.Tenant, m meeting.Meeting, req meeting.JoinRequest, joinID string, secrets Sealer) (starter.Start, error) {
	token := req.PaymentToken
	if secrets != nil && token != "" {
		sealed, err := secrets.Seal(token, meeting.TokenAAD(joinID))
		if err != nil {
			return starter.Start{}, fmt.Errorf("seal the payment token of join %s: %w", joinID, err)
		}
		token = sealed
	}
	input, err := json.Marshal(workflows.JoinInput{
		Tenant: t.Name, Schema: t.Schema, JoinID: joinID,
		MeetingID: m.ID, MeetingTitle: m.Title, UserID: req.UserID, PaymentToken: token,
		Channels: req.Channels, Fee: m.Fee, CancelDeadline: m.CancelDeadline, Version: workflows.JoinVersion,
	})
	if err != nil {
		return starter.Start{}, err
	}
	return starter.Start{
		Tenant: t.Name, WorkflowID: workflows.JoinWorkflowID(t.Name, joinID),
		WorkflowType: workflows.JoinWorkflowType, TaskQueue: workflows.TaskQueueJoin, Input: input,
	}, nil
}

// getJoin answers from the running saga's status query, or from PostgreSQL
// once it has ended (or when no worker answers the query).
func (s *Server) getJoin(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	j, ok := s.pathJoin(c)
	if !ok {
		return
	}
	wfID := workflows.JoinWorkflowID(t.Name, j.JoinID)
	if j.Status == meeting.JoinPending || j.Status == meeting.JoinConfirmed {
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if v, err := s.deps.Temporal.QueryWorkflow(qctx, wfID, "", workflows.QueryStatus); err == nil {
			var live meeting.Join
			if err := v.Get(&live); err == nil {
				live.TraceID = j.TraceID
				j = live
			}
		}
	}
	c.JSON(http.StatusOK, joinJSON{Join: j, WorkflowID: wfID, UIURL: s.workflowURL(wfID)})
}

// pathJoin loads the join the path's join id names; on a bad id or a
// failed load it has answered and returns false.
func (s *Server) pathJoin(c *gin.Context) (meeting.Join, bool) {
	joinID, err := joinIDParam(c)
	if err != nil {
		fail(c, err)
		return meeting.Join{}, false
	}
	j, err := s.meetings(c).Join(c.Request.Context(), joinID)
	if err != nil {
		fail(c, err)
		return meeting.Join{}, false
	}
	return j, true
}

// cancelJoin sends the cancel update; the saga's validator refuses it after
// the cancel deadline (409).
func (s *Server) cancelJoin(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	j, ok := s.pathJoin(c)
	if !ok {
		return
	}
	_, err := s.deps.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
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
