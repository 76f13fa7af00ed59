package k8s_test

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sagaflow/sagaflow/activities"
	"github.com/sagaflow/sagaflow/api"
	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/config"
	"github.com/sagaflow/sagaflow/internal/telemetry"
	"github.com/sagaflow/sagaflow/internal/temporalclient"
	"github.com/sagaflow/sagaflow/workers"
)

// Object names the checks look for.
const (
	apiName    = "sagaflow-api"
	workerName = "sagaflow-worker"
	migrate    = "sagaflow-migrate"
	configName = "sagaflow-config"
	secretName = "sagaflow-secrets"
)

// defaultIsFine lists the variables of internal/config the manifests leave
// unset, with why the default suits production. Every other variable must be
// set by the ConfigMap, the Secret or a container's env: a new variable makes
// TestEnv_* fail until it is set or listed here.
var defaultIsFine = map[string]string{
	// HTTP limits and caches: the defaults are the production values.
	"SAGAFLOW_MAX_BODY_BYTES":            "1 MiB bodies are the API's contract",
	"SAGAFLOW_API_KEY_CACHE_TTL":         "a revoked key works 30s at most",
	"SAGAFLOW_HTTP_READ_HEADER_TIMEOUT":  "slow-loris bound",
	"SAGAFLOW_HTTP_READ_TIMEOUT":         "slow-loris bound",
	"SAGAFLOW_HTTP_WRITE_TIMEOUT":        "answers take less than a minute",
	"SAGAFLOW_HTTP_IDLE_TIMEOUT":         "below the usual ingress keep-alive",
	"SAGAFLOW_HTTP_MAX_HEADER_BYTES":     "64 KiB headers",
	"SAGAFLOW_WORKFLOW_STARTS_RETENTION": "a day of started rows is enough to debug",
	// Calls out: the defaults bound them already.
	"SAGAFLOW_PAYMENT_TIMEOUT":         "3s, then the outcome is looked up",
	"SAGAFLOW_MARKET_TIMEOUT":          "10s per market call",
	"SAGAFLOW_MARKET_RATE":             "each channel's own limit applies",
	"SAGAFLOW_MAX_CHANNELS_PER_TENANT": "50 channels per tenant",
	// Saga and worker tuning: per pod; scale with replicas instead.
	"SAGAFLOW_SYNC_MAX_ATTEMPTS":         "about 5 minutes of retries before parking",
	"SAGAFLOW_SYNC_BATCH":                "500 SKUs per push",
	"SAGAFLOW_SYNC_PUSH_LINGER":          "a partial push holds its channel 1s",
	"SAGAFLOW_INGEST_CONSUMERS":          "2 consumers per worker pod",
	"SAGAFLOW_INGEST_PREFETCH":           "5000 unacked per consumer, and batches up to that (the rabbitmq trigger's comment assumes it)",
	"SAGAFLOW_INGEST_FLUSH":              "200ms of coalescing",
	"SAGAFLOW_WORKER_WORKFLOW_POLLERS":   "8 pollers per task queue per pod",
	"SAGAFLOW_WORKER_ACTIVITY_POLLERS":   "8 pollers per task queue per pod",
	"SAGAFLOW_WORKER_MAX_ACTIVITIES":     "200 activities per task queue per pod",
	"SAGAFLOW_WORKER_MAX_WORKFLOW_TASKS": "100 workflow tasks per task queue per pod",
	"SAGAFLOW_COUPON_TENANT_ACTIVITIES":  "keeps one tenant from taking every slot",
	"SAGAFLOW_PPROF_ADDR":                "profiling off",
	"SAGAFLOW_OPS_STUCK_AFTER":           "a join compensating for 5 minutes is worth an operator's look",
	// Read only by 'sagaflow dev' and 'sagaflow sim', which production does not run.
	"SAGAFLOW_DEV_BIND_IP":                   "dev only",
	"SAGAFLOW_DEV_TEMPORAL_PORT":             "dev only (TEMPORAL_ADDRESS is set)",
	"SAGAFLOW_DEV_UI_PORT":                   "dev only",
	"SAGAFLOW_UI_ADDR":                       "read only by 'sagaflow ui' (make cluster); on Kubernetes the Temporal chart serves the Web UI",
	"SAGAFLOW_DATA_DIR":                      "dev only (embedded Temporal's SQLite)",
	"SAGAFLOW_SIM_PAYMENT_ADDR":              "simulators only",
	"SAGAFLOW_SIM_NOTIFY_ADDR":               "simulators only",
	"SAGAFLOW_SIM_LATENCY":                   "simulators only",
	"SAGAFLOW_SIM_DECLINE_RATE":              "simulators only",
	"SAGAFLOW_SIM_ERROR_RATE":                "simulators only",
	"SAGAFLOW_SIM_TIMEOUT_AFTER_COMMIT_RATE": "simulators only",
	"SAGAFLOW_SIM_NOTIFY_FAIL_RATE":          "simulators only",
	"SAGAFLOW_SIM_SHOPWAVE_ADDR":             "simulators only",
	"SAGAFLOW_SIM_SOUK_ADDR":                 "simulators only",
	"SAGAFLOW_SIM_BAZAAR_ADDR":               "simulators only",
	"SAGAFLOW_SIM_MARKET_ERROR_RATE":         "simulators only",
	"SAGAFLOW_SIM_MARKET_THROTTLE_RATE":      "simulators only",
}

