package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/catalog"
)

// syncTest drives one CatalogSync with mocked activities: channels c1
// (shopwave) and c2 (souk). The tests built on newSyncTest and backfillTest
// pin the behaviour from before bounded state (legacy), which runs started
// before it keep until they continue as new; sync_bounded_test.go tests
// the bounded runs.
type syncTest struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	in  SyncInput
}

func newSyncTest(t *testing.T) *syncTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	legacy(env)
	env.RegisterActivity(&activities.SyncActivities{})
	st := &syncTest{t: t, env: env, in: SyncInput{Tenant: "demo", Schema: "tenant_demo", Shard: 3}}
	env.OnActivity(syncActs.LoadChannels, mock.Anything, "tenant_demo").Return([]activities.ChannelRef{
		{ID: "c1", Market: "shopwave"}, {ID: "c2", Market: "souk"},
	}, nil).Maybe()
	return st
}

// legacy makes the workflow take the path of runs recorded before bounded
// state.
func legacy(env *testsuite.TestWorkflowEnvironment) {
	env.OnGetVersion(boundedStateChange, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
}

// at runs f after d of workflow time.
func (st *syncTest) at(d time.Duration, f func()) { st.env.RegisterDelayedCallback(f, d) }

func (st *syncTest) signal(d time.Duration, changes ...activities.SKUVersion) {
	st.at(d, func() { st.env.SignalWorkflow(SignalChanges, changes) })
}

func (st *syncTest) query(sku string) []ChannelSync {
	v, err := st.env.QueryWorkflow(QuerySync, sku)
	require.NoError(st.t, err)
	var out []ChannelSync
	require.NoError(st.t, v.Get(&out))
	return out
}

// run executes the workflow, cancelling it after d.
func (st *syncTest) run(d time.Duration) {
	st.at(d, st.env.CancelWorkflow)
	st.env.ExecuteWorkflow(CatalogSync, st.in)
	err := st.env.GetWorkflowError()
	var canceled *temporal.CanceledError
	require.True(st.t, errors.As(err, &canceled), "want cancelled, got %v", err)
}

// mu guards the counters the mocked activities (which run on their own
// goroutines) share with the test.
var mu sync.Mutex

func locked(f func()) {
	mu.Lock()
	defer mu.Unlock()
	f()
}

func syncAll(_ context.Context, in activities.PushInput) (activities.PushResult, error) {
	res := activities.PushResult{Synced: map[string]int64{}}
	for _, it := range in.Items {
		res.Synced[it.SKU] = it.Version
	}
	return res, nil
}

func TestCatalogSync_pushes_each_change_to_every_channel(t *testing.T) {
	st := newSyncTest(t)
	var pushed []activities.PushInput
	var heartbeats []time.Duration
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() {
			pushed = append(pushed, in)
			heartbeats = append(heartbeats, activity.GetInfo(ctx).HeartbeatTimeout)
		})
		return syncAll(ctx, in)
	})
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1}, activities.SKUVersion{SKU: "B", Version: 4})
	st.at(time.Minute, func() { require.Empty(t, st.query("A"), "synced SKUs leave the workflow's work") })
	st.run(2 * time.Minute)

	require.Len(t, pushed, 2)
	// Each push heartbeats (activities.keepAlive): a lost attempt is retried
	// after the heartbeat timeout, not after the push's start-to-close.
	require.Equal(t, []time.Duration{PushHeartbeatTimeout, PushHeartbeatTimeout}, heartbeats)
	byChannel := map[string][]activities.SKUVersion{}
	for _, p := range pushed {
		byChannel[p.ChannelID] = p.Items
	}
	want := []activities.SKUVersion{{SKU: "A", Version: 1}, {SKU: "B", Version: 4}}
	require.Equal(t, map[string][]activities.SKUVersion{"c1": want, "c2": want}, byChannel)
	st.env.AssertNotCalled(t, "ParkItems", mock.Anything, mock.Anything)
}

func TestCatalogSync_coalesces_a_storm_of_changes_into_the_latest_version(t *testing.T) {
	st := newSyncTest(t)
	var pushed []activities.PushInput
	// The first push takes 10s; the storm arrives meanwhile.
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).After(10 * time.Second).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushed = append(pushed, in) })
		return syncAll(ctx, in)
	})
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1})
	st.at(2*time.Second, func() {
		for v := int64(2); v <= 50; v++ {
			st.env.SignalWorkflow(SignalChanges, []activities.SKUVersion{{SKU: "A", Version: v}})
		}
		st.env.SignalWorkflow(SignalChanges, []activities.SKUVersion{{SKU: "A", Version: 7}}) // late and older
	})
	st.run(time.Minute)

	require.Len(t, pushed, 4, "two pushes per channel for 51 changes")
	versions := map[string][]int64{}
	for _, p := range pushed {
		require.Len(t, p.Items, 1)
		versions[p.ChannelID] = append(versions[p.ChannelID], p.Items[0].Version)
	}
	require.Equal(t, map[string][]int64{"c1": {1, 50}, "c2": {1, 50}}, versions)
}

