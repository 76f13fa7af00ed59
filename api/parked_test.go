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

	"go.temporal.io/sdk/client"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
)

// parkedLot is an in-memory parking lot per tenant schema.
type parkedLot struct {
	CatalogStore // the other methods are not called
	items        []catalog.ParkedItem
}

func (p *parkedLot) ParkedPage(_ context.Context, f catalog.ParkedFilter, limit int, afterSince time.Time, afterID string) ([]catalog.ParkedItem, error) {
	return keysetPage(p.items, f.Matches, func(it catalog.ParkedItem) (time.Time, string) { return it.Since, it.ID },
		limit, afterSince, afterID), nil
}

// keysetPage is what the stores' keyset pages answer, over items in order:
// at most limit of those matches keeps that come after the cursor (afterAt,
// afterID) by key, all from the start when afterAt is zero.
func keysetPage[T any](items []T, matches func(T) bool, key func(T) (time.Time, string), limit int, afterAt time.Time, afterID string) []T {
	var out []T
	for _, it := range items {
		at, id := key(it)
		if !matches(it) || !afterAt.IsZero() && (at.Before(afterAt) || at.Equal(afterAt) && id <= afterID) {
			continue
		}
		out = append(out, it)
		if len(out) == limit {
			break
		}
	}
	return out
}

func (p *parkedLot) ParkedItem(_ context.Context, id string) (catalog.ParkedItem, error) {
	for _, it := range p.items {
		if it.ID == id {
			return it, nil
		}
	}
	return catalog.ParkedItem{}, catalog.ErrNotFound
}

// signals records the signals sent with SignalWithStartWorkflow; the other
// methods of client.Client are not called.
type signals struct {
	client.Client
	mu   sync.Mutex
	sent []sentSignal
}

type sentSignal struct {
	workflowID, name string
	arg              any
}

func (s *signals) SignalWithStartWorkflow(_ context.Context, id, name string, arg any, _ client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, sentSignal{id, name, arg})
	return nil, nil
}

func (s *signals) actions() []workflows.ParkingAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []workflows.ParkingAction
	for _, sg := range s.sent {
		if a, ok := sg.arg.(workflows.ParkingAction); ok && sg.name == workflows.SignalParking {
			out = append(out, a)
		}
	}
	return out
}

// twoTenants resolves demo-key to demo and acme-key to acme.
type twoTenants struct{}

func (twoTenants) TenantByKeyHash(_ context.Context, h tenant.KeyHash) (tenant.Tenant, tenant.KeyHash, error) {
	for _, t := range []tenant.Tenant{{Name: "demo", Schema: "tenant_demo"}, {Name: "acme", Schema: "tenant_acme"}} {
		if h == tenant.HashKey(t.Name+"-key") {
			return t, h, nil
		}
	}
	return tenant.Tenant{}, tenant.KeyHash{}, tenant.ErrNotFound
}

const (
	parkedA = "11111111-1111-4111-8111-111111111111"
	parkedB = "22222222-2222-4222-8222-222222222222"
	chanA   = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	chanB   = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
)

