package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/catalog"
)

// The channel rules (channel.go) on their own, without a workflow: each
// case starts from a channel's work, applies one rule and checks the work
// it leaves. sync_test.go drives the same rules through the workflow.

// Rules of the cases: a run from before bounded state with the default
// options, and bounded runs with batches of 2 (so at most 2 pending), with
// and without the shard count.
var (
	legacyRules   = channelRules{opts: SyncOptions{}.withDefaults()}
	boundedRules  = channelRules{opts: SyncOptions{Batch: 2, MaxPending: 2, Shards: 4}.withDefaults(), bounded: true}
	noShardsRules = channelRules{opts: SyncOptions{Batch: 2, MaxPending: 2}.withDefaults(), bounded: true}
)

func newChannel(w ChannelWork) *channel { return &channel{ChannelWork: &w} }

// requireWant checks the channel wants exactly want (nil: nothing).
func requireWant(t *testing.T, want map[string]int64, cw *channel) {
	t.Helper()
	require.Equal(t, len(want), len(cw.Want), "want %v, got %v", want, cw.Want)
	for sku, v := range want {
		require.Equal(t, v, cw.Want[sku], sku)
	}
}

func sv(sku string, version int64) activities.SKUVersion {
	return activities.SKUVersion{SKU: sku, Version: version}
}

func TestChannel_want(t *testing.T) {
	cases := []struct {
		name         string
		rules        channelRules
		work         ChannelWork
		items        []activities.SKUVersion
		want         map[string]int64
		wantBackfill *Backfill
	}{
		{name: "adds_a_new_sku", rules: legacyRules,
			items: []activities.SKUVersion{sv("A", 1)}, want: map[string]int64{"A": 1}},
		{name: "takes_a_newer_version", rules: legacyRules, work: ChannelWork{Want: map[string]int64{"A": 1}},
			items: []activities.SKUVersion{sv("A", 2)}, want: map[string]int64{"A": 2}},
		{name: "keeps_a_newer_wanted_version", rules: legacyRules, work: ChannelWork{Want: map[string]int64{"A": 3}},
			items: []activities.SKUVersion{sv("A", 2)}, want: map[string]int64{"A": 3}},
		{name: "skips_a_sku_parked_at_that_version_or_newer", rules: legacyRules,
			work:  ChannelWork{Parked: map[string]catalog.ParkedItem{"A": {SKU: "A", Version: 2}, "B": {SKU: "B", Version: 2}}},
			items: []activities.SKUVersion{sv("A", 2), sv("B", 1)}},
		{name: "takes_a_version_newer_than_the_parked_one", rules: legacyRules,
			work:  ChannelWork{Parked: map[string]catalog.ParkedItem{"A": {SKU: "A", Version: 2}}},
			items: []activities.SKUVersion{sv("A", 3)}, want: map[string]int64{"A": 3}},
		{name: "legacy_has_no_bound", rules: legacyRules, work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}},
			items: []activities.SKUVersion{sv("C", 1)}, want: map[string]int64{"A": 1, "B": 1, "C": 1}},
		{name: "bounded_overflow_starts_a_catch_up", rules: boundedRules, work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}},
			items: []activities.SKUVersion{sv("C", 1)}, want: map[string]int64{"A": 1, "B": 1}, wantBackfill: &Backfill{}},
		{name: "bounded_overflow_behind_the_cursor_reads_again", rules: boundedRules,
			work:  ChannelWork{Want: map[string]int64{"A": 1, "B": 1}, Backfill: &Backfill{After: "M"}},
			items: []activities.SKUVersion{sv("C", 1)}, want: map[string]int64{"A": 1, "B": 1}, wantBackfill: &Backfill{After: "M", Again: true}},
		{name: "bounded_overflow_ahead_of_the_cursor_is_reached_anyway", rules: boundedRules,
			work:  ChannelWork{Want: map[string]int64{"A": 1, "B": 1}, Backfill: &Backfill{After: "B"}},
			items: []activities.SKUVersion{sv("Z", 1)}, want: map[string]int64{"A": 1, "B": 1}, wantBackfill: &Backfill{After: "B"}},
		{name: "bounded_full_still_takes_a_newer_version_of_a_held_sku", rules: boundedRules, work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}},
			items: []activities.SKUVersion{sv("A", 2)}, want: map[string]int64{"A": 2, "B": 1}},
		{name: "bounded_without_the_shard_count_does_not_overflow", rules: noShardsRules, work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}},
			items: []activities.SKUVersion{sv("C", 1)}, want: map[string]int64{"A": 1, "B": 1, "C": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cw := newChannel(tc.work)
			cw.want(tc.rules, tc.items)
			requireWant(t, tc.want, cw)
			require.Equal(t, tc.wantBackfill, cw.Backfill)
		})
	}
}

