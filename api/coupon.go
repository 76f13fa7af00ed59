package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/queue"
	"github.com/sagaflow/sagaflow/internal/starter"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/valid"
	"github.com/sagaflow/sagaflow/workflows"
)

// CampaignStore is one tenant's campaigns and coupons.
type CampaignStore interface {
	Create(ctx context.Context, c coupon.Campaign, start func(coupon.Campaign) (starter.Start, error)) (coupon.Campaign, error)
	Get(ctx context.Context, id string) (coupon.Campaign, error)
	Coupon(ctx context.Context, campaignID, user string) (coupon.Coupon, error)
}

// CouponMetrics counts the answers to coupon requests (internal/telemetry);
// safe for concurrent use.
type CouponMetrics interface {
	Requested(tenant, campaignID, outcome string)
}

type noCouponMetrics struct{}

func (noCouponMetrics) Requested(string, string, string) {}

// FirstCome is the first-come queue (internal/queue).
type FirstCome interface {
	OpenCampaign(ctx context.Context, c queue.Campaign) error
	// Ask takes a request; its Wake says the campaign's workflow sleeps.
	Ask(ctx context.Context, tenant, id, user string) (queue.Answer, error)
	State(ctx context.Context, tenant, id string) (queue.CampaignState, error)
	Rank(ctx context.Context, tenant, id, user string) (int64, bool, error)
}

func (s *Server) campaigns(c *gin.Context) CampaignStore {
	return s.deps.Campaigns(tenantFrom(c).Schema)
}

// couponRequestBody is the body of POST /v1/campaigns/{id}/requests.
type couponRequestBody struct {
	UserID string `json:"user_id"`
}

type createCampaignBody struct {
	Name     string    `json:"name"`
	Stock    int       `json:"stock"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
}

// createCampaign records the campaign with the start of its workflow (one
// transaction), then opens its first-come queue in Redis so that requests
// are taken at once; the workflow opens it too, should this process die
// before it does.
func (s *Server) createCampaign(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	in, err := parseBody(c, func(raw []byte) (coupon.Campaign, error) { return parseCreateCampaign(raw, time.Now()) })
	if err != nil {
		fail(c, err)
		return
	}
	cp, err := s.campaigns(c).Create(ctx, in, func(cp coupon.Campaign) (starter.Start, error) { return campaignStart(t, cp) })
	if err != nil {
		fail(c, err)
		return
	}
	if err := s.deps.Queue.OpenCampaign(ctx, queueCampaign(t, cp)); err != nil {
		loggerFrom(c).Warn("open campaign in redis failed; the workflow will", "campaign", cp.ID, "error", err)
	}
	c.JSON(http.StatusCreated, campaignView(cp, coupon.Status(cp, int64(cp.Stock), time.Now()), 0))
}

func queueCampaign(t tenant.Tenant, cp coupon.Campaign) queue.Campaign {
	return queue.Campaign{Tenant: t.Name, ID: cp.ID, Stock: cp.Stock, StartsAt: cp.StartsAt, EndsAt: cp.EndsAt}
}

func campaignStart(t tenant.Tenant, cp coupon.Campaign) (starter.Start, error) {
	input, err := json.Marshal(workflows.CampaignInput{Campaign: activities.CampaignRef{
		Tenant: t.Name, Schema: t.Schema, CampaignID: cp.ID, Stock: cp.Stock, StartsAt: cp.StartsAt, EndsAt: cp.EndsAt,
	}})
	if err != nil {
		return starter.Start{}, err
	}
	return starter.Start{
		Tenant: t.Name, WorkflowID: workflows.CampaignWorkflowID(t.Name, cp.ID),
		WorkflowType: workflows.CampaignWorkflowType, TaskQueue: workflows.TaskQueueCoupon, Input: input,
	}, nil
}

type campaignJSON struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Stock    int       `json:"stock"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
	Accepted int64     `json:"accepted"`
	Issued   int       `json:"issued"`
	// SetAside counts accepted requests that can never be issued (their
	// units went back to the stock); accepted = issued + set_aside + queued.
	SetAside int64  `json:"set_aside"`
	Status   string `json:"status"`
}

func campaignView(cp coupon.Campaign, status string, accepted int64) campaignJSON {
	return campaignJSON{ID: cp.ID, Name: cp.Name, Stock: cp.Stock, StartsAt: cp.StartsAt, EndsAt: cp.EndsAt,
		Accepted: accepted, Issued: cp.Issued, Status: status}
}