// placeholder marks what an operator must replace before applying.
const placeholder = "REPLACE_ME"

func renderAll(t *testing.T) map[string]*manifests {
	t.Helper()
	out := map[string]*manifests{}
	for _, dir := range kustomizations {
		out[dir] = render(t, dir)
	}
	return out
}

// configVars are internal/config's variables by name, with their defaults.
func configVars() map[string]config.Var {
	out := map[string]config.Var{}
	for _, v := range config.Vars() {
		out[v.Env] = v
	}
	return out
}

// podSpecs are the pod templates of the Deployments and Jobs, by object.
func (m *manifests) podSpecs() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for n, d := range m.deployments {
		out["Deployment/"+n] = &d.Spec.Template
	}
	for n, j := range m.jobs {
		out["Job/"+n] = &j.Spec.Template
	}
	return out
}

// env is the environment a container gets from its envFrom and env.
func (m *manifests) env(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := m.configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: container %s: envFrom names ConfigMap %s, which is not rendered", m.dir, c.Name, from.ConfigMapRef.Name)
				continue
			}
			maps.Copy(out, cm.Data)
		case from.SecretRef != nil:
			s, ok := m.secrets[from.SecretRef.Name]
			if !ok {
				t.Errorf("%s: container %s: envFrom names Secret %s, which is not rendered", m.dir, c.Name, from.SecretRef.Name)
				continue
			}
			maps.Copy(out, s.StringData)
			for k, v := range s.Data {
				out[k] = string(v)
			}
		}
	}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

func (m *manifests) container(t *testing.T, deployment string) (corev1.Container, map[string]string) {
	t.Helper()
	d, ok := m.deployments[deployment]
	if !ok {
		t.Fatalf("%s: no Deployment %s", m.dir, deployment)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%s: Deployment %s has %d containers, want 1", m.dir, deployment, n)
	}
	c := d.Spec.Template.Spec.Containers[0]
	return c, m.env(t, c)
}

func portOf(t *testing.T, what, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q is not host:port: %v", what, addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("%s: port of %q: %v", what, addr, err)
	}
	return int32(n)
}

// containerPort resolves a probe's or Service's port (a number or a name)
// on c; 0 if c has no such port.
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func TestEnv_every_variable_the_manifests_set_exists_in_config(t *testing.T) {
	vars := configVars()
	for dir, m := range renderAll(t) {
		for obj, pod := range m.podSpecs() {
			for _, c := range pod.Spec.Containers {
				for name := range m.env(t, c) {
					if _, ok := vars[name]; !ok {
						t.Errorf("%s: %s container %s sets %s, which internal/config does not read", dir, obj, c.Name, name)
					}
				}
			}
		}
		for name, cm := range m.configMaps {
			for k := range cm.Data {
				if _, ok := vars[k]; !ok {
					t.Errorf("%s: ConfigMap %s has %s, which internal/config does not read", dir, name, k)
				}
			}
		}
		for name, s := range m.secrets {
			for k := range s.StringData {
				if _, ok := vars[k]; !ok {
					t.Errorf("%s: Secret %s has %s, which internal/config does not read", dir, name, k)
				}
			}
		}
	}
}

