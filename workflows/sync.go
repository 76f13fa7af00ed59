package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/catalog"
)

// Signals and queries of the catalog sync workflow.
const (
	// SignalChanges carries []activities.SKUVersion: products that changed.
	SignalChanges = "changes"
	// SignalParking carries a ParkingAction: an operator's retry or discard
	// of a parked item.
	SignalParking = "parking"
	// SignalChannels says the tenant's channels changed: reload them. It
	// carries a ChannelsChanged (or nothing, from older senders).
	SignalChannels = "channels"
	// QuerySync takes a SKU and returns its []ChannelSync.
	QuerySync = "sync"
)

// ChannelsChanged is the payload of SignalChannels.
type ChannelsChanged struct {
	// Shards is the sender's shard count: a workflow started before its
	// options carried one learns it here, and backfills from then on.
	Shards int `json:"shards,omitempty"`
}

// Parking actions.
const (
	ParkingRetry   = "retry"
	ParkingDiscard = "discard"
)

// SearchAttributeParked is how many items a sync workflow holds parked;
// operators find the workflows that wait for them with SagaflowParked > 0.
var SearchAttributeParked = temporal.NewSearchAttributeKeyInt64("SagaflowParked")

// CatalogSyncWorkflowType is the registered name of CatalogSync.
const CatalogSyncWorkflowType = "CatalogSync"

// syncActs are the sync's activities, referred to by method.
var syncActs *activities.SyncActivities

// CatalogSyncWorkflowID is the ID of the sync workflow of shard of tenant's
// SKUs (catalog.Shard).
func CatalogSyncWorkflowID(tenant string, shard int) string {
	return workflowID(tenant, "sync", fmt.Sprintf("%03d", shard))
}

// SyncOptions tune the sync workflow; the zero value of a field means its
// default.
type SyncOptions struct {
	// MaxAttempts of a push before its items are parked (default 12: the
	// activity backs off from 1 s doubling to 30 s, with jitter, so about
	// three minutes; a market down for a minute parks nothing).
	MaxAttempts int32 `json:"max_attempts,omitempty"`
	// Batch is the most SKUs one push carries (default 500).
	Batch int `json:"batch,omitempty"`
	// MaxHistory is the history length after which the workflow continues
	// as new (default 10,000 events).
	MaxHistory int `json:"max_history,omitempty"`
	// MaxPending is the most SKUs a channel holds pending in the workflow
	// (default 4 batches). Beyond it a change is left in PostgreSQL (the
	// product's version is newer than the channel's) and the channel's
	// catch-up picks it up, so a flood of distinct SKUs does not grow the
	// workflow's state. Only with Shards known.
	MaxPending int `json:"max_pending,omitempty"`
	// Shards is how many shards the tenant's SKUs are spread over
	// (catalog.Shard). A channel new to the workflow catches up with the
	// existing catalogue of its shard only when it is known (no default:
	// workflows started before it was carried have none).
	Shards int `json:"shards,omitempty"`
}

func (o SyncOptions) withDefaults() SyncOptions {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 12
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = 10_000
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 4 * o.Batch
	}
	o.MaxPending = max(o.MaxPending, o.Batch) // a catch-up page must fit
	return o
}

// SyncInput starts (or continues) the sync of one shard of a tenant's SKUs.
type SyncInput struct {
	Tenant  string      `json:"tenant"`
	Schema  string      `json:"schema"`
	Shard   int         `json:"shard"`
	Options SyncOptions `json:"options"`
	// Channels is the work carried across continue-as-new, by channel ID.
	Channels map[string]*ChannelWork `json:"channels,omitempty"`
	Runs     int                     `json:"runs,omitempty"`
}

// ChannelWork is what one channel still has to do.
type ChannelWork struct {
	Market string `json:"market"`
	// Want is the version each SKU must reach on this channel.
	Want map[string]int64 `json:"want,omitempty"`
	// Parked holds the items waiting for an operator, by SKU: runs that
	// started before bounded state only. Later runs keep them in PostgreSQL
	// and hold ParkedCount.
	Parked map[string]catalog.ParkedItem `json:"parked,omitempty"`
	// ParkedCount is how many items this workflow holds parked on the
	// channel, as PostgreSQL counted them at its last parking write.
	ParkedCount int `json:"parked_count,omitempty"`
	// Backfill is where the channel's catch-up with the catalogue that
	// existed before the workflow knew the channel stands; nil when there
	// is none to do.
	Backfill *Backfill `json:"backfill,omitempty"`

	// in flight, never carried across continue-as-new
	inflight   map[string]int64
	activityID string
	// traces is the W3C traceparent of the change that brought each wanted
	// version, when it came with one; the push links to them. Only within
	// one run (a run that continues as new starts without them).
	traces map[string]string
}

