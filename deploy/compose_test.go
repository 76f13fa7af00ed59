package deploy

// These tests load ../docker-compose.yml with the compose-spec loader (the
// library docker compose uses) and check what a user would otherwise learn at
// `docker compose up`: a missing service or port, a wrong start order or
// health check, a URL naming the wrong host or credentials, an environment
// internal/config does not know or refuses, a Dockerfile that does not build
// the binary the services run. Nothing is started; no Docker engine needed.
// dockerfile_test.go checks the Dockerfile against this file.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sagaflow/sagaflow/internal/config"
)

const (
	started   = types.ServiceConditionStarted
	healthy   = types.ServiceConditionHealthy
	completed = types.ServiceConditionCompletedSuccessfully
)

// sagaflowServices run the image built from ../Dockerfile; the value is the
// subcommand. Every service with a build section must be listed here.
var sagaflowServices = map[string]string{"migrate": "migrate", "api": "api", "worker": "worker"}

// otelVars are the standard OpenTelemetry variables the compose file sets;
// the OTLP exporter reads them itself, so internal/config does not list them.
var otelVars = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"}

// loadCompose loads ../docker-compose.yml with env as the caller's shell.
func loadCompose(env types.Mapping) (*types.Project, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("sagaflow", true) })
}

// theProject is the compose file loaded with an empty environment (it must
// not depend on the caller's shell), once, shared read-only.
var theProject = sync.OnceValues(func() (*types.Project, error) { return loadCompose(types.Mapping{}) })

func project(t *testing.T) *types.Project {
	t.Helper()
	p, err := theProject()
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: service %q: %v", name, err)
	}
	return s
}

func envValue(s types.ServiceConfig, key string) (string, bool) {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// healthcheck is the command of s's healthcheck, "" when it has none.
func healthcheck(s types.ServiceConfig) string {
	h := s.HealthCheck
	if h == nil || h.Disable || len(h.Test) < 2 || h.Test[0] == "NONE" {
		return ""
	}
	return strings.Join(h.Test[1:], " ")
}

// listenPort is the port of the address service listens on: its env value,
// or the config default when the file leaves it unset.
func listenPort(t *testing.T, s types.ServiceConfig, key, def string) string {
	t.Helper()
	addr, ok := envValue(s, key)
	if !ok || addr == "" {
		addr = def
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("service %q: %s=%q: %v", s.Name, key, addr, err)
	}
	return port
}

func defaults(t *testing.T) config.Config {
	t.Helper()
	c, err := config.Load(nil, nil)
	if err != nil {
		t.Fatalf("config defaults: %v", err)
	}
	return c
}

func TestCompose_services_exist(t *testing.T) {
	p := project(t)
	for _, name := range []string{"postgres", "redis", "rabbitmq", "temporal", "temporal-ui",
		"migrate", "api", "worker", "prometheus", "grafana", "jaeger"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %q: %v", name, err)
		}
	}
}

// ports are the host:container ports each service publishes.
var ports = map[string][]string{
	"api":         {"8080:8080"},
	"temporal":    {"7233:7233"},
	"temporal-ui": {"8233:8080"},
	"rabbitmq":    {"5672:5672", "15672:15672"},
	"prometheus":  {"9090:9090"},
	"grafana":     {"3000:3000"},
	"jaeger":      {"16686:16686", "4317:4317"},
}

func TestCompose_publishes_ports(t *testing.T) {
	p := project(t)
	for name, want := range ports {
		var got []string
		for _, pc := range service(t, p, name).Ports {
			if pc.Protocol == "" || pc.Protocol == "tcp" {
				got = append(got, fmt.Sprintf("%s:%d", pc.Published, pc.Target))
			}
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("service %q publishes %q over tcp, want %s", name, got, w)
			}
		}
	}
}

func TestCompose_start_order(t *testing.T) {
	p := project(t)
	for _, tc := range []struct{ from, to, condition string }{
		{"api", "migrate", completed},
		{"api", "redis", healthy},
		{"api", "rabbitmq", healthy},
		{"worker", "migrate", completed},
		{"worker", "temporal", started},
		{"migrate", "postgres", healthy},
		{"migrate", "temporal", started},
		{"temporal", "postgres", healthy},
		{"temporal-ui", "temporal", started},
		{"grafana", "prometheus", healthy},
	} {
		t.Run(tc.from+"_waits_for_"+tc.to, func(t *testing.T) {
			dep, ok := service(t, p, tc.from).DependsOn[tc.to]
			if !ok {
				t.Fatalf("service %q does not depend on %q", tc.from, tc.to)
			}
			if dep.Condition != tc.condition || !dep.Required {
				t.Errorf("service %q depends on %q with condition %s (required %v), want %s", tc.from, tc.to, dep.Condition, dep.Required, tc.condition)
			}
		})
	}
}