func TestEnv_every_config_variable_is_set_or_its_default_is_fine(t *testing.T) {
	vars := configVars()
	for name := range defaultIsFine {
		if _, ok := vars[name]; !ok {
			t.Errorf("defaultIsFine lists %s, which internal/config no longer has", name)
		}
	}
	for dir, m := range renderAll(t) {
		for obj, pod := range m.podSpecs() {
			for _, c := range pod.Spec.Containers {
				env := m.env(t, c)
				for name := range vars {
					_, set := env[name]
					_, fine := defaultIsFine[name]
					switch {
					case !set && !fine:
						t.Errorf("%s: %s container %s leaves %s unset: set it in the ConfigMap or Secret, or add it to defaultIsFine with the reason",
							dir, obj, c.Name, name)
					case set && fine:
						t.Errorf("%s: %s container %s sets %s, which defaultIsFine lists as left to its default: drop one", dir, obj, c.Name, name)
					}
				}
			}
		}
	}
}

// TestEnv_config_accepts_the_production_environment loads each container's
// environment with internal/config, the secrets filled in, as the process
// would at start; and shows that the placeholders alone are refused.
func TestEnv_config_accepts_the_production_environment(t *testing.T) {
	m := render(t, "overlays/production")
	for obj, pod := range m.podSpecs() {
		for _, c := range pod.Spec.Containers {
			env := m.env(t, c)
			if _, err := config.Load(environ(env), nil); err == nil || !strings.Contains(err.Error(), "SAGAFLOW_SECRET_KEYS") {
				t.Errorf("%s: with the placeholder secret key, config.Load = %v, want an error naming SAGAFLOW_SECRET_KEYS", obj, err)
			}
			// The payload keys are parsed when the Temporal client is built.
			if _, err := temporalclient.ParsePayloadKeys(env["SAGAFLOW_PAYLOAD_KEYS"]); err == nil {
				t.Errorf("%s: SAGAFLOW_PAYLOAD_KEYS %q is accepted: a forgotten placeholder must stop the process, not run in the clear", obj, env["SAGAFLOW_PAYLOAD_KEYS"])
			}
			env["SAGAFLOW_SECRET_KEYS"] = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
			cfg, err := config.Load(environ(env), nil)
			if err != nil {
				t.Errorf("%s: config.Load: %v", obj, err)
				continue
			}
			if cfg.Dev() {
				t.Errorf("%s: SAGAFLOW_ENV is %q, want production", obj, cfg.Env)
			}
			grace := pod.Spec.TerminationGracePeriodSeconds
			if grace == nil || time.Duration(*grace)*time.Second <= cfg.ShutdownTimeout {
				t.Errorf("%s: terminationGracePeriodSeconds %v must exceed SAGAFLOW_SHUTDOWN_TIMEOUT %s, or the kubelet kills work in flight",
					obj, ptrString(grace), cfg.ShutdownTimeout)
			}
		}
	}
}

func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func TestSecrets_hold_placeholders_only(t *testing.T) {
	for dir, m := range renderAll(t) {
		for name, s := range m.secrets {
			if len(s.Data) > 0 {
				t.Errorf("%s: Secret %s has data: keep placeholders in stringData", dir, name)
			}
			for k, v := range s.StringData {
				if !strings.Contains(v, placeholder) {
					t.Errorf("%s: Secret %s key %s holds a value without %s: never commit a secret", dir, name, k, placeholder)
				}
			}
		}
	}
}

