package deploy

// These tests keep deploy/observability/ in step with the code: every
// metric the alerts and the dashboard read is one the processes register,
// and Prometheus scrapes the ports the processes listen on.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/telemetry"
)

const observabilityDir = "observability"

// temporalSDKMetrics are the Temporal SDK's metrics the alerts and the
// dashboard may read: the SDK registers them on first use, so they are
// not in a fresh registry (internal/telemetry's test pins their names).
var temporalSDKMetrics = []string{
	"temporal_activity_schedule_to_start_latency_seconds",
	"temporal_workflow_task_schedule_to_start_latency_seconds",
}

// registeredMetrics are the names of every metric a sagaflow process
// registers, as the registry describes them (nothing is gathered, so no
// server is asked).
func registeredMetrics(t *testing.T) []string {
	t.Helper()
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	// As internal/app wires them.
	telemetry.NewSyncMetrics(m)
	telemetry.RegisterBreakers(m, func(func(string, string, int)) {})
	telemetry.NewCouponMetrics(m, func(context.Context, string, string) (int64, error) { return 0, nil }, time.Hour)
	telemetry.NewJoinMetrics(m)
	telemetry.NewBusMetrics(m)
	telemetry.RegisterQueues(m, nil, nil, time.Hour)
	telemetry.NewOutboxMetrics(m, nil, time.Hour)
	api.NewHandler(api.Deps{Metrics: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	descs := make(chan *prometheus.Desc)
	go func() {
		m.Registry.Describe(descs)
		close(descs)
	}()
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range descs {
		if sm := name.FindStringSubmatch(d.String()); sm != nil {
			names = append(names, sm[1])
		}
	}
	return append(names, temporalSDKMetrics...)
}

// metricRef matches the metric names of sagaflow and of the Temporal SDK
// in a PromQL expression; a crude reading, but label values and functions
// never start with these prefixes.
var metricRef = regexp.MustCompile(`\b(?:sagaflow|temporal)_[a-zA-Z0-9_]+`)

// known reports whether ref is a registered name or a histogram's series
// of one (_bucket, _sum, _count).
func known(ref string, names []string) bool {
	if slices.Contains(names, ref) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(ref, suffix); ok && slices.Contains(names, base) {
			return true
		}
	}
	return false
}

func readObservability(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(observabilityDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alertExprs are the expressions of alerts.yml, by alert name.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readObservability(t, "alerts.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashboardExprs are the expressions of the dashboard's panels, by panel
// title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	var doc struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readObservability(t, "grafana/dashboards/sagaflow.json"), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range doc.Panels {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], tg.Expr)
		}
	}
	return out
}

func TestObservability_alerts_read_registered_metrics(t *testing.T) {
	names := registeredMetrics(t)
	exprs := alertExprs(t)
	for _, want := range []string{"SagaflowParkedItemsRising", "SagaflowBusDeadLetters", "SagaflowIngestLag", "SagaflowOutboxAge",
		"SagaflowBreakerOpen", "SagaflowCouponIssueLag", "SagaflowPaymentUnknownOutcomes"} {
		if _, ok := exprs[want]; !ok {
			t.Errorf("alerts.yml has no alert %s", want)
		}
	}
	for alert, expr := range exprs {
		refs := metricRef.FindAllString(expr, -1)
		if len(refs) == 0 {
			t.Errorf("alert %s reads no sagaflow metric: %s", alert, expr)
		}
		for _, ref := range refs {
			if !known(ref, names) {
				t.Errorf("alert %s reads %s, which no sagaflow process registers", alert, ref)
			}
		}
	}
}

func TestObservability_dashboard_reads_registered_metrics(t *testing.T) {
	names := registeredMetrics(t)
	panels := dashboardExprs(t)
	if len(panels) == 0 {
		t.Fatal("the dashboard has no panel with a query")
	}
	for title, exprs := range panels {
		for _, expr := range exprs {
			for _, ref := range metricRef.FindAllString(expr, -1) {
				if !known(ref, names) {
					t.Errorf("panel %q reads %s, which no sagaflow process registers", title, ref)
				}
			}
		}
	}
}

// The check itself must fail on a name nobody registers.
func TestObservability_known_rejects_unregistered_names(t *testing.T) {
	names := []string{"sagaflow_ingest_lag_seconds"}
	for ref, want := range map[string]bool{
		"sagaflow_ingest_lag_seconds":        true,
		"sagaflow_ingest_lag_seconds_bucket": true,
		"sagaflow_ingest_lag":                false,
		"sagaflow_outbox_backlog_bucket":     false,
	} {
		if got := known(ref, names); got != want {
			t.Errorf("known(%q) = %v, want %v", ref, got, want)
		}
	}
}

// Prometheus scrapes the api and the worker on the ports they listen on by
// default and in docker-compose.yml.
func TestObservability_scrape_targets_are_the_processes_ports(t *testing.T) {
	var doc struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readObservability(t, "prometheus.yml"), &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(doc.RuleFiles, "alerts.yml") {
		t.Errorf("prometheus.yml loads rule files %q, want alerts.yml", doc.RuleFiles)
	}
	cfg, err := config.Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := project(t)
	port := func(service, env, def string) string {
		addr := def
		if s, err := p.GetService(service); err == nil {
			if v, ok := envValue(s, env); ok && v != "" {
				addr = v
			}
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s: %s=%q: %v", service, env, addr, err)
		}
		return port
	}
	want := map[string]string{
		"api":    "api:" + port("api", "SAGAFLOW_HTTP_ADDR", cfg.HTTPAddr),
		"worker": "worker:" + port("worker", "SAGAFLOW_WORKER_HTTP_ADDR", cfg.WorkerHTTPAddr),
	}
	var got []string
	for _, sc := range doc.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			got = append(got, st.Targets...)
		}
	}
	for role, target := range want {
		if !slices.Contains(got, target) {
			t.Errorf("prometheus.yml scrapes %q, want the %s at %s", got, role, target)
		}
	}
}

