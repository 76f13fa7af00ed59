package workflows

import (
	"errors"
	"slices"

	"go.temporal.io/sdk/temporal"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/internal/catalog"
)

// This file holds one channel's state in a CatalogSync run and the rules
// that change it: what it wants, how a finished push settles, what parking
// leaves, how the catch-up's cursor moves, which batch goes next. None of
// it takes a workflow.Context or issues a command; sync.go runs the loop,
// calls the activities and feeds their results in here. The rules are plain
// functions of their inputs (sorted keys wherever a map is ranged), so they
// are deterministic and tested alone (channel_test.go).

// ChannelWork is what one channel still has to do: the part of its state
// carried across continue-as-new (what a run has in flight is not: flight).
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

// channel is one channel of a run: the work carried across continue-as-new
// (ChannelWork, serialized) and what the run has in flight (flight, never
// serialized).
type channel struct {
	*ChannelWork
	flight
}

// flight is what a channel has in flight within one run. A run that
// continues as new has nothing in flight, and starts without traces.
type flight struct {
	// inflight is the version of each SKU the running push sends; nil
	// when none runs.
	inflight   map[string]int64
	activityID string
	// traces is the W3C traceparent of the change that brought each wanted
	// version, when it came with one; the push links to them.
	traces map[string]string
}

// channelRules are what a channel's rules depend on besides the channel:
// the run's options (with defaults) and whether the run is bounded.
type channelRules struct {
	opts SyncOptions
	// bounded: parked items are kept in PostgreSQL (the channel holds their
	// count) and at most opts.MaxPending SKUs are pending.
	bounded bool
}

// overflows says the bounded state leaves changes past MaxPending to the
// catch-up (which needs the shard count).
func (r channelRules) overflows() bool { return r.bounded && r.opts.Shards > 0 }

// parked is how many items the channel holds parked.
func (cw *channel) parked(r channelRules) int {
	if r.bounded {
		return cw.ParkedCount
	}
	return len(cw.Parked)
}

// load is the channel's line of the status query.
func (cw *channel) load(r channelRules) ChannelLoad {
	return ChannelLoad{Market: cw.Market, Pending: len(cw.Want), InFlight: len(cw.inflight), Parked: cw.parked(r),
		Backfilling: cw.Backfill != nil, BackfillPaused: cw.backfillHeld(r)}
}

// syncOf is where sku stands on the channel (id), or false when the channel
// has no work for it.
func (cw *channel) syncOf(id, sku string) (ChannelSync, bool) {
	cs := ChannelSync{ChannelID: id, Market: cw.Market}
	if v, ok := cw.inflight[sku]; ok {
		cs.Status, cs.Version, cs.ActivityID = catalog.SyncInFlight, max(v, cw.Want[sku]), cw.activityID
	} else if v, ok := cw.Want[sku]; ok {
		cs.Status, cs.Version = catalog.SyncPending, v
	} else if p, ok := cw.Parked[sku]; ok {
		cs.Status, cs.Version, cs.Error, cs.ParkedID = catalog.SyncParked, p.Version, p.Error, p.ID
	} else {
		return ChannelSync{}, false
	}
	return cs, true
}

// adopt makes the state a bounded run starts from bounded: parked items
// carried by a run from before are in PostgreSQL already (the load counts
// them), the discarded versions are cut to maxDiscarded, and pending SKUs
// beyond MaxPending are left to the catch-up.
func (cw *channel) adopt(r channelRules) {
	cw.Parked = nil
	if b := cw.Backfill; b != nil && len(b.Discarded) > maxDiscarded {
		for _, sku := range sortedKeys(b.Discarded)[maxDiscarded:] {
			delete(b.Discarded, sku)
		}
	}
	if len(cw.Want) > r.opts.MaxPending && r.opts.Shards > 0 {
		for _, sku := range sortedKeys(cw.Want)[r.opts.MaxPending:] {
			delete(cw.Want, sku)
			cw.overflow(sku)
		}
	}
}

