package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/internal/valid"
	"github.com/sagaflow/sagaflow/workflows"
)

// The parking lot holds the changes a sync workflow gave up on after its
// retry budget (SAGAFLOW_SYNC_MAX_ATTEMPTS) or that a market refused; they
// wait for an operator's retry or discard. It is served at /v1/parked and,
// under its first name, /v1/dlq. It is not the bus's dead-letter queue
// (/v1/deadletters).

// maxFilterLen bounds a filter value before it is checked further: the
// longest valid one (an RFC 3339 time with nanoseconds and an offset) is 35.
const maxFilterLen = 64

// parkedFilterInput is a filter as the client sent it, from the query
// string of GET or the body of a bulk action.
type parkedFilterInput struct {
	Market  string `json:"market"`
	Channel string `json:"channel"`
	SKU     string `json:"sku"`
	Since   string `json:"since"`
}

// parkedFilter checks in and returns the filter it names; each bad value is
// a problem of its field (market, channel, sku, since).
func (s *Server) parkedFilter(in parkedFilterInput, v *valid.Errors) catalog.ParkedFilter {
	var f catalog.ParkedFilter
	text := func(field, val string) bool {
		if val == "" {
			return false
		}
		return v.Text(field, val, 1, maxFilterLen, false)
	}
	if text("market", in.Market) {
		known := make([]string, 0, len(s.deps.Markets))
		for _, m := range s.deps.Markets {
			known = append(known, m.Name)
		}
		if v.Check(slices.Contains(known, in.Market), "market", "unknown market %q (markets: %s)", in.Market, strings.Join(known, ", ")) {
			f.Market = in.Market
		}
	}
	if text("channel", in.Channel) && v.Check(valid.UUID(in.Channel), "channel", "must be a channel id, a UUID in canonical form (lowercase 8-4-4-4-12 hex), got %q", in.Channel) {
		f.ChannelID = in.Channel
	}
	if text("sku", in.SKU) && v.Check(catalog.ValidSKU(in.SKU), "sku", "must be 1-64 of [A-Za-z0-9._-], starting with a letter or digit, got %q", in.SKU) {
		f.SKU = in.SKU
	}
	if text("since", in.Since) {
		t, err := time.Parse(time.RFC3339Nano, in.Since)
		if v.Check(err == nil, "since", "must be an RFC 3339 time such as 2026-12-03T07:00:00Z, got %q", in.Since) {
			f.Since = t
		}
	}
	return f
}

// parkedItemJSON is a parked item as the API shows it: with the sync
// workflow that holds it and that workflow's page in the Web UI.
type parkedItemJSON struct {
	catalog.ParkedItem
	WorkflowID string `json:"workflow_id"`
	UIURL      string `json:"ui_url,omitempty"`
}

// parkedView shows t's items; an item parked before the parking lot kept
// workflow ids names the shard workflow of its SKU, which holds it today.
func (s *Server) parkedView(t tenant.Tenant, items []catalog.ParkedItem) []parkedItemJSON {
	out := make([]parkedItemJSON, len(items))
	for i, it := range items {
		id := it.WorkflowID
		if id == "" {
			id = workflows.CatalogSyncWorkflowID(t.Name, catalog.Shard(it.SKU, s.deps.Sync.Shards))
		}
		out[i] = parkedItemJSON{ParkedItem: it, WorkflowID: id, UIURL: s.workflowURL(id)}
	}
	return out
}

// listParked lists the caller's parked items, oldest first, a page at a
// time: ?limit (1-1000, default 100) and ?cursor, the next_cursor of the
// page before; ?market, ?channel, ?sku and ?since (RFC 3339: parked at or
// after it) narrow it down (send the same filter with each page). A full
// page carries next_cursor; the last page has none.
func (s *Server) listParked(c *gin.Context) {
	var v valid.Errors
	limit, since, id := pageQuery(c, &v)
	f := s.parkedFilter(parkedFilterInput{Market: c.Query("market"), Channel: c.Query("channel"), SKU: c.Query("sku"), Since: c.Query("since")}, &v)
	if err := v.Err(); err != nil {
		fail(c, err)
		return
	}
	items, err := s.catalog(c).ParkedPage(c.Request.Context(), f, limit, since, id)
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"items": s.parkedView(tenantFrom(c), items)}
	if len(items) == limit {
		last := items[len(items)-1]
		out["next_cursor"] = encodeCursor(last.Since, last.ID)
	}
	c.JSON(http.StatusOK, out)
}

// pageQuery reads ?limit (1-1000, default 100) and ?cursor (the
// next_cursor of the page before) of a keyset-paged list.
func pageQuery(c *gin.Context, v *valid.Errors) (int, time.Time, string) {
	limit := 100
	if q := c.Query("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if v.Check(err == nil && n >= 1 && n <= 1000, "limit", "must be a whole number from 1 to 1000") {
			limit = n
		}
	}
	at, id, ok := decodeCursor(c.Query("cursor"))
	v.Check(ok, "cursor", "must be the next_cursor of an earlier page")
	return limit, at, id
}

// A cursor is the (time, id) of a page's last item (parked items, dead
// letters), opaque to the caller: base64url of "<RFC 3339 time>/<id>".
func encodeCursor(since time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(since.UTC().Format(time.RFC3339Nano) + "/" + id))
}