func TestCatalogSync_a_failing_market_slows_only_its_own_channel(t *testing.T) {
	st := newSyncTest(t)
	var c1Pushes, c2Pushes int
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		if in.ChannelID == "c1" {
			locked(func() { c1Pushes++ })
			return activities.PushResult{}, temporal.NewApplicationError("shopwave is down", "MarketUnavailable")
		}
		locked(func() { c2Pushes++ })
		return syncAll(ctx, in)
	})
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1})
	st.signal(10*time.Second, activities.SKUVersion{SKU: "B", Version: 1})
	st.signal(20*time.Second, activities.SKUVersion{SKU: "C", Version: 1})
	st.env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(parkAll).Maybe()
	st.at(30*time.Second, func() {
		// c1 is still retrying its first push; c2 went on with B and C.
		require.Equal(t, 3, c2Pushes)
		got := st.query("A")
		require.Len(t, got, 1)
		require.Equal(t, "c1", got[0].ChannelID)
		require.Equal(t, "in_flight", got[0].Status)
	})
	st.run(time.Minute)
	require.Less(t, c1Pushes, 10, "the retry policy spaces c1's attempts")
}

func parkAll(_ context.Context, in activities.ParkInput) ([]catalog.ParkedItem, error) {
	out := make([]catalog.ParkedItem, 0, len(in.Items))
	for _, it := range in.Items {
		it.ID, it.ChannelID, it.Market = "p-"+in.Channel.ID+"-"+it.SKU, in.Channel.ID, in.Channel.Market
		out = append(out, it)
	}
	return out, nil
}

func TestCatalogSync_parks_after_the_last_attempt_and_retries_on_signal(t *testing.T) {
	st := newSyncTest(t)
	st.in.Options.MaxAttempts = 3
	c1Fails := true
	var c1Pushes int
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		if in.ChannelID == "c1" {
			locked(func() { c1Pushes++ })
			if c1Fails {
				return activities.PushResult{}, temporal.NewApplicationError("shopwave channel c1: 503 unavailable", "MarketUnavailable")
			}
		}
		return syncAll(ctx, in)
	})
	var parked []activities.ParkInput
	st.env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ParkInput) ([]catalog.ParkedItem, error) {
		locked(func() { parked = append(parked, in) })
		return parkAll(ctx, in)
	})
	var unparked []string
	st.env.OnActivity(syncActs.UnparkItems, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.UnparkInput) error {
		locked(func() { unparked = append(unparked, in.IDs...) })
		return nil
	})
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 7})
	st.at(10*time.Minute, func() {
		require.Equal(t, 3, c1Pushes, "parked after MaxAttempts")
		require.Len(t, parked, 1)
		require.Equal(t, "c1", parked[0].Channel.ID)
		require.Equal(t, []catalog.ParkedItem{{SKU: "A", Version: 7, Error: "shopwave channel c1: 503 unavailable", Attempts: 3, Since: parked[0].Items[0].Since}}, parked[0].Items)
		got := st.query("A")
		require.Equal(t, []ChannelSync{{ChannelID: "c1", Market: "shopwave", Status: catalog.SyncParked, Version: 7, Error: "shopwave channel c1: 503 unavailable", ParkedID: "p-c1-A"}}, got)
		c1Fails = false
		st.env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-c1-A", ChannelID: "c1", SKU: "A", Action: ParkingRetry})
	})
	st.at(20*time.Minute, func() { require.Empty(t, st.query("A")) })
	st.run(30 * time.Minute)
	require.Equal(t, 4, c1Pushes)
	require.Equal(t, []string{"p-c1-A"}, unparked)
}

func TestCatalogSync_parks_refused_items_at_once_and_discards_on_signal(t *testing.T) {
	st := newSyncTest(t)
	var pushes int
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushes++ })
		if in.ChannelID == "c2" {
			return activities.PushResult{Synced: map[string]int64{"B": 1}, Rejected: []activities.Rejection{{SKU: "A", Version: 1, Reason: "souk sells only in USD and EUR"}}}, nil
		}
		return activities.PushResult{Synced: map[string]int64{"A": 1, "B": 1}}, nil
	})
	st.env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(parkAll).Once()
	st.env.OnActivity(syncActs.UnparkItems, mock.Anything, activities.UnparkInput{Schema: "tenant_demo", IDs: []string{"p-c2-A"}}).Return(nil).Once()
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1}, activities.SKUVersion{SKU: "B", Version: 1})
	st.at(time.Minute, func() {
		require.Equal(t, catalog.SyncParked, st.query("A")[0].Status)
		st.env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-c2-A", ChannelID: "c2", SKU: "A", Action: ParkingDiscard})
	})
	st.at(2*time.Minute, func() {
		require.Empty(t, st.query("A"))
		v, err := st.env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		var status SyncStatus
		require.NoError(t, v.Get(&status))
		require.Equal(t, ChannelLoad{Market: "souk"}, status.Channels["c2"])
	})
	st.run(3 * time.Minute)
	require.Equal(t, 2, pushes, "a discarded item is not pushed again")
	st.env.AssertExpectations(t)
}