// Backfill is a channel's catch-up: the pages read so far end at After.
type Backfill struct {
	After string `json:"after"`
	// Paused: the channel's last push failed as a whole (out of retries,
	// or refused outright: bad credentials, say). No more of the catalogue
	// is read until a push to it goes through, so a broken channel parks
	// one batch, not its whole shard.
	Paused bool `json:"paused,omitempty"`
	// Discarded holds the versions an operator discarded while the
	// catch-up ran: reaching them, it does not bring them back. With
	// bounded state it holds only SKUs the catch-up has still to reach, at
	// most maxDiscarded.
	Discarded map[string]int64 `json:"discarded,omitempty"`
	// Again: changes beyond MaxPending were left in PostgreSQL at SKUs the
	// catch-up had passed; once done, it reads the catalogue once more.
	Again bool `json:"again,omitempty"`
}

// maxDiscarded bounds Backfill.Discarded: past it, a discarded item the
// catch-up has still to reach may be parked again (and can be discarded
// again); the state stays bounded.
const maxDiscarded = 1000

// ParkingAction is an operator's decision on a parked item.
type ParkingAction struct {
	ID        string `json:"id"`
	ChannelID string `json:"channel_id"`
	SKU       string `json:"sku"`
	// Version is the parked version, as the parking lot has it: a retry
	// reaches a run that no longer holds the item (terminated and started
	// again) all the same.
	Version int64  `json:"version"`
	Action  string `json:"action"` // retry | discard
}

// ChannelSync is where one SKU stands on one channel, as the workflow sees
// it. Status is pending, in_flight or (from runs before bounded state only)
// parked; a SKU the workflow has no work for is absent (the API reads its
// synced version and parked items from PostgreSQL).
type ChannelSync struct {
	ChannelID  string `json:"channel_id"`
	Market     string `json:"market"`
	Status     string `json:"status"`
	Version    int64  `json:"version"`
	Error      string `json:"error,omitempty"`
	ParkedID   string `json:"parked_id,omitempty"`
	ActivityID string `json:"activity_id,omitempty"`
}

// SyncStatus is the status query's answer.
type SyncStatus struct {
	Tenant   string                 `json:"tenant"`
	Shard    int                    `json:"shard"`
	Runs     int                    `json:"runs"`
	Channels map[string]ChannelLoad `json:"channels"`
}

// ChannelLoad counts a channel's work.
type ChannelLoad struct {
	Market   string `json:"market"`
	Pending  int    `json:"pending"`
	InFlight int    `json:"in_flight"`
	Parked   int    `json:"parked"`
	// Backfilling: the channel is still catching up with the catalogue;
	// BackfillPaused: and waits, for a push to it to go through or for its
	// parked items to be dealt with.
	Backfilling    bool `json:"backfilling,omitempty"`
	BackfillPaused bool `json:"backfill_paused,omitempty"`
}

// CatalogSync keeps one shard of a tenant's SKUs in sync with every channel
// of the tenant. It lives long: the ingest signals changes into it
// (signal-with-start), and it continues as new when its history grows.
//
// Per channel it runs one push at a time, of up to Options.Batch SKUs, so a
// slow or failing market holds up only its own channels, and a SKU is never
// in two pushes to the same channel at once (no older version can overtake a
// newer one). A push that runs out of retries, or items the market refuses,
// are parked: recorded in the parking lot, counted in SagaflowParked, and
// kept until an operator's retry or discard, or a newer version of the SKU.
// It ends only when cancelled (pushes in flight are cancelled with it).
func CatalogSync(ctx workflow.Context, in SyncInput) error {
	s := &syncRun{in: in, opts: in.Options.withDefaults(), channels: in.Channels}
	if s.channels == nil {
		s.channels = map[string]*ChannelWork{}
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, s.status); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QuerySync, s.sync); err != nil {
		return err
	}
	return s.run(ctx)
}