// decodeCursor reads a cursor; "" is the start (zero time).
func decodeCursor(cur string) (time.Time, string, bool) {
	if cur == "" {
		return time.Time{}, "", true
	}
	if len(cur) > 200 {
		return time.Time{}, "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil {
		return time.Time{}, "", false
	}
	ts, id, found := strings.Cut(string(b), "/")
	since, err := time.Parse(time.RFC3339Nano, ts)
	if !found || err != nil || since.IsZero() || !valid.UUID(id) {
		return time.Time{}, "", false
	}
	return since, id, true
}

// parkedAction signals the item's workflow to retry or discard it; the
// workflow removes it from the parking lot. 202: the signal is delivered,
// its effect follows.
func (s *Server) parkedAction(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		t := tenantFrom(c)
		id, err := uuidParam(c, "id")
		if err != nil {
			fail(c, err)
			return
		}
		it, err := s.catalog(c).ParkedItem(ctx, id)
		if errors.Is(err, catalog.ErrNotFound) {
			fail(c, notFound("no parked item "+id))
			return
		}
		if err != nil {
			fail(c, err)
			return
		}
		if err := s.signalParked(ctx, t, it, action); err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"id": it.ID, "action": action, "status": "accepted"})
	}
}

// signalParked signals the shard workflow of the item's SKU to retry or
// discard it (starting the workflow if it is not running).
func (s *Server) signalParked(ctx context.Context, t tenant.Tenant, it catalog.ParkedItem, action string) error {
	act := workflows.ParkingAction{ID: it.ID, ChannelID: it.ChannelID, SKU: it.SKU, Version: it.Version, Action: action}
	if err := s.signalShard(ctx, t, catalog.Shard(it.SKU, s.deps.Sync.Shards), workflows.SignalParking, act); err != nil {
		return fmt.Errorf("signal %s of parked item %s: %w", action, it.ID, err)
	}
	return nil
}

// MaxBulkParked is how many parked items one bulk retry or discard signals.
const MaxBulkParked = 1000

// bulkSignalers is how many signals a bulk action has in flight at once:
// enough to hide the round trips, few enough not to crowd the frontend.
const bulkSignalers = 8

// parkedBulkBody is the body of POST /v1/parked/retry and /discard.
type parkedBulkBody struct {
	parkedFilterInput
	// All must be true to select every item with an empty filter.
	All bool `json:"all"`
	// Cursor is the next_cursor of the call before, to go on after it.
	Cursor string `json:"cursor"`
}

// parkedBulk retries or discards, by signal, up to MaxBulkParked of the
// caller's parked items that the body's filter selects, oldest first.
// An empty filter is refused unless the body says {"all":true}. 202 with
// how many were signalled; more and next_cursor when items remain (send
// the same filter with the cursor: the items signalled stay in the lot
// until their workflow has dealt with them, and would be signalled again).
func (s *Server) parkedBulk(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		var body parkedBulkBody
		if err := bindJSON(c, &body, false); err != nil {
			fail(c, err)
			return
		}
		var v valid.Errors
		f := s.parkedFilter(body.parkedFilterInput, &v)
		since, after, ok := decodeCursor(body.Cursor)
		v.Check(ok, "cursor", "must be the next_cursor of an earlier call")
		if v.Empty() {
			v.Check(!f.Empty() || body.All, "all", "an empty filter selects every parked item: send {\"all\":true} to mean that")
			v.Check(f.Empty() || !body.All, "all", "all selects every parked item: send it without a filter")
		}
		if err := v.Err(); err != nil {
			fail(c, err)
			return
		}
		items, err := s.catalog(c).ParkedPage(ctx, f, MaxBulkParked+1, since, after)
		if err != nil {
			fail(c, err)
			return
		}
		more := len(items) > MaxBulkParked
		if more {
			items = items[:MaxBulkParked]
		}
		signalled, err := s.signalAll(ctx, tenantFrom(c), items, action)
		if err != nil && signalled == 0 {
			fail(c, err)
			return
		}
		out := gin.H{"action": action, "matched": len(items), "signalled": signalled, "more": more}
		if err != nil {
			loggerFrom(c).Warn("bulk parking action partly failed", "action", action, "failed", len(items)-signalled, "error", err)
			out["failed"], out["error"] = len(items)-signalled, "some signals failed; call again"
		}
		if more {
			last := items[len(items)-1]
			out["next_cursor"] = encodeCursor(last.Since, last.ID)
		}
		c.JSON(http.StatusAccepted, out)
	}
}

// signalAll signals action for each item, bulkSignalers at a time, and
// returns how many signals Temporal accepted and the first error.
func (s *Server) signalAll(ctx context.Context, t tenant.Tenant, items []catalog.ParkedItem, action string) (int, error) {
	var (
		mu        sync.Mutex
		signalled int
		first     error
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(bulkSignalers)
	for _, it := range items {
		g.Go(func() error {
			err := s.signalParked(gctx, t, it, action)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				signalled++
			} else if first == nil {
				first = err
			}
			return nil // one failed signal does not stop the others
		})
	}
	_ = g.Wait()
	return signalled, first
}