func TestCatalogSync_a_newer_version_supersedes_a_parked_one(t *testing.T) {
	st := newSyncTest(t)
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		if in.ChannelID == "c2" && in.Items[0].Version == 1 {
			return activities.PushResult{Synced: map[string]int64{}, Rejected: []activities.Rejection{{SKU: "A", Version: 1, Reason: "bad currency"}}}, nil
		}
		return syncAll(ctx, in)
	})
	st.env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(parkAll).Once()
	st.env.OnActivity(syncActs.UnparkItems, mock.Anything, activities.UnparkInput{Schema: "tenant_demo", IDs: []string{"p-c2-A"}}).Return(nil).Once()
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1})
	st.signal(time.Minute, activities.SKUVersion{SKU: "A", Version: 2})
	st.at(2*time.Minute, func() { require.Empty(t, st.query("A")) })
	st.run(3 * time.Minute)
	st.env.AssertExpectations(t)
}

func TestCatalogSync_drops_the_work_of_a_deleted_channel(t *testing.T) {
	st := newSyncTest(t)
	var pushes int
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushes++ })
		if in.ChannelID == "c1" {
			return activities.PushResult{}, temporal.NewNonRetryableApplicationError("channel c1 was deleted", activities.ErrTypeChannelGone, nil)
		}
		return syncAll(ctx, in)
	})
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1})
	st.signal(time.Minute, activities.SKUVersion{SKU: "B", Version: 1})
	st.run(2 * time.Minute)
	require.Equal(t, 3, pushes, "c1 once, c2 twice; c1 not again")
	st.env.AssertNotCalled(t, "ParkItems", mock.Anything, mock.Anything)
}

func TestCatalogSync_continues_as_new_with_its_work(t *testing.T) {
	st := newSyncTest(t)
	st.at(15*time.Second+time.Millisecond, func() { st.env.SetContinueAsNewSuggested(true) })
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		if in.ChannelID == "c2" {
			return activities.PushResult{Synced: map[string]int64{}, Rejected: []activities.Rejection{{SKU: in.Items[0].SKU, Version: in.Items[0].Version, Reason: "no"}}}, nil
		}
		return syncAll(ctx, in)
	})
	st.env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(parkAll)
	for i := range 20 {
		st.signal(time.Duration(i+1)*time.Second, activities.SKUVersion{SKU: "S" + string(rune('A'+i)), Version: 1})
	}
	st.env.ExecuteWorkflow(CatalogSync, st.in)

	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(st.env.GetWorkflowError(), &can), "got %v", st.env.GetWorkflowError())
	var next SyncInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 1, next.Runs)
	require.Equal(t, "souk", next.Channels["c2"].Market)
	require.NotEmpty(t, next.Channels["c2"].Parked, "parked items are carried over")
	for sku, p := range next.Channels["c2"].Parked {
		require.Equal(t, "p-c2-"+sku, p.ID)
	}
}

func TestCatalogSync_a_retry_reaches_a_run_that_lost_the_parked_item(t *testing.T) {
	st := newSyncTest(t)
	var pushed []activities.PushInput
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushed = append(pushed, in) })
		return syncAll(ctx, in)
	})
	st.env.OnActivity(syncActs.UnparkItems, mock.Anything, activities.UnparkInput{Schema: "tenant_demo", IDs: []string{"p-old"}}).Return(nil).Once()
	// A fresh run: the item was parked by a run that was terminated.
	st.at(time.Second, func() {
		st.env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-old", ChannelID: "c2", SKU: "A", Version: 4, Action: ParkingRetry})
	})
	st.run(time.Minute)
	require.Equal(t, []activities.PushInput{{Tenant: "demo", Schema: "tenant_demo", ChannelID: "c2", Items: []activities.SKUVersion{{SKU: "A", Version: 4}}}}, pushed)
	st.env.AssertExpectations(t)
}