// docker-compose.yml mounts the files where Prometheus and Grafana look for
// them: the config with its rules beside it, the provisioning, and the
// dashboards where the provider reads them; the datasource is the compose
// Prometheus.
func TestObservability_compose_mounts_the_files_where_they_are_read(t *testing.T) {
	p := project(t)
	mounts := func(service string) map[string]string { // target → source relative to the repo
		s, err := p.GetService(service)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, v := range s.Volumes {
			rel, err := filepath.Rel(p.WorkingDir, v.Source)
			if err != nil || v.Type != "bind" {
				rel = v.Source
			}
			out[v.Target] = filepath.ToSlash(rel)
		}
		return out
	}
	prom := mounts("prometheus")
	for target, source := range map[string]string{
		"/etc/prometheus/prometheus.yml": "deploy/observability/prometheus.yml",
		"/etc/prometheus/alerts.yml":     "deploy/observability/alerts.yml", // rule_files is relative to the config
	} {
		if prom[target] != source {
			t.Errorf("prometheus mounts %q at %s, want %s", prom[target], target, source)
		}
	}
	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(readObservability(t, "grafana/provisioning/dashboards/sagaflow.yml"), &provider); err != nil {
		t.Fatal(err)
	}
	if len(provider.Providers) != 1 {
		t.Fatalf("dashboard providers %+v, want one", provider.Providers)
	}
	graf := mounts("grafana")
	if graf["/etc/grafana/provisioning"] != "deploy/observability/grafana/provisioning" {
		t.Errorf("grafana mounts %q at /etc/grafana/provisioning", graf["/etc/grafana/provisioning"])
	}
	if path := provider.Providers[0].Options.Path; graf[path] != "deploy/observability/grafana/dashboards" {
		t.Errorf("the dashboard provider reads %s, where grafana mounts %q, want deploy/observability/grafana/dashboards", path, graf[path])
	}
	var ds struct {
		Datasources []struct {
			UID string `yaml:"uid"`
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(readObservability(t, "grafana/provisioning/datasources/prometheus.yml"), &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" || ds.Datasources[0].UID != "prometheus" {
		t.Errorf("datasources %+v, want uid prometheus at http://prometheus:9090 (the dashboard's uid)", ds.Datasources)
	}
	if !strings.Contains(string(readObservability(t, "grafana/dashboards/sagaflow.json")), `"uid": "prometheus"`) {
		t.Error("the dashboard does not name the datasource uid prometheus")
	}
}