// A wanted version's traceparent goes with it to the push; a newer version
// without one forgets the older one's, and a SKU no longer wanted its trace.
func TestChannel_traces_follow_the_wanted_version(t *testing.T) {
	cw := newChannel(ChannelWork{})
	cw.want(legacyRules, []activities.SKUVersion{
		{SKU: "A", Version: 1, Traceparent: "tp-a1"}, {SKU: "B", Version: 1, Traceparent: "tp-b1"}, {SKU: "C", Version: 1, Traceparent: "tp-c1"},
	})
	cw.want(legacyRules, []activities.SKUVersion{sv("B", 2)})
	delete(cw.Want, "C")
	items := cw.nextPush(legacyRules)
	require.Equal(t, []activities.SKUVersion{{SKU: "A", Version: 1, Traceparent: "tp-a1"}, sv("B", 2)}, items)
	require.Equal(t, map[string]string{"A": "tp-a1"}, cw.traces, "C's trace is pruned")
}

func TestChannel_nextPush(t *testing.T) {
	t.Run("nothing_wanted_sends_nothing", func(t *testing.T) {
		cw := newChannel(ChannelWork{})
		require.Nil(t, cw.nextPush(boundedRules))
		require.Nil(t, cw.inflight)
	})
	t.Run("sends_the_first_batch_in_order_and_marks_it_in_flight", func(t *testing.T) {
		cw := newChannel(ChannelWork{Want: map[string]int64{"C": 3, "A": 1, "B": 2}})
		require.Equal(t, []activities.SKUVersion{sv("A", 1), sv("B", 2)}, cw.nextPush(boundedRules))
		require.Equal(t, map[string]int64{"A": 1, "B": 2}, cw.inflight)
		require.Len(t, cw.Want, 3, "the work stays until the push settles")
	})
}

