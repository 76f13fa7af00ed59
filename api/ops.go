package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/sagaflow/sagaflow/internal/coupon"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
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
	// reports it (SAGAFLOW_OPS_STUCK_AFTER; 0: DefaultStuckAfter).
	StuckAfter time.Duration
	// SourceTimeout bounds each source of the summary (0:
	// DefaultSourceTimeout).
	SourceTimeout time.Duration
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

// OpsStore is what the summary reads of one tenant (internal/store.Ops).
type OpsStore interface {
	ParkedByMarket(ctx context.Context) (map[string]int, error)
	DeadLettersByReason(ctx context.Context) (map[string]int, error)
	OpenJoins(ctx context.Context, before time.Time, limit int) ([]meeting.OpenJoin, error)
	ActiveCampaigns(ctx context.Context) ([]coupon.Campaign, error)
}

// Defaults of OpsConfig.
const (
	DefaultStuckAfter = 5 * time.Minute
	// DefaultSourceTimeout is how long the summary waits for one source: a
	// slow one makes the answer partial, never slow.
	DefaultSourceTimeout = 2 * time.Second
	// maxStuckCandidates bounds the joins whose workflows one summary asks.
	maxStuckCandidates = 50
)

// lagMemory keeps the issue lag each campaign had at the summary before,
// to tell a growing lag from a steady one. Safe for concurrent use.
type lagMemory struct {
	mu   sync.Mutex
	last map[string]int64
}

// swap records lag for key and returns the one before (false if none).
func (m *lagMemory) swap(key string, lag int64) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[string]int64{}
	}
	prev, ok := m.last[key]
	m.last[key] = lag
	return prev, ok
}

type sourceError struct {
	Source string `json:"source"`
	Error  string `json:"error"`
}

type stuckJoinJSON struct {
	JoinID     string    `json:"join_id"`
	Status     string    `json:"status"`
	Since      time.Time `json:"since"`
	WorkflowID string    `json:"workflow_id"`
	UIURL      string    `json:"ui_url,omitempty"`
	TraceID    string    `json:"trace_id,omitempty"`
}

type laggingCampaignJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Accepted int64  `json:"accepted"`
	Issued   int64  `json:"issued"`
	Lag      int64  `json:"lag"`
	// PreviousLag is the lag at the summary before (in this process).
	PreviousLag *int64 `json:"previous_lag,omitempty"`
	Growing     bool   `json:"growing"`
	WorkflowID  string `json:"workflow_id"`
	UIURL       string `json:"ui_url,omitempty"`
}

type countsJSON struct {
	Total int            `json:"total"`
	By    map[string]int `json:"by"`
}

func countsOf(m map[string]int) countsJSON {
	c := countsJSON{By: m}
	if c.By == nil {
		c.By = map[string]int{}
	}
	for _, n := range c.By {
		c.Total += n
	}
	return c
}

// opsSummary answers what needs an operator now in the caller's tenant:
// parked items by market, dead letters by reason, joins compensating for
// longer than StuckAfter, campaigns whose issue lag (accepted − issued)
// is not zero, and whether it grows. Each source has its own short
// timeout; one that fails or is slow is named in errors and the answer is
// partial, with what the others said.
func (s *Server) opsSummary(c *gin.Context) {
	t := tenantFrom(c)
	if s.deps.OpsStore == nil {
		fail(c, errors.New("api: no ops store"))
		return
	}
	st := s.deps.OpsStore(t.Schema)
	timeout := s.deps.Ops.SourceTimeout
	if timeout <= 0 {
		timeout = DefaultSourceTimeout
	}
	stuckAfter := s.deps.Ops.StuckAfter
	if stuckAfter <= 0 {
		stuckAfter = DefaultStuckAfter
	}
	var (
		parked, dead map[string]int
		stuck        []stuckJoinJSON
		lagging      []laggingCampaignJSON
	)
	sources := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"parked", func(ctx context.Context) (err error) { parked, err = st.ParkedByMarket(ctx); return err }},
		{"dead_letters", func(ctx context.Context) (err error) { dead, err = st.DeadLettersByReason(ctx); return err }},
		{"joins", func(ctx context.Context) (err error) { stuck, err = s.stuckJoins(ctx, t, st, stuckAfter); return err }},
		{"campaigns", func(ctx context.Context) (err error) { lagging, err = s.laggingCampaigns(ctx, t, st); return err }},
	}
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() { errs[i] = runSource(c.Request.Context(), timeout, src.run) })
	}
	wg.Wait()
	out := gin.H{"tenant": t.Name, "partial": false}
	var problems []sourceError
	for i, src := range sources {
		if errs[i] != nil {
			loggerFrom(c).Warn("ops summary source failed", "source", src.name, "error", errs[i])
			problems = append(problems, sourceError{Source: src.name, Error: errs[i].Error()})
		}
	}
	if errs[0] == nil {
		out["parked"] = countsOf(parked)
	}
	if errs[1] == nil {
		out["dead_letters"] = countsOf(dead)
	}
	if errs[2] == nil {
		if stuck == nil {
			stuck = []stuckJoinJSON{}
		}
		out["stuck_joins"] = gin.H{"after": stuckAfter.String(), "items": stuck}
	}
	if errs[3] == nil {
		if lagging == nil {
			lagging = []laggingCampaignJSON{}
		}
		out["lagging_campaigns"] = lagging
	}
	if len(problems) > 0 {
		out["partial"], out["errors"] = true, problems
	}
	c.JSON(http.StatusOK, out)
}