// A channel the workflow has not known (connected later, or there when it
// started) catches up with the shard's existing catalogue page by page, each
// page read only once the channel's work is short of a batch; a channel with
// nothing to catch up gets no push.
func TestCatalogSync_a_new_channel_catches_up_with_the_catalogue(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	legacy(env)
	env.RegisterActivity(&activities.SyncActivities{})
	in := SyncInput{Tenant: "demo", Schema: "tenant_demo", Shard: 3, Options: SyncOptions{Shards: 8, Batch: 2}}
	var loads int
	env.OnActivity(syncActs.LoadChannels, mock.Anything, "tenant_demo").Return(func(context.Context, string) ([]activities.ChannelRef, error) {
		var n int
		locked(func() { loads++; n = loads })
		if n == 1 {
			return []activities.ChannelRef{{ID: "c1", Market: "shopwave"}}, nil
		}
		return []activities.ChannelRef{{ID: "c1", Market: "shopwave"}, {ID: "c2", Market: "souk"}}, nil
	})
	var pages []activities.BackfillInput
	env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.BackfillInput) (activities.BackfillPage, error) {
		locked(func() { pages = append(pages, in) })
		switch {
		case in.ChannelID == "c1": // holds everything already
			return activities.BackfillPage{After: "Z", Done: true}, nil
		case in.After == "":
			return activities.BackfillPage{Items: []activities.SKUVersion{{SKU: "A", Version: 1}, {SKU: "B", Version: 2}}, After: "B"}, nil
		default:
			return activities.BackfillPage{Items: []activities.SKUVersion{{SKU: "C", Version: 3}}, After: "C", Done: true}, nil
		}
	})
	var pushed []activities.PushInput
	env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).After(time.Second).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushed = append(pushed, in) })
		return syncAll(ctx, in)
	})
	var during, after SyncStatus
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalChannels, nil) }, time.Minute)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&during))
	}, time.Minute+500*time.Millisecond) // while A and B are pushed, before the second page
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&after))
	}, 3*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
	env.ExecuteWorkflow(CatalogSync, in)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &canceled), "got %v", env.GetWorkflowError())

	require.Equal(t, []activities.BackfillInput{
		{Schema: "tenant_demo", ChannelID: "c1", Shard: 3, Shards: 8, After: "", Max: 2},
		{Schema: "tenant_demo", ChannelID: "c2", Shard: 3, Shards: 8, After: "", Max: 2},
		{Schema: "tenant_demo", ChannelID: "c2", Shard: 3, Shards: 8, After: "B", Max: 2},
	}, pages)
	var items [][]activities.SKUVersion
	for _, p := range pushed {
		require.Equal(t, "c2", p.ChannelID, "c1 had nothing to catch up")
		items = append(items, p.Items)
	}
	require.Equal(t, [][]activities.SKUVersion{
		{{SKU: "A", Version: 1}, {SKU: "B", Version: 2}},
		{{SKU: "C", Version: 3}},
	}, items)
	require.True(t, during.Channels["c2"].Backfilling, "status while catching up: %+v", during)
	require.False(t, after.Channels["c2"].Backfilling, "status after: %+v", after)
	require.False(t, after.Channels["c1"].Backfilling)
}

// Workflows whose options carry no shard count (started before backfills
// existed) read no catalogue.
func TestCatalogSync_without_a_shard_count_reads_no_catalogue(t *testing.T) {
	st := newSyncTest(t)
	st.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(syncAll)
	st.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1})
	st.run(time.Minute)
	st.env.AssertNotCalled(t, "BackfillPage", mock.Anything, mock.Anything)
}

// backfillTest is a workflow whose channels (load; by default the one
// channel c1) are new to it at start and catch up from a catalogue of pages
// (BackfillPage mocked: page i holds SKUs P<i>a and P<i>b at version 1; the
// last page is Done).
func backfillTest(t *testing.T, pages int, opts SyncOptions, load func(context.Context, string) ([]activities.ChannelRef, error)) (*testsuite.TestWorkflowEnvironment, SyncInput, *[]activities.BackfillInput) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	legacy(env)
	env.RegisterActivity(&activities.SyncActivities{})
	if load == nil {
		load = func(context.Context, string) ([]activities.ChannelRef, error) {
			return []activities.ChannelRef{{ID: "c1", Market: "bazaar"}}, nil
		}
	}
	env.OnActivity(syncActs.LoadChannels, mock.Anything, "tenant_demo").Return(load)
	var read []activities.BackfillInput
	env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.BackfillInput) (activities.BackfillPage, error) {
		var i int
		locked(func() { read = append(read, in); i = len(read) })
		p := fmt.Sprintf("P%d", i)
		return activities.BackfillPage{Items: []activities.SKUVersion{{SKU: p + "a", Version: 1}, {SKU: p + "b", Version: 1}}, After: p + "b", Done: i == pages}, nil
	})
	env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(parkAll).Maybe()
	env.OnActivity(syncActs.UnparkItems, mock.Anything, mock.Anything).Return(nil).Maybe()
	return env, SyncInput{Tenant: "demo", Schema: "tenant_demo", Shard: 0, Options: opts}, &read
}

func runCancelled(t *testing.T, env *testsuite.TestWorkflowEnvironment, in SyncInput, after time.Duration) {
	t.Helper()
	env.RegisterDelayedCallback(env.CancelWorkflow, after)
	env.ExecuteWorkflow(CatalogSync, in)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(env.GetWorkflowError(), &canceled), "got %v", env.GetWorkflowError())
}

