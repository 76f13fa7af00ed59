package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sagaflow/sagaflow/internal/deadletter"
)

// letterBox is every tenant's dead letters in memory, and a replayer that
// publishes (records) each waiting letter once.
type letterBox struct {
	mu        sync.Mutex
	letters   map[string][]deadletter.Letter // by schema
	published []string
	calls     int
}

type schemaLetters struct {
	b      *letterBox
	schema string
}

func (s schemaLetters) Page(_ context.Context, f deadletter.Filter, limit int, afterAt time.Time, afterID string) ([]deadletter.Letter, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.calls++
	return keysetPage(s.b.letters[s.schema], f.Matches, func(l deadletter.Letter) (time.Time, string) { return l.DeadAt, l.ID },
		limit, afterAt, afterID), nil
}

func (b *letterBox) Replay(_ context.Context, schema string, sel deadletter.Selection, limit int) (deadletter.Replayed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	var out deadletter.Replayed
	ls := b.letters[schema]
	for i := range ls {
		l := &ls[i]
		if l.ReplayedAt != nil || (len(sel.IDs) > 0 && !slices.Contains(sel.IDs, l.ID)) || !sel.Filter.Matches(*l) {
			continue
		}
		if len(out.IDs) == limit {
			out.More = true
			break
		}
		now := time.Now()
		l.ReplayedAt = &now
		b.published = append(b.published, l.ID)
		out.IDs = append(out.IDs, l.ID)
	}
	return out, nil
}

const (
	letterA = "44444444-4444-4444-8444-444444444444"
	letterB = "55555555-5555-4555-8555-555555555555"
)