func TestChannel_settle(t *testing.T) {
	one := 1
	downErr := fmt.Errorf("activity PushProducts: %w", temporal.NewApplicationError("shopwave: 503", "Unavailable"))
	refusedErr := fmt.Errorf("activity PushProducts: %w", temporal.NewNonRetryableApplicationError("shopwave: bad credentials", activities.ErrTypeMarketRejected, nil))
	goneErr := fmt.Errorf("activity PushProducts: %w", temporal.NewNonRetryableApplicationError("channel c1 is gone", activities.ErrTypeChannelGone, nil))
	cases := []struct {
		name  string
		rules channelRules
		work  ChannelWork
		sent  map[string]int64
		res   activities.PushResult
		err   error

		want        map[string]int64
		settlement  settlement
		parked      map[string]catalog.ParkedItem // the work's Parked after
		parkedCount int
		paused      bool // the backfill (present in every case) is paused after
	}{
		{name: "synced_leaves_the_work", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}}, sent: map[string]int64{"A": 1, "B": 1},
			res: activities.PushResult{Synced: map[string]int64{"A": 1, "B": 1}}},
		{name: "synced_newer_than_wanted_leaves_the_work", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1}}, sent: map[string]int64{"A": 1},
			res: activities.PushResult{Synced: map[string]int64{"A": 2}}},
		{name: "synced_older_than_wanted_stays", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 2}}, sent: map[string]int64{"A": 1},
			res:  activities.PushResult{Synced: map[string]int64{"A": 1}},
			want: map[string]int64{"A": 2}},
		{name: "missing_leaves_the_work_unless_newer_wanted", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 2}}, sent: map[string]int64{"A": 1, "B": 1},
			res:  activities.PushResult{Synced: map[string]int64{}, Missing: []string{"A", "B"}},
			want: map[string]int64{"B": 2}},
		{name: "rejected_is_parked_once", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1}}, sent: map[string]int64{"A": 1},
			res:        activities.PushResult{Synced: map[string]int64{}, Rejected: []activities.Rejection{{SKU: "A", Version: 1, Reason: "currency USD"}}},
			want:       map[string]int64{"A": 1}, // until it is parked
			settlement: settlement{park: []catalog.ParkedItem{{SKU: "A", Version: 1, Error: "currency USD", Attempts: 1}}}},
		{name: "rejected_with_a_newer_version_wanted_is_not_parked", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 2}}, sent: map[string]int64{"A": 1},
			res:  activities.PushResult{Synced: map[string]int64{}, Rejected: []activities.Rejection{{SKU: "A", Version: 1, Reason: "currency USD"}}},
			want: map[string]int64{"A": 2}},
		{name: "parked_by_the_push_leaves_the_work_unless_newer_wanted", rules: boundedRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 2}}, sent: map[string]int64{"A": 1, "B": 1},
			res:  activities.PushResult{Synced: map[string]int64{}, Parked: []string{"A", "B"}, ParkedLeft: &one},
			want: map[string]int64{"B": 2}, parkedCount: 1},
		{name: "synced_supersedes_a_parked_older_version", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 2}, Parked: map[string]catalog.ParkedItem{
				"A": {ID: "p1", SKU: "A", Version: 1}, "B": {ID: "p2", SKU: "B", Version: 3}}},
			sent:       map[string]int64{"A": 2},
			res:        activities.PushResult{Synced: map[string]int64{"A": 2, "B": 2}},
			settlement: settlement{superseded: []string{"p1"}},
			parked:     map[string]catalog.ParkedItem{"B": {ID: "p2", SKU: "B", Version: 3}}},
		{name: "push_failed_retryable_parks_the_batch_after_every_attempt", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 2, "C": 1}}, sent: map[string]int64{"A": 1, "B": 1},
			err: downErr, want: map[string]int64{"A": 1, "B": 2, "C": 1}, paused: true,
			settlement: settlement{park: []catalog.ParkedItem{
				{SKU: "A", Version: 1, Error: "shopwave: 503", Attempts: 12},
				{SKU: "B", Version: 2, Error: "shopwave: 503", Attempts: 12}, // the newest wanted
			}}},
		{name: "push_failed_non_retryable_parks_after_one_attempt", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1}}, sent: map[string]int64{"A": 1},
			err: refusedErr, want: map[string]int64{"A": 1}, paused: true,
			settlement: settlement{park: []catalog.ParkedItem{{SKU: "A", Version: 1, Error: "shopwave: bad credentials", Attempts: 1}}}},
		{name: "push_failed_after_syncing_some_parks_the_rest", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}}, sent: map[string]int64{"A": 1, "B": 1},
			res: activities.PushResult{Synced: map[string]int64{"A": 1}}, err: errors.New("boom"),
			want: map[string]int64{"B": 1}, paused: true,
			settlement: settlement{park: []catalog.ParkedItem{{SKU: "B", Version: 1, Error: "boom", Attempts: 12}}}},
		{name: "push_failed_bounded_skips_what_is_parked_already", rules: boundedRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}}, sent: map[string]int64{"A": 1, "B": 1},
			res: activities.PushResult{Parked: []string{"A"}}, err: downErr,
			want: map[string]int64{"B": 1}, paused: true,
			settlement: settlement{park: []catalog.ParkedItem{{SKU: "B", Version: 1, Error: "shopwave: 503", Attempts: 12}}}},
		{name: "channel_gone_drops_the_channel", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 1}}, sent: map[string]int64{"A": 1},
			err: goneErr, want: map[string]int64{"A": 1}, settlement: settlement{gone: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.work
			w.Backfill = &Backfill{Paused: !tc.paused} // settle must flip it
			cw := newChannel(w)
			cw.inflight, cw.activityID = tc.sent, "push:c1:7"
			if tc.settlement.gone {
				w.Backfill.Paused = false
			}
			got := cw.settle(tc.rules, tc.res, tc.err)
			require.Equal(t, tc.settlement, got)
			requireWant(t, tc.want, cw)
			if tc.parked != nil {
				require.Equal(t, tc.parked, cw.Parked)
			}
			require.Equal(t, tc.parkedCount, cw.ParkedCount)
			require.Equal(t, tc.paused, cw.Backfill.Paused)
			require.Nil(t, cw.inflight, "nothing in flight after")
			require.Empty(t, cw.activityID)
		})
	}
}

