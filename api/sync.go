package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
)

// CatalogStore is one tenant's products, channels and parking lot
// (internal/store).
type CatalogStore interface {
	PutProduct(ctx context.Context, tenantName string, p catalog.Product, traceID string) (catalog.Product, bool, error)
	Product(ctx context.Context, sku string) (catalog.Product, error)
	CreateChannel(ctx context.Context, c catalog.Channel) (catalog.Channel, error)
	Channels(ctx context.Context) ([]catalog.Channel, error)
	DeleteChannel(ctx context.Context, id string) error
	SyncedByChannel(ctx context.Context, sku string) (map[string]int64, error)
	ParkedPage(ctx context.Context, f catalog.ParkedFilter, limit int, afterSince time.Time, afterID string) ([]catalog.ParkedItem, error)
	ParkedBySKU(ctx context.Context, sku string) ([]catalog.ParkedItem, error)
	ParkedItem(ctx context.Context, id string) (catalog.ParkedItem, error)
}

// MarketInfo is a market sagaflow can talk to, as GET /v1/markets shows it.
type MarketInfo struct {
	Name        string `json:"name"`
	Format      string `json:"format"`
	Description string `json:"description"`
	BaseURL     string `json:"base_url"`
	MaxBatch    int    `json:"max_batch"`
}

// SyncConfig is how the API reaches the sync workflows.
type SyncConfig struct {
	// Shards is how many sync workflows share a tenant's SKUs.
	Shards  int
	Options workflows.SyncOptions
	// Channels says which base URLs a new channel may have.
	Channels catalog.ChannelPolicy
}

// defaultChannelRate is a channel's rate limit when the request names none:
// what marketplaces commonly grant a seller's API key.
const defaultChannelRate = 20

func (s *Server) catalog(c *gin.Context) CatalogStore { return s.deps.Catalog(tenantFrom(c).Schema) }

type productBody struct {
	Name       string            `json:"name"`
	Price      *catalog.Money    `json:"price"`
	Stock      *int64            `json:"stock"`
	Attributes map[string]string `json:"attributes"`
}

// putProduct writes the product and the message announcing it in one
// transaction (the outbox relay publishes it); the same content again is a
// no-op that keeps the version. 201 for a new SKU, 200 otherwise.
func (s *Server) putProduct(c *gin.Context) {
	sku, err := skuParam(c)
	if err != nil {
		fail(c, err)
		return
	}
	p, err := parseBody(c, func(raw []byte) (catalog.Product, error) { return parseProduct(raw, sku) })
	if err != nil {
		fail(c, err)
		return
	}
	// The envelope's trace id is the W3C trace id of the request, never the
	// caller's X-Request-Id: what the API accepts the bus must accept.
	saved, changed, err := s.catalog(c).PutProduct(c.Request.Context(), tenantFrom(c).Name, p, traceID(c))
	if err != nil {
		fail(c, err)
		return
	}
	status := http.StatusOK
	if changed && saved.Version == 1 {
		status = http.StatusCreated
	}
	c.JSON(status, saved)
}

