package outbound_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/outbound"
)

func TestReplyDetail_reads_the_providers_error_body(t *testing.T) {
	tests := []struct {
		name, body, code, detail string
	}{
		{"provider_error", `{"error":{"code":"in_progress","message":"a charge is being made"}}`, "in_progress", "409 in_progress: a charge is being made"},
		{"no_code", `{"error":{"message":"x"}}`, "", "409 Conflict"},
		{"not_json", `<html>`, "", "409 Conflict"},
	}
	for _, tt := range tests {
		code, detail := outbound.ReplyDetail(http.StatusConflict, []byte(tt.body))
		if code != tt.code || detail != tt.detail {
			t.Errorf("%s: %q, %q; want %q, %q", tt.name, code, detail, tt.code, tt.detail)
		}
	}
}

// Do sends the JSON body with its headers; a request that cannot be built
// is ErrNotSent, a refused connection is not.
func TestEndpoint_Do_sends_json_and_tells_not_sent_apart(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	e := outbound.NewEndpoint("test", srv.URL+"/", 5*time.Second)
	defer e.CloseIdleConnections()
	ctx := context.Background()
	status, body, err := e.Do(ctx, outbound.Request{Method: http.MethodPost, Path: "/v1/x", Body: map[string]int{"a": 1}, IdempotencyKey: "k-1", MaxReply: 1 << 10})
	if err != nil || status != http.StatusCreated || string(body) != `{"ok":true}` {
		t.Fatalf("Do = %d %q %v", status, body, err)
	}
	if got.Get("Content-Type") != "application/json" || got.Get("Accept") != "application/json" || got.Get("Idempotency-Key") != "k-1" {
		t.Fatalf("headers %v", got)
	}
	bad := outbound.NewEndpoint("test", "http://[::1", time.Second)
	if _, _, err := bad.Do(ctx, outbound.Request{Method: http.MethodGet, Path: "/"}); !errors.Is(err, outbound.ErrNotSent) {
		t.Fatalf("bad base URL: %v, want ErrNotSent", err)
	}
	srv.Close()
	if _, _, err := e.Do(ctx, outbound.Request{Method: http.MethodGet, Path: "/"}); err == nil || errors.Is(err, outbound.ErrNotSent) {
		t.Fatalf("closed server: %v, want a transport error, not ErrNotSent", err)
	}
}
