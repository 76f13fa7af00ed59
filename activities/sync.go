package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/internal/tracectx"
)

// CatalogStore is one tenant's products, channels, synced versions and
// parked items (internal/store).
type CatalogStore interface {
	Products(ctx context.Context, skus []string) (map[string]catalog.Product, error)
	Channel(ctx context.Context, id string) (catalog.Channel, error)
	Channels(ctx context.Context) ([]catalog.Channel, error)
	SyncedVersions(ctx context.Context, channelID string, skus []string) (map[string]int64, error)
	Unsynced(ctx context.Context, channelID, after string, shard, shards, window int) (catalog.Window, error)
	MarkSynced(ctx context.Context, channelID string, versions map[string]int64) error
	Park(ctx context.Context, it catalog.ParkedItem) (catalog.ParkedItem, error)
	Unpark(ctx context.Context, id string) error
	ParkedVersions(ctx context.Context, channelID string, skus []string) (map[string]int64, error)
	UnparkSynced(ctx context.Context, channelID string, versions map[string]int64) (int, error)
	ParkedCounts(ctx context.Context, workflowID string) (map[string]int, error)
}

// Markets calls the marketplaces (internal/market): translation, per-channel
// (shared across workers) and per-market rate limits and the per-channel
// circuit breakers live there. Its error texts carry a status and a
// classified reason, never a market's reply, so they may be recorded.
type Markets interface {
	Push(ctx context.Context, t market.Target, items []market.Item) ([]market.Result, error)
}

// SyncMetrics counts what the sync does, for dashboards and alerts.
type SyncMetrics interface {
	// Pushed counts n items of market that ended in outcome.
	Pushed(market string, outcome string, n int)
	// Parked counts n items of tenant's channel of market parked.
	Parked(market, tenant string, n int)
	// Push counts one push attempt to market: "ok", "retry", "rejected".
	Push(market, result string)
}

// Error types of the sync activities the workflow tells apart.
const (
	// ErrTypeChannelGone: the channel was deleted; its work is dropped.
	ErrTypeChannelGone = "ChannelGone"
	// ErrTypeMarketRejected: the market refused the whole call (4xx); retrying
	// cannot help, so the items are parked at once.
	ErrTypeMarketRejected = "MarketRejected"
)

// Retry timing of a push: exponential from syncBackoffBase, capped, with
// jitter so that the channels of a market that comes back do not all call it
// in the same second.
const (
	syncBackoffBase = time.Second
	syncBackoffMax  = 30 * time.Second
)

// SyncActivities are the catalog sync's activities (the channel and park
// ones run as local activities), run on the sync task queue; the workflow
// refers to them through a nil *SyncActivities. Safe for concurrent use
// when its fields are.
type SyncActivities struct {
	// Catalog returns the catalog store of the tenant whose schema it is.
	Catalog func(schema string) CatalogStore
	Markets Markets
	// SyncMetrics counts pushes and parked items; nil: none.
	SyncMetrics SyncMetrics
	// Log receives the alerts the activities raise; nil means slog.Default.
	Log *slog.Logger
	// Linger: a push that carried fewer than Batch SKUs and went through
	// returns no sooner than Linger after it started (or its context ends).
	// The workflow runs one push per channel at a time, so a channel
	// takes at most one such push per Linger, and the changes that arrive
	// meanwhile go to the market together, once per SKU, in the next one.
	// A full push (a backlog) returns at once. Zero: no linger.
	Linger time.Duration
	// Batch is the most SKUs one push carries (SyncOptions.Batch): a push
	// of that many does not linger.
	Batch int
	// Lingering bounds how many pushes of this process linger at once; a
	// push that finds it full returns at once. A lingering push holds a
	// worker's activity slot doing nothing: without the bound, a tenant
	// with many channels (50 channels × 8 shards is 400 pipelines) could
	// hold every slot of a worker with its lingering pushes and leave none
	// to the other tenants' pushes. Nil: no bound.
	Lingering *LingerBudget
}