func (s *Server) getProduct(c *gin.Context) {
	p, err := s.product(c)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

func (s *Server) product(c *gin.Context) (catalog.Product, error) {
	sku, err := skuParam(c)
	if err != nil {
		return catalog.Product{}, err
	}
	p, err := s.catalog(c).Product(c.Request.Context(), sku)
	if errors.Is(err, catalog.ErrNotFound) {
		return p, notFound("no product " + sku)
	}
	return p, err
}

type channelSyncJSON struct {
	Channel string `json:"channel"`
	Market  string `json:"market"`
	Status  string `json:"status"`
	// Version is the version the status is about: held by the market when
	// synced, on its way otherwise.
	Version       int64  `json:"version"`
	SyncedVersion int64  `json:"synced_version"`
	LastError     string `json:"last_error,omitempty"`
	Attempts      int32  `json:"attempts,omitempty"`
	ParkedID      string `json:"parked_id,omitempty"`
}

// getProductSync shows where the product stands on each channel: the sync
// workflow's query (pending, in flight; parked too from runs before bounded
// state), the attempts and last error of a push in flight (from Temporal's
// pending activities), the parked items and the versions each channel holds
// (PostgreSQL).
func (s *Server) getProductSync(c *gin.Context) {
	ctx := c.Request.Context()
	t := tenantFrom(c)
	p, err := s.product(c)
	if err != nil {
		fail(c, err)
		return
	}
	store := s.catalog(c)
	chs, err := store.Channels(ctx)
	if err != nil {
		fail(c, err)
		return
	}
	synced, err := store.SyncedByChannel(ctx, p.SKU)
	if err != nil {
		fail(c, err)
		return
	}
	parkedList, err := store.ParkedBySKU(ctx, p.SKU)
	if err != nil {
		fail(c, err)
		return
	}
	parked := make(map[string]catalog.ParkedItem, len(parkedList))
	for _, it := range parkedList {
		parked[it.ChannelID] = it
	}
	wfID := workflows.CatalogSyncWorkflowID(t.Name, catalog.Shard(p.SKU, s.deps.Sync.Shards))
	active, stateErr := s.querySync(ctx, wfID, p.SKU)
	out := gin.H{"sku": p.SKU, "version": p.Version, "workflow_id": wfID}
	if stateErr != "" {
		out["state_error"] = stateErr
	}
	views := make([]channelSyncJSON, 0, len(chs))
	for _, ch := range chs {
		v := channelSyncJSON{Channel: ch.ID, Market: ch.Market, SyncedVersion: synced[ch.ID]}
		a, inWorkflow := active[ch.ID]
		pk, isParked := parked[ch.ID]
		switch {
		case inWorkflow:
			v.Status, v.Version, v.LastError, v.ParkedID, v.Attempts = a.Status, a.Version, a.Error, a.ParkedID, a.attempts
		case isParked && pk.Version > synced[ch.ID]:
			// The workflow holds counts, not parked items: PostgreSQL has them.
			v.Status, v.Version, v.LastError, v.ParkedID = catalog.SyncParked, pk.Version, pk.Error, pk.ID
		case synced[ch.ID] >= p.Version:
			v.Status, v.Version = catalog.SyncSynced, synced[ch.ID]
		default:
			v.Status, v.Version = catalog.SyncPending, p.Version
		}
		views = append(views, v)
	}
	out["channels"] = views
	c.JSON(http.StatusOK, out)
}

type activeSync struct {
	workflows.ChannelSync
	attempts int32
}

// querySync asks the shard's workflow about sku and resolves pushes in
// flight into pending (first attempt) or retrying (with the last failure).
// A workflow that is not running has nothing active; other failures are
// reported in the answer, not as an error: the stored versions still tell.
func (s *Server) querySync(ctx context.Context, wfID, sku string) (map[string]activeSync, string) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.deps.Temporal.QueryWorkflow(qctx, wfID, "", workflows.QuerySync, sku)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil, ""
	}
	if err != nil {
		return nil, "sync query failed: " + err.Error()
	}
	var list []workflows.ChannelSync
	if err := resp.Get(&list); err != nil {
		return nil, "sync query result: " + err.Error()
	}
	out := map[string]activeSync{}
	var pending map[string]pendingPush
	for _, cs := range list {
		a := activeSync{ChannelSync: cs}
		if cs.Status == catalog.SyncInFlight {
			if pending == nil {
				pending = s.pendingPushes(qctx, wfID)
			}
			a.Status = catalog.SyncPending
			if pp, ok := pending[cs.ActivityID]; ok && pp.attempt > 1 {
				a.Status, a.Error, a.attempts = catalog.SyncRetrying, pp.lastError, pp.attempt-1
			}
		}
		out[cs.ChannelID] = a
	}
	return out, ""
}

type pendingPush struct {
	attempt   int32
	lastError string
}