type syncRun struct {
	in       SyncInput
	opts     SyncOptions
	channels map[string]*ChannelWork
	seq      int
	parked   int64 // the search attribute's last value
	// bounded: this run keeps parked items in PostgreSQL (counts in the
	// state) and at most Options.MaxPending pending SKUs per channel; runs
	// recorded before it (workflows/testdata) do neither.
	bounded bool
}

// boundedStateChange is the workflow.GetVersion change ID of bounded state.
const boundedStateChange = "sync-bounded-state"

// parkedOf is how many items the channel holds parked.
func (s *syncRun) parkedOf(cw *ChannelWork) int {
	if s.bounded {
		return cw.ParkedCount
	}
	return len(cw.Parked)
}

func (s *syncRun) status() (SyncStatus, error) {
	st := SyncStatus{Tenant: s.in.Tenant, Shard: s.in.Shard, Runs: s.in.Runs, Channels: map[string]ChannelLoad{}}
	for _, id := range sortedKeys(s.channels) {
		cw := s.channels[id]
		st.Channels[id] = ChannelLoad{Market: cw.Market, Pending: len(cw.Want), InFlight: len(cw.inflight), Parked: s.parkedOf(cw),
			Backfilling: cw.Backfill != nil, BackfillPaused: s.backfillHeld(cw)}
	}
	return st, nil
}

func (s *syncRun) sync(sku string) ([]ChannelSync, error) {
	var out []ChannelSync
	for _, id := range sortedKeys(s.channels) {
		cw := s.channels[id]
		cs := ChannelSync{ChannelID: id, Market: cw.Market}
		if v, ok := cw.inflight[sku]; ok {
			cs.Status, cs.Version, cs.ActivityID = catalog.SyncInFlight, max(v, cw.Want[sku]), cw.activityID
		} else if v, ok := cw.Want[sku]; ok {
			cs.Status, cs.Version = catalog.SyncPending, v
		} else if p, ok := cw.Parked[sku]; ok {
			cs.Status, cs.Version, cs.Error, cs.ParkedID = catalog.SyncParked, p.Version, p.Error, p.ID
		} else {
			continue
		}
		out = append(out, cs)
	}
	return out, nil
}

func (s *syncRun) run(ctx workflow.Context) error {
	changes := workflow.GetSignalChannel(ctx, SignalChanges)
	parking := workflow.GetSignalChannel(ctx, SignalParking)
	reload := workflow.GetSignalChannel(ctx, SignalChannels)
	if workflow.GetVersion(ctx, boundedStateChange, workflow.DefaultVersion, 1) >= 1 {
		s.bounded = true
		s.adoptState()
	}
	if err := s.loadChannels(ctx); err != nil {
		return err
	}
	pushCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			// The activity sets each next delay itself (backoff with jitter,
			// Retry-After); these are the bounds when it does not.
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts:        s.opts.MaxAttempts,
			NonRetryableErrorTypes: []string{activities.ErrTypeChannelGone, activities.ErrTypeMarketRejected},
		},
	})
	pageCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		// PostgreSQL may be away for a while: no attempt limit.
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
	futures := map[string]workflow.Future{} // pushes, by channel
	pages := map[string]workflow.Future{}   // backfill pages, by channel
	var reloadWanted bool
	var failure error
	for {
		if failure != nil {
			return failure
		}
		idle := len(futures) == 0 && len(pages) == 0
		if reloadWanted && idle {
			reloadWanted = false
			if err := s.loadChannels(ctx); err != nil {
				return err
			}
		}
		draining := s.historyFull(ctx)
		if draining && idle {
			return s.continueAsNew(ctx, changes, parking, reload)
		}
		if !draining && !reloadWanted {
			for _, id := range sortedKeys(s.channels) {
				if _, busy := futures[id]; !busy {
					if f := s.startPush(pushCtx, id); f != nil {
						futures[id] = f
					}
				}
				if _, busy := pages[id]; !busy {
					if f := s.startBackfill(pageCtx, id); f != nil {
						pages[id] = f
					}
				}
			}
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) { failure = ctx.Err() })
		sel.AddReceive(changes, func(c workflow.ReceiveChannel, _ bool) {
			var batch []activities.SKUVersion
			c.Receive(ctx, &batch)
			s.addChanges(batch)
		})
		sel.AddReceive(parking, func(c workflow.ReceiveChannel, _ bool) {
			var act ParkingAction
			c.Receive(ctx, &act)
			failure = s.onParking(ctx, act)
		})
		sel.AddReceive(reload, func(c workflow.ReceiveChannel, _ bool) {
			var msg ChannelsChanged
			c.Receive(ctx, &msg)
			s.learnShards(msg)
			reloadWanted = true
		})
		for _, id := range sortedKeys(futures) {
			sel.AddFuture(futures[id], func(f workflow.Future) {
				delete(futures, id)
				failure = s.onPushDone(ctx, id, f)
			})
		}
		for _, id := range sortedKeys(pages) {
			sel.AddFuture(pages[id], func(f workflow.Future) {
				delete(pages, id)
				failure = s.onBackfillPage(ctx, id, f)
			})
		}
		sel.Select(ctx)
		// Take every change already here before the next pushes start, so a
		// storm of signals becomes one push per channel, not one per signal.
		for {
			var batch []activities.SKUVersion
			if !changes.ReceiveAsync(&batch) {
				break
			}
			s.addChanges(batch)
		}
	}
}