// LingerBudget is how many pushes may linger at once in one process
// (SyncActivities.Lingering).
type LingerBudget struct{ slots chan struct{} }

// NewLingerBudget lets n pushes linger at once (n < 1: none).
func NewLingerBudget(n int) *LingerBudget {
	return &LingerBudget{slots: make(chan struct{}, max(n, 0))}
}

// take reserves a place, or reports that there is none.
func (b *LingerBudget) take() bool {
	if b == nil {
		return true
	}
	select {
	case b.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (b *LingerBudget) give() {
	if b != nil {
		<-b.slots
	}
}

// SKUVersion is one SKU at the version a change brought.
type SKUVersion struct {
	SKU     string `json:"sku"`
	Version int64  `json:"version"`
	// Traceparent is the W3C context of the change that brought the
	// version (optional): the push links its span to it, as one push
	// carries items of many traces.
	Traceparent string `json:"traceparent,omitempty"`
}

// ChannelRef is what the sync workflow keeps of a channel.
type ChannelRef struct {
	ID     string `json:"id"`
	Market string `json:"market"`
	// Parked counts the channel's items the workflow has parked (filled by
	// LoadSyncChannels only).
	Parked int `json:"parked,omitempty"`
}

// LoadChannels lists the tenant's channels (a local activity).
func (a *SyncActivities) LoadChannels(ctx context.Context, schema string) ([]ChannelRef, error) {
	chs, err := a.Catalog(schema).Channels(ctx)
	if err != nil {
		return nil, err
	}
	refs := make([]ChannelRef, 0, len(chs))
	for _, c := range chs {
		refs = append(refs, ChannelRef{ID: c.ID, Market: c.Market})
	}
	slices.SortFunc(refs, func(x, y ChannelRef) int { return strings.Compare(x.ID, y.ID) })
	return refs, nil
}

// LoadSyncChannelsInput names the tenant and the sync workflow whose parked
// items are counted.
type LoadSyncChannelsInput struct {
	Schema     string `json:"schema"`
	WorkflowID string `json:"workflow_id"`
}

// LoadSyncChannels lists the tenant's channels, each with how many items
// the workflow holds parked on it (a local activity). The items themselves
// stay in PostgreSQL: the workflow keeps counts, so its state does not grow
// with the parking lot.
func (a *SyncActivities) LoadSyncChannels(ctx context.Context, in LoadSyncChannelsInput) ([]ChannelRef, error) {
	refs, err := a.LoadChannels(ctx, in.Schema)
	if err != nil {
		return nil, err
	}
	counts, err := a.Catalog(in.Schema).ParkedCounts(ctx, in.WorkflowID)
	if err != nil {
		return nil, err
	}
	for i := range refs {
		refs[i].Parked = counts[refs[i].ID]
	}
	return refs, nil
}

// BackfillInput asks for the next page of a shard's products that a
// channel lacks.
type BackfillInput struct {
	Schema    string `json:"schema"`
	ChannelID string `json:"channel_id"`
	Shard     int    `json:"shard"`
	Shards    int    `json:"shards"`
	// After is the last SKU the previous page looked at ("" to start).
	After string `json:"after"`
	// Max is the most items a page returns.
	Max int `json:"max"`
	// SkipParked leaves out what the channel holds parked at the current
	// version: the workflow no longer knows its parked items one by one.
	SkipParked bool `json:"skip_parked,omitempty"`
}

// BackfillPage is one page of a channel's catch-up.
type BackfillPage struct {
	Items []SKUVersion `json:"items,omitempty"`
	After string       `json:"after"`
	Done  bool         `json:"done"` // the whole catalogue was looked at
}

// Tuning of BackfillPage: catalogue rows (of every shard) looked at per
// query, and at most per call, so that one call stays short however few of
// the rows belong to the shard or lack the channel's version.
const (
	backfillRead    = 5000
	backfillMaxScan = 50_000
)

// BackfillPage reads, in SKU order from in.After, the products of the
// workflow's shard whose current version the channel does not hold, up to
// in.Max. A newly connected channel catches up with the existing catalogue
// this way; what it holds already (channel_products) is skipped, so reading
// the catalogue again is harmless. The store keeps the shard's lacking
// products (CatalogStore.Unsynced), so a call ships only what is pushed.
func (a *SyncActivities) BackfillPage(ctx context.Context, in BackfillInput) (BackfillPage, error) {
	if in.Shards <= 0 || in.Max <= 0 || in.Shard < 0 || in.Shard >= in.Shards {
		return BackfillPage{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("backfill: shard %d of %d and max %d: want 0 <= shard < shards and max > 0", in.Shard, in.Shards, in.Max), "BadInput", nil)
	}
	page := BackfillPage{After: in.After}
	for scanned := 0; scanned < backfillMaxScan; {
		w, err := a.Catalog(in.Schema).Unsynced(ctx, in.ChannelID, page.After, in.Shard, in.Shards, backfillRead)
		if err != nil {
			return BackfillPage{}, err
		}
		var parked map[string]int64
		if in.SkipParked && len(w.Lacking) > 0 {
			skus := make([]string, len(w.Lacking))
			for i, r := range w.Lacking {
				skus[i] = r.SKU
			}
			if parked, err = a.Catalog(in.Schema).ParkedVersions(ctx, in.ChannelID, skus); err != nil {
				return BackfillPage{}, err
			}
		}
		for _, r := range w.Lacking {
			if parked[r.SKU] >= r.Version {
				continue
			}
			page.Items = append(page.Items, SKUVersion{SKU: r.SKU, Version: r.Version})
			if len(page.Items) == in.Max {
				page.After = r.SKU
				return page, nil
			}
		}
		if w.Scanned > 0 {
			page.After = w.Last
		}
		if w.Scanned < backfillRead {
			page.Done = true
			return page, nil
		}
		scanned += w.Scanned
		activity.RecordHeartbeat(ctx, page.After)
	}
	return page, nil
}

// PushInput is a batch of SKUs for one channel.
type PushInput struct {
	Tenant    string       `json:"tenant"`
	Schema    string       `json:"schema"`
	ChannelID string       `json:"channel_id"`
	Items     []SKUVersion `json:"items"`
	// WorkflowID, when set, makes the push keep the parking lot itself (the
	// workflow holds counts, not items): what the channel holds parked at
	// the current version is not sent (PushResult.Parked), and what a synced
	// version supersedes is unparked (PushResult.ParkedLeft).
	WorkflowID string `json:"workflow_id,omitempty"`
}

// Rejection is an item the market (or its translator) refused for good.
type Rejection struct {
	SKU     string `json:"sku"`
	Version int64  `json:"version"`
	Reason  string `json:"reason"`
}

// PushResult says where each item of a push ended.
type PushResult struct {
	// Synced is, per SKU, the version the market now holds: applied now,
	// applied before (a duplicate key), or synced by an earlier push.
	Synced map[string]int64 `json:"synced"`
	// Rejected items are parked by the workflow.
	Rejected []Rejection `json:"rejected,omitempty"`
	// Missing SKUs have no product (yet): nothing to send.
	Missing []string `json:"missing,omitempty"`
	// Parked SKUs wait in the parking lot at their current version: not sent
	// (only with PushInput.WorkflowID).
	Parked []string `json:"parked,omitempty"`
	// ParkedLeft, when set, is how many of the channel's items the workflow
	// holds parked after this push unparked the ones it superseded.
	ParkedLeft *int `json:"parked_left,omitempty"`
}

// PushProducts sends the current version of each SKU to the channel's
// market, idempotently: the key of an item is (channel, sku, version), and a
// version the channel holds already is not sent again. It always sends the
// newest version PostgreSQL has, so a retry never sends an older one than the
// attempt before it.
//
// A whole-call failure is retried by Temporal with exponential backoff and
// jitter (the activity sets the next delay), after a 429 no sooner than the
// market asked; a 4xx of the whole call is not retried (ErrTypeMarketRejected),
// nor is a deleted channel (ErrTypeChannelGone). What the market applied
// before a failure is recorded all the same.
func (a *SyncActivities) PushProducts(ctx context.Context, in PushInput) (out PushResult, _ error) {
	started := time.Now()
	defer keepAlive(ctx)()
	linkItems(ctx, in.Items)
	res := PushResult{Synced: map[string]int64{}}
	store := a.Catalog(in.Schema)
	ch, err := store.Channel(ctx, in.ChannelID)
	if errors.Is(err, catalog.ErrNotFound) {
		return res, temporal.NewNonRetryableApplicationError("channel "+in.ChannelID+" was deleted", ErrTypeChannelGone, err)
	}
	if err != nil {
		return res, err
	}
	skus := make([]string, 0, len(in.Items))
	for _, it := range in.Items {
		skus = append(skus, it.SKU)
	}
	products, err := store.Products(ctx, skus)
	if err != nil {
		return res, err
	}
	synced, err := store.SyncedVersions(ctx, ch.ID, skus)
	if err != nil {
		return res, err
	}
	var parked map[string]int64
	if in.WorkflowID != "" {
		if parked, err = store.ParkedVersions(ctx, ch.ID, skus); err != nil {
			return res, err
		}
		// On every return, failures included: what was applied supersedes.
		defer func() { a.unparkSynced(ctx, store, ch.ID, in.WorkflowID, &out) }()
	}
	var items []market.Item
	for _, sku := range skus {
		p, ok := products[sku]
		switch {
		case !ok:
			res.Missing = append(res.Missing, sku)
		case synced[sku] >= p.Version:
			res.Synced[sku] = synced[sku]
		case parked[sku] >= p.Version:
			res.Parked = append(res.Parked, sku)
		default:
			items = append(items, market.Item{Product: p, Key: fmt.Sprintf("%s:%s:%d", ch.ID, sku, p.Version)})
		}
	}
	if len(items) == 0 {
		return res, nil
	}
	results, pushErr := a.pushThroughBreaker(ctx, ch, items)
	applied := map[string]int64{}
	counts := map[market.Outcome]int{}
	for _, r := range results {
		counts[r.Outcome]++
		switch r.Outcome {
		case market.Applied, market.Duplicate:
			applied[r.SKU] = r.Version
			res.Synced[r.SKU] = r.Version
		case market.Rejected:
			res.Rejected = append(res.Rejected, Rejection{SKU: r.SKU, Version: r.Version, Reason: r.Reason})
		}
	}
	for o, n := range counts {
		a.syncMetrics().Pushed(ch.Market, string(o), n)
	}
	if len(applied) > 0 {
		// Recorded even when the call failed later: those versions are applied.
		if err := store.MarkSynced(ctx, ch.ID, applied); err != nil {
			return res, err
		}
	}
	a.syncMetrics().Push(ch.Market, pushResult(pushErr))
	if pushErr != nil {
		return res, classifyPushError(ctx, ch, pushErr)
	}
	a.linger(ctx, started, len(in.Items))
	return res, nil
}

// linger holds a push that carried n SKUs and went through until Linger
// after it started, unless it was full or the process's pushes that linger
// already fill their budget (SyncActivities.Linger, Lingering).
func (a *SyncActivities) linger(ctx context.Context, started time.Time, n int) {
	if a.Linger <= 0 || (a.Batch > 0 && n >= a.Batch) {
		return
	}
	wait := time.Until(started.Add(a.Linger))
	if wait <= 0 || !a.Lingering.take() {
		return
	}
	defer a.Lingering.give()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done(): // what went through is reported all the same
	case <-t.C:
	}
}

// maxPushLinks bounds the links of one push's span (the SDK's default limit).
const maxPushLinks = 128

// linkItems links the activity's span (the tracing interceptor's
// RunActivity) to the context of each item's change, so that each PUT's
// trace leads to the push that carried it and to the market call below it.
// A traceparent that does not parse is skipped.
func linkItems(ctx context.Context, items []SKUVersion) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	n := 0
	for _, it := range items {
		if n == maxPushLinks {
			break
		}
		if sc := (tracectx.Carrier{TraceParent: it.Traceparent}).SpanContext(); sc.IsValid() {
			span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("sagaflow.sku", it.SKU)}})
			n++
		}
	}
}