func TestChannel_wantsPage(t *testing.T) {
	parked := map[string]catalog.ParkedItem{"A": {}, "B": {}}
	cases := []struct {
		name  string
		rules channelRules
		work  ChannelWork
		want  bool
		held  bool
	}{
		{name: "no_catch_up", rules: boundedRules},
		{name: "reads_when_short_of_a_batch", rules: boundedRules, work: ChannelWork{Backfill: &Backfill{}, Want: map[string]int64{"A": 1}}, want: true},
		{name: "waits_with_a_batch_pending", rules: boundedRules, work: ChannelWork{Backfill: &Backfill{}, Want: map[string]int64{"A": 1, "B": 1}}},
		{name: "waits_after_a_failed_push", rules: boundedRules, work: ChannelWork{Backfill: &Backfill{Paused: true}}, held: true},
		{name: "bounded_waits_with_a_batch_parked", rules: boundedRules, work: ChannelWork{Backfill: &Backfill{}, ParkedCount: 2}, held: true},
		{name: "bounded_reads_with_less_than_a_batch_parked", rules: boundedRules, work: ChannelWork{Backfill: &Backfill{}, ParkedCount: 1}, want: true},
		{name: "legacy_counts_the_items_it_holds", rules: channelRules{opts: SyncOptions{Batch: 2}.withDefaults()},
			work: ChannelWork{Backfill: &Backfill{}, Parked: parked, ParkedCount: 0}, held: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cw := newChannel(tc.work)
			require.Equal(t, tc.want, cw.wantsPage(tc.rules))
			require.Equal(t, tc.held, cw.backfillHeld(tc.rules))
			require.Equal(t, tc.held, cw.load(tc.rules).BackfillPaused)
		})
	}
}

