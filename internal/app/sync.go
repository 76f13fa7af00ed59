package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/workflows"
)

// SyncOptions are the sync workflows' options from the configuration.
func SyncOptions(cfg config.Config) workflows.SyncOptions {
	return workflows.SyncOptions{MaxAttempts: int32(cfg.SyncMaxAttempts), Batch: cfg.SyncBatch, Shards: cfg.SyncShards}
}

// MarketInfos are the markets with their default base URLs.
func MarketInfos(cfg config.Config) []api.MarketInfo {
	urls := map[string]string{"shopwave": cfg.ShopwaveURL, "souk": cfg.SoukURL, "bazaar": cfg.BazaarURL}
	var out []api.MarketInfo
	for _, m := range market.Markets() {
		out = append(out, api.MarketInfo{Name: m.Name, Format: m.Format, Description: m.Description, BaseURL: urls[m.Name], MaxBatch: m.MaxBatch})
	}
	return out
}

// syncSink hands the ingest's coalesced changes to the sync workflows: one
// signal-with-start per (tenant, shard) and batch, sent in parallel. It
// returns only when Temporal accepted every signal, so the ingest acks
// nothing Temporal has not got.
type syncSink struct {
	c      client.Client
	shards int
	opts   workflows.SyncOptions
}

// deliverTimeout bounds one signal-with-start.
const deliverTimeout = 30 * time.Second

type shardKey struct {
	tenant, schema string
	shard          int
}

func (s syncSink) Deliver(ctx context.Context, changes []ingest.Change) error {
	groups := map[shardKey][]activities.SKUVersion{}
	for _, ch := range changes {
		k := shardKey{ch.Tenant, ch.Schema, catalog.Shard(ch.Product.SKU, s.shards)}
		groups[k] = append(groups[k], activities.SKUVersion{SKU: ch.Product.SKU, Version: ch.Product.Version,
			Traceparent: ch.Trace.TraceParent})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for k, batch := range groups {
		slices.SortFunc(batch, func(a, b activities.SKUVersion) int { return strings.Compare(a.SKU, b.SKU) })
		g.Go(func() error {
			opts, in := workflows.CatalogSyncStart(k.tenant, k.schema, k.shard, s.opts)
			// A hung call must not hold the batch for ever: the ingest
			// retries the whole delivery (signals are idempotent in effect).
			sctx, cancel := context.WithTimeout(gctx, deliverTimeout)
			defer cancel()
			if _, err := s.c.SignalWithStartWorkflow(sctx, opts.ID, workflows.SignalChanges, batch, opts, workflows.CatalogSyncWorkflowType, in); err != nil {
				return fmt.Errorf("signal %s: %w", opts.ID, err)
			}
			return nil
		})
	}
	return g.Wait()
}