func letterHandler(t *testing.T) (http.Handler, *letterBox) {
	t.Helper()
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	b := &letterBox{letters: map[string][]deadletter.Letter{"tenant_demo": {
		{ID: letterA, MessageID: "m-a", Reason: deadletter.ReasonInvalid, Detail: "invalid: envelope is not JSON", RoutingKey: "product.changed.demo",
			Body: []byte("\xff\xfe not json"), DeadAt: at, Headers: map[string]any{}},
		{ID: letterB, MessageID: "m-b", Reason: deadletter.ReasonDeliveryLimit, Transient: true, RoutingKey: "product.changed.demo",
			Body: []byte(`{"payload":{"sku":"SKU-9"}}`), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", DeadAt: at.Add(time.Hour), Headers: map[string]any{}},
	}}}
	h := testHandler(t, Deps{
		Tenants:      twoTenants{},
		DeadLetters:  func(schema string) DeadLetterStore { return schemaLetters{b, schema} },
		Replayer:     b,
		Sync:         SyncConfig{Shards: 8},
		Ops:          OpsConfig{UIURL: "http://ui.test", Namespace: "sagaflow"},
		MaxBodyBytes: 64 << 10,
	})
	return h, b
}

type letterPage struct {
	Items []struct {
		ID         string `json:"id"`
		Reason     string `json:"reason"`
		Transient  bool   `json:"transient"`
		Body       string `json:"body"`
		BodyBase64 string `json:"body_base64"`
		TraceID    string `json:"trace_id"`
		WorkflowID string `json:"workflow_id"`
		UIURL      string `json:"ui_url"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func listLetters(t *testing.T, h http.Handler, key, query string) letterPage {
	t.Helper()
	rec, _ := do(h, http.MethodGet, "/v1/deadletters?"+query, key, "")
	return decodeReply[letterPage](t, rec, http.StatusOK, "GET ?"+query)
}

// The caller's dead letters with their reason and trace id, the body as
// text or base64, and a link to the sync workflow of the SKU; filters and
// pages.
func TestDeadLetters_list(t *testing.T) {
	t.Parallel()
	h, _ := letterHandler(t)
	p := listLetters(t, h, "demo-key", "")
	if len(p.Items) != 2 || p.NextCursor != "" {
		t.Fatalf("page %+v", p)
	}
	a, b := p.Items[0], p.Items[1]
	if a.ID != letterA || a.BodyBase64 == "" || a.Body != "" || a.UIURL != "" {
		t.Errorf("letter A %+v", a)
	}
	if b.ID != letterB || !b.Transient || b.Body != `{"payload":{"sku":"SKU-9"}}` || b.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		!strings.HasPrefix(b.WorkflowID, "demo:sync:") || b.UIURL != "http://ui.test/namespaces/sagaflow/workflows/"+b.WorkflowID {
		t.Errorf("letter B %+v", b)
	}
	if p := listLetters(t, h, "demo-key", "reason=delivery_limit"); len(p.Items) != 1 || p.Items[0].ID != letterB {
		t.Errorf("reason filter: %+v", p)
	}
	if p := listLetters(t, h, "demo-key", "since=2026-12-02T10:30:00Z"); len(p.Items) != 1 || p.Items[0].ID != letterB {
		t.Errorf("since filter: %+v", p)
	}
	first := listLetters(t, h, "demo-key", "limit=1")
	if len(first.Items) != 1 || first.NextCursor == "" {
		t.Fatalf("first page %+v", first)
	}
	if next := listLetters(t, h, "demo-key", "limit=1&cursor="+first.NextCursor); len(next.Items) != 1 || next.Items[0].ID != letterB {
		t.Fatalf("second page %+v", next)
	}
}

// Every bad filter value is a 400 naming its field, and reaches no store.
func TestDeadLetters_bad_filter_is_400_naming_the_field(t *testing.T) {
	t.Parallel()
	h, b := letterHandler(t)
	bad := []struct{ name, field, value string }{
		{"reason_nul", "reason", "invalid\x00"},
		{"reason_control", "reason", "inva\x1blid"},
		{"reason_invalid_utf8", "reason", "inv\xffalid"},
		{"reason_huge", "reason", strings.Repeat("r", 10_000)},
		{"reason_unknown", "reason", "poison"},
		{"reason_case", "reason", "INVALID"},
		{"since_nul", "since", "2026-12-01T00:00:00Z\x00"},
		{"since_control", "since", "2026-12-01T00:00:00Z\n"},
		{"since_invalid_utf8", "since", "\xff2026-12-01T00:00:00Z"},
		{"since_huge", "since", strings.Repeat("9", 10_000)},
		{"since_no_zone", "since", "2026-12-01T00:00:00"},
		{"since_garbage", "since", "yesterday"},
		{"limit_zero", "limit", "0"},
		{"limit_huge", "limit", "1001"},
		{"cursor_garbage", "cursor", "not-a-cursor"},
	}
	for _, tt := range bad {
		rec, e := do(h, http.MethodGet, "/v1/deadletters?"+url.Values{tt.field: {tt.value}}.Encode(), "demo-key", "")
		if rec.Code != http.StatusBadRequest || !namesField(e, tt.field) {
			t.Errorf("GET %s: %d %s, want 400 naming %s", tt.name, rec.Code, rec.Body, tt.field)
		}
		if tt.field == "limit" || tt.field == "cursor" {
			continue
		}
		body, _ := json.Marshal(map[string]string{tt.field: tt.value})
		field := tt.field
		if !utf8.ValidString(tt.value) {
			body, field = []byte(`{"`+tt.field+`":"`+tt.value+`"}`), "body"
		}
		rec, e = do(h, http.MethodPost, "/v1/deadletters/replay", "demo-key", string(body))
		if rec.Code != http.StatusBadRequest || !namesField(e, field) {
			t.Errorf("replay %s: %d %s, want 400 naming %s", tt.name, rec.Code, rec.Body, field)
		}
	}
	many := make([]string, MaxReplay+1)
	for i := range many {
		many[i] = letterA
	}
	manyIDs, _ := json.Marshal(map[string]any{"ids": many})
	for _, tt := range []struct{ name, body, field string }{
		{"empty", `{}`, "all"},
		{"all_with_filter", `{"all":true,"reason":"invalid"}`, "all"},
		{"all_with_ids", `{"all":true,"ids":["` + letterA + `"]}`, "all"},
		{"id_not_uuid", `{"ids":["nope"]}`, "ids[0]"},
		{"id_uppercase", `{"ids":["` + letterA + `","` + strings.ToUpper(chanA) + `"]}`, "ids[1]"},
		{"id_nul", `{"ids":["` + letterA[:35] + `\u0000"]}`, "ids[0]"},
		{"ids_too_many", string(manyIDs), "ids"},
		{"ids_not_a_list", `{"ids":"` + letterA + `"}`, "ids"},
		{"unknown_field", `{"all":true,"force":1}`, "body"},
	} {
		rec, e := do(h, http.MethodPost, "/v1/deadletters/replay", "demo-key", tt.body)
		if rec.Code != http.StatusBadRequest || !namesField(e, tt.field) {
			t.Errorf("replay %s: %d %s, want 400 naming %s", tt.name, rec.Code, rec.Body, tt.field)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.calls != 0 {
		t.Fatalf("bad input reached the store %d times", b.calls)
	}
}

type replayAnswer struct {
	Replayed    int      `json:"replayed"`
	IDs         []string `json:"ids"`
	More        bool     `json:"more"`
	NotReplayed []string `json:"not_replayed"`
}

func replay(t *testing.T, h http.Handler, key, body string) replayAnswer {
	t.Helper()
	rec, _ := do(h, http.MethodPost, "/v1/deadletters/replay", key, body)
	return decodeReply[replayAnswer](t, rec, http.StatusOK, "replay "+body)
}

// A replay by ids or by filter publishes what it selects; again, nothing.
func TestDeadLetters_replay_by_ids_or_filter_once(t *testing.T) {
	t.Parallel()
	h, b := letterHandler(t)
	if a := replay(t, h, "demo-key", `{"reason":"delivery_limit"}`); a.Replayed != 1 || a.IDs[0] != letterB || a.More {
		t.Fatalf("by reason: %+v", a)
	}
	if a := replay(t, h, "demo-key", `{"ids":["`+letterA+`","`+letterB+`"]}`); a.Replayed != 1 || a.IDs[0] != letterA ||
		fmt.Sprint(a.NotReplayed) != "["+letterB+"]" {
		t.Fatalf("by ids: %+v, want A replayed and B (replayed already) not", a)
	}
	if a := replay(t, h, "demo-key", `{"all":true}`); a.Replayed != 0 {
		t.Fatalf("all after both: %+v", a)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if fmt.Sprint(b.published) != "["+letterB+" "+letterA+"]" {
		t.Fatalf("published %v, want each once", b.published)
	}
}

// Tenant acme neither sees nor replays demo's dead letters.
func TestDeadLetters_other_tenant_sees_and_replays_nothing(t *testing.T) {
	t.Parallel()
	h, b := letterHandler(t)
	if p := listLetters(t, h, "acme-key", ""); len(p.Items) != 0 {
		t.Fatalf("acme sees %+v", p.Items)
	}
	if a := replay(t, h, "acme-key", `{"ids":["`+letterA+`"]}`); a.Replayed != 0 || len(a.NotReplayed) != 1 {
		t.Fatalf("acme replayed demo's letter: %+v", a)
	}
	if a := replay(t, h, "acme-key", `{"all":true}`); a.Replayed != 0 {
		t.Fatalf("acme's replay of all: %+v", a)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.published) != 0 {
		t.Fatalf("published %v for acme", b.published)
	}
}