func TestChannel_takePage(t *testing.T) {
	cases := []struct {
		name         string
		rules        channelRules
		work         ChannelWork
		page         activities.BackfillPage
		want         map[string]int64
		wantBackfill *Backfill
	}{
		{name: "moves_the_cursor_past_the_page", rules: legacyRules, work: ChannelWork{Backfill: &Backfill{After: "A"}},
			page: activities.BackfillPage{Items: []activities.SKUVersion{sv("B", 1)}, After: "C"},
			want: map[string]int64{"B": 1}, wantBackfill: &Backfill{After: "C"}},
		{name: "done_ends_the_catch_up", rules: legacyRules, work: ChannelWork{Backfill: &Backfill{After: "A"}},
			page: activities.BackfillPage{Items: []activities.SKUVersion{sv("B", 1)}, After: "C", Done: true},
			want: map[string]int64{"B": 1}},
		{name: "legacy_done_ends_even_when_marked_again", rules: legacyRules, work: ChannelWork{Backfill: &Backfill{After: "A", Again: true}},
			page: activities.BackfillPage{Done: true}},
		{name: "discarded_versions_are_not_brought_back", rules: legacyRules,
			work: ChannelWork{Backfill: &Backfill{Discarded: map[string]int64{"A": 2, "B": 1}}},
			page: activities.BackfillPage{Items: []activities.SKUVersion{sv("A", 2), sv("B", 2), sv("C", 1)}, After: "C"},
			want: map[string]int64{"B": 2, "C": 1}, wantBackfill: &Backfill{After: "C", Discarded: map[string]int64{"A": 2, "B": 1}}},
		{name: "bounded_forgets_the_discards_it_passed", rules: boundedRules,
			work:         ChannelWork{Backfill: &Backfill{Discarded: map[string]int64{"A": 2, "M": 1, "Z": 1}}},
			page:         activities.BackfillPage{After: "M"}, // M itself is passed
			wantBackfill: &Backfill{After: "M", Discarded: map[string]int64{"Z": 1}}},
		{name: "bounded_to_be_read_again_keeps_the_discards", rules: boundedRules,
			work:         ChannelWork{Backfill: &Backfill{Again: true, Discarded: map[string]int64{"A": 2, "Z": 1}}},
			page:         activities.BackfillPage{After: "M"},
			wantBackfill: &Backfill{After: "M", Again: true, Discarded: map[string]int64{"A": 2, "Z": 1}}},
		{name: "legacy_keeps_the_discards_it_passed", rules: legacyRules,
			work:         ChannelWork{Backfill: &Backfill{Discarded: map[string]int64{"A": 2}}},
			page:         activities.BackfillPage{After: "M"},
			wantBackfill: &Backfill{After: "M", Discarded: map[string]int64{"A": 2}}},
		{name: "bounded_done_and_again_starts_over", rules: boundedRules, work: ChannelWork{Backfill: &Backfill{After: "M", Again: true}},
			page: activities.BackfillPage{After: "Z", Done: true}, wantBackfill: &Backfill{}},
		{name: "bounded_page_past_max_pending_reads_again", rules: boundedRules,
			work: ChannelWork{Want: map[string]int64{"A": 1}, Backfill: &Backfill{After: "A"}},
			page: activities.BackfillPage{Items: []activities.SKUVersion{sv("B", 1), sv("C", 1)}, After: "C"},
			want: map[string]int64{"A": 1, "B": 1}, wantBackfill: &Backfill{After: "C", Again: true}},
		{name: "bounded_overflow_on_the_last_page_starts_over", rules: boundedRules,
			work: ChannelWork{Want: map[string]int64{"A": 1, "B": 1}, Backfill: &Backfill{After: "B"}},
			page: activities.BackfillPage{Items: []activities.SKUVersion{sv("C", 1)}, After: "C", Done: true},
			want: map[string]int64{"A": 1, "B": 1}, wantBackfill: &Backfill{}},
		{name: "no_catch_up_ignores_the_page", rules: boundedRules,
			page: activities.BackfillPage{Items: []activities.SKUVersion{sv("B", 1)}, After: "C"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cw := newChannel(tc.work)
			cw.takePage(tc.rules, tc.page)
			requireWant(t, tc.want, cw)
			require.Equal(t, tc.wantBackfill, cw.Backfill)
		})
	}
}