// A service waited for as healthy needs a healthcheck, or its dependents never
// start; one waited for as completed must not restart after it exits 0.
func TestCompose_conditions_can_be_met(t *testing.T) {
	p := project(t)
	for _, name := range p.ServiceNames() {
		for to, dep := range p.Services[name].DependsOn {
			target := service(t, p, to)
			switch dep.Condition {
			case healthy:
				if healthcheck(target) == "" {
					t.Errorf("service %q waits for %q to be healthy, but %q has no healthcheck", name, to, to)
				}
			case completed:
				if target.Restart != types.RestartPolicyNo && target.Restart != types.RestartPolicyOnFailure {
					t.Errorf("service %q waits for %q to complete, but %q has restart %q", name, to, to, target.Restart)
				}
			}
		}
	}
}

func TestCompose_healthchecks(t *testing.T) {
	p := project(t)
	for _, tc := range []struct{ service, want string }{
		{"postgres", "pg_isready"},
		{"redis", "redis-cli ping"},
		{"rabbitmq", "rabbitmq-diagnostics -q ping"},
		{"prometheus", "/-/ready"},
		{"api", "/healthz"},
	} {
		t.Run(tc.service, func(t *testing.T) {
			if cmd := healthcheck(service(t, p, tc.service)); !strings.Contains(cmd, tc.want) {
				t.Errorf("service %q healthcheck %q does not run %q", tc.service, cmd, tc.want)
			}
		})
	}
}

// The api listens on the port it publishes and its healthcheck calls.
func TestCompose_api_listens_where_published_and_probed(t *testing.T) {
	api := service(t, project(t), "api")
	port := listenPort(t, api, "SAGAFLOW_HTTP_ADDR", defaults(t).HTTPAddr)
	if !slices.ContainsFunc(api.Ports, func(pc types.ServicePortConfig) bool { return fmt.Sprint(pc.Target) == port }) {
		t.Errorf("api listens on %s but publishes %+v", port, api.Ports)
	}
	if cmd := healthcheck(api); !strings.Contains(cmd, ":"+port+"/") {
		t.Errorf("api listens on %s but its healthcheck %q calls another port", port, cmd)
	}
}

func TestCompose_sagaflow_services_run_the_image(t *testing.T) {
	p := project(t)
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		cmd, ok := sagaflowServices[name]
		if !ok {
			if s.Build != nil {
				t.Errorf("service %q builds an image but is not in sagaflowServices, so nothing checks it", name)
			}
			continue
		}
		t.Run(name, func(t *testing.T) {
			switch {
			case s.Build == nil:
				t.Errorf("service %q has no build section", name)
			case filepath.Clean(s.Build.Context) != p.WorkingDir:
				t.Errorf("service %q builds from %q, want the repository root", name, s.Build.Context)
			case s.Build.Dockerfile != "Dockerfile" || s.Build.Target != "":
				t.Errorf("service %q builds %s target %q, want the final stage of Dockerfile", name, s.Build.Dockerfile, s.Build.Target)
			}
			if len(s.Entrypoint) > 0 || !slices.Equal(s.Command, types.ShellCommand{cmd}) {
				t.Errorf("service %q runs entrypoint %q command %q, want the image's entrypoint with [%s]", name, s.Entrypoint, s.Command, cmd)
			}
		})
	}
}

// TestCompose_env_points_at_services: each connection setting names the
// service meant and the port it listens on (migrate and worker share api's
// environment, see below).
func TestCompose_env_points_at_services(t *testing.T) {
	p := project(t)
	for _, tc := range []struct{ service, env, scheme, hostPort string }{
		{"api", "DATABASE_URL", "postgres", "postgres:5432"},
		{"api", "REDIS_URL", "redis", "redis:6379"},
		{"api", "AMQP_URL", "amqp", "rabbitmq:5672"},
		{"api", "TEMPORAL_ADDRESS", "", "temporal:7233"},
		{"api", "OTEL_EXPORTER_OTLP_ENDPOINT", "http", "jaeger:4317"},
		{"temporal-ui", "TEMPORAL_ADDRESS", "", "temporal:7233"},
		{"temporal", "POSTGRES_SEEDS", "", "postgres"},
	} {
		value, _ := envValue(service(t, p, tc.service), tc.env)
		u, err := url.Parse(value)
		if tc.scheme == "" {
			u, err = url.Parse("//" + value)
		}
		if err != nil || u.Scheme != tc.scheme || u.Host != tc.hostPort {
			t.Errorf("service %q: %s=%q, want %s://%s", tc.service, tc.env, value, tc.scheme, tc.hostPort)
		}
	}
}