// requestCoupon is the hot path: one Redis round trip, nothing else (the
// tenant comes from the key cache). An accepted request leaves its trace
// context (see tracedContext) with its entry; the issuing activity links
// to it.
func (s *Server) requestCoupon(c *gin.Context) {
	ctx := tracedContext(c)
	t := tenantFrom(c)
	id, err := uuidParam(c, "id")
	if err != nil {
		fail(c, err)
		return
	}
	user, err := parseBody(c, parseCouponRequest)
	if err != nil {
		fail(c, err)
		return
	}
	ans, err := s.deps.Queue.Ask(ctx, t.Name, id, user)
	if err != nil {
		fail(c, err)
		return
	}
	outcome, rank := ans.Outcome, ans.Rank
	s.deps.Coupons.Requested(t.Name, id, outcome.String())
	if ans.Wake {
		s.wakeCampaign(c, t.Name, id)
	}
	switch outcome {
	case queue.Accepted:
		c.JSON(http.StatusAccepted, gin.H{"status": "accepted", "rank": rank})
	case queue.Duplicate:
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": errorDetail{Code: "already_requested", Message: "this user has requested a coupon already"}, "rank": rank})
	case queue.SoldOut:
		abort(c, http.StatusGone, "sold_out", "the campaign's stock is gone")
	case queue.Closed:
		abort(c, http.StatusGone, "closed", "the campaign's window is over")
	case queue.NotOpen:
		abort(c, http.StatusTooEarly, "not_open", "the campaign has not started")
	case queue.NoCampaign:
		// Not in Redis: unknown, or finished and cleaned up (the rare path).
		if _, err := s.campaigns(c).Get(ctx, id); err == nil {
			abort(c, http.StatusGone, "closed", "the campaign is over")
			return
		}
		abort(c, http.StatusNotFound, "not_found", "no such campaign")
	}
}

// wakeCampaign signals the campaign's workflow, asleep over an empty queue,
// that a request came in. Redis says so for the first request after it went
// asleep only, so a burst costs one signal. It does not hold up the answer;
// should the signal be lost, the workflow wakes on its own timer.
func (s *Server) wakeCampaign(c *gin.Context, tenantName, id string) {
	if s.deps.Temporal == nil {
		return
	}
	log := loggerFrom(c)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.deps.Temporal.SignalWorkflow(ctx, workflows.CampaignWorkflowID(tenantName, id), "", workflows.SignalCampaignWake, nil); err != nil {
			log.Warn("wake campaign failed; it wakes on its timer", "campaign", id, "error", err)
		}
	}()
}

func (s *Server) getCampaign(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	id, err := uuidParam(c, "id")
	if err != nil {
		fail(c, err)
		return
	}
	cp, err := s.campaigns(c).Get(ctx, id)
	if err != nil {
		fail(c, err)
		return
	}
	if cp.Done {
		var accepted, setAside int64
		if cp.Accepted != nil {
			accepted = int64(*cp.Accepted)
			setAside = accepted - int64(cp.Issued) // Finish checked it
		}
		view := campaignView(cp, coupon.StatusDone, accepted)
		view.SetAside = setAside
		c.JSON(http.StatusOK, view)
		return
	}
	st, err := s.deps.Queue.State(ctx, t.Name, cp.ID)
	if err != nil {
		fail(c, err)
		return
	}
	left, now := st.Left, st.ServerNow
	if !st.Exists { // not opened yet: the workflow will
		left, now = int64(cp.Stock), time.Now()
	}
	view := campaignView(cp, coupon.Status(cp, left, now), st.Accepted)
	view.SetAside = st.SetAside
	c.JSON(http.StatusOK, view)
}

// getCoupon: issued (with its code and rank), pending (accepted, not yet
// written), or none.
func (s *Server) getCoupon(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	id, err := uuidParam(c, "id")
	if err != nil {
		fail(c, err)
		return
	}
	user := c.Param("user_id")
	if msg := couponUserProblem(user); msg != "" {
		fail(c, valid.New("user_id", "%s", msg))
		return
	}
	store := s.campaigns(c)
	cp, err := store.Get(ctx, id)
	if err != nil {
		fail(c, err)
		return
	}
	got, err := store.Coupon(ctx, cp.ID, user)
	if err == nil {
		c.JSON(http.StatusOK, gin.H{"status": coupon.CouponIssued, "code": got.Code, "rank": got.Rank})
		return
	}
	if !errors.Is(err, coupon.ErrNotFound) {
		fail(c, err)
		return
	}
	if !cp.Done {
		rank, ok, err := s.deps.Queue.Rank(ctx, t.Name, cp.ID, user)
		if err != nil {
			fail(c, err)
			return
		}
		if ok {
			c.JSON(http.StatusOK, gin.H{"status": coupon.CouponPending, "rank": rank})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": coupon.CouponNone})
}