// parkedHandler serves tenant demo's lot (two items) and acme's (empty).
func parkedHandler(t *testing.T) (http.Handler, *signals, map[string]*parkedLot) {
	t.Helper()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	lots := map[string]*parkedLot{
		"tenant_demo": {items: []catalog.ParkedItem{
			{ID: parkedA, SKU: "SKU-1", ChannelID: chanA, Market: "shopwave", Version: 3, Error: "503", Attempts: 12, Since: at, WorkflowID: "demo:sync:000", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
			{ID: parkedB, SKU: "SKU-2", ChannelID: chanB, Market: "souk", Version: 1, Error: "429", Attempts: 12, Since: at.Add(time.Hour)},
		}},
		"tenant_acme": {},
	}
	sig := &signals{}
	h := testHandler(t, Deps{
		Temporal:     sig,
		Tenants:      twoTenants{},
		Catalog:      func(schema string) CatalogStore { return lots[schema] },
		Markets:      []MarketInfo{{Name: "shopwave"}, {Name: "souk"}, {Name: "bazaar"}},
		Sync:         SyncConfig{Shards: 2},
		Ops:          OpsConfig{UIURL: "http://ui.test:8233/", Namespace: "sagaflow"},
		MaxBodyBytes: 64 << 10,
	})
	return h, sig, lots
}

// /v1/parked is the parking lot's name and /v1/dlq its alias: the same
// handlers, the same answers, the same signals.
func TestParked_dlq_is_an_alias_of_parked(t *testing.T) {
	t.Parallel()
	h, sig, _ := parkedHandler(t)
	parked, _ := do(h, http.MethodGet, "/v1/parked", "demo-key", "")
	dlq, _ := do(h, http.MethodGet, "/v1/dlq", "demo-key", "")
	if parked.Code != http.StatusOK || dlq.Code != http.StatusOK {
		t.Fatalf("GET /v1/parked %d, /v1/dlq %d", parked.Code, dlq.Code)
	}
	if parked.Body.String() != dlq.Body.String() {
		t.Fatalf("GET /v1/parked and /v1/dlq differ:\n%s\n%s", parked.Body, dlq.Body)
	}
	for _, prefix := range []string{"/v1/parked/", "/v1/dlq/"} {
		for _, action := range []string{workflows.ParkingRetry, workflows.ParkingDiscard} {
			if rec, _ := do(h, http.MethodPost, prefix+parkedA+"/"+action, "demo-key", ""); rec.Code != http.StatusAccepted {
				t.Fatalf("POST %s%s/%s = %d %s", prefix, parkedA, action, rec.Code, rec.Body)
			}
		}
	}
	acts := sig.actions()
	want := []string{workflows.ParkingRetry, workflows.ParkingDiscard, workflows.ParkingRetry, workflows.ParkingDiscard}
	var got []string
	for _, a := range acts {
		if a.ID != parkedA || a.SKU != "SKU-1" || a.Version != 3 {
			t.Fatalf("signalled %+v, want item %s", a, parkedA)
		}
		got = append(got, a.Action)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("actions %v, want %v", got, want)
	}
}

// badParkedFilters are bad values of each filter field and the field the
// 400 must name.
var badParkedFilters = []struct {
	name, field, value string
}{
	{"market_nul", "market", "shop\x00wave"},
	{"market_control", "market", "shop\x07wave"},
	{"market_newline", "market", "shopwave\r\nX: 1"},
	{"market_invalid_utf8", "market", "shop\xffwave"},
	{"market_huge", "market", strings.Repeat("m", 10_000)},
	{"market_unknown", "market", "amazon"},
	{"channel_nul", "channel", chanA[:10] + "\x00" + chanA[11:]},
	{"channel_control", "channel", "\x1b[31m"},
	{"channel_invalid_utf8", "channel", "\xc3\x28"},
	{"channel_huge", "channel", strings.Repeat("a", 10_000)},
	{"channel_uppercase", "channel", strings.ToUpper(chanA)},
	{"channel_urn", "channel", "urn:uuid:" + chanA},
	{"channel_not_an_id", "channel", "channel-1"},
	{"sku_nul", "sku", "SKU\x00-1"},
	{"sku_control", "sku", "SKU\x7f"},
	{"sku_invalid_utf8", "sku", "SKU-\xff"},
	{"sku_huge", "sku", strings.Repeat("S", 65)},
	{"sku_space", "sku", "SKU 1"},
	{"since_nul", "since", "2026-12-01T00:00:00Z\x00"},
	{"since_invalid_utf8", "since", "2026-12-01T00:00:00\xffZ"},
	{"since_huge", "since", strings.Repeat("2", 10_000)},
	{"since_no_zone", "since", "2026-12-01T00:00:00"},
	{"since_date_only", "since", "2026-12-01"},
	{"since_unix", "since", "1764547200"},
	{"since_month_13", "since", "2026-13-01T00:00:00Z"},
}

// Every bad filter value of GET /v1/parked (and its alias) is a 400 that
// names the field, and reaches no store.
func TestParked_list_bad_filter_is_400_naming_the_field(t *testing.T) {
	t.Parallel()
	h, _, _ := parkedHandler(t)
	for _, tt := range badParkedFilters {
		for _, path := range []string{"/v1/parked", "/v1/dlq"} {
			q := url.Values{tt.field: {tt.value}}.Encode()
			rec, e := do(h, http.MethodGet, path+"?"+q, "demo-key", "")
			if rec.Code != http.StatusBadRequest || e.Error.Code != "bad_request" || !namesField(e, tt.field) {
				t.Errorf("%s %s: %d %s, want 400 naming %s", tt.name, path, rec.Code, rec.Body, tt.field)
			}
		}
	}
}

func namesField(e errorBody, field string) bool {
	for _, f := range e.Error.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// Each filter keeps only what it selects.
func TestParked_list_filters(t *testing.T) {
	t.Parallel()
	h, _, _ := parkedHandler(t)
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{parkedA, parkedB}},
		{"market=souk", []string{parkedB}},
		{"market=bazaar", nil},
		{"channel=" + chanA, []string{parkedA}},
		{"sku=SKU-2", []string{parkedB}},
		{"since=2026-12-01T10:30:00Z", []string{parkedB}},
		{"since=2026-12-01T19:00:00%2B09:00", []string{parkedA, parkedB}},
		{"market=shopwave&sku=SKU-2", nil},
	}
	for _, tt := range tests {
		rec, _ := do(h, http.MethodGet, "/v1/parked?"+tt.query, "demo-key", "")
		var body struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("?%s: %d %s", tt.query, rec.Code, rec.Body)
		}
		var got []string
		for _, it := range body.Items {
			got = append(got, it.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("?%s: %v, want %v", tt.query, got, tt.want)
		}
	}
}