// historyFull says the run should hand over to a new one.
func (s *syncRun) historyFull(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= s.opts.MaxHistory
}

// adoptState makes the state a bounded run starts from bounded: parked
// items carried by a run from before are in PostgreSQL already (the load
// counts them), and pending SKUs beyond MaxPending are left to the catch-up.
func (s *syncRun) adoptState() {
	for _, id := range sortedKeys(s.channels) {
		cw := s.channels[id]
		cw.Parked = nil
		if b := cw.Backfill; b != nil && len(b.Discarded) > maxDiscarded {
			for _, sku := range sortedKeys(b.Discarded)[maxDiscarded:] {
				delete(b.Discarded, sku)
			}
		}
		if len(cw.Want) > s.opts.MaxPending && s.opts.Shards > 0 {
			for _, sku := range sortedKeys(cw.Want)[s.opts.MaxPending:] {
				delete(cw.Want, sku)
				s.overflow(cw, sku)
			}
		}
	}
}

func (s *syncRun) loadChannels(ctx workflow.Context) error {
	var refs []activities.ChannelRef
	if s.bounded {
		in := activities.LoadSyncChannelsInput{Schema: s.in.Schema, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID}
		err := s.bookkeep(ctx, "load channels", func(lctx workflow.Context) error {
			return workflow.ExecuteLocalActivity(lctx, syncActs.LoadSyncChannels, in).Get(lctx, &refs)
		})
		if err != nil {
			return err
		}
	} else if err := workflow.ExecuteLocalActivity(s.localCtx(ctx), syncActs.LoadChannels, s.in.Schema).Get(ctx, &refs); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range refs {
		seen[r.ID] = true
		if cw, ok := s.channels[r.ID]; ok {
			cw.Market, cw.ParkedCount = r.Market, r.Parked
			continue
		}
		s.channels[r.ID] = &ChannelWork{Market: r.Market, ParkedCount: r.Parked, Backfill: s.newBackfill(ctx)}
	}
	for _, id := range sortedKeys(s.channels) {
		if !seen[id] {
			delete(s.channels, id) // deleted: its parked rows went with it
		}
	}
	return s.updateParked(ctx)
}

// learnShards takes the shard count a channels signal carries, when the
// workflow's options have none.
func (s *syncRun) learnShards(msg ChannelsChanged) {
	if s.opts.Shards <= 0 && msg.Shards > 0 {
		s.opts.Shards, s.in.Options.Shards = msg.Shards, msg.Shards
	}
}

// newBackfill is the catch-up of a channel the workflow has not known
// before: connected since the last load, or present when the workflow
// started. Workflows recorded before backfills existed (or without the shard
// count) take none.
func (s *syncRun) newBackfill(ctx workflow.Context) *Backfill {
	if workflow.GetVersion(ctx, "channel-backfill", workflow.DefaultVersion, 1) == workflow.DefaultVersion || s.opts.Shards <= 0 {
		return nil
	}
	return &Backfill{}
}

func (s *syncRun) addChanges(batch []activities.SKUVersion) {
	for _, id := range sortedKeys(s.channels) {
		s.want(s.channels[id], batch)
	}
}

