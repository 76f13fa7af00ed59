package workflows

import (
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
	s := &syncRun{in: in, opts: in.Options.withDefaults(), channels: make(map[string]*channel, len(in.Channels))}
	for _, id := range sortedKeys(in.Channels) {
		s.channels[id] = &channel{ChannelWork: in.Channels[id]}
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
	channels map[string]*channel
	seq      int
	parked   int64 // the search attribute's last value
	// bounded: this run keeps parked items in PostgreSQL (counts in the
	// state) and at most Options.MaxPending pending SKUs per channel; runs
	// recorded before it (workflows/testdata) do neither.
	bounded bool
	// reloadWanted: a channels signal came; the channels are loaded again
	// once nothing is in flight.
	reloadWanted bool
}

// boundedStateChange is the workflow.GetVersion change ID of bounded state.
const boundedStateChange = "sync-bounded-state"

// rules are what the channel rules (channel.go) depend on in this run.
func (s *syncRun) rules() channelRules { return channelRules{opts: s.opts, bounded: s.bounded} }

func (s *syncRun) status() (SyncStatus, error) {
	st := SyncStatus{Tenant: s.in.Tenant, Shard: s.in.Shard, Runs: s.in.Runs, Channels: map[string]ChannelLoad{}}
	for _, id := range sortedKeys(s.channels) {
		st.Channels[id] = s.channels[id].load(s.rules())
	}
	return st, nil
}

func (s *syncRun) sync(sku string) ([]ChannelSync, error) {
	var out []ChannelSync
	for _, id := range sortedKeys(s.channels) {
		if cs, ok := s.channels[id].syncOf(id, sku); ok {
			out = append(out, cs)
		}
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
		// The push heartbeats while it runs: an attempt that will never
		// report (its worker died, or the server lost its completion) is
		// retried after this, not after the 2 minutes.
		HeartbeatTimeout: PushHeartbeatTimeout,
		RetryPolicy:      pushRetry(s.opts.MaxAttempts),
	})
	pageCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		// PostgreSQL may be away for a while: no attempt limit.
		RetryPolicy: syncRetry(),
	})
	futures := map[string]workflow.Future{} // pushes, by channel
	pages := map[string]workflow.Future{}   // backfill pages, by channel
	var failure error
	for {
		if failure != nil {
			return failure
		}
		idle := len(futures) == 0 && len(pages) == 0
		if s.reloadWanted && idle {
			s.reloadWanted = false
			if err := s.loadChannels(ctx); err != nil {
				return err
			}
		}
		draining := s.historyFull(ctx)
		if draining && idle {
			return s.continueAsNew(ctx, changes, parking, reload)
		}
		if !draining && !s.reloadWanted {
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
		for _, c := range []workflow.ReceiveChannel{changes, parking, reload} {
			sel.AddReceive(c, func(c workflow.ReceiveChannel, _ bool) { _, failure = s.receive(ctx, c, true) })
		}
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
		if err := s.drain(ctx, changes); err != nil {
			return err
		}
	}
}

// receive takes the next signal of c (SignalChanges, SignalParking or
// SignalChannels) into the state; it is the one place a signal is read. With
// wait it blocks until there is one (a selector's callback: there is);
// without, it reports whether one was buffered.
func (s *syncRun) receive(ctx workflow.Context, c workflow.ReceiveChannel, wait bool) (bool, error) {
	take := func(v any) bool {
		if wait {
			c.Receive(ctx, v)
			return true
		}
		return c.ReceiveAsync(v)
	}
	switch c.Name() {
	case SignalChanges:
		var batch []activities.SKUVersion
		if !take(&batch) {
			return false, nil
		}
		s.addChanges(batch)
	case SignalParking:
		var act ParkingAction
		if !take(&act) {
			return false, nil
		}
		return true, s.onParking(ctx, act)
	default: // SignalChannels
		var msg ChannelsChanged
		if !take(&msg) {
			return false, nil
		}
		s.learnShards(msg)
		s.reloadWanted = true
	}
	return true, nil
}

// drain takes every signal buffered on c into the state.
func (s *syncRun) drain(ctx workflow.Context, c workflow.ReceiveChannel) error {
	for {
		ok, err := s.receive(ctx, c, false)
		if err != nil || !ok {
			return err
		}
	}
}

// historyFull says the run should hand over to a new one.
func (s *syncRun) historyFull(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= s.opts.MaxHistory
}

// adoptState makes the state a bounded run starts from bounded
// (channel.adopt).
func (s *syncRun) adoptState() {
	for _, id := range sortedKeys(s.channels) {
		s.channels[id].adopt(s.rules())
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
		s.channels[r.ID] = &channel{ChannelWork: &ChannelWork{Market: r.Market, ParkedCount: r.Parked, Backfill: s.newBackfill(ctx)}}
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
		s.channels[id].want(s.rules(), batch)
	}
}