func TestPorts_service_container_and_config_agree(t *testing.T) {
	vars := configVars()
	for dir, m := range renderAll(t) {
		for _, p := range []struct{ deployment, env string }{
			{apiName, "SAGAFLOW_HTTP_ADDR"}, {workerName, "SAGAFLOW_WORKER_HTTP_ADDR"},
		} {
			c, env := m.container(t, p.deployment)
			def := portOf(t, p.env+" default", vars[p.env].Default)
			if got := portOf(t, dir+" "+p.env, env[p.env]); got != def {
				t.Errorf("%s: %s sets %s to port %d, the config default is %d", dir, p.deployment, p.env, got, def)
			}
			if len(c.Ports) != 1 || c.Ports[0].ContainerPort != def {
				t.Errorf("%s: %s container ports %+v, want one port %d (%s)", dir, p.deployment, c.Ports, def, p.env)
			}
		}
		api, _ := m.container(t, apiName)
		svc, ok := m.services[apiName]
		if !ok {
			t.Fatalf("%s: no Service %s", dir, apiName)
		}
		for _, sp := range svc.Spec.Ports {
			if containerPort(api, sp.TargetPort) == 0 {
				t.Errorf("%s: Service %s port %s targets %s, which the api container does not expose", dir, apiName, sp.Name, sp.TargetPort.String())
			}
		}
		ing, ok := m.ingresses[apiName]
		if !ok {
			t.Fatalf("%s: no Ingress %s", dir, apiName)
		}
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if p.Path != "/v1" && !strings.HasPrefix(p.Path, "/v1/") {
					t.Errorf("%s: Ingress path %q exposes more than /v1 (/metrics, /readyz stay inside)", dir, p.Path)
				}
				if p.PathType == nil || *p.PathType != "Prefix" {
					t.Errorf("%s: Ingress path %q: pathType %v, want Prefix", dir, p.Path, ptrString(p.PathType))
				}
				b := p.Backend.Service
				s, ok := m.services[b.Name]
				if !ok {
					t.Errorf("%s: Ingress backend names Service %s, which is not rendered", dir, b.Name)
					continue
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}) {
					t.Errorf("%s: Ingress backend port %+v is not a port of Service %s", dir, b.Port, b.Name)
				}
			}
		}
	}
}

// handlers are what each process serves on its probe port, built as the
// processes build them, with checks that all pass.
func handlers(t *testing.T) map[string]http.Handler {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics := func() *telemetry.Metrics {
		m, err := telemetry.NewMetrics()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pass := map[string]api.Check{}
	return map[string]http.Handler{
		apiName:    api.NewHandler(api.Deps{Metrics: metrics(), Logger: log, Checks: pass}),
		workerName: app.WorkerHandler(pass, metrics(), log),
	}
}

func TestProbes_paths_are_served_on_the_container_port(t *testing.T) {
	hs := handlers(t)
	for dir, m := range renderAll(t) {
		for name, h := range hs {
			c, _ := m.container(t, name)
			for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s: %s has no HTTP %s probe", dir, name, kind)
					continue
				}
				if containerPort(c, p.HTTPGet.Port) == 0 {
					t.Errorf("%s: %s %s probe port %s is not a container port", dir, name, kind, p.HTTPGet.Port.String())
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.HTTPGet.Path, nil))
				if rec.Code != http.StatusOK {
					t.Errorf("%s: %s %s probe GET %s: the process answers %d, want 200", dir, name, kind, p.HTTPGet.Path, rec.Code)
				}
			}
			if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: %s readiness probe on %s, want /readyz (it checks the dependencies)", dir, name, c.ReadinessProbe.HTTPGet.Path)
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: %s liveness probe on %s, want /healthz (a dependency outage must not restart pods)", dir, name, c.LivenessProbe.HTTPGet.Path)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: %s has no cpu or memory request", dir, name)
			}
		}
	}
}

func TestSelectors_match_their_pods(t *testing.T) {
	for dir, m := range renderAll(t) {
		pods := map[string]labels.Set{}
		for obj, pod := range m.podSpecs() {
			pods[obj] = pod.Labels
		}
		selects := func(sel map[string]string) []string {
			var out []string
			for obj, l := range pods {
				if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(l) {
					out = append(out, obj)
				}
			}
			slices.Sort(out)
			return out
		}
		for name, d := range m.deployments {
			if got := selects(d.Spec.Selector.MatchLabels); !slices.Equal(got, []string{"Deployment/" + name}) || len(d.Spec.Selector.MatchExpressions) > 0 {
				t.Errorf("%s: Deployment %s selector %v selects %v, want its own pods only", dir, name, d.Spec.Selector, got)
			}
			for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
				if got := selects(tsc.LabelSelector.MatchLabels); !slices.Equal(got, []string{"Deployment/" + name}) {
					t.Errorf("%s: Deployment %s spreads over %v, want its own pods", dir, name, got)
				}
			}
		}
		if got := selects(m.services[apiName].Spec.Selector); !slices.Equal(got, []string{"Deployment/" + apiName}) {
			t.Errorf("%s: Service %s selects %v, want the api pods only", dir, apiName, got)
		}
		for name, pdb := range m.pdbs {
			if got := selects(pdb.Spec.Selector.MatchLabels); !slices.Equal(got, []string{"Deployment/" + name}) {
				t.Errorf("%s: PodDisruptionBudget %s selects %v, want Deployment/%s's pods", dir, name, got, name)
			}
		}
		for _, name := range []string{apiName, workerName} {
			if _, ok := m.pdbs[name]; !ok {
				t.Errorf("%s: Deployment %s has no PodDisruptionBudget", dir, name)
			}
		}
	}
}