type bulkAnswer struct {
	Signalled  int    `json:"signalled"`
	Matched    int    `json:"matched"`
	More       bool   `json:"more"`
	NextCursor string `json:"next_cursor"`
}

func bulk(t *testing.T, h http.Handler, key, path, body string) bulkAnswer {
	t.Helper()
	rec, _ := do(h, http.MethodPost, path, key, body)
	return decodeReply[bulkAnswer](t, rec, http.StatusAccepted, "POST "+path+" "+body)
}

// A bulk action signals what its filter selects, through the single-item
// signal; an empty filter needs {"all":true}.
func TestParked_bulk_signals_what_the_filter_selects(t *testing.T) {
	t.Parallel()
	h, sig, _ := parkedHandler(t)
	for _, body := range []string{`{}`, `{"all":false}`, `{"market":""}`} {
		rec, e := do(h, http.MethodPost, "/v1/parked/retry", "demo-key", body)
		if rec.Code != http.StatusBadRequest || !namesField(e, "all") {
			t.Fatalf("empty filter %s: %d %s, want 400 naming all", body, rec.Code, rec.Body)
		}
	}
	if rec, e := do(h, http.MethodPost, "/v1/parked/retry", "demo-key", `{"all":true,"market":"souk"}`); rec.Code != http.StatusBadRequest || !namesField(e, "all") {
		t.Fatalf("all with a filter: %d %s, want 400 naming all", rec.Code, rec.Body)
	}
	if n := len(sig.actions()); n != 0 {
		t.Fatalf("a refused call signalled %d items", n)
	}
	if a := bulk(t, h, "demo-key", "/v1/parked/discard", `{"market":"souk"}`); a.Signalled != 1 || a.More {
		t.Fatalf("market=souk: %+v, want 1 signalled", a)
	}
	if acts := sig.actions(); len(acts) != 1 || acts[0].ID != parkedB || acts[0].Action != workflows.ParkingDiscard {
		t.Fatalf("signalled %+v, want a discard of %s", acts, parkedB)
	}
	if a := bulk(t, h, "demo-key", "/v1/dlq/retry", `{"all":true}`); a.Signalled != 2 || a.More {
		t.Fatalf("all through the alias: %+v, want 2 signalled", a)
	}
	sig.mu.Lock()
	defer sig.mu.Unlock()
	for _, s := range sig.sent {
		if !strings.HasPrefix(s.workflowID, "demo:sync:") {
			t.Fatalf("signalled workflow %s, want one of demo's shards", s.workflowID)
		}
	}
}

// A bulk action signals at most MaxBulkParked items a call and says when
// more remain; the cursor goes on after them, so each item is signalled
// once.
func TestParked_bulk_caps_each_call_and_goes_on_with_the_cursor(t *testing.T) {
	t.Parallel()
	h, sig, lots := parkedHandler(t)
	lot := lots["tenant_demo"]
	base := lot.items[1].Since
	for i := range MaxBulkParked + 5 {
		lot.items = append(lot.items, catalog.ParkedItem{ID: fmt.Sprintf("33333333-3333-4333-8333-%012d", i), SKU: fmt.Sprintf("S-%d", i),
			ChannelID: chanB, Market: "souk", Version: 1, Since: base.Add(time.Duration(i+1) * time.Second)})
	}
	first := bulk(t, h, "demo-key", "/v1/parked/retry", `{"market":"souk"}`)
	if first.Signalled != MaxBulkParked || !first.More || first.NextCursor == "" {
		t.Fatalf("first call: %+v, want %d signalled and more", first, MaxBulkParked)
	}
	second := bulk(t, h, "demo-key", "/v1/parked/retry", `{"market":"souk","cursor":"`+first.NextCursor+`"}`)
	if second.Signalled != 6 || second.More || second.NextCursor != "" {
		t.Fatalf("second call: %+v, want the 6 left and no more", second)
	}
	seen := map[string]bool{}
	for _, a := range sig.actions() {
		if seen[a.ID] {
			t.Fatalf("item %s signalled twice", a.ID)
		}
		seen[a.ID] = true
	}
	if len(seen) != MaxBulkParked+6 {
		t.Fatalf("%d items signalled, want %d", len(seen), MaxBulkParked+6)
	}
}