// want adds versions to a channel's work, unless it wants a newer one or
// holds the SKU parked at that version or newer.
//
// A bounded run does not know its parked items (the push skips what is
// parked at the version it would send), and holds at most MaxPending SKUs:
// a SKU beyond it is left to the channel's catch-up.
func (s *syncRun) want(cw *ChannelWork, items []activities.SKUVersion) {
	for _, c := range items {
		if p, ok := cw.Parked[c.SKU]; ok && c.Version <= p.Version {
			continue // parked at this version or newer: wait for the operator
		}
		if _, held := cw.Want[c.SKU]; s.bounded && !held && len(cw.Want) >= s.opts.MaxPending && s.opts.Shards > 0 {
			s.overflow(cw, c.SKU)
			continue
		}
		if c.Version > cw.Want[c.SKU] {
			if cw.Want == nil {
				cw.Want = map[string]int64{}
			}
			cw.Want[c.SKU] = c.Version
			cw.setTrace(c.SKU, c.Traceparent)
		}
	}
}

// overflow leaves sku to the channel's catch-up: PostgreSQL has its version,
// newer than the channel's, and the catch-up reads what the channel lacks.
// A catch-up that has passed sku reads the catalogue again once done.
func (s *syncRun) overflow(cw *ChannelWork, sku string) {
	switch {
	case cw.Backfill == nil:
		cw.Backfill = &Backfill{}
	case cw.Backfill.After != "" && sku <= cw.Backfill.After:
		cw.Backfill.Again = true
	}
}

// startBackfill reads the next page of channel id's catch-up, when it has
// one and its work is short of a batch (so the pending work stays bounded
// however large the catalogue); or returns nil.
func (s *syncRun) startBackfill(ctx workflow.Context, id string) workflow.Future {
	cw := s.channels[id]
	if cw.Backfill == nil || s.backfillHeld(cw) || len(cw.Want) >= s.opts.Batch {
		return nil
	}
	s.seq++
	ctx = workflow.WithActivityOptions(ctx, withActivityID(workflow.GetActivityOptions(ctx), fmt.Sprintf("backfill:%s:%d", id, s.seq)))
	return workflow.ExecuteActivity(ctx, syncActs.BackfillPage, activities.BackfillInput{
		Schema: s.in.Schema, ChannelID: id, Shard: s.in.Shard, Shards: s.opts.Shards,
		After: cw.Backfill.After, Max: s.opts.Batch, SkipParked: s.bounded,
	})
}

// backfillHeld says a channel's catch-up waits: its last push failed as a
// whole, or it holds a batch or more parked (a market that refuses every
// item one by one, such as bazaar for a catalogue priced in USD). Either
// way reading on would park the channel's whole shard, item by item.
func (s *syncRun) backfillHeld(cw *ChannelWork) bool {
	return cw.Backfill != nil && (cw.Backfill.Paused || s.parkedOf(cw) >= s.opts.Batch)
}

// onBackfillPage adds a page of catch-up to the channel's work.
func (s *syncRun) onBackfillPage(ctx workflow.Context, id string, f workflow.Future) error {
	var page activities.BackfillPage
	if err := f.Get(ctx, &page); err != nil {
		return err // retried without limit: only a cancellation ends it
	}
	cw, ok := s.channels[id]
	if !ok || cw.Backfill == nil {
		return nil // deleted meanwhile
	}
	items := page.Items
	if len(cw.Backfill.Discarded) > 0 {
		items = slices.DeleteFunc(slices.Clone(items), func(it activities.SKUVersion) bool {
			return it.Version <= cw.Backfill.Discarded[it.SKU]
		})
	}
	if s.bounded {
		// First: what the page cannot take (past MaxPending) is behind the
		// cursor then, so overflow marks the catch-up to read again.
		cw.Backfill.After = page.After
	}
	s.want(cw, items)
	switch {
	case page.Done && s.bounded && cw.Backfill.Again:
		cw.Backfill.After, cw.Backfill.Again = "", false
	case page.Done:
		cw.Backfill = nil
	default:
		cw.Backfill.After = page.After
		if s.bounded && !cw.Backfill.Again {
			// Passed: this catch-up does not reach them again.
			for _, sku := range sortedKeys(cw.Backfill.Discarded) {
				if sku <= page.After {
					delete(cw.Backfill.Discarded, sku)
				}
			}
		}
	}
	return nil
}