func TestChannel_decide(t *testing.T) {
	fullDiscards := map[string]int64{}
	for i := range maxDiscarded {
		fullDiscards["Z"+strconv.Itoa(i)] = 1
	}
	cases := []struct {
		name          string
		rules         channelRules
		work          ChannelWork
		act           ParkingAction
		want          map[string]int64
		parked        int
		wantBackfill  *Backfill
		wantDiscarded map[string]int64 // when not nil, checked instead of wantBackfill
	}{
		{name: "retry_wants_the_newer_of_the_two_versions", rules: legacyRules,
			work: ChannelWork{Parked: map[string]catalog.ParkedItem{"A": {ID: "p1", SKU: "A", Version: 3}}},
			act:  ParkingAction{ID: "p1", SKU: "A", Version: 2, Action: ParkingRetry},
			want: map[string]int64{"A": 3}},
		{name: "retry_of_another_item_keeps_the_one_held", rules: legacyRules,
			work:   ChannelWork{Parked: map[string]catalog.ParkedItem{"A": {ID: "p2", SKU: "A", Version: 3}}},
			act:    ParkingAction{ID: "p1", SKU: "A", Version: 2, Action: ParkingRetry},
			want:   map[string]int64{"A": 2},
			parked: 1},
		{name: "retry_of_an_older_version_than_wanted_keeps_the_newer", rules: legacyRules,
			work: ChannelWork{Want: map[string]int64{"A": 5}},
			act:  ParkingAction{ID: "p1", SKU: "A", Version: 2, Action: ParkingRetry},
			want: map[string]int64{"A": 5}},
		{name: "bounded_retry_past_max_pending_goes_to_the_catch_up", rules: boundedRules,
			work:         ChannelWork{Want: map[string]int64{"B": 1, "C": 1}},
			act:          ParkingAction{ID: "p1", SKU: "A", Version: 2, Action: ParkingRetry},
			want:         map[string]int64{"B": 1, "C": 1},
			wantBackfill: &Backfill{}},
		{name: "discard_is_remembered_by_the_catch_up", rules: boundedRules,
			work:         ChannelWork{Backfill: &Backfill{After: "B"}},
			act:          ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard},
			wantBackfill: &Backfill{After: "B", Discarded: map[string]int64{"C": 3}}},
		{name: "discard_without_a_catch_up_leaves_nothing", rules: boundedRules,
			act: ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard}},
		{name: "bounded_discard_the_catch_up_passed_is_not_remembered", rules: boundedRules,
			work:         ChannelWork{Backfill: &Backfill{After: "M"}},
			act:          ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard},
			wantBackfill: &Backfill{After: "M"}},
		{name: "bounded_discard_passed_but_read_again_is_remembered", rules: boundedRules,
			work:         ChannelWork{Backfill: &Backfill{After: "M", Again: true}},
			act:          ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard},
			wantBackfill: &Backfill{After: "M", Again: true, Discarded: map[string]int64{"C": 3}}},
		{name: "legacy_discard_the_catch_up_passed_is_remembered", rules: legacyRules,
			work:         ChannelWork{Backfill: &Backfill{After: "M"}},
			act:          ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard},
			wantBackfill: &Backfill{After: "M", Discarded: map[string]int64{"C": 3}}},
		{name: "discard_keeps_a_newer_discarded_version", rules: boundedRules,
			work:         ChannelWork{Backfill: &Backfill{Discarded: map[string]int64{"C": 5}}},
			act:          ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard},
			wantBackfill: &Backfill{Discarded: map[string]int64{"C": 5}}},
		{name: "bounded_discards_are_capped", rules: boundedRules,
			work:          ChannelWork{Backfill: &Backfill{Discarded: fullDiscards}},
			act:           ParkingAction{ID: "p1", SKU: "C", Version: 3, Action: ParkingDiscard},
			wantDiscarded: fullDiscards},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cw := newChannel(tc.work)
			cw.decide(tc.rules, tc.act)
			requireWant(t, tc.want, cw)
			require.Len(t, cw.Parked, tc.parked)
			if tc.wantDiscarded != nil {
				require.Len(t, cw.Backfill.Discarded, len(tc.wantDiscarded))
				require.NotContains(t, cw.Backfill.Discarded, tc.act.SKU)
				return
			}
			require.Equal(t, tc.wantBackfill, cw.Backfill)
		})
	}
}

// A bounded run adopts the state of a run from before: parked items go (the
// load counts them in PostgreSQL), pending SKUs past MaxPending go to the
// catch-up, discarded versions are cut to maxDiscarded.
func TestChannel_adopt(t *testing.T) {
	discarded := map[string]int64{}
	for i := range maxDiscarded + 5 {
		discarded[fmt.Sprintf("Z%04d", i)] = 1
	}
	cw := newChannel(ChannelWork{
		Want:     map[string]int64{"A": 1, "B": 1, "C": 1},
		Parked:   map[string]catalog.ParkedItem{"D": {ID: "p1", SKU: "D", Version: 1}},
		Backfill: &Backfill{After: "B", Discarded: discarded},
	})
	cw.adopt(boundedRules)
	require.Equal(t, map[string]int64{"A": 1, "B": 1}, cw.Want)
	require.Nil(t, cw.Parked)
	require.Len(t, cw.Backfill.Discarded, maxDiscarded)
	require.Contains(t, cw.Backfill.Discarded, "Z0000", "the first ones are kept")
	require.False(t, cw.Backfill.Again, "C is ahead of the cursor")

	noShards := newChannel(ChannelWork{Want: map[string]int64{"A": 1, "B": 1, "C": 1}})
	noShards.adopt(noShardsRules)
	require.Len(t, noShards.Want, 3, "without the shard count there is no catch-up to leave them to")
	require.Nil(t, noShards.Backfill)
}