// A channel whose pushes fail as a whole (bad credentials: 401) parks one
// batch and reads no more of the catalogue until a push goes through.
func TestCatalogSync_a_broken_channel_pauses_its_backfill(t *testing.T) {
	env, in, read := backfillTest(t, 5, SyncOptions{Shards: 8, Batch: 2}, nil)
	broken := true
	var pushed [][]activities.SKUVersion
	env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		var b bool
		locked(func() { pushed = append(pushed, in.Items); b = broken })
		if b {
			return activities.PushResult{}, temporal.NewNonRetryableApplicationError("bazaar: 401 unauthorized", activities.ErrTypeMarketRejected, nil)
		}
		return syncAll(ctx, in)
	})
	var paused SyncStatus
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&paused))
		locked(func() { broken = false })
		// The operator retries one parked item: the push goes through.
		env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-c1-P1a", ChannelID: "c1", SKU: "P1a", Version: 1, Action: ParkingRetry})
	}, time.Minute)
	runCancelled(t, env, in, 2*time.Minute)

	require.True(t, paused.Channels["c1"].Backfilling && paused.Channels["c1"].BackfillPaused, "status while broken: %+v", paused)
	require.Equal(t, 2, paused.Channels["c1"].Parked, "one batch parked, not the shard")
	require.Len(t, *read, 5, "the catch-up went on once a push went through")
	require.Equal(t, []activities.SKUVersion{{SKU: "P1a", Version: 1}, {SKU: "P1b", Version: 1}}, pushed[0])
	require.Equal(t, []activities.SKUVersion{{SKU: "P1a", Version: 1}}, pushed[1], "the retried item")
}

// An item discarded while the catch-up runs is not brought back when the
// catch-up reaches it.
func TestCatalogSync_a_backfill_does_not_bring_back_a_discarded_item(t *testing.T) {
	env, in, read := backfillTest(t, 3, SyncOptions{Shards: 8, Batch: 2}, nil)
	var pushed []string
	env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).After(10 * time.Second).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		for _, it := range in.Items {
			locked(func() { pushed = append(pushed, it.SKU) })
		}
		return syncAll(ctx, in)
	})
	// P3a, on the last page, was refused earlier, parked, and is discarded
	// before the catch-up reaches it.
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalParking, ParkingAction{ID: "old", ChannelID: "c1", SKU: "P3a", Version: 1, Action: ParkingDiscard})
	}, time.Second)
	runCancelled(t, env, in, 2*time.Minute)

	require.Len(t, *read, 3)
	require.Equal(t, []string{"P1a", "P1b", "P2a", "P2b", "P3b"}, pushed)
}

// A workflow started without a shard count learns it from a channels
// signal, and backfills the channel that signal announces.
func TestCatalogSync_learns_the_shard_count_from_a_channels_signal(t *testing.T) {
	var loads int
	env, in, read := backfillTest(t, 1, SyncOptions{Batch: 2}, func(context.Context, string) ([]activities.ChannelRef, error) {
		var n int
		locked(func() { loads++; n = loads })
		if n == 1 {
			return []activities.ChannelRef{{ID: "c0", Market: "shopwave"}}, nil
		}
		return []activities.ChannelRef{{ID: "c0", Market: "shopwave"}, {ID: "c1", Market: "bazaar"}}, nil
	})
	env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(syncAll)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalChannels, ChannelsChanged{Shards: 8}) }, time.Minute)
	runCancelled(t, env, in, 2*time.Minute)

	require.Len(t, *read, 1, "c0, there at the start without a shard count, gets none; c1 does")
	require.Equal(t, "c1", (*read)[0].ChannelID)
	require.Equal(t, 8, (*read)[0].Shards)
}

// boundedTest is a run with bounded state: one channel c1 (bazaar), known
// to the run already (no catch-up at start), whose
// parked items live in a fake parking lot (parked, by SKU) that the mocked
// ParkAndCount, UnparkAndCount and LoadSyncChannels keep and count, as
// PostgreSQL would.
type boundedTest struct {
	*syncTest
	parked map[string]int64 // SKU → parked version
	ids    map[string]string
	// down, when set, says whether PostgreSQL fails the call ("load",
	// "park", "unpark").
	down func(call string) error
}

func (bt *boundedTest) pg(call string) error {
	if bt.down == nil {
		return nil
	}
	var err error
	locked(func() { err = bt.down(call) })
	return err
}