// startBackfill reads the next page of channel id's catch-up, when it has
// one and its work is short of a batch (so the pending work stays bounded
// however large the catalogue); or returns nil.
func (s *syncRun) startBackfill(ctx workflow.Context, id string) workflow.Future {
	cw := s.channels[id]
	if !cw.wantsPage(s.rules()) {
		return nil
	}
	s.seq++
	ctx = workflow.WithActivityOptions(ctx, withActivityID(workflow.GetActivityOptions(ctx), fmt.Sprintf("backfill:%s:%d", id, s.seq)))
	return workflow.ExecuteActivity(ctx, syncActs.BackfillPage, activities.BackfillInput{
		Schema: s.in.Schema, ChannelID: id, Shard: s.in.Shard, Shards: s.opts.Shards,
		After: cw.Backfill.After, Max: s.opts.Batch, SkipParked: s.bounded,
	})
}

// onBackfillPage adds a page of catch-up to the channel's work.
func (s *syncRun) onBackfillPage(ctx workflow.Context, id string, f workflow.Future) error {
	var page activities.BackfillPage
	if err := f.Get(ctx, &page); err != nil {
		return err // retried without limit: only a cancellation ends it
	}
	if cw, ok := s.channels[id]; ok { // else deleted meanwhile
		cw.takePage(s.rules(), page)
	}
	return nil
}

// startPush sends the next batch of channel id's work, or returns nil.
func (s *syncRun) startPush(ctx workflow.Context, id string) workflow.Future {
	cw := s.channels[id]
	items := cw.nextPush(s.rules())
	if items == nil {
		return nil
	}
	in := activities.PushInput{Tenant: s.in.Tenant, Schema: s.in.Schema, ChannelID: id, Items: items}
	if s.bounded {
		in.WorkflowID = workflow.GetInfo(ctx).WorkflowExecution.ID
	}
	s.seq++
	cw.activityID = fmt.Sprintf("push:%s:%d", id, s.seq)
	ctx = workflow.WithActivityOptions(ctx, withActivityID(workflow.GetActivityOptions(ctx), cw.activityID))
	return workflow.ExecuteActivity(ctx, syncActs.PushProducts, in)
}

func withActivityID(o workflow.ActivityOptions, id string) workflow.ActivityOptions {
	o.ActivityID = id
	return o
}

// onPushDone settles a finished push (channel.settle) and does what it
// leaves to do: drop a channel that is gone, unpark what a newer version
// made moot, park what did not go through.
func (s *syncRun) onPushDone(ctx workflow.Context, id string, f workflow.Future) error {
	var res activities.PushResult
	err := f.Get(ctx, &res)
	st := s.channels[id].settle(s.rules(), res, err)
	if st.gone {
		delete(s.channels, id)
		return s.updateParked(ctx)
	}
	if len(st.superseded) > 0 {
		if err := s.unpark(ctx, "", st.superseded); err != nil {
			return err
		}
	}
	return s.park(ctx, id, st.park)
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
		cw.parkedCounted(res)
		return s.updateParked(ctx)
	}
	var parked []catalog.ParkedItem
	err := workflow.ExecuteLocalActivity(s.localCtx(ctx), syncActs.ParkItems, in).Get(ctx, &parked)
	if err != nil {
		return err
	}
	cw.parkedHeld(parked)
	return s.updateParked(ctx)
}

// onParking applies an operator's retry or discard (channel.decide) and
// removes the item from the parking lot.
func (s *syncRun) onParking(ctx workflow.Context, act ParkingAction) error {
	if cw, ok := s.channels[act.ChannelID]; ok {
		cw.decide(s.rules(), act)
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

// updateParked keeps the SagaflowParked search attribute true.
func (s *syncRun) updateParked(ctx workflow.Context) error {
	var n int64
	for _, id := range sortedKeys(s.channels) {
		n += int64(s.channels[id].parked(s.rules()))
	}
	if n == s.parked {
		return nil
	}
	s.parked = n
	return workflow.UpsertTypedSearchAttributes(ctx, SearchAttributeParked.ValueSet(n))
}

func (s *syncRun) continueAsNew(ctx workflow.Context, chans ...workflow.ReceiveChannel) error {
	// Nothing signalled may be lost: take what is buffered into the state
	// (a channels signal only for its shard count: the next run loads the
	// channels anyway).
	for _, c := range chans {
		if err := s.drain(ctx, c); err != nil {
			return err
		}
	}
	next := s.in
	next.Channels, next.Runs = make(map[string]*ChannelWork, len(s.channels)), s.in.Runs+1
	for _, id := range sortedKeys(s.channels) {
		next.Channels[id] = s.channels[id].ChannelWork
	}
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
		RetryPolicy:            syncRetry(),
	})
}

// PushHeartbeatTimeout is the heartbeat timeout of a push attempt.
const PushHeartbeatTimeout = 20 * time.Second

// syncRetry is the retry policy of every activity and local activity of the
// sync workflow: 1 s doubling to 30 s, with no attempt limit. Each call
// returns a new value, so a caller may add to it.
func syncRetry() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second}
}

// pushRetry is syncRetry with the two things a push adds: at most
// maxAttempts attempts (then its items are parked), and no retry of a
// channel that is gone or of a market's refusal. The activity sets each next
// delay itself (backoff with jitter, Retry-After); syncRetry's are the bounds
// when it does not.
func pushRetry(maxAttempts int32) *temporal.RetryPolicy {
	p := syncRetry()
	p.MaximumAttempts = maxAttempts
	p.NonRetryableErrorTypes = []string{activities.ErrTypeChannelGone, activities.ErrTypeMarketRejected}
	return p
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