// runSource runs one source with its own deadline and returns when it
// ends or the deadline passes, whichever is first: a source that ignores
// its context is left behind, its result discarded.
func runSource(ctx context.Context, timeout time.Duration, run func(context.Context) error) error {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(sctx) }()
	select {
	case err := <-done:
		return err
	case <-sctx.Done():
		return fmt.Errorf("no answer within %s", timeout)
	}
}

// stuckJoins asks the workflow of each join that has not moved for
// stuckAfter where it is, and returns those compensating.
func (s *Server) stuckJoins(ctx context.Context, t tenant.Tenant, st OpsStore, stuckAfter time.Duration) ([]stuckJoinJSON, error) {
	open, err := st.OpenJoins(ctx, time.Now().Add(-stuckAfter), maxStuckCandidates)
	if err != nil {
		return nil, err
	}
	found := make([]*stuckJoinJSON, len(open))
	var wg sync.WaitGroup
	for i, j := range open {
		wg.Go(func() {
			wfID := workflows.JoinWorkflowID(t.Name, j.JoinID)
			v, err := s.deps.Temporal.QueryWorkflow(ctx, wfID, "", workflows.QueryStatus)
			if err != nil {
				return
			}
			var live meeting.Join
			if v.Get(&live) != nil || live.Status != meeting.JoinCompensating {
				return
			}
			found[i] = &stuckJoinJSON{JoinID: j.JoinID, Status: live.Status, Since: j.Since, WorkflowID: wfID,
				UIURL: s.workflowURL(wfID), TraceID: j.TraceID}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []stuckJoinJSON
	for _, f := range found {
		if f != nil {
			out = append(out, *f)
		}
	}
	return out, nil
}

// laggingCampaigns is every active campaign whose accepted requests (Redis)
// run ahead of its issued coupons (PostgreSQL), and whether the gap grew
// since the summary before.
func (s *Server) laggingCampaigns(ctx context.Context, t tenant.Tenant, st OpsStore) ([]laggingCampaignJSON, error) {
	cps, err := st.ActiveCampaigns(ctx)
	if err != nil {
		return nil, err
	}
	var out []laggingCampaignJSON
	for _, cp := range cps {
		qs, err := s.deps.Queue.State(ctx, t.Name, cp.ID)
		if err != nil {
			return nil, fmt.Errorf("campaign %s: %w", cp.ID, err)
		}
		// Set-aside requests can never be issued: they are no lag.
		lag := qs.Accepted - int64(cp.Issued) - qs.SetAside
		prev, seen := s.lags.swap(t.Name+"/"+cp.ID, lag)
		if lag <= 0 {
			continue
		}
		wfID := workflows.CampaignWorkflowID(t.Name, cp.ID)
		v := laggingCampaignJSON{ID: cp.ID, Name: cp.Name, Accepted: qs.Accepted, Issued: int64(cp.Issued), Lag: lag,
			WorkflowID: wfID, UIURL: s.workflowURL(wfID)}
		if seen {
			v.PreviousLag, v.Growing = &prev, lag > prev
		}
		out = append(out, v)
	}
	return out, nil
}