func newBoundedTest(t *testing.T, opts SyncOptions) *boundedTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.SyncActivities{})
	bt := &boundedTest{
		syncTest: &syncTest{t: t, env: env, in: SyncInput{Tenant: "demo", Schema: "tenant_demo", Shard: 3, Options: opts,
			Channels: map[string]*ChannelWork{"c1": {Market: "bazaar"}}}},
		parked: map[string]int64{}, ids: map[string]string{},
	}
	env.OnActivity(syncActs.LoadSyncChannels, mock.Anything, mock.Anything).Return(func(context.Context, activities.LoadSyncChannelsInput) ([]activities.ChannelRef, error) {
		if err := bt.pg("load"); err != nil {
			return nil, err
		}
		var n int
		locked(func() { n = len(bt.parked) })
		return []activities.ChannelRef{{ID: "c1", Market: "bazaar", Parked: n}}, nil
	}).Maybe()
	env.OnActivity(syncActs.ParkAndCount, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ParkInput) (activities.ParkResult, error) {
		if err := bt.pg("park"); err != nil {
			return activities.ParkResult{}, err
		}
		var res activities.ParkResult
		locked(func() {
			for _, it := range in.Items {
				bt.parked[it.SKU] = max(bt.parked[it.SKU], it.Version)
				bt.ids["p-"+it.SKU] = it.SKU
				res.SKUs = append(res.SKUs, it.SKU)
			}
			res.Parked = len(bt.parked)
		})
		return res, nil
	}).Maybe()
	env.OnActivity(syncActs.UnparkAndCount, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.UnparkInput) (int, error) {
		if err := bt.pg("unpark"); err != nil {
			return 0, err
		}
		var n int
		locked(func() {
			for _, id := range in.IDs {
				delete(bt.parked, bt.ids[id])
			}
			n = len(bt.parked)
		})
		return n, nil
	}).Maybe()
	return bt
}

// rejectAll is a market that refuses every item (bazaar and USD prices),
// and a push that, as the real one, does not send what is parked at the
// version it would send.
func (bt *boundedTest) rejectAll(_ context.Context, in activities.PushInput) (activities.PushResult, error) {
	res := activities.PushResult{Synced: map[string]int64{}}
	for _, it := range in.Items {
		var parkedAt int64
		locked(func() { parkedAt = bt.parked[it.SKU] })
		if parkedAt >= it.Version {
			res.Parked = append(res.Parked, it.SKU)
			continue
		}
		res.Rejected = append(res.Rejected, activities.Rejection{SKU: it.SKU, Version: it.Version, Reason: `unsupported: bazaar sells only in KRW, not "USD"`})
	}
	return res, nil
}

func (bt *boundedTest) status() SyncStatus {
	v, err := bt.env.QueryWorkflow(QueryStatus)
	require.NoError(bt.t, err)
	var st SyncStatus
	require.NoError(bt.t, v.Get(&st))
	return st
}

// continued runs the workflow until it continues as new (suggested at
// after) and returns the next run's input and its encoded size.
func (st *syncTest) continued(after time.Duration) (SyncInput, int) {
	st.at(after, func() {
		st.env.SetContinueAsNewSuggested(true)
		// The suggestion comes with a workflow task; here a signal makes one.
		st.env.SignalWorkflow(SignalChanges, []activities.SKUVersion{})
	})
	st.env.ExecuteWorkflow(CatalogSync, st.in)
	var can *workflow.ContinueAsNewError
	require.True(st.t, errors.As(st.env.GetWorkflowError(), &can), "got %v", st.env.GetWorkflowError())
	var next SyncInput
	require.NoError(st.t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	size := 0
	for _, p := range can.Input.GetPayloads() {
		size += len(p.GetData())
	}
	return next, size
}

func skus(prefix string, from, n int, version int64) []activities.SKUVersion {
	out := make([]activities.SKUVersion, n)
	for i := range out {
		out[i] = activities.SKUVersion{SKU: fmt.Sprintf("%s%05d", prefix, from+i), Version: version}
	}
	return out
}

// Temporal refuses a payload over 2 MB (the server terminates the run): the
// state a run hands over must not grow with the parking lot.
const payloadLimit = 2 << 20

// 20,000 items parked in one shard (a KRW-only market, a USD catalogue):
// the run holds a count, so what it hands to the next run and what its
// status query answers stay small; before bounded state the parked items
// themselves were carried, over 2 MB.
func TestCatalogSync_20k_parked_items_keep_the_state_bounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bounded bool
	}{{"bounded", true}, {"legacy", false}} {
		t.Run(tc.name, func(t *testing.T) {
			bt := newBoundedTest(t, SyncOptions{Shards: 8})
			if !tc.bounded {
				legacy(bt.env)
				bt.env.OnActivity(syncActs.LoadChannels, mock.Anything, "tenant_demo").Return([]activities.ChannelRef{{ID: "c1", Market: "bazaar"}}, nil)
				bt.env.OnActivity(syncActs.ParkItems, mock.Anything, mock.Anything).Return(parkAll)
			}
			bt.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(bt.rejectAll)
			for i := range 40 { // 500 new SKUs a minute
				bt.signal(time.Duration(i+1)*time.Minute, skus("USD-", i*500, 500, 1)...)
			}
			// The same changes again (an ingest that re-delivers): not parked twice.
			bt.signal(41*time.Minute, skus("USD-", 0, 500, 1)...)
			var status SyncStatus
			var statusSize int
			bt.at(50*time.Minute, func() {
				status = bt.status()
				v, err := bt.env.QueryWorkflow(QueryStatus)
				require.NoError(t, err)
				var raw map[string]any
				require.NoError(t, v.Get(&raw))
				b, _ := json.Marshal(raw)
				statusSize = len(b)
			})
			next, size := bt.continued(50*time.Minute + time.Second)
			require.Equal(t, 20_000, status.Channels["c1"].Parked)
			require.Zero(t, status.Channels["c1"].Pending)
			require.Less(t, statusSize, 1024)
			if !tc.bounded {
				t.Logf("legacy continue-as-new input: %d bytes with 20,000 parked", size)
				require.Greater(t, size, payloadLimit, "the legacy run carries its parked items: over Temporal's limit")
				return
			}
			t.Logf("continue-as-new input: %d bytes with 20,000 parked", size)
			require.Less(t, size, 4096)
			require.Empty(t, next.Channels["c1"].Parked)
			require.Equal(t, 20_000, next.Channels["c1"].ParkedCount)
			require.Len(t, bt.parked, 20_000)
		})
	}
}

