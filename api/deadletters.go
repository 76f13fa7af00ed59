package api

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/deadletter"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/valid"
	"github.com/sagaflow/sagaflow/workflows"
)

// Dead letters are the bus messages RabbitMQ dead-lettered (refused by the
// ingest, over the delivery limit, unroutable), archived per tenant by
// internal/deadletter. They are not the parking lot (/v1/parked).

// DeadLetterStore is one tenant's archived dead letters (internal/store).
type DeadLetterStore interface {
	Page(ctx context.Context, f deadletter.Filter, limit int, afterAt time.Time, afterID string) ([]deadletter.Letter, error)
}

// DeadLetterReplayer publishes a tenant's dead letters again
// (internal/deadletter.Replayer).
type DeadLetterReplayer interface {
	Replay(ctx context.Context, schema string, sel deadletter.Selection, limit int) (deadletter.Replayed, error)
}

// MaxReplay is how many dead letters one replay publishes.
const MaxReplay = 1000

// deadLetterJSON is a dead letter as the API shows it: the body as text
// when it is UTF-8, else in base64; the sync workflow its SKU belongs to.
type deadLetterJSON struct {
	deadletter.Letter
	Body       string `json:"body,omitempty"`
	BodyBase64 string `json:"body_base64,omitempty"`
	WorkflowID string `json:"workflow_id,omitempty"`
	UIURL      string `json:"ui_url,omitempty"`
}

func (s *Server) deadLetterView(t tenant.Tenant, l deadletter.Letter) deadLetterJSON {
	v := deadLetterJSON{Letter: l}
	if utf8.Valid(l.Body) {
		v.Body = string(l.Body)
	} else {
		v.BodyBase64 = base64.StdEncoding.EncodeToString(l.Body)
	}
	if sku := l.SKU(); sku != "" {
		v.WorkflowID = workflows.CatalogSyncWorkflowID(t.Name, catalog.Shard(sku, s.deps.Sync.Shards))
		v.UIURL = s.workflowURL(v.WorkflowID)
	}
	return v
}

// deadLetterFilter checks a filter's reason (one of deadletter.Reasons)
// and since (RFC 3339).
func deadLetterFilter(reason, since string, v *valid.Errors) deadletter.Filter {
	var f deadletter.Filter
	if reason != "" && v.Text("reason", reason, 1, maxFilterLen, false) &&
		v.Check(slices.Contains(deadletter.Reasons, reason), "reason", "unknown reason %q (reasons: %s)", reason, strings.Join(deadletter.Reasons, ", ")) {
		f.Reason = reason
	}
	if since != "" && v.Text("since", since, 1, maxFilterLen, false) {
		t, err := time.Parse(time.RFC3339Nano, since)
		if v.Check(err == nil, "since", "must be an RFC 3339 time such as 2026-12-03T07:00:00Z, got %q", since) {
			f.Since = t
		}
	}
	return f
}

func (s *Server) deadLetters(c *gin.Context) (DeadLetterStore, bool) {
	if s.deps.DeadLetters == nil {
		abort(c, http.StatusNotImplemented, "not_implemented", "dead letters are not served by this process")
		return nil, false
	}
	return s.deps.DeadLetters(tenantFrom(c).Schema), true
}

// listDeadLetters lists the caller's dead letters, oldest first, a page at
// a time (?limit 1-1000, default 100; ?cursor), narrowed by ?reason and
// ?since (died at or after it).
func (s *Server) listDeadLetters(c *gin.Context) {
	var v valid.Errors
	limit, at, id := pageQuery(c, &v)
	f := deadLetterFilter(c.Query("reason"), c.Query("since"), &v)
	if err := v.Err(); err != nil {
		fail(c, err)
		return
	}
	store, ok := s.deadLetters(c)
	if !ok {
		return
	}
	ls, err := store.Page(c.Request.Context(), f, limit, at, id)
	if err != nil {
		fail(c, err)
		return
	}
	t := tenantFrom(c)
	items := make([]deadLetterJSON, len(ls))
	for i, l := range ls {
		items[i] = s.deadLetterView(t, l)
	}
	out := gin.H{"items": items}
	if len(ls) == limit {
		last := ls[len(ls)-1]
		out["next_cursor"] = encodeCursor(last.DeadAt, last.ID)
	}
	c.JSON(http.StatusOK, out)
}

type replayBody struct {
	IDs    []string `json:"ids"`
	Reason string   `json:"reason"`
	Since  string   `json:"since"`
	All    bool     `json:"all"`
}

// replayDeadLetters publishes to the catalog exchange again, with
// publisher confirms, the caller's dead letters named by ids, or else
// those the filter (reason, since) selects; an empty filter needs
// {"all":true}. At most MaxReplay a call, oldest first; more says some
// remain. A letter is marked replayed in the transaction that read it, so
// replaying it twice publishes it once; letters of other tenants do not
// exist here.
func (s *Server) replayDeadLetters(c *gin.Context) {
	var body replayBody
	if err := bindJSON(c, &body, false); err != nil {
		fail(c, err)
		return
	}
	var v valid.Errors
	v.Check(len(body.IDs) <= MaxReplay, "ids", "at most %d ids a call, got %d", MaxReplay, len(body.IDs))
	for i, id := range body.IDs {
		if len(body.IDs) > MaxReplay {
			break
		}
		v.Check(valid.UUID(id), "ids["+strconv.Itoa(i)+"]", "must be a dead letter id, a UUID in canonical form, got %q", strings.ToValidUTF8(id, "?"))
	}
	f := deadLetterFilter(body.Reason, body.Since, &v)
	if v.Empty() {
		v.Check(len(body.IDs) > 0 || !f.Empty() || body.All, "all", `no ids and an empty filter select every dead letter: send {"all":true} to mean that`)
		v.Check(!body.All || (len(body.IDs) == 0 && f.Empty()), "all", "all selects every dead letter: send it without ids or a filter")
	}
	if err := v.Err(); err != nil {
		fail(c, err)
		return
	}
	if s.deps.Replayer == nil {
		abort(c, http.StatusNotImplemented, "not_implemented", "dead letters are not replayed by this process")
		return
	}
	sel := deadletter.Selection{IDs: body.IDs, Filter: f}
	res, err := s.deps.Replayer.Replay(c.Request.Context(), tenantFrom(c).Schema, sel, MaxReplay)
	if err != nil {
		fail(c, err)
		return
	}
	if res.IDs == nil {
		res.IDs = []string{}
	}
	out := gin.H{"replayed": len(res.IDs), "ids": res.IDs, "more": res.More}
	if len(body.IDs) > 0 {
		// Ids not replayed: another tenant's, unknown, or replayed already.
		var skipped []string
		for _, id := range body.IDs {
			if !slices.Contains(res.IDs, id) {
				skipped = append(skipped, id)
			}
		}
		if skipped != nil {
			out["not_replayed"] = skipped
		}
	}
	c.JSON(http.StatusOK, out)
}