// startPush sends the next batch of channel id's work, or returns nil.
func (s *syncRun) startPush(ctx workflow.Context, id string) workflow.Future {
	cw := s.channels[id]
	if len(cw.Want) == 0 {
		return nil
	}
	skus := sortedKeys(cw.Want)
	if len(skus) > s.opts.Batch {
		skus = skus[:s.opts.Batch]
	}
	in := activities.PushInput{Tenant: s.in.Tenant, Schema: s.in.Schema, ChannelID: id}
	if s.bounded {
		in.WorkflowID = workflow.GetInfo(ctx).WorkflowExecution.ID
	}
	cw.inflight = make(map[string]int64, len(skus))
	cw.pruneTraces()
	for _, sku := range skus {
		in.Items = append(in.Items, activities.SKUVersion{SKU: sku, Version: cw.Want[sku], Traceparent: cw.traces[sku]})
		cw.inflight[sku] = cw.Want[sku]
	}
	s.seq++
	cw.activityID = fmt.Sprintf("push:%s:%d", id, s.seq)
	ctx = workflow.WithActivityOptions(ctx, withActivityID(workflow.GetActivityOptions(ctx), cw.activityID))
	return workflow.ExecuteActivity(ctx, syncActs.PushProducts, in)
}

// setTrace records the traceparent of sku's wanted version (none: forget
// the older version's).
func (cw *ChannelWork) setTrace(sku, traceparent string) {
	if traceparent == "" {
		delete(cw.traces, sku)
		return
	}
	if cw.traces == nil {
		cw.traces = map[string]string{}
	}
	cw.traces[sku] = traceparent
}

// pruneTraces forgets the traces of SKUs no longer wanted, so they never
// outnumber Want.
func (cw *ChannelWork) pruneTraces() {
	for _, sku := range sortedKeys(cw.traces) {
		if _, ok := cw.Want[sku]; !ok {
			delete(cw.traces, sku)
		}
	}
}

func withActivityID(o workflow.ActivityOptions, id string) workflow.ActivityOptions {
	o.ActivityID = id
	return o
}

// onPushDone settles a finished push: synced SKUs leave the work unless a
// newer version arrived meanwhile; refused ones and, when the push gave up,
// all of them are parked.
func (s *syncRun) onPushDone(ctx workflow.Context, id string, f workflow.Future) error {
	cw := s.channels[id]
	sent := cw.inflight
	cw.inflight, cw.activityID = nil, ""
	var res activities.PushResult
	err := f.Get(ctx, &res)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeChannelGone {
			delete(s.channels, id)
			return s.updateParked(ctx)
		}
		if cw.Backfill != nil {
			cw.Backfill.Paused = true
		}
		attempts := s.opts.MaxAttempts
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			attempts = 1
		}
		var park []catalog.ParkedItem
		for _, sku := range sortedKeys(sent) {
			if v, ok := res.Synced[sku]; ok && v >= cw.Want[sku] {
				delete(cw.Want, sku)
				continue
			}
			if s.bounded && slices.Contains(res.Parked, sku) && cw.Want[sku] <= sent[sku] {
				delete(cw.Want, sku) // parked at that version already
				continue
			}
			park = append(park, catalog.ParkedItem{SKU: sku, Version: cw.Want[sku], Error: rootMessage(err), Attempts: int(attempts)})
		}
		return s.park(ctx, id, park)
	}
	if cw.Backfill != nil {
		cw.Backfill.Paused = false
	}
	if res.ParkedLeft != nil {
		cw.ParkedCount = *res.ParkedLeft
	}
	for _, sku := range res.Parked {
		if cw.Want[sku] <= sent[sku] {
			delete(cw.Want, sku) // parked at that version: wait for the operator
		}
	}
	var superseded []string
	for _, sku := range sortedKeys(res.Synced) {
		v := res.Synced[sku]
		if v >= cw.Want[sku] {
			delete(cw.Want, sku)
		}
		if p, ok := cw.Parked[sku]; ok && p.Version <= v {
			// A newer version went through: the parked one is moot.
			delete(cw.Parked, sku)
			superseded = append(superseded, p.ID)
		}
	}
	if len(superseded) > 0 {
		if err := s.unpark(ctx, "", superseded); err != nil {
			return err
		}
	}
	for _, sku := range res.Missing {
		if cw.Want[sku] <= sent[sku] {
			delete(cw.Want, sku)
		}
	}
	var park []catalog.ParkedItem
	for _, r := range res.Rejected {
		if cw.Want[r.SKU] > r.Version {
			continue // a newer version is on its way; try that instead
		}
		park = append(park, catalog.ParkedItem{SKU: r.SKU, Version: r.Version, Error: r.Reason, Attempts: 1})
	}
	return s.park(ctx, id, park)
}

