package sim_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/sim"
)

func startNotifier(t *testing.T, cfg sim.NotifyConfig) (*sim.Notifier, string) {
	t.Helper()
	n := sim.NewNotifier(cfg, 1)
	srv := httptest.NewServer(n)
	t.Cleanup(srv.Close)
	return n, srv.URL
}

func message(key string) string {
	return fmt.Sprintf(`{"to":"alice@example.com","subject":"You're in","body":"See you there","idempotency_key":%q}`, key)
}

func TestNotifier_delivers_each_key_once(t *testing.T) {
	t.Parallel()
	n, url := startNotifier(t, sim.NotifyConfig{})
	first := call(t, "POST", url+"/v1/email", message("join-1:email"))
	again := call(t, "POST", url+"/v1/email", message("join-1:email"))
	other := call(t, "POST", url+"/v1/sms", `{"to":"+821012345678","body":"hi","idempotency_key":"join-1:sms"}`)
	if first.status != http.StatusAccepted || again.status != http.StatusOK || other.status != http.StatusAccepted {
		t.Fatalf("statuses %d %d %d, want 202 200 202", first.status, again.status, other.status)
	}
	var a, b struct{ ID, Channel, Status string }
	first.decode(t, &a)
	again.decode(t, &b)
	if a != b || a.Status != "delivered" || a.Channel != "email" {
		t.Fatalf("replies %+v %+v", a, b)
	}
	s := n.Stats()
	if s.Delivered["email"] != 1 || s.Delivered["sms"] != 1 || s.Delivered["push"] != 0 || s.Duplicates != 1 ||
		s.ByKey["join-1:email"] != 1 || s.Failed["email"] != 0 {
		t.Fatalf("stats %+v", s)
	}
	d := n.Deliveries()
	if len(d) != 2 || d[0].To != "alice@example.com" || d[0].Subject != "You're in" || d[1].Channel != "sms" {
		t.Fatalf("deliveries %+v", d)
	}
}

func TestNotifier_rejects_bad_sends(t *testing.T) {
	t.Parallel()
	n, url := startNotifier(t, sim.NotifyConfig{})
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantCode         string
	}{
		{"unknown_channel", "/v1/fax", message("k"), http.StatusNotFound, "not_found"},
		{"not_json", "/v1/email", `{`, http.StatusBadRequest, "bad_request"},
		{"unknown_field", "/v1/email", `{"to":"a","body":"b","idempotency_key":"k","cc":"c"}`, http.StatusBadRequest, "bad_request"},
		{"no_to", "/v1/email", `{"body":"b","idempotency_key":"k"}`, http.StatusBadRequest, "bad_request"},
		{"no_body", "/v1/push", `{"to":"device","idempotency_key":"k"}`, http.StatusBadRequest, "bad_request"},
		{"no_key", "/v1/sms", `{"to":"+82","body":"b"}`, http.StatusBadRequest, "bad_request"},
		{"key_too_long", "/v1/sms", message(strings.Repeat("k", 129)), http.StatusBadRequest, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, "POST", url+tt.path, tt.body)
			if r.status != tt.wantStatus || r.errorCode(t) != tt.wantCode {
				t.Fatalf("%d %q, want %d %s", r.status, r.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if len(n.Deliveries()) != 0 {
		t.Fatal("a bad send was delivered")
	}
}

func TestNotifier_failing_channels_answer_503_and_deliver_nothing(t *testing.T) {
	t.Parallel()
	n, url := startNotifier(t, sim.NotifyConfig{
		FailRate: map[string]float64{"sms": 1},
		Down:     map[string]bool{"push": true},
	})
	for _, ch := range []string{"sms", "push"} {
		r := call(t, "POST", url+"/v1/"+ch, message("k-"+ch))
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "unavailable" {
			t.Fatalf("%s: %d %q, want 503", ch, r.status, r.body)
		}
	}
	if r := call(t, "POST", url+"/v1/email", message("k-email")); r.status != http.StatusAccepted {
		t.Fatalf("email (healthy): %d %q", r.status, r.body)
	}
	s := n.Stats()
	if s.Failed["sms"] != 1 || s.Failed["push"] != 1 || s.Delivered["email"] != 1 || s.Delivered["sms"]+s.Delivered["push"] != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Back up: the key that failed is delivered now, once.
	if err := n.SetConfig(sim.NotifyConfig{}); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "POST", url+"/v1/sms", message("k-sms")); r.status != http.StatusAccepted {
		t.Fatalf("sms after recovery: %d %q", r.status, r.body)
	}
}

func TestNotifier_admin_config(t *testing.T) {
	t.Parallel()
	n, url := startNotifier(t, sim.NotifyConfig{})
	tests := []struct {
		name, body string
		wantStatus int
	}{
		{"rate_above_1", `{"fail_rate":{"email":2}}`, http.StatusBadRequest},
		{"rate_negative", `{"fail_rate":{"sms":-0.5}}`, http.StatusBadRequest},
		{"unknown_channel_rate", `{"fail_rate":{"fax":0.1}}`, http.StatusBadRequest},
		{"unknown_channel_down", `{"down":{"pigeon":true}}`, http.StatusBadRequest},
		{"bad_latency", `{"latency":"fast"}`, http.StatusBadRequest},
		{"unknown_field", `{"failrate":{"sms":0.1}}`, http.StatusBadRequest},
		{"valid", `{"latency":"5ms","fail_rate":{"sms":0.25},"down":{"push":true}}`, http.StatusOK},
	}
	for _, tt := range tests { // in order: the last one sets the config checked below
		r := call(t, "PUT", url+"/admin/config", tt.body)
		if r.status != tt.wantStatus {
			t.Fatalf("%s: %d %q, want %d", tt.name, r.status, r.body, tt.wantStatus)
		}
	}
	got := n.Config()
	if got.Latency != 5*time.Millisecond || got.FailRate["sms"] != 0.25 || !got.Down["push"] || got.Down["email"] {
		t.Fatalf("Config() = %+v", got)
	}
	var wire struct {
		Latency  string
		FailRate map[string]float64 `json:"fail_rate"`
		Down     map[string]bool
	}
	call(t, "GET", url+"/admin/config", "").decode(t, &wire)
	if wire.Latency != "5ms" || wire.FailRate["sms"] != 0.25 || !wire.Down["push"] {
		t.Fatalf("GET /admin/config = %+v", wire)
	}
	// Config returns a copy: changing it changes nothing.
	got.Down["email"] = true
	if n.Config().Down["email"] {
		t.Fatal("Config shares its maps with the notifier")
	}
	if r := call(t, "POST", url+"/admin/reset", ""); r.status != http.StatusNoContent {
		t.Fatalf("reset: %d", r.status)
	}
}