func TestChannel_parking_writes_leave_the_work(t *testing.T) {
	t.Run("bounded_counts", func(t *testing.T) {
		cw := newChannel(ChannelWork{Want: map[string]int64{"A": 1, "B": 1}})
		cw.parkedCounted(activities.ParkResult{SKUs: []string{"A"}, Parked: 7})
		require.Equal(t, map[string]int64{"B": 1}, cw.Want)
		require.Equal(t, 7, cw.ParkedCount)
		require.Equal(t, 7, cw.parked(boundedRules))
	})
	t.Run("legacy_holds_the_items", func(t *testing.T) {
		cw := newChannel(ChannelWork{Want: map[string]int64{"A": 1, "B": 1}})
		cw.parkedHeld([]catalog.ParkedItem{{ID: "p1", SKU: "A", Version: 1}})
		require.Equal(t, map[string]int64{"B": 1}, cw.Want)
		require.Equal(t, map[string]catalog.ParkedItem{"A": {ID: "p1", SKU: "A", Version: 1}}, cw.Parked)
		require.Equal(t, 1, cw.parked(legacyRules))
		cs, ok := cw.syncOf("c1", "A")
		require.True(t, ok)
		require.Equal(t, ChannelSync{ChannelID: "c1", Status: catalog.SyncParked, Version: 1, ParkedID: "p1"}, cs)
	})
}

func TestRootMessage(t *testing.T) {
	require.Equal(t, "shopwave: 503", rootMessage(fmt.Errorf("activity: %w", temporal.NewApplicationError("shopwave: 503", "Unavailable"))))
	require.Equal(t, "boom", rootMessage(errors.New("boom")))
}

// What a run hands over when it continues as new keeps its JSON shape (runs
// recorded before a change decode it), and nothing of a channel's flight is
// in it.
func TestChannel_carried_state_keeps_its_json_shape(t *testing.T) {
	cw := newChannel(ChannelWork{
		Market:      "souk",
		Want:        map[string]int64{"A": 2},
		Parked:      map[string]catalog.ParkedItem{"B": {ID: "p1", SKU: "B", Version: 1}},
		ParkedCount: 3,
		Backfill:    &Backfill{After: "A", Paused: true, Discarded: map[string]int64{"C": 1}, Again: true},
	})
	cw.want(legacyRules, []activities.SKUVersion{{SKU: "D", Version: 1, Traceparent: "tp-d1"}})
	cw.nextPush(legacyRules)
	cw.activityID = "push:c1:1"
	in := SyncInput{Tenant: "demo", Schema: "tenant_demo", Shard: 3, Options: SyncOptions{Shards: 8},
		Channels: map[string]*ChannelWork{"c1": cw.ChannelWork}, Runs: 2}
	got, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, `{"tenant":"demo","schema":"tenant_demo","shard":3,"options":{"shards":8},"runs":2,
		"channels":{"c1":{"market":"souk","want":{"A":2,"D":1},
			"parked":{"B":{"id":"p1","sku":"B","channel":"","market":"","version":1,"error":"","attempts":0,"since":"0001-01-01T00:00:00Z","trace_id":""}},
			"parked_count":3,
			"backfill":{"after":"A","paused":true,"discarded":{"C":1},"again":true}}}}`, string(got))
}

// Every sync activity retries 1 s doubling to 30 s; a push adds its attempt
// limit and the errors it does not retry, without changing anyone else's.
func TestSyncRetry_push_adds_only_its_limit(t *testing.T) {
	push := pushRetry(5)
	require.Equal(t, &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second}, syncRetry())
	require.Equal(t, int32(5), push.MaximumAttempts)
	require.Equal(t, []string{activities.ErrTypeChannelGone, activities.ErrTypeMarketRejected}, push.NonRetryableErrorTypes)
	base := *push
	base.MaximumAttempts, base.NonRetryableErrorTypes = 0, nil
	require.Equal(t, *syncRetry(), base, "the rest is syncRetry's")
}
