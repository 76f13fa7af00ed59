package notify_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/notify"
	"github.com/sagaflow/sagaflow/internal/sim"
)

func start(t *testing.T, cfg sim.NotifyConfig, timeout time.Duration) (*sim.Notifier, *notify.Client) {
	t.Helper()
	n := sim.NewNotifier(cfg, 1)
	srv := httptest.NewServer(n)
	t.Cleanup(srv.Close)
	c := notify.NewClient(srv.URL, timeout)
	t.Cleanup(c.CloseIdleConnections)
	return n, c
}

func confirmation(channel, key string) notify.Message {
	return notify.Message{Channel: channel, To: "alice@example.com", Subject: "You're in", Body: "See you at 7", IdempotencyKey: key}
}

func TestSend_delivers_once_per_key(t *testing.T) {
	t.Parallel()
	n, c := start(t, sim.NotifyConfig{}, time.Second)
	ctx := context.Background()
	for attempt := range 3 {
		if err := c.Send(ctx, confirmation(notify.Email, "join-1:email")); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	if err := c.Send(ctx, notify.Message{Channel: notify.Push, To: "device-1", Body: "You're in", IdempotencyKey: "join-1:push"}); err != nil {
		t.Fatal(err)
	}
	s := n.Stats()
	if s.Delivered[notify.Email] != 1 || s.Delivered[notify.Push] != 1 || s.Duplicates != 2 || s.ByKey["join-1:email"] != 1 {
		t.Fatalf("stats %+v", s)
	}
	if d := n.Deliveries(); d[0].Subject != "You're in" || d[0].Body != "See you at 7" || d[0].To != "alice@example.com" {
		t.Fatalf("delivered %+v", d[0])
	}
}

func TestSend_concurrent_same_key_delivers_once(t *testing.T) {
	t.Parallel()
	n, c := start(t, sim.NotifyConfig{Latency: 5 * time.Millisecond}, 5*time.Second)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := c.Send(context.Background(), confirmation(notify.SMS, "join-1:sms")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if s := n.Stats(); s.Delivered[notify.SMS] != 1 || s.Duplicates != 19 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSend_classifies_failures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		cfg           sim.NotifyConfig
		timeout       time.Duration
		msg           notify.Message
		wantPermanent bool
	}{
		{"channel_down", sim.NotifyConfig{Down: map[string]bool{"sms": true}}, time.Second, confirmation(notify.SMS, "k"), false},
		{"channel_failing", sim.NotifyConfig{FailRate: map[string]float64{"push": 1}}, time.Second, confirmation(notify.Push, "k"), false},
		{"timeout", sim.NotifyConfig{Latency: time.Second}, 100 * time.Millisecond, confirmation(notify.Email, "k"), false},
		{"no_recipient", sim.NotifyConfig{}, time.Second, notify.Message{Channel: notify.Email, Body: "b", IdempotencyKey: "k"}, true},
		{"no_body", sim.NotifyConfig{}, time.Second, notify.Message{Channel: notify.SMS, To: "+82", IdempotencyKey: "k"}, true},
		{"key_too_long", sim.NotifyConfig{}, time.Second, confirmation(notify.Email, strings.Repeat("k", 129)), true},
		{"no_key", sim.NotifyConfig{}, time.Second, confirmation(notify.Email, ""), true},
		{"unknown_channel", sim.NotifyConfig{}, time.Second, confirmation("fax", "k"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, c := start(t, tt.cfg, tt.timeout)
			err := c.Send(context.Background(), tt.msg)
			if err == nil {
				t.Fatal("want an error")
			}
			if errors.Is(err, notify.ErrPermanent) != tt.wantPermanent {
				t.Fatalf("err %v: permanent = %v, want %v", err, !tt.wantPermanent, tt.wantPermanent)
			}
			if !strings.HasPrefix(err.Error(), "notify: send ") {
				t.Fatalf("error text %q", err)
			}
			if len(n.Deliveries()) != 0 {
				t.Fatal("a failed send was delivered")
			}
		})
	}
}

func TestSend_other_channels_work_while_one_is_down(t *testing.T) {
	t.Parallel()
	n, c := start(t, sim.NotifyConfig{Down: map[string]bool{"sms": true}}, time.Second)
	ctx := context.Background()
	if err := c.Send(ctx, confirmation(notify.SMS, "join-1:sms")); err == nil || errors.Is(err, notify.ErrPermanent) {
		t.Fatalf("sms while down: %v, want a retryable error", err)
	}
	if err := c.Send(ctx, confirmation(notify.Email, "join-1:email")); err != nil {
		t.Fatalf("email while sms is down: %v", err)
	}
	if err := n.SetConfig(sim.NotifyConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, confirmation(notify.SMS, "join-1:sms")); err != nil {
		t.Fatalf("sms retried after recovery: %v", err)
	}
	if s := n.Stats(); s.Failed[notify.SMS] != 1 || s.Delivered[notify.SMS] != 1 || s.Delivered[notify.Email] != 1 {
		t.Fatalf("stats %+v", s)
	}
}