func (s *syncRun) park(ctx workflow.Context, channelID string, items []catalog.ParkedItem) error {
	if len(items) == 0 {
		return nil
	}
	cw := s.channels[channelID]
	now := workflow.Now(ctx)
	for i := range items {
		items[i].Since = now
	}
	in := activities.ParkInput{
		Tenant: s.in.Tenant, Schema: s.in.Schema, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		Channel: activities.ChannelRef{ID: channelID, Market: cw.Market}, Items: items,
	}
	if s.bounded {
		var res activities.ParkResult
		err := s.bookkeep(ctx, "park items", func(lctx workflow.Context) error {
			return workflow.ExecuteLocalActivity(lctx, syncActs.ParkAndCount, in).Get(lctx, &res)
		})
		if err != nil {
			return err
		}
		cw.ParkedCount = res.Parked
		for _, sku := range res.SKUs {
			delete(cw.Want, sku)
		}
		return s.updateParked(ctx)
	}
	var parked []catalog.ParkedItem
	err := workflow.ExecuteLocalActivity(s.localCtx(ctx), syncActs.ParkItems, in).Get(ctx, &parked)
	if err != nil {
		return err
	}
	if cw.Parked == nil {
		cw.Parked = map[string]catalog.ParkedItem{}
	}
	for _, p := range parked {
		cw.Parked[p.SKU] = p
		delete(cw.Want, p.SKU)
	}
	return s.updateParked(ctx)
}

func (s *syncRun) onParking(ctx workflow.Context, act ParkingAction) error {
	if cw, ok := s.channels[act.ChannelID]; ok {
		version := act.Version
		if p, ok := cw.Parked[act.SKU]; ok && p.ID == act.ID {
			delete(cw.Parked, act.SKU)
			version = max(version, p.Version)
		}
		if act.Action == ParkingRetry && s.bounded {
			s.want(cw, []activities.SKUVersion{{SKU: act.SKU, Version: version}})
		} else if act.Action == ParkingRetry && version > cw.Want[act.SKU] {
			if cw.Want == nil {
				cw.Want = map[string]int64{}
			}
			cw.Want[act.SKU] = version
			cw.setTrace(act.SKU, "")
		}
		full := s.bounded && cw.Backfill != nil && (len(cw.Backfill.Discarded) >= maxDiscarded ||
			(!cw.Backfill.Again && act.SKU <= cw.Backfill.After))
		if act.Action == ParkingDiscard && cw.Backfill != nil && !full && version > cw.Backfill.Discarded[act.SKU] {
			if cw.Backfill.Discarded == nil {
				cw.Backfill.Discarded = map[string]int64{}
			}
			cw.Backfill.Discarded[act.SKU] = version
		}
	}
	// Removed from the parking lot whatever the workflow knew of it: the
	// operator's word is final, and a stale row must not linger.
	return s.unpark(ctx, act.ChannelID, []string{act.ID})
}

// unpark removes items of channelID from the parking lot and updates the
// count.
func (s *syncRun) unpark(ctx workflow.Context, channelID string, ids []string) error {
	if s.bounded {
		in := activities.UnparkInput{Schema: s.in.Schema, IDs: ids, WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, ChannelID: channelID}
		var left int
		err := s.bookkeep(ctx, "unpark items", func(lctx workflow.Context) error {
			return workflow.ExecuteLocalActivity(lctx, syncActs.UnparkAndCount, in).Get(lctx, &left)
		})
		if err != nil {
			return err
		}
		if cw, ok := s.channels[channelID]; ok {
			cw.ParkedCount = left
		}
		return s.updateParked(ctx)
	}
	err := workflow.ExecuteLocalActivity(s.localCtx(ctx), syncActs.UnparkItems, activities.UnparkInput{Schema: s.in.Schema, IDs: ids}).Get(ctx, nil)
	if err != nil {
		return err
	}
	return s.updateParked(ctx)
}