// Every bad filter value of a bulk action is a 400 naming the field (the
// body as a whole for invalid UTF-8, which JSON cannot carry), and nothing
// is signalled.
func TestParked_bulk_bad_filter_is_400_naming_the_field(t *testing.T) {
	t.Parallel()
	h, sig, _ := parkedHandler(t)
	for _, tt := range badParkedFilters {
		field := tt.field
		body, _ := json.Marshal(map[string]string{tt.field: tt.value})
		if !utf8.ValidString(tt.value) {
			body, field = []byte(`{"`+tt.field+`":"`+tt.value+`"}`), "body"
		}
		for _, path := range []string{"/v1/parked/retry", "/v1/dlq/discard"} {
			rec, e := do(h, http.MethodPost, path, "demo-key", string(body))
			if rec.Code != http.StatusBadRequest || !namesField(e, field) {
				t.Errorf("%s %s: %d %s, want 400 naming %s", tt.name, path, rec.Code, rec.Body, field)
			}
		}
	}
	for _, body := range []string{`{"cursor":"nope","all":true}`, `{"cursor":7,"all":true}`, `{"all":"yes"}`, `{"market":"souk","x":1}`, `[]`, ``} {
		if rec, _ := do(h, http.MethodPost, "/v1/parked/retry", "demo-key", body); rec.Code != http.StatusBadRequest {
			t.Errorf("body %s: %d %s, want 400", body, rec.Code, rec.Body)
		}
	}
	if n := len(sig.actions()); n != 0 {
		t.Fatalf("bad filters signalled %d items", n)
	}
}

// Tenant acme neither sees nor retries demo's parked items, one by one or
// in bulk.
func TestParked_other_tenant_sees_and_signals_nothing(t *testing.T) {
	t.Parallel()
	h, sig, _ := parkedHandler(t)
	rec, _ := do(h, http.MethodGet, "/v1/parked", "acme-key", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"items":[]`) {
		t.Fatalf("acme's lot: %d %s, want empty", rec.Code, rec.Body)
	}
	for _, path := range []string{"/v1/parked/" + parkedA + "/retry", "/v1/dlq/" + parkedA + "/discard"} {
		if rec, _ := do(h, http.MethodPost, path, "acme-key", ""); rec.Code != http.StatusNotFound {
			t.Fatalf("acme POST %s: %d, want 404", path, rec.Code)
		}
	}
	if a := bulk(t, h, "acme-key", "/v1/parked/retry", `{"all":true}`); a.Signalled != 0 {
		t.Fatalf("acme's bulk retry signalled %d", a.Signalled)
	}
	if n := len(sig.actions()); n != 0 {
		t.Fatalf("acme signalled %d of demo's items", n)
	}
}

// A parked item links to its workflow's page in the Web UI and carries its
// trace id; one parked before workflow ids were kept names its shard's.
func TestParked_items_link_to_the_web_ui_with_their_trace_id(t *testing.T) {
	t.Parallel()
	h, _, _ := parkedHandler(t)
	rec, _ := do(h, http.MethodGet, "/v1/parked", "demo-key", "")
	var body struct {
		Items []struct {
			ID         string `json:"id"`
			WorkflowID string `json:"workflow_id"`
			UIURL      string `json:"ui_url"`
			TraceID    string `json:"trace_id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Items) != 2 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	a, b := body.Items[0], body.Items[1]
	if a.WorkflowID != "demo:sync:000" || a.UIURL != "http://ui.test:8233/namespaces/sagaflow/workflows/demo:sync:000" ||
		a.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("item A: %+v", a)
	}
	wantB := workflows.CatalogSyncWorkflowID("demo", catalog.Shard("SKU-2", 2))
	if b.WorkflowID != wantB || b.UIURL != "http://ui.test:8233/namespaces/sagaflow/workflows/"+wantB || b.TraceID != "" {
		t.Errorf("item B: %+v, want workflow %s", b, wantB)
	}
}