func (s *Server) pendingPushes(ctx context.Context, wfID string) map[string]pendingPush {
	out := map[string]pendingPush{}
	desc, err := s.deps.Temporal.DescribeWorkflowExecution(ctx, wfID, "")
	if err != nil {
		return out
	}
	for _, pa := range desc.GetPendingActivities() {
		out[pa.GetActivityId()] = pendingPush{attempt: pa.GetAttempt(), lastError: pa.GetLastFailure().GetMessage()}
	}
	return out
}

func (s *Server) listMarkets(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"markets": s.deps.Markets})
}

type channelBody struct {
	Market          string `json:"market"`
	BaseURL         string `json:"base_url"`
	Credentials     string `json:"credentials"`
	RateLimitPerSec *int   `json:"rate_limit_per_sec"`
}

// createChannel connects the tenant to a market; base_url defaults to the
// market's (the simulator's, in dev) and must be scheme, host and port of a
// host allowed for the market (https only outside dev). 409 when the tenant
// has SAGAFLOW_MAX_CHANNELS_PER_TENANT channels already. The sync workflows learn of it at once.
// Changes made from now on reach it; earlier ones are not replayed.
func (s *Server) createChannel(c *gin.Context) {
	body, err := parseBody(c, parseChannel)
	if err != nil {
		fail(c, err)
		return
	}
	ch := catalog.Channel{Market: body.Market, BaseURL: body.BaseURL, Credentials: body.Credentials, RateLimitPerSec: defaultChannelRate}
	if body.RateLimitPerSec != nil {
		ch.RateLimitPerSec = *body.RateLimitPerSec
	}
	names := make([]string, 0, len(s.deps.Markets))
	for _, m := range s.deps.Markets {
		names = append(names, m.Name)
		if m.Name == ch.Market && ch.BaseURL == "" {
			ch.BaseURL = m.BaseURL
		}
	}
	if err := ch.Validate(names, s.deps.Sync.Channels); err != nil {
		fail(c, err)
		return
	}
	saved, err := s.catalog(c).CreateChannel(c.Request.Context(), ch)
	var tooMany *catalog.ChannelLimitError
	if errors.As(err, &tooMany) {
		c.AbortWithStatusJSON(http.StatusConflict, gin.H{"error": gin.H{"code": "too_many_channels", "message": tooMany.Error(), "limit": tooMany.Limit}})
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	s.reloadChannels(c)
	c.JSON(http.StatusCreated, saved)
}

func (s *Server) listChannels(c *gin.Context) {
	chs, err := s.catalog(c).Channels(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	if chs == nil {
		chs = []catalog.Channel{}
	}
	c.JSON(http.StatusOK, gin.H{"channels": chs})
}

// deleteChannel disconnects a channel; its parked items go with it.
func (s *Server) deleteChannel(c *gin.Context) {
	id, err := uuidParam(c, "id")
	if err != nil {
		fail(c, err)
		return
	}
	err = s.catalog(c).DeleteChannel(c.Request.Context(), id)
	if errors.Is(err, catalog.ErrNotFound) {
		fail(c, notFound("no channel "+id))
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	s.reloadChannels(c)
	c.Status(http.StatusNoContent)
}

// reloadChannels tells every shard's workflow to reload the channels. The
// change is committed already, so a failure here is logged, not answered:
// a workflow also finds out when a push meets a deleted channel, and at
// its next run.
func (s *Server) reloadChannels(c *gin.Context) {
	t := tenantFrom(c)
	for shard := range s.deps.Sync.Shards {
		msg := workflows.ChannelsChanged{Shards: s.deps.Sync.Shards}
		if err := s.signalShard(c.Request.Context(), t, shard, workflows.SignalChannels, msg); err != nil {
			loggerFrom(c).Warn("signal channel reload failed", "shard", shard, "error", err)
		}
	}
}

func (s *Server) signalShard(ctx context.Context, t tenant.Tenant, shard int, signal string, arg any) error {
	opts, in := workflows.CatalogSyncStart(t.Name, t.Schema, shard, s.deps.Sync.Options)
	_, err := s.deps.Temporal.SignalWithStartWorkflow(ctx, opts.ID, signal, arg, opts, workflows.CatalogSyncWorkflowType, in)
	return err
}