func TestCommands_each_object_runs_its_subcommand(t *testing.T) {
	for dir, m := range renderAll(t) {
		want := map[string]string{"Deployment/" + apiName: "api", "Deployment/" + workerName: "worker", "Job/" + migrate: "migrate"}
		pods := m.podSpecs()
		for obj, sub := range want {
			pod, ok := pods[obj]
			if !ok {
				t.Errorf("%s: no %s", dir, obj)
				continue
			}
			if c := pod.Spec.Containers[0]; !slices.Equal(c.Args, []string{sub}) || len(c.Command) > 0 {
				t.Errorf("%s: %s runs %v %v, want the image's entrypoint with [%s]", dir, obj, c.Command, c.Args, sub)
			}
		}
		images := map[string]bool{}
		for _, pod := range pods {
			for _, c := range pod.Spec.Containers {
				images[c.Image] = true
			}
		}
		if len(images) != 1 {
			t.Errorf("%s: containers run %d images %v, want one (one binary, one image)", dir, len(images), slices.Collect(maps.Keys(images)))
		}
	}
}

// pollingTaskQueues are the task queues the workers poll, from the workers
// package itself (a lazy client does not connect).
func pollingTaskQueues(t *testing.T) []string {
	t.Helper()
	c, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	queues := slices.Sorted(maps.Keys(workers.New(c, &activities.Activities{}, workers.Options{})))
	if len(queues) == 0 {
		t.Fatal("the workers poll no task queue")
	}
	return queues
}

func TestKEDA_scales_the_workers_on_every_task_queue_and_the_ingest_queue(t *testing.T) {
	queues := pollingTaskQueues(t)
	for dir, m := range renderAll(t) {
		_, env := m.container(t, workerName)
		var scalers []string
		for name, so := range m.scaledObjects {
			ref := so.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" {
				t.Errorf("%s: ScaledObject %s targets %s %s, want apps/v1 Deployment", dir, name, ref.APIVersion, ref.Kind)
			}
			if _, ok := m.deployments[ref.Name]; !ok {
				t.Errorf("%s: ScaledObject %s targets Deployment %s, which is not rendered", dir, name, ref.Name)
			}
			scalers = append(scalers, ref.Name)
		}
		if !slices.Equal(scalers, []string{workerName}) {
			t.Fatalf("%s: ScaledObjects target %v, want exactly one for %s", dir, scalers, workerName)
		}
		if d := m.deployments[workerName]; d.Spec.Replicas != nil {
			t.Errorf("%s: Deployment %s sets replicas %d: KEDA owns them, and each apply would reset the count", dir, workerName, *d.Spec.Replicas)
		}
		so := m.scaledObjects[workerName]
		lo, hi := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
		if lo == nil || *lo < 1 || hi == nil || *hi < *lo {
			t.Errorf("%s: replicas %s..%s, want 1 <= min <= max: the long-lived workflows need a poller with an empty backlog", dir, ptrString(lo), ptrString(hi))
		}
		if f := so.Spec.Fallback; f == nil || lo == nil || f.Replicas < *lo {
			t.Errorf("%s: fallback %+v, want replicas at least minReplicaCount", dir, f)
		}
		var triggered []string
		var rabbit int
		for i, tr := range so.Spec.Triggers {
			known, ok := triggerMetadata[tr.Type]
			if !ok {
				t.Errorf("%s: trigger %d has type %q, want temporal or rabbitmq", dir, i, tr.Type)
				continue
			}
			for k := range tr.Metadata {
				if !slices.Contains(known, k) {
					t.Errorf("%s: %s trigger %d has metadata %q, which KEDA's %s scaler does not read", dir, tr.Type, i, k, tr.Type)
				}
			}
			switch tr.Type {
			case "temporal":
				md := tr.Metadata
				triggered = append(triggered, md["taskQueue"])
				if md["endpoint"] != env["TEMPORAL_ADDRESS"] || md["namespace"] != env["TEMPORAL_NAMESPACE"] {
					t.Errorf("%s: temporal trigger %s asks %s namespace %s; the workers use %s namespace %s",
						dir, md["taskQueue"], md["endpoint"], md["namespace"], env["TEMPORAL_ADDRESS"], env["TEMPORAL_NAMESPACE"])
				}
				if md["includeRunningWorkflowCount"] != "false" {
					t.Errorf("%s: temporal trigger %s: includeRunningWorkflowCount %q, want \"false\": the long-lived workflows would count as load for ever",
						dir, md["taskQueue"], md["includeRunningWorkflowCount"])
				}
				for _, q := range strings.Split(md["queueTypes"], ",") {
					if q != "workflow" && q != "activity" {
						t.Errorf("%s: temporal trigger %s: queueTypes %q", dir, md["taskQueue"], md["queueTypes"])
					}
				}
			case "rabbitmq":
				rabbit++
				if q := tr.Metadata["queueName"]; q != catalog.IngestQueue {
					t.Errorf("%s: rabbitmq trigger on queue %q, the ingest consumes %q", dir, q, catalog.IngestQueue)
				}
				checkRabbitAuth(t, m, tr, env)
			}
		}
		slices.Sort(triggered)
		if !slices.Equal(triggered, queues) {
			t.Errorf("%s: temporal triggers on task queues %v, the workers poll %v (one trigger each)", dir, triggered, queues)
		}
		if rabbit != 1 {
			t.Errorf("%s: %d rabbitmq triggers, want 1 on the ingest queue", dir, rabbit)
		}
	}
}