// The URLs' users, passwords and database are the ones the servers are
// initialised with; RabbitMQ admits guest only from localhost.
func TestCompose_credentials_match_servers(t *testing.T) {
	p := project(t)
	pg, rmq, temporal := service(t, p, "postgres"), service(t, p, "rabbitmq"), service(t, p, "temporal")
	env := func(s types.ServiceConfig, key string) string { v, _ := envValue(s, key); return v }
	pgUser, pgPass, pgDB := env(pg, "POSTGRES_USER"), env(pg, "POSTGRES_PASSWORD"), env(pg, "POSTGRES_DB")
	if u, p := env(temporal, "POSTGRES_USER"), env(temporal, "POSTGRES_PWD"); u != pgUser || p != pgPass {
		t.Errorf("temporal connects to postgres as %s:%s, postgres is initialised with %s:%s", u, p, pgUser, pgPass)
	}
	api := service(t, p, "api")
	db, _ := url.Parse(env(api, "DATABASE_URL"))
	if pass, _ := db.User.Password(); db.User.Username() != pgUser || pass != pgPass || db.Path != "/"+pgDB {
		t.Errorf("DATABASE_URL %s does not match postgres's POSTGRES_USER, _PASSWORD and _DB", db.Redacted())
	}
	amqp, _ := url.Parse(env(api, "AMQP_URL"))
	pass, _ := amqp.User.Password()
	if amqp.User.Username() == "guest" || amqp.User.Username() != env(rmq, "RABBITMQ_DEFAULT_USER") || pass != env(rmq, "RABBITMQ_DEFAULT_PASS") {
		t.Errorf("AMQP_URL %s does not match rabbitmq's RABBITMQ_DEFAULT_USER and _PASS (guest is refused)", amqp.Redacted())
	}
}

// migrate, api and worker must agree on every setting (namespace, database,
// prefixes): they share one environment.
func TestCompose_sagaflow_services_share_one_environment(t *testing.T) {
	p := project(t)
	want := environ(service(t, p, "api"))
	for name := range sagaflowServices {
		if got := environ(service(t, p, name)); !slices.Equal(got, want) {
			t.Errorf("service %q has environment %q, api has %q", name, got, want)
		}
	}
}

// environ is s's environment as sorted KEY=value pairs (os.Environ form).
func environ(s types.ServiceConfig) []string {
	var out []string
	for k, v := range s.Environment {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	slices.Sort(out)
	return out
}

// Every variable the sagaflow services get is one internal/config reads (or
// a standard OpenTelemetry one), and config accepts the whole set: the
// processes would refuse to start otherwise. SAGAFLOW_SECRET_KEYS comes from
// the operator's shell; it is required in production.
func TestCompose_env_is_valid_config(t *testing.T) {
	known := slices.Clone(otelVars)
	for _, v := range config.Vars() {
		known = append(known, v.Env)
	}
	key := "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	p, err := loadCompose(types.Mapping{"SAGAFLOW_SECRET_KEYS": key})
	if err != nil {
		t.Fatalf("load docker-compose.yml with SAGAFLOW_SECRET_KEYS set: %v", err)
	}
	for name := range sagaflowServices {
		s := service(t, p, name)
		for k := range s.Environment {
			if !slices.Contains(known, k) {
				t.Errorf("service %q sets %s, which internal/config does not read", name, k)
			}
		}
		c, err := config.Load(environ(s), nil)
		if err != nil {
			t.Errorf("service %q: its environment is refused by internal/config: %v", name, err)
		} else if !c.Dev() && c.SecretKeys == "" { // internal/app refuses to start then
			t.Errorf("service %q: SAGAFLOW_ENV=%s without SAGAFLOW_SECRET_KEYS", name, c.Env)
		}
	}
}

// The stores keep their data in named volumes, so it survives `docker compose
// down`; Redis (coupon stock) writes every change to its append-only file.
func TestCompose_state_survives_restarts(t *testing.T) {
	p := project(t)
	for _, tc := range []struct{ service, target string }{
		{"postgres", "/var/lib/postgresql/data"},
		{"redis", "/data"},
		{"rabbitmq", "/var/lib/rabbitmq"},
	} {
		t.Run(tc.service, func(t *testing.T) {
			s := service(t, p, tc.service)
			i := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == tc.target })
			if i < 0 || s.Volumes[i].Type != types.VolumeTypeVolume || !declared(p, s.Volumes[i].Source) {
				t.Errorf("service %q keeps no declared named volume at %s (volumes: %+v)", tc.service, tc.target, s.Volumes)
			}
		})
	}
	if cmd := strings.Join(service(t, p, "redis").Command, " "); !strings.Contains(cmd, "--appendonly yes --appendfsync always") {
		t.Errorf("redis runs %q, want --appendonly yes --appendfsync always", cmd)
	}
}

func declared(p *types.Project, volume string) bool {
	_, ok := p.Volumes[volume]
	return ok
}