// unparkSynced removes the parked items that the push's synced versions
// supersede and, if it removed any, sets res.ParkedLeft. Best effort: a
// failure leaves the rows for a later push (or the operator) to clear.
func (a *SyncActivities) unparkSynced(ctx context.Context, store CatalogStore, channelID, workflowID string, res *PushResult) {
	if len(res.Synced) == 0 {
		return
	}
	n, err := store.UnparkSynced(ctx, channelID, res.Synced)
	if err != nil || n == 0 {
		return
	}
	counts, err := store.ParkedCounts(ctx, workflowID)
	if err != nil {
		return
	}
	left := counts[channelID]
	res.ParkedLeft = &left
}

// breakerWait is how long one attempt waits, in all, for the channel's open
// circuit breaker before it gives up and lets Temporal retry: an open
// breaker says the market is resting, not that this push failed, so it
// should not use up the push's attempts.
const breakerWait = time.Minute

// pushThroughBreaker pushes items; while the channel's breaker is open it
// waits (1-3 s at a time, with jitter, so the channels of a recovering
// market do not probe it together) and pushes what was not sent, until
// breakerWait is spent or the attempt's deadline nears.
func (a *SyncActivities) pushThroughBreaker(ctx context.Context, ch catalog.Channel, items []market.Item) ([]market.Result, error) {
	target := market.Target{ChannelID: ch.ID, Market: ch.Market, BaseURL: ch.BaseURL, Credentials: ch.Credentials, RateLimitPerSec: ch.RateLimitPerSec}
	var done []market.Result
	giveUp := time.Now().Add(breakerWait)
	if d, ok := ctx.Deadline(); ok && d.Add(-15*time.Second).Before(giveUp) {
		giveUp = d.Add(-15 * time.Second)
	}
	for {
		results, err := a.Markets.Push(ctx, target, items)
		if !errors.Is(err, market.ErrCircuitOpen) || time.Now().After(giveUp) {
			return append(done, results...), err
		}
		var unsent []market.Item
		for i, r := range results {
			if r.Outcome == market.Unknown {
				unsent = append(unsent, items[i])
			} else {
				done = append(done, r)
			}
		}
		items = unsent
		select {
		case <-ctx.Done():
			return done, ctx.Err()
		case <-time.After(time.Second + time.Duration(rand.Int64N(int64(2*time.Second)))):
		}
	}
}