// bookkeep runs a write to PostgreSQL that must not be lost (parking,
// unparking, loading the channels) until it succeeds: each call is a local
// activity that retries for up to localBudget, and after a failed call the
// workflow waits on a timer (bookkeepBackoff) and calls again, for as long
// as PostgreSQL is away. Only a cancellation ends it.
func (s *syncRun) bookkeep(ctx workflow.Context, what string, call func(workflow.Context) error) error {
	lctx := s.localCtx(ctx)
	for attempt := 1; ; attempt++ {
		err := call(lctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		workflow.GetLogger(ctx).Warn("sync bookkeeping failed; trying again", "what", what, "attempt", attempt, "error", err)
		if err := workflow.Sleep(ctx, bookkeepBackoff(attempt)); err != nil {
			return err
		}
	}
}

// bookkeepBackoff is the wait after the attempt-th failed bookkeeping call:
// 10 s doubling to 5 minutes.
func bookkeepBackoff(attempt int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < attempt && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// rootMessage is what the activity said (market, channel, error), without
// Temporal's wrapping; or what timed out.
func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return "timed out: " + timeout.Message()
	}
	return err.Error()
}

// updateParked keeps the SagaflowParked search attribute true.
func (s *syncRun) updateParked(ctx workflow.Context) error {
	var n int64
	for _, id := range sortedKeys(s.channels) {
		n += int64(s.parkedOf(s.channels[id]))
	}
	if n == s.parked {
		return nil
	}
	s.parked = n
	return workflow.UpsertTypedSearchAttributes(ctx, SearchAttributeParked.ValueSet(n))
}

func (s *syncRun) continueAsNew(ctx workflow.Context, chans ...workflow.ReceiveChannel) error {
	// Nothing signalled may be lost: take what is buffered into the state.
	for _, c := range chans {
		for {
			ok := false
			switch c.Name() {
			case SignalChanges:
				var batch []activities.SKUVersion
				if ok = c.ReceiveAsync(&batch); ok {
					s.addChanges(batch)
				}
			case SignalParking:
				var act ParkingAction
				if ok = c.ReceiveAsync(&act); ok {
					if err := s.onParking(ctx, act); err != nil {
						return err
					}
				}
			default: // channels: the next run loads them anyway
				var msg ChannelsChanged
				if ok = c.ReceiveAsync(&msg); ok {
					s.learnShards(msg)
				}
			}
			if !ok {
				break
			}
		}
	}
	next := s.in
	next.Channels, next.Runs = s.channels, s.in.Runs+1
	return workflow.NewContinueAsNewError(ctx, CatalogSync, next)
}

// How long one bookkeeping local activity, retries included, may take.
// Without a ScheduleToCloseTimeout the StartToCloseTimeout (10 s) bounds all
// its retries, and a PostgreSQL outage of more than a few seconds fails the
// workflow or loses the write. Bounded runs call again after a failed call
// (bookkeep), so theirs is short; runs from before bounded state have no
// such loop (adding one would change their commands), so theirs retries
// for a week.
const (
	localBudget       = 2 * time.Minute
	legacyLocalBudget = 7 * 24 * time.Hour
)

func (s *syncRun) localCtx(ctx workflow.Context) workflow.Context {
	budget := legacyLocalBudget
	if s.bounded {
		budget = localBudget
	}
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: budget,
		StartToCloseTimeout:    10 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
}

// sortedKeys is the one place workflow code ranges over a map: the order
// of the result does not depend on the map's.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	//workflowcheck:ignore
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// CatalogSyncStart is how every caller (the ingest, the API) reaches a
// shard's workflow: signal-with-start, so the first change of a shard starts
// it and a finished or never-started one comes back with the signal.
func CatalogSyncStart(tenant, schema string, shard int, o SyncOptions) (client.StartWorkflowOptions, SyncInput) {
	return client.StartWorkflowOptions{
		ID:        CatalogSyncWorkflowID(tenant, shard),
		TaskQueue: TaskQueueSync,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			SearchAttributeTenant.ValueSet(tenant), SearchAttributeParked.ValueSet(0)),
	}, SyncInput{Tenant: tenant, Schema: schema, Shard: shard, Options: o}
}
