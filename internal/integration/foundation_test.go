package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/tenant"
	"github.com/sagaflow/sagaflow/workflows"
)

type started struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

type workflowDoc struct {
	WorkflowID string               `json:"workflow_id"`
	RunID      string               `json:"run_id"`
	Type       string               `json:"type"`
	Status     string               `json:"status"`
	TaskQueue  string               `json:"task_queue"`
	CloseTime  *time.Time           `json:"close_time"`
	State      workflows.ProbeState `json:"state"`
}

type errorDoc struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func startProbe(t *testing.T, key string) started {
	t.Helper()
	var s started
	if code := call(t, key, http.MethodPost, "/v1/probes", map[string]any{}, &s); code != http.StatusAccepted {
		t.Fatalf("POST /v1/probes = %d", code)
	}
	return s
}

func TestProbe_runs_through_the_api_on_the_embedded_server(t *testing.T) {
	t.Parallel()
	s := startProbe(t, demoKey())
	if !strings.HasPrefix(s.WorkflowID, "demo:probe:") || s.RunID == "" {
		t.Fatalf("started = %+v", s)
	}
	var doc workflowDoc
	eventually(t, 30*time.Second, "probe completes", func() bool {
		if code := call(t, demoKey(), http.MethodGet, "/v1/workflows/"+s.WorkflowID, nil, &doc); code != http.StatusOK {
			t.Fatalf("GET workflow = %d", code)
		}
		// The state comes from a query, which a busy worker may miss once.
		return doc.Status == "COMPLETED" && doc.State.Phase == "done"
	})
	if doc.Type != "Probe" || doc.TaskQueue != workflows.TaskQueueOps || doc.RunID != s.RunID || doc.CloseTime == nil {
		t.Fatalf("workflow document = %+v", doc)
	}
	if doc.State.Phase != "done" || !doc.State.Healthy || len(doc.State.Checks) != 3 {
		t.Fatalf("state = %+v", doc.State)
	}
	for _, c := range doc.State.Checks {
		if !c.OK || c.Error != "" {
			t.Errorf("check %s failed: %s", c.Dependency, c.Error)
		}
	}
	recordHistory(t, s, "probe_healthy.json")
}

func TestWorkflow_of_another_tenant_is_not_found(t *testing.T) {
	t.Parallel()
	s := startProbe(t, demoKey())
	for _, path := range []string{
		"/v1/workflows/" + s.WorkflowID,                                       // demo's workflow, asked by acme
		"/v1/workflows/acme:probe:does-not-exist",                             // acme's namespace, no such workflow
		"/v1/workflows/" + strings.Replace(s.WorkflowID, "demo:", "acme:", 1), // same id under acme's prefix
	} {
		var e errorDoc
		if code := call(t, acmeKey(), http.MethodGet, path, nil, &e); code != http.StatusNotFound || e.Error.Code != "not_found" {
			t.Errorf("GET %s as acme = %d %+v, want 404 not_found", path, code, e)
		}
	}
	var doc workflowDoc
	if code := call(t, demoKey(), http.MethodGet, "/v1/workflows/"+s.WorkflowID, nil, &doc); code != http.StatusOK {
		t.Fatalf("owner cannot read its workflow: %d", code)
	}
}

func TestWorkflow_search_attribute_decides_the_owner(t *testing.T) {
	t.Parallel()
	// A workflow whose ID claims tenant demo but whose search attribute says
	// acme must not be shown to demo: the ID prefix alone is not trusted.
	ctx := context.Background()
	id := workflows.ProbeWorkflowID("demo", "forged-"+time.Now().Format("150405.000000"))
	_, err := stack.app.Temporal.ExecuteWorkflow(ctx, startOptions(id, "acme"), workflows.Probe,
		workflows.ProbeInput{Tenant: "acme", Schema: "tenant_acme"})
	if err != nil {
		t.Fatal(err)
	}
	if code := call(t, demoKey(), http.MethodGet, "/v1/workflows/"+id, nil, nil); code != http.StatusNotFound {
		t.Fatalf("forged id shown to demo: %d", code)
	}
}