// pushResult is the metric's name for how a push attempt ended.
func pushResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case market.IsPermanent(err):
		return "rejected"
	}
	return "retry"
}

// classifyPushError turns a market error into what Temporal should do.
func classifyPushError(ctx context.Context, ch catalog.Channel, err error) error {
	msg := fmt.Sprintf("%s channel %s: %v", ch.Market, ch.ID, err)
	if market.IsPermanent(err) {
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeMarketRejected, err)
	}
	delay := jitteredBackoff(activity.GetInfo(ctx).Attempt)
	if after, ok := market.RetryAfter(err); ok {
		// The market said when; a little jitter on top spreads the channels.
		delay = after + time.Duration(rand.Int64N(int64(after/4)+1))
	}
	return temporal.NewApplicationErrorWithOptions(msg, "MarketUnavailable", temporal.ApplicationErrorOptions{
		Cause: err, NextRetryDelay: delay,
	})
}

// jitteredBackoff is the wait after the attempt-th failure: base·2^(n-1),
// capped, times a random factor in [0.5, 1.5).
func jitteredBackoff(attempt int32) time.Duration {
	d := syncBackoffBase
	for i := int32(1); i < attempt && d < syncBackoffMax; i++ {
		d *= 2
	}
	d = min(d, syncBackoffMax)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// ParkInput parks items of one channel.
type ParkInput struct {
	Tenant     string               `json:"tenant"`
	Schema     string               `json:"schema"`
	WorkflowID string               `json:"workflow_id"`
	Channel    ChannelRef           `json:"channel"`
	Items      []catalog.ParkedItem `json:"items"`
}

// ParkItems records parked items in the tenant's parking lot (GET /v1/dlq
// lists it) and raises the alert: a log line at warn and a metric. Idempotent
// per (channel, sku). It returns the items with their IDs.
func (a *SyncActivities) ParkItems(ctx context.Context, in ParkInput) ([]catalog.ParkedItem, error) {
	store := a.Catalog(in.Schema)
	out := make([]catalog.ParkedItem, 0, len(in.Items))
	for _, it := range in.Items {
		it.ChannelID, it.Market, it.WorkflowID = in.Channel.ID, in.Channel.Market, in.WorkflowID
		parked, err := store.Park(ctx, it)
		if errors.Is(err, catalog.ErrNotFound) {
			continue // the channel was deleted meanwhile: nothing to park
		}
		if err != nil {
			return nil, err
		}
		out = append(out, parked)
		orDefault(a.Log).WarnContext(ctx, "sync item parked", "alert", "sync_parked", "tenant", in.Tenant, "market", in.Channel.Market,
			"channel", in.Channel.ID, "sku", it.SKU, "version", it.Version, "attempts", it.Attempts, "error", it.Error, "parked_id", parked.ID)
	}
	a.syncMetrics().Parked(in.Channel.Market, in.Tenant, len(out))
	return out, nil
}

// UnparkInput removes parked items (retried, discarded or superseded).
type UnparkInput struct {
	Schema string   `json:"schema"`
	IDs    []string `json:"ids"`
	// WorkflowID and ChannelID: whose parked items UnparkAndCount counts.
	WorkflowID string `json:"workflow_id,omitempty"`
	ChannelID  string `json:"channel_id,omitempty"`
}

// ParkResult is what ParkAndCount parked, and how many items the workflow
// now holds parked on the channel.
type ParkResult struct {
	SKUs   []string `json:"skus,omitempty"`
	Parked int      `json:"parked"`
}

// ParkAndCount is ParkItems for a workflow that keeps counts, not items: it
// returns the SKUs it parked and the channel's count (a local activity).
func (a *SyncActivities) ParkAndCount(ctx context.Context, in ParkInput) (ParkResult, error) {
	items, err := a.ParkItems(ctx, in)
	if err != nil {
		return ParkResult{}, err
	}
	counts, err := a.Catalog(in.Schema).ParkedCounts(ctx, in.WorkflowID)
	if err != nil {
		return ParkResult{}, err
	}
	res := ParkResult{Parked: counts[in.Channel.ID]}
	for _, it := range items {
		res.SKUs = append(res.SKUs, it.SKU)
	}
	return res, nil
}

// UnparkAndCount is UnparkItems, then the count of the items the workflow
// holds parked on in.ChannelID (a local activity).
func (a *SyncActivities) UnparkAndCount(ctx context.Context, in UnparkInput) (int, error) {
	if err := a.UnparkItems(ctx, in); err != nil {
		return 0, err
	}
	counts, err := a.Catalog(in.Schema).ParkedCounts(ctx, in.WorkflowID)
	if err != nil {
		return 0, err
	}
	return counts[in.ChannelID], nil
}

// UnparkItems removes the items from the parking lot; idempotent.
func (a *SyncActivities) UnparkItems(ctx context.Context, in UnparkInput) error {
	store := a.Catalog(in.Schema)
	for _, id := range in.IDs {
		if err := store.Unpark(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// orDefault is l, or slog.Default when l is nil.
func orDefault(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}