// checkRabbitAuth: the rabbitmq trigger's host comes from the same Secret
// key the processes read AMQP_URL from.
func checkRabbitAuth(t *testing.T, m *manifests, tr kedaTrigger, env map[string]string) {
	t.Helper()
	if _, inline := tr.Metadata["host"]; inline || tr.AuthenticationRef == nil {
		t.Errorf("%s: rabbitmq trigger must take its host (with the password) from a TriggerAuthentication", m.dir)
		return
	}
	ta, ok := m.triggerAuths[tr.AuthenticationRef.Name]
	if !ok {
		t.Errorf("%s: rabbitmq trigger names TriggerAuthentication %s, which is not rendered", m.dir, tr.AuthenticationRef.Name)
		return
	}
	var host bool
	for _, ref := range ta.Spec.SecretTargetRef {
		s, ok := m.secrets[ref.Name]
		if !ok {
			t.Errorf("%s: TriggerAuthentication %s names Secret %s, which is not rendered", m.dir, ta.Metadata.Name, ref.Name)
			continue
		}
		if _, ok := s.StringData[ref.Key]; !ok {
			t.Errorf("%s: TriggerAuthentication %s names key %s of Secret %s, which it lacks", m.dir, ta.Metadata.Name, ref.Key, ref.Name)
		}
		if ref.Parameter == "host" {
			host = true
			if s.StringData[ref.Key] != env["AMQP_URL"] {
				t.Errorf("%s: the rabbitmq trigger's host is not the workers' AMQP_URL", m.dir)
			}
		}
	}
	if !host {
		t.Errorf("%s: TriggerAuthentication %s gives no host parameter", m.dir, ta.Metadata.Name)
	}
}

// triggerMetadata are the metadata fields KEDA's scalers read (keda.sh
// docs 2.17-2.22: scalers/temporal and scalers/rabbitmq-queue); a typo in a
// key would otherwise be ignored silently.
var triggerMetadata = map[string][]string{
	"temporal": {"endpoint", "endpointFromEnv", "namespace", "taskQueue", "targetQueueSize", "activationTargetQueueSize",
		"queueTypes", "workerDeploymentName", "workerDeploymentBuildId", "includeRunningWorkflowCount",
		"workflowTaskQueueForCount", "minConnectTimeout", "unsafeSsl", "tlsServerName", "enableTLS", "apiKeyFromEnv"},
	"rabbitmq": {"host", "hostFromEnv", "protocol", "mode", "value", "activationValue", "queueName", "vhostName",
		"useRegex", "operation", "excludeUnacknowledged", "unsafeSsl"},
}
