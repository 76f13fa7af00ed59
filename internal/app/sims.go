package app

// Hosting the simulators of the systems sagaflow does not own ('sagaflow
// sim' and 'sagaflow dev').

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/market"
	"github.com/sagaflow/sagaflow/internal/meeting"
	"github.com/sagaflow/sagaflow/internal/sim"
)

// Simulators are the fakes of the systems sagaflow does not own, as HTTP
// handlers configured from cfg: the payment gateway and the notification
// sink ('sagaflow sim' and 'sagaflow dev' serve them).
type Simulators struct {
	Payments *sim.PaymentGateway
	Notifier *sim.Notifier
	// Markets are the marketplaces, by name.
	Markets map[string]*sim.Marketplace
}

// NewSimulators builds the simulators with the knobs of cfg.
func NewSimulators(cfg config.Config) (*Simulators, error) {
	pc := sim.PaymentConfig{
		Latency: cfg.SimLatency, DeclineRate: cfg.SimDeclineRate,
		ErrorRate: cfg.SimErrorRate, TimeoutAfterCommit: cfg.SimTimeoutAfterCommit,
	}
	if err := pc.Validate(); err != nil {
		return nil, err
	}
	nc := sim.NotifyConfig{Latency: cfg.SimLatency, FailRate: map[string]float64{}}
	for _, ch := range meeting.Channels {
		nc.FailRate[ch] = cfg.SimNotifyFailRate
	}
	if err := nc.Validate(); err != nil {
		return nil, err
	}
	seed := time.Now().UnixNano()
	sims := &Simulators{Payments: sim.NewPaymentGateway(pc, seed), Notifier: sim.NewNotifier(nc, seed+1), Markets: map[string]*sim.Marketplace{}}
	mc := sim.MarketConfig{Latency: cfg.SimLatency, ErrorRate: cfg.SimMarketErrorRate, ThrottleRate: cfg.SimMarketThrottleRate}
	for i, name := range market.Names() {
		m, err := sim.NewMarketplace(name, mc, seed+2+int64(i))
		if err != nil {
			return nil, err
		}
		sims.Markets[name] = m
	}
	return sims, nil
}

// MarketAddrs are the addresses the marketplace simulators serve on.
func MarketAddrs(cfg config.Config) map[string]string {
	return map[string]string{market.Shopwave: cfg.SimShopwaveAddr, market.Souk: cfg.SimSoukAddr, market.Bazaar: cfg.SimBazaarAddr}
}

// Serve serves the simulators on the configured addresses until ctx ends.
func (s *Simulators) Serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	handlers := map[string]http.Handler{cfg.SimPaymentAddr: s.Payments, cfg.SimNotifyAddr: s.Notifier}
	for name, addr := range MarketAddrs(cfg) {
		handlers[addr] = s.Markets[name]
	}
	listeners := map[string]net.Listener{}
	for addr := range handlers {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return fmt.Errorf("simulator: %w", err)
		}
		listeners[addr] = l
	}
	// Replies held by "timeout after commit" must not hold up the shutdown.
	stop := context.AfterFunc(ctx, s.Payments.Close)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	for addr, l := range listeners {
		g.Go(func() error { return Serve(gctx, l, handlers[addr], cfg, log) })
	}
	return g.Wait()
}