func TestAPI_rejects_missing_and_unknown_keys(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "not-a-key"} {
		var e errorDoc
		if code := call(t, key, http.MethodPost, "/v1/probes", map[string]any{}, &e); code != http.StatusUnauthorized || e.Error.Code != "unauthenticated" {
			t.Errorf("key %q: %d %+v", key, code, e)
		}
	}
}

func TestAPI_new_tenant_key_works_at_once(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tn, err := tenant.New("it_" + strings.ToLower(time.Now().Format("150405")) + "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := stack.app.Store.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	key, _ := tenant.NewKey()
	if err := stack.app.Store.AddAPIKey(ctx, tn.Name, tenant.HashKey(key), "it"); err != nil {
		t.Fatal(err)
	}
	s := startProbe(t, key)
	if !strings.HasPrefix(s.WorkflowID, tn.Name+":") {
		t.Fatalf("workflow id %q not in tenant %s", s.WorkflowID, tn.Name)
	}
	var doc workflowDoc
	eventually(t, 30*time.Second, "new tenant's probe completes healthy", func() bool {
		call(t, key, http.MethodGet, "/v1/workflows/"+s.WorkflowID, nil, &doc)
		return doc.Status == "COMPLETED" && doc.State.Phase == "done"
	})
	if !doc.State.Healthy {
		t.Fatalf("new tenant's schema not seen by the worker: %+v", doc.State)
	}
}

func TestReadyz_and_metrics(t *testing.T) {
	t.Parallel()
	var r struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if code := call(t, "", http.MethodGet, "/readyz", nil, &r); code != http.StatusOK || r.Status != "ready" {
		t.Fatalf("readyz = %d %+v", code, r)
	}
	for _, dep := range []string{"temporal", "postgres", "redis", "rabbitmq"} {
		if r.Checks[dep] != "ok" {
			t.Errorf("readyz check %s = %q", dep, r.Checks[dep])
		}
	}
	startProbe(t, demoKey()) // so the SDK has reported something
	resp, err := http.Get(stack.api.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"sagaflow_http_requests_total", "temporal_request", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestReadyz_names_what_is_down(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer dead.Close()
	metrics, err := telemetry.NewMetrics() // a handler registers its metrics once per registry
	if err != nil {
		t.Fatal(err)
	}
	h := api.NewHandler(api.Deps{
		Temporal: stack.app.Temporal,
		Tenants:  stack.app.Store,
		Checks: map[string]api.Check{
			"postgres": stack.app.Store.Ping,
			"redis":    func(ctx context.Context) error { return dead.Ping(ctx).Err() },
		},
		Metrics:      metrics,
		Logger:       stack.app.Log,
		MaxBodyBytes: 1 << 20,
	})
	rec := newRecorder()
	h.ServeHTTP(rec, mustRequest(http.MethodGet, "/readyz"))
	var r struct {
		Status string   `json:"status"`
		Down   []string `json:"down"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || len(r.Down) != 1 || r.Down[0] != "redis" {
		t.Fatalf("readyz with redis down = %d %+v", rec.Code, r)
	}
}

// recordHistory writes the workflow's history to workflows/testdata when
// SAGAFLOW_RECORD_HISTORY is set, for the replay tests.
func recordHistory(t *testing.T, s started, name string) {
	if os.Getenv("SAGAFLOW_RECORD_HISTORY") == "" {
		return
	}
	var events []json.RawMessage
	for _, ev := range history(t, s.WorkflowID, s.RunID) {
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, b)
	}
	out, _ := json.MarshalIndent(map[string]any{"events": events}, "", "  ")
	path := filepath.Join("..", "..", "workflows", "testdata", name)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s", path)
}