// A flood of 20,000 distinct SKUs into one shard while its market is down:
// the run holds at most MaxPending of them; the rest stay in PostgreSQL
// (the products' versions are newer than the channel's) for the channel's
// catch-up, so neither the state nor the next run's input grows with the
// flood.
func TestCatalogSync_20k_pending_skus_keep_the_state_bounded(t *testing.T) {
	bt := newBoundedTest(t, SyncOptions{Shards: 8})
	bt.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(activities.PushResult{}, temporal.NewApplicationError("bazaar channel c1: 503", "MarketUnavailable"))
	var pages []activities.BackfillInput
	bt.env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.BackfillInput) (activities.BackfillPage, error) {
		locked(func() { pages = append(pages, in) })
		return activities.BackfillPage{Done: true}, nil
	}).Maybe()
	for i := range 40 {
		bt.signal(time.Second+time.Duration(i)*time.Millisecond, skus("SKU-", i*500, 500, 1)...)
	}
	var status SyncStatus
	bt.at(time.Minute, func() { status = bt.status() })
	next, size := bt.continued(time.Minute + time.Second)

	require.Equal(t, 2000, status.Channels["c1"].Pending, "at most MaxPending (4 batches) pending")
	require.True(t, status.Channels["c1"].Backfilling, "the rest waits for the catch-up")
	t.Logf("continue-as-new input: %d bytes after 20,000 pending SKUs", size)
	require.Less(t, size, 64<<10)
	require.LessOrEqual(t, len(next.Channels["c1"].Want), 2000)
	require.NotNil(t, next.Channels["c1"].Backfill, "the catch-up is carried over")
	require.Empty(t, pages, "paused: the push failed as a whole and parked a batch")
}

// The catch-up that picks up the overflow reads the shard again once the
// market takes pushes, and a channel that holds a batch or more parked
// pauses it (counted, not held).
func TestCatalogSync_overflow_is_caught_up_and_pauses_on_the_parked_count(t *testing.T) {
	bt := newBoundedTest(t, SyncOptions{Shards: 8, Batch: 2, MaxPending: 2})
	var pushed []activities.SKUVersion
	bt.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		require.NotEmpty(t, in.WorkflowID, "a bounded run lets the push skip parked items")
		locked(func() { pushed = append(pushed, in.Items...) })
		return syncAll(ctx, in)
	})
	var pages int
	bt.env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.BackfillInput) (activities.BackfillPage, error) {
		require.True(t, in.SkipParked)
		// The catalogue: what of SKU-00000..4 the channel lacks.
		page := activities.BackfillPage{After: "SKU-00004", Done: true}
		locked(func() {
			pages++
			for _, it := range skus("SKU-", 0, 5, 1) {
				if it.SKU <= in.After || slices.Contains(pushed, it) {
					continue
				}
				if len(page.Items) == in.Max {
					page.After, page.Done = page.Items[len(page.Items)-1].SKU, false
					break
				}
				page.Items = append(page.Items, it)
			}
		})
		return page, nil
	})
	bt.signal(time.Second, skus("SKU-", 0, 5, 1)...)
	bt.at(time.Hour, func() {
		require.Equal(t, ChannelLoad{Market: "bazaar"}, bt.status().Channels["c1"])
		require.ElementsMatch(t, skus("SKU-", 0, 5, 1), pushed)
		require.Equal(t, 2, pages, "two pages of two: what the changes could not leave in the state")
	})
	bt.run(2 * time.Hour)

	held := newBoundedTest(t, SyncOptions{Shards: 8, Batch: 2})
	held.in.Channels = nil                            // c1 is new: it catches up
	held.parked["OLD-1"], held.parked["OLD-2"] = 1, 1 // parked by an earlier run
	held.env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(activities.BackfillPage{Done: true}).Maybe()
	held.at(time.Minute, func() {
		require.Equal(t, ChannelLoad{Market: "bazaar", Parked: 2, Backfilling: true, BackfillPaused: true}, held.status().Channels["c1"])
	})
	held.run(2 * time.Minute)
	held.env.AssertNotCalled(t, "BackfillPage", mock.Anything, mock.Anything)
}