// want adds versions to the channel's work, unless it wants a newer one or
// holds the SKU parked at that version or newer.
//
// A bounded run does not know its parked items (the push skips what is
// parked at the version it would send), and holds at most MaxPending SKUs:
// a SKU beyond it is left to the channel's catch-up.
func (cw *channel) want(r channelRules, items []activities.SKUVersion) {
	for _, c := range items {
		if p, ok := cw.Parked[c.SKU]; ok && c.Version <= p.Version {
			continue // parked at this version or newer: wait for the operator
		}
		if _, held := cw.Want[c.SKU]; r.overflows() && !held && len(cw.Want) >= r.opts.MaxPending {
			cw.overflow(c.SKU)
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
func (cw *channel) overflow(sku string) {
	switch {
	case cw.Backfill == nil:
		cw.Backfill = &Backfill{}
	case cw.Backfill.After != "" && sku <= cw.Backfill.After:
		cw.Backfill.Again = true
	}
}

// decide applies an operator's retry or discard of a parked item to the
// channel's work: a retry wants the parked version again (or the one the
// workflow held parked, if newer); a discard keeps the catch-up from
// bringing that version back, within maxDiscarded, and only for a SKU the
// catch-up has still to reach. Removing the item from the parking lot is
// the caller's.
func (cw *channel) decide(r channelRules, act ParkingAction) {
	version := act.Version
	if p, ok := cw.Parked[act.SKU]; ok && p.ID == act.ID {
		delete(cw.Parked, act.SKU)
		version = max(version, p.Version)
	}
	if act.Action == ParkingRetry && r.bounded {
		cw.want(r, []activities.SKUVersion{{SKU: act.SKU, Version: version}})
	} else if act.Action == ParkingRetry && version > cw.Want[act.SKU] {
		if cw.Want == nil {
			cw.Want = map[string]int64{}
		}
		cw.Want[act.SKU] = version
		cw.setTrace(act.SKU, "")
	}
	full := r.bounded && cw.Backfill != nil && (len(cw.Backfill.Discarded) >= maxDiscarded ||
		(!cw.Backfill.Again && act.SKU <= cw.Backfill.After))
	if act.Action == ParkingDiscard && cw.Backfill != nil && !full && version > cw.Backfill.Discarded[act.SKU] {
		if cw.Backfill.Discarded == nil {
			cw.Backfill.Discarded = map[string]int64{}
		}
		cw.Backfill.Discarded[act.SKU] = version
	}
}

// backfillHeld says the channel's catch-up waits: its last push failed as a
// whole, or it holds a batch or more parked (a market that refuses every
// item one by one, such as bazaar for a catalogue priced in USD). Either
// way reading on would park the channel's whole shard, item by item.
func (cw *channel) backfillHeld(r channelRules) bool {
	return cw.Backfill != nil && (cw.Backfill.Paused || cw.parked(r) >= r.opts.Batch)
}

// wantsPage says the channel's catch-up reads its next page now: it has one,
// does not wait, and the channel's work is short of a batch (so the pending
// work stays bounded however large the catalogue).
func (cw *channel) wantsPage(r channelRules) bool {
	return cw.Backfill != nil && !cw.backfillHeld(r) && len(cw.Want) < r.opts.Batch
}

// takePage adds a page of catch-up to the channel's work, minus the
// versions an operator discarded, and moves the cursor: past the page, back
// to the start when the catalogue is to be read Again, or, done, ends the
// catch-up. A channel whose catch-up ended meanwhile ignores the page.
func (cw *channel) takePage(r channelRules, page activities.BackfillPage) {
	b := cw.Backfill
	if b == nil {
		return
	}
	items := page.Items
	if len(b.Discarded) > 0 {
		items = slices.DeleteFunc(slices.Clone(items), func(it activities.SKUVersion) bool {
			return it.Version <= b.Discarded[it.SKU]
		})
	}
	if r.bounded {
		// First: what the page cannot take (past MaxPending) is behind the
		// cursor then, so overflow marks the catch-up to read again.
		b.After = page.After
	}
	cw.want(r, items)
	switch {
	case page.Done && r.bounded && b.Again:
		b.After, b.Again = "", false
	case page.Done:
		cw.Backfill = nil
	default:
		b.After = page.After
		if r.bounded && !b.Again {
			// Passed: this catch-up does not reach them again.
			for _, sku := range sortedKeys(b.Discarded) {
				if sku <= page.After {
					delete(b.Discarded, sku)
				}
			}
		}
	}
}

// nextPush is the channel's next batch, the first opts.Batch wanted SKUs in
// order, and marks it in flight; or nil when it wants nothing.
func (cw *channel) nextPush(r channelRules) []activities.SKUVersion {
	if len(cw.Want) == 0 {
		return nil
	}
	skus := sortedKeys(cw.Want)
	if len(skus) > r.opts.Batch {
		skus = skus[:r.opts.Batch]
	}
	cw.inflight = make(map[string]int64, len(skus))
	cw.pruneTraces()
	items := make([]activities.SKUVersion, 0, len(skus))
	for _, sku := range skus {
		items = append(items, activities.SKUVersion{SKU: sku, Version: cw.Want[sku], Traceparent: cw.traces[sku]})
		cw.inflight[sku] = cw.Want[sku]
	}
	return items
}

// setTrace records the traceparent of sku's wanted version (none: forget
// the older version's).
func (cw *channel) setTrace(sku, traceparent string) {
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
func (cw *channel) pruneTraces() {
	for _, sku := range sortedKeys(cw.traces) {
		if _, ok := cw.Want[sku]; !ok {
			delete(cw.traces, sku)
		}
	}
}

// settlement is what a finished push leaves the workflow to do.
type settlement struct {
	// gone: the channel no longer exists; drop it (its parked rows went
	// with it).
	gone bool
	// superseded are the IDs of parked items a newer version made moot
	// (runs from before bounded state only): unpark them first.
	superseded []string
	// park are the items to park (Since is the caller's).
	park []catalog.ParkedItem
}

// settle takes a finished push (res, or the error it failed with) into the
// channel's work: synced SKUs leave it unless a newer version arrived
// meanwhile; refused ones and, when the push failed as a whole, all of them
// are to be parked.
func (cw *channel) settle(r channelRules, res activities.PushResult, err error) settlement {
	sent := cw.inflight
	cw.inflight, cw.activityID = nil, ""
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeChannelGone {
			return settlement{gone: true}
		}
		if cw.Backfill != nil {
			cw.Backfill.Paused = true
		}
		attempts := r.opts.MaxAttempts
		if errors.As(err, &appErr) && appErr.NonRetryable() {
			attempts = 1
		}
		var park []catalog.ParkedItem
		for _, sku := range sortedKeys(sent) {
			if v, ok := res.Synced[sku]; ok && v >= cw.Want[sku] {
				delete(cw.Want, sku)
				continue
			}
			if r.bounded && slices.Contains(res.Parked, sku) && cw.Want[sku] <= sent[sku] {
				delete(cw.Want, sku) // parked at that version already
				continue
			}
			park = append(park, catalog.ParkedItem{SKU: sku, Version: cw.Want[sku], Error: rootMessage(err), Attempts: int(attempts)})
		}
		return settlement{park: park}
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
	var st settlement
	for _, sku := range sortedKeys(res.Synced) {
		v := res.Synced[sku]
		if v >= cw.Want[sku] {
			delete(cw.Want, sku)
		}
		if p, ok := cw.Parked[sku]; ok && p.Version <= v {
			// A newer version went through: the parked one is moot.
			delete(cw.Parked, sku)
			st.superseded = append(st.superseded, p.ID)
		}
	}
	for _, sku := range res.Missing {
		if cw.Want[sku] <= sent[sku] {
			delete(cw.Want, sku)
		}
	}
	for _, rj := range res.Rejected {
		if cw.Want[rj.SKU] > rj.Version {
			continue // a newer version is on its way; try that instead
		}
		st.park = append(st.park, catalog.ParkedItem{SKU: rj.SKU, Version: rj.Version, Error: rj.Reason, Attempts: 1})
	}
	return st
}

// parkedCounted takes a bounded run's parking write into the work: the
// count PostgreSQL returned, and the SKUs it parked leave the work.
func (cw *channel) parkedCounted(res activities.ParkResult) {
	cw.ParkedCount = res.Parked
	for _, sku := range res.SKUs {
		delete(cw.Want, sku)
	}
}

// parkedHeld takes a run's parking write from before bounded state into
// the work: the channel holds the parked items, which leave the work.
func (cw *channel) parkedHeld(parked []catalog.ParkedItem) {
	if cw.Parked == nil {
		cw.Parked = map[string]catalog.ParkedItem{}
	}
	for _, p := range parked {
		cw.Parked[p.SKU] = p
		delete(cw.Want, p.SKU)
	}
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