// An operator's retry or discard reaches a run that never held the item in
// memory: it is in PostgreSQL. A retry pushes it again; a discard does not.
func TestCatalogSync_bounded_retry_and_discard_of_an_item_only_postgres_holds(t *testing.T) {
	bt := newBoundedTest(t, SyncOptions{Shards: 8})
	bt.parked["A"], bt.parked["B"] = 4, 2
	bt.ids["p-A"], bt.ids["p-B"] = "A", "B"
	var pushed []activities.PushInput
	bt.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushed = append(pushed, in) })
		return syncAll(ctx, in)
	})
	bt.env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(activities.BackfillPage{Done: true}).Maybe()
	bt.at(time.Second, func() {
		require.Equal(t, 2, bt.status().Channels["c1"].Parked)
		bt.env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-A", ChannelID: "c1", SKU: "A", Version: 4, Action: ParkingRetry})
		bt.env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-B", ChannelID: "c1", SKU: "B", Version: 2, Action: ParkingDiscard})
	})
	bt.at(time.Minute, func() { require.Zero(t, bt.status().Channels["c1"].Parked) })
	bt.run(2 * time.Minute)
	require.Len(t, pushed, 1)
	require.Equal(t, []activities.SKUVersion{{SKU: "A", Version: 4}}, pushed[0].Items)
	require.Empty(t, bt.parked)
}

// A push that syncs a newer version unparks the old one itself and says how
// many are left; a change for a SKU parked at that version is not pushed in
// a loop.
func TestCatalogSync_bounded_a_newer_version_supersedes_a_parked_one(t *testing.T) {
	bt := newBoundedTest(t, SyncOptions{Shards: 8})
	bt.parked["A"], bt.parked["B"] = 1, 1
	var pushes int
	bt.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PushInput) (activities.PushResult, error) {
		locked(func() { pushes++ })
		left := 1
		return activities.PushResult{Synced: map[string]int64{"A": 2}, Parked: []string{"B"}, ParkedLeft: &left}, nil
	})
	bt.env.OnActivity(syncActs.BackfillPage, mock.Anything, mock.Anything).Return(activities.BackfillPage{Done: true}).Maybe()
	bt.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 2}, activities.SKUVersion{SKU: "B", Version: 1})
	bt.at(time.Minute, func() {
		require.Equal(t, ChannelLoad{Market: "bazaar", Parked: 1}, bt.status().Channels["c1"])
	})
	bt.run(2 * time.Minute)
	require.Equal(t, 1, pushes)
}

// PostgreSQL away for hours: parking, unparking and loading the channels
// wait for it (the workflow calls again on a timer) and give up never; the
// items a push could not deliver are parked once it is back, none lost.
func TestCatalogSync_bookkeeping_outlasts_a_postgres_outage_of_hours(t *testing.T) {
	bt := newBoundedTest(t, SyncOptions{Shards: 8})
	// PostgreSQL is down for the first 3 hours (workflow time; the worker
	// starts in it), and again for 2 hours from 4 h on, during an
	// operator's discard.
	outage := 3 * time.Hour
	errDown := errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	start := bt.env.Now()
	calls := map[string]int{}
	bt.down = func(call string) error {
		calls[call]++
		at := bt.env.Now().Sub(start)
		if call == "load" && at < 30*time.Minute || call == "park" && at < outage ||
			call == "unpark" && at >= outage+time.Hour && at < outage+3*time.Hour {
			return errDown
		}
		return nil
	}
	bt.env.OnActivity(syncActs.PushProducts, mock.Anything, mock.Anything).Return(activities.PushResult{}, temporal.NewNonRetryableApplicationError("bazaar channel c1: 401", activities.ErrTypeMarketRejected, nil))
	bt.ids["p-A"] = "A"
	bt.signal(time.Second, activities.SKUVersion{SKU: "A", Version: 1})
	bt.at(outage-10*time.Minute, func() {
		require.Equal(t, ChannelLoad{Market: "bazaar", Pending: 1}, bt.status().Channels["c1"], "not parked yet, and not lost")
	})
	bt.at(outage+time.Hour, func() {
		require.Equal(t, ChannelLoad{Market: "bazaar", Parked: 1}, bt.status().Channels["c1"], "parked once PostgreSQL is back")
		bt.env.SignalWorkflow(SignalParking, ParkingAction{ID: "p-A", ChannelID: "c1", SKU: "A", Version: 1, Action: ParkingDiscard})
	})
	bt.at(outage+2*time.Hour, func() {
		require.Equal(t, 1, bt.status().Channels["c1"].Parked, "the discard waits for PostgreSQL")
	})
	bt.at(outage+4*time.Hour, func() { require.Zero(t, bt.status().Channels["c1"].Parked, "discarded once it was back") })
	bt.run(outage + 5*time.Hour)
	t.Logf("calls while PostgreSQL was down and after: %v", calls)
	require.Greater(t, calls["load"], 5, "loading the channels was tried until PostgreSQL was back")
	require.Greater(t, calls["park"], 20, "and parking")
	require.Greater(t, calls["unpark"], 10, "and unparking")
}
