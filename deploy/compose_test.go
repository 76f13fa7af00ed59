package deploy

// These tests load ../docker-compose.yml with the compose-spec loader (the
// library docker compose itself uses) and check that the stack it describes
// can actually come up: the services exist, the ports are published, the
// start order is right, the sagaflow services build from ../Dockerfile, and
// every connection URL names a service in the file. No Docker engine is
// needed: nothing is started or built.
//
// The checks are plain functions over a *types.Project returning errors, so
// TestCompose_checks_reject_broken_documents can show that each of them does
// fail on a document that is wrong in the way it guards against.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	projectName     = "sagaflow"
	composeFileName = "docker-compose.yml"
	dockerfileName  = "Dockerfile"

	started   = types.ServiceConditionStarted
	healthy   = types.ServiceConditionHealthy
	completed = types.ServiceConditionCompletedSuccessfully
)

// repoRoot is the directory holding docker-compose.yml and Dockerfile; go test
// runs with the package directory (deploy/) as its working directory.
var repoRoot = sync.OnceValue(func() string {
	abs, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return abs
})

// ---------- expectations ----------

var expectedServices = []string{
	"postgres", "redis", "rabbitmq", "temporal", "temporal-ui", "migrate", "api", "worker",
	"prometheus", "grafana", "jaeger",
}

// sagaflowServices run the sagaflow image; the value is the subcommand.
// Every service built from the repository must be listed here.
var sagaflowServices = []struct {
	service string
	command []string
}{
	{"migrate", []string{"migrate"}},
	{"api", []string{"api"}},
	{"worker", []string{"worker"}},
}

type publishedPort struct {
	service   string
	target    uint32 // container port
	published string // host port
}

var expectedPorts = []publishedPort{
	{"api", 8080, "8080"},
	{"temporal", 7233, "7233"},
	{"temporal-ui", 8080, "8233"},
	{"rabbitmq", 5672, "5672"},
	{"rabbitmq", 15672, "15672"},
	{"prometheus", 9090, "9090"},
	{"grafana", 3000, "3000"},
	{"jaeger", 16686, "16686"},
	{"jaeger", 4317, "4317"},
}

type dependency struct {
	from, to  string
	condition string
}

func (d dependency) String() string {
	return fmt.Sprintf("%s_waits_for_%s_%s", d.from, d.to, strings.TrimPrefix(d.condition, "service_"))
}

var expectedDependencies = []dependency{
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
}

// endpoint is one connection setting of the sagaflow services.
type endpoint struct {
	env     string
	schemes []string // empty: a bare host:port
	service string   // the compose service it must name
	port    string   // the port that service listens on inside the network
}

var expectedEndpoints = []endpoint{
	{"DATABASE_URL", []string{"postgres", "postgresql"}, "postgres", "5432"},
	{"REDIS_URL", []string{"redis"}, "redis", "6379"},
	{"AMQP_URL", []string{"amqp"}, "rabbitmq", "5672"},
	{"TEMPORAL_ADDRESS", nil, "temporal", "7233"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", []string{"http"}, "jaeger", "4317"},
}

var expectedHealthchecks = []struct {
	service string
	want    string // must appear in the healthcheck command
}{
	{"postgres", "pg_isready"},
	{"redis", "redis-cli ping"},
	{"rabbitmq", "rabbitmq-diagnostics -q ping"},
	{"api", "/healthz"},
}

// Services whose data must survive `docker compose down`.
var statefulServices = []struct {
	service string
	target  string
}{
	{"postgres", "/var/lib/postgresql/data"},
	{"redis", "/data"},
	{"rabbitmq", "/var/lib/rabbitmq"},
}

// ---------- loading ----------

func loadCompose(ctx context.Context, file string, opts ...func(*loader.Options)) (*types.Project, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		// An empty environment: the file must not depend on the caller's shell.
		Environment: types.Mapping{},
	}
	opts = append([]func(*loader.Options){func(o *loader.Options) {
		o.SetProjectName(projectName, true)
	}}, opts...)
	return loader.LoadWithContext(ctx, details, opts...)
}

type loaded struct {
	project *types.Project
	err     error
}

// theProject is ../docker-compose.yml, loaded once and shared read-only.
var theProject = sync.OnceValue(func() loaded {
	p, err := loadCompose(context.Background(), filepath.Join(repoRoot(), composeFileName))
	return loaded{p, err}
})

func project(t *testing.T) *types.Project {
	t.Helper()
	l := theProject()
	if l.err != nil {
		t.Fatalf("load %s: %v", composeFileName, l.err)
	}
	return l.project
}

// ---------- checks ----------

// checkProject runs every check on p and returns all the problems found.
// Build contexts are compared with p.WorkingDir, the directory of the file.
func checkProject(p *types.Project) []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range expectedServices {
		add(checkServiceExists(p, name))
	}
	for _, pp := range expectedPorts {
		add(checkPublished(p, pp))
	}
	for _, d := range expectedDependencies {
		add(checkDependency(p, d))
	}
	errs = append(errs, checkConditionsAreBacked(p)...)
	for _, s := range sagaflowServices {
		add(checkBuildsSagaflow(p, s.service, s.command))
		for _, e := range expectedEndpoints {
			add(checkEndpoint(p, s.service, e))
		}
	}
	add(checkOnlyKnownServicesBuild(p))
	errs = append(errs, checkCredentials(p)...)
	errs = append(errs, checkTemporalPersistence(p)...)
	add(checkRedisDurable(p))
	for _, h := range expectedHealthchecks {
		add(checkHealthcheck(p, h.service, h.want))
	}
	add(checkAPIListenAddr(p))
	for _, s := range statefulServices {
		add(checkNamedVolume(p, s.service, s.target))
	}
	errs = append(errs, checkImagesPinned(p)...)
	return errs
}

func service(p *types.Project, name string) (types.ServiceConfig, error) {
	s, err := p.GetService(name)
	if err != nil {
		return s, fmt.Errorf("service %q: %w", name, err)
	}
	return s, nil
}

func checkServiceExists(p *types.Project, name string) error {
	_, err := service(p, name)
	return err
}

func checkPublished(p *types.Project, want publishedPort) error {
	s, err := service(p, want.service)
	if err != nil {
		return err
	}
	for _, port := range s.Ports {
		if port.Target == want.target && port.Published == want.published {
			if port.Protocol != "" && port.Protocol != "tcp" {
				return fmt.Errorf("service %q publishes %s:%d over %s, want tcp", want.service, want.published, want.target, port.Protocol)
			}
			return nil
		}
	}
	return fmt.Errorf("service %q does not publish host port %s to container port %d (ports: %+v)", want.service, want.published, want.target, s.Ports)
}

func checkDependency(p *types.Project, want dependency) error {
	s, err := service(p, want.from)
	if err != nil {
		return err
	}
	if _, err := service(p, want.to); err != nil {
		return fmt.Errorf("service %q depends on %q: %w", want.from, want.to, err)
	}
	dep, ok := s.DependsOn[want.to]
	if !ok {
		return fmt.Errorf("service %q does not depend on %q (want condition %s)", want.from, want.to, want.condition)
	}
	cond := dep.Condition
	if cond == "" {
		cond = started
	}
	if cond != want.condition {
		return fmt.Errorf("service %q depends on %q with condition %s, want %s", want.from, want.to, cond, want.condition)
	}
	if !dep.Required {
		return fmt.Errorf("service %q depends on %q with required: false", want.from, want.to)
	}
	return nil
}

// checkConditionsAreBacked: a service waited for as healthy needs a
// healthcheck, one waited for as completed must not be restarted on success.
func checkConditionsAreBacked(p *types.Project) []error {
	var errs []error
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		for to, dep := range s.DependsOn {
			target, err := service(p, to)
			if err != nil {
				errs = append(errs, fmt.Errorf("service %q depends on %q: %w", name, to, err))
				continue
			}
			switch dep.Condition {
			case healthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
					errs = append(errs, fmt.Errorf("service %q waits for %q to be healthy, but %q has no healthcheck", name, to, to))
				}
			case completed:
				switch target.Restart {
				case "", types.RestartPolicyNo, types.RestartPolicyOnFailure:
				default:
					errs = append(errs, fmt.Errorf("service %q waits for %q to complete, but %q has restart %q", name, to, to, target.Restart))
				}
			}
		}
	}
	return errs
}

func checkBuildsSagaflow(p *types.Project, name string, command []string) error {
	s, err := service(p, name)
	if err != nil {
		return err
	}
	if s.Build == nil {
		return fmt.Errorf("service %q has no build section; it must build from %s", name, dockerfileName)
	}
	if filepath.Clean(s.Build.Context) != filepath.Clean(p.WorkingDir) {
		return fmt.Errorf("service %q builds from context %q, want the repository root %q", name, s.Build.Context, p.WorkingDir)
	}
	if df := s.Build.Dockerfile; df != "" && df != dockerfileName && df != filepath.Join(p.WorkingDir, dockerfileName) {
		return fmt.Errorf("service %q builds with dockerfile %q, want %s", name, df, dockerfileName)
	}
	if s.Build.Target != "" {
		return fmt.Errorf("service %q builds target %q, want the final stage", name, s.Build.Target)
	}
	if len(s.Entrypoint) > 0 {
		return fmt.Errorf("service %q overrides the entrypoint with %q; the image's sagaflow entrypoint takes the subcommand", name, s.Entrypoint)
	}
	if !slices.Equal([]string(s.Command), command) {
		return fmt.Errorf("service %q runs command %q, want %q", name, s.Command, command)
	}
	return nil
}

func checkOnlyKnownServicesBuild(p *types.Project) error {
	var unknown []string
	for _, name := range p.ServiceNames() {
		if p.Services[name].Build == nil {
			continue
		}
		if !slices.ContainsFunc(sagaflowServices, func(s struct {
			service string
			command []string
		}) bool {
			return s.service == name
		}) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("services %q build an image but are not in sagaflowServices; add them so their command and environment are checked", unknown)
	}
	return nil
}

func envValue(s types.ServiceConfig, key string) (string, bool) {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// parseEndpoint returns host and port of an endpoint value; "" port means the
// URL gave none.
func parseEndpoint(e endpoint, value string) (host, port string, u *url.URL, err error) {
	if len(e.schemes) == 0 {
		host, port, err = net.SplitHostPort(value)
		return host, port, nil, err
	}
	u, err = url.Parse(value)
	if err != nil {
		return "", "", nil, err
	}
	if !slices.Contains(e.schemes, u.Scheme) {
		return "", "", nil, fmt.Errorf("scheme %q, want one of %q", u.Scheme, e.schemes)
	}
	return u.Hostname(), u.Port(), u, nil
}

func checkEndpoint(p *types.Project, name string, e endpoint) error {
	s, err := service(p, name)
	if err != nil {
		return err
	}
	value, ok := envValue(s, e.env)
	if !ok || value == "" {
		return fmt.Errorf("service %q: %s is not set", name, e.env)
	}
	host, port, _, err := parseEndpoint(e, value)
	if err != nil {
		return fmt.Errorf("service %q: %s=%q: %v", name, e.env, value, err)
	}
	if _, err := p.GetService(host); err != nil {
		return fmt.Errorf("service %q: %s=%q points at host %q, which is not a service in the file", name, e.env, value, host)
	}
	if host != e.service {
		return fmt.Errorf("service %q: %s=%q points at service %q, want %q", name, e.env, value, host, e.service)
	}
	if port != "" && port != e.port {
		return fmt.Errorf("service %q: %s=%q uses port %s, but %s listens on %s", name, e.env, value, port, e.service, e.port)
	}
	return nil
}

// checkCredentials: the URLs' users, passwords and database match what the
// servers are initialised with.
func checkCredentials(p *types.Project) []error {
	var errs []error
	pg, errPG := service(p, "postgres")
	rmq, errRMQ := service(p, "rabbitmq")
	for _, ss := range sagaflowServices {
		s, err := service(p, ss.service)
		if err != nil {
			continue // reported by checkServiceExists
		}
		if errPG == nil {
			if v, ok := envValue(s, "DATABASE_URL"); ok {
				if u, err := url.Parse(v); err == nil {
					user := u.User.Username()
					pass, _ := u.User.Password()
					wantUser, _ := envValue(pg, "POSTGRES_USER")
					if wantUser == "" {
						wantUser = "postgres"
					}
					wantPass, _ := envValue(pg, "POSTGRES_PASSWORD")
					wantDB, _ := envValue(pg, "POSTGRES_DB")
					if wantDB == "" {
						wantDB = wantUser
					}
					if user != wantUser || pass != wantPass {
						errs = append(errs, fmt.Errorf("service %q: DATABASE_URL credentials do not match POSTGRES_USER/POSTGRES_PASSWORD of service postgres", ss.service))
					}
					if db := strings.TrimPrefix(u.Path, "/"); db != wantDB {
						errs = append(errs, fmt.Errorf("service %q: DATABASE_URL names database %q, but postgres creates %q", ss.service, db, wantDB))
					}
				}
			}
		}
		if errRMQ == nil {
			if v, ok := envValue(s, "AMQP_URL"); ok {
				if u, err := url.Parse(v); err == nil {
					user := u.User.Username()
					pass, _ := u.User.Password()
					wantUser, ok := envValue(rmq, "RABBITMQ_DEFAULT_USER")
					if !ok || wantUser == "" {
						wantUser = "guest"
					}
					wantPass, ok := envValue(rmq, "RABBITMQ_DEFAULT_PASS")
					if !ok || wantPass == "" {
						wantPass = "guest"
					}
					switch {
					case user == "guest":
						errs = append(errs, fmt.Errorf("service %q: AMQP_URL uses the guest user, which RabbitMQ only admits from localhost", ss.service))
					case user != wantUser || pass != wantPass:
						errs = append(errs, fmt.Errorf("service %q: AMQP_URL credentials do not match RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS of service rabbitmq", ss.service))
					}
				}
			}
		}
	}
	return errs
}

// checkTemporalPersistence: auto-setup keeps Temporal's state in the postgres
// service, with the same credentials.
func checkTemporalPersistence(p *types.Project) []error {
	t, err := service(p, "temporal")
	if err != nil {
		return []error{err}
	}
	pg, err := service(p, "postgres")
	if err != nil {
		return []error{err}
	}
	var errs []error
	want := map[string]string{"DB": "postgres12", "DB_PORT": "5432", "POSTGRES_SEEDS": "postgres"}
	want["POSTGRES_USER"], _ = envValue(pg, "POSTGRES_USER")
	want["POSTGRES_PWD"], _ = envValue(pg, "POSTGRES_PASSWORD")
	for _, k := range []string{"DB", "DB_PORT", "POSTGRES_SEEDS", "POSTGRES_USER", "POSTGRES_PWD"} {
		if got, _ := envValue(t, k); got != want[k] {
			errs = append(errs, fmt.Errorf("service temporal: %s=%q, want %q", k, got, want[k]))
		}
	}
	if ui, err := service(p, "temporal-ui"); err == nil {
		if got, _ := envValue(ui, "TEMPORAL_ADDRESS"); got != "temporal:7233" {
			errs = append(errs, fmt.Errorf("service temporal-ui: TEMPORAL_ADDRESS=%q, want temporal:7233", got))
		}
	}
	return errs
}

func checkRedisDurable(p *types.Project) error {
	s, err := service(p, "redis")
	if err != nil {
		return err
	}
	args := []string(s.Command)
	has := func(flag, value string) bool {
		i := slices.Index(args, flag)
		return i >= 0 && i+1 < len(args) && args[i+1] == value
	}
	if !has("--appendonly", "yes") {
		return fmt.Errorf("service redis: command %q does not turn on appendonly (want --appendonly yes)", args)
	}
	if !has("--appendfsync", "always") {
		return fmt.Errorf("service redis: command %q does not set --appendfsync always", args)
	}
	return nil
}

func healthcheckCommand(s types.ServiceConfig) (string, bool) {
	h := s.HealthCheck
	if h == nil || h.Disable || len(h.Test) < 2 || h.Test[0] == "NONE" {
		return "", false
	}
	return strings.Join(h.Test[1:], " "), true
}

func checkHealthcheck(p *types.Project, name, want string) error {
	s, err := service(p, name)
	if err != nil {
		return err
	}
	cmd, ok := healthcheckCommand(s)
	if !ok {
		return fmt.Errorf("service %q has no healthcheck", name)
	}
	if !strings.Contains(cmd, want) {
		return fmt.Errorf("service %q healthcheck %q does not run %q", name, cmd, want)
	}
	return nil
}

// checkAPIListenAddr: the port the api listens on (SAGAFLOW_HTTP_ADDR) is the
// one that is published and the one its healthcheck calls.
func checkAPIListenAddr(p *types.Project) error {
	s, err := service(p, "api")
	if err != nil {
		return err
	}
	addr, ok := envValue(s, "SAGAFLOW_HTTP_ADDR")
	if !ok || addr == "" {
		addr = ":8080" // the binary's default
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("service api: SAGAFLOW_HTTP_ADDR=%q: %v", addr, err)
	}
	if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return fmt.Sprint(pc.Target) == port }) {
		return fmt.Errorf("service api listens on %s but does not publish that port", port)
	}
	if cmd, ok := healthcheckCommand(s); ok && strings.Contains(cmd, "http") && !strings.Contains(cmd, ":"+port+"/") {
		return fmt.Errorf("service api listens on %s but its healthcheck %q calls another port", port, cmd)
	}
	return nil
}

func checkNamedVolume(p *types.Project, name, target string) error {
	s, err := service(p, name)
	if err != nil {
		return err
	}
	for _, v := range s.Volumes {
		if v.Target != target {
			continue
		}
		if v.Type != types.VolumeTypeVolume || v.Source == "" {
			return fmt.Errorf("service %q mounts %s as %s %q, want a named volume", name, target, v.Type, v.Source)
		}
		if _, ok := p.Volumes[v.Source]; !ok {
			return fmt.Errorf("service %q mounts volume %q, which is not declared under volumes", name, v.Source)
		}
		return nil
	}
	return fmt.Errorf("service %q keeps no volume at %s; its data would not survive the container", name, target)
}

// checkImagesPinned: every pulled image names a tag other than latest.
func checkImagesPinned(p *types.Project) []error {
	var errs []error
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build != nil || s.Image == "" {
			continue
		}
		ref := s.Image
		if strings.Contains(ref, "@sha256:") {
			continue
		}
		last := ref[strings.LastIndex(ref, "/")+1:]
		i := strings.LastIndex(last, ":")
		if i < 0 || last[i+1:] == "latest" {
			errs = append(errs, fmt.Errorf("service %q uses image %q, which is not pinned to a tag", name, ref))
		}
	}
	return errs
}

// ---------- Dockerfile ----------

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions, joining continued
// lines and dropping comments and the parser directives.
func parseDockerfile(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(body)
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		text := strings.Join(strings.Fields(cur.String()), " ")
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		out = append(out, instruction{strings.ToUpper(cmd), args, start})
	}
	return out
}

type stage struct {
	from, name string
	body       []instruction
}

func stages(ins []instruction) []stage {
	var out []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			st := stage{}
			if len(f) > 0 {
				st.from = f[0]
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			out = append(out, st)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body = append(out[len(out)-1].body, in)
		}
	}
	return out
}

func indexOf(body []instruction, match func(instruction) bool) int {
	return slices.IndexFunc(body, match)
}

// checkDockerfile checks the Dockerfile text against what compose expects of
// the image: built from ./cmd/sagaflow, the binary as entrypoint, non-root,
// and whatever the compose healthchecks run installed.
func checkDockerfile(src string, p *types.Project) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	st := stages(parseDockerfile(src))
	if len(st) < 2 {
		return []error{fmt.Errorf("Dockerfile has %d stages, want a builder and a runtime stage", len(st))}
	}
	build, final := st[0], st[len(st)-1]

	if !strings.HasPrefix(build.from, "golang:1.26") {
		fail("builder stage is FROM %q, want golang:1.26-bookworm", build.from)
	}
	if build.name == "" {
		fail("builder stage has no name (FROM ... AS build)")
	}
	download := indexOf(build.body, func(in instruction) bool {
		return in.cmd == "RUN" && strings.Contains(in.args, "go mod download")
	})
	copyMod := indexOf(build.body, func(in instruction) bool {
		return in.cmd == "COPY" && strings.Contains(in.args, "go.mod") && strings.Contains(in.args, "go.sum")
	})
	copyAll := indexOf(build.body, func(in instruction) bool {
		f := strings.Fields(in.args)
		return in.cmd == "COPY" && len(f) >= 2 && f[len(f)-2] == "."
	})
	switch {
	case download < 0:
		fail("builder stage does not run go mod download")
	case copyMod < 0 || copyMod > download:
		fail("go mod download does not follow a COPY of go.mod and go.sum")
	case copyAll >= 0 && copyAll < download:
		fail("go mod download runs after COPY . . so it is not cached apart from the sources")
	}
	goBuild := indexOf(build.body, func(in instruction) bool {
		return in.cmd == "RUN" && strings.Contains(in.args, "go build")
	})
	if goBuild < 0 {
		fail("builder stage does not run go build")
	} else {
		args := build.body[goBuild].args
		for _, want := range []string{"./cmd/sagaflow", "-o /out/sagaflow", "-trimpath", "CGO_ENABLED=0", "-tags nodev"} {
			if !strings.Contains(args, want) {
				fail("go build (line %d) lacks %q", build.body[goBuild].line, want)
			}
		}
		if copyAll < 0 || copyAll > goBuild {
			fail("go build runs before the sources are copied (COPY . .)")
		}
	}

	if final.from != "debian:12-slim" {
		fail("runtime stage is FROM %q, want debian:12-slim", final.from)
	}
	var installed string
	for _, in := range final.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "apt-get install") {
			installed += " " + in.args
		}
	}
	if !strings.Contains(installed, "ca-certificates") {
		fail("runtime stage does not install ca-certificates")
	}
	if p != nil {
		for _, name := range p.ServiceNames() {
			s := p.Services[name]
			if s.Build == nil {
				continue
			}
			if cmd, ok := healthcheckCommand(s); ok {
				tool := strings.Fields(cmd)[0]
				if strings.HasPrefix(tool, "/usr/local/bin/sagaflow") {
					continue
				}
				if !regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(tool) + `(\s|$)`).MatchString(installed) {
					fail("service %q healthcheck runs %q, which the runtime stage does not install", name, tool)
				}
			}
		}
	}
	if i := indexOf(final.body, func(in instruction) bool {
		return in.cmd == "COPY" && strings.Contains(in.args, "--from="+build.name) &&
			strings.HasSuffix(in.args, "/out/sagaflow /usr/local/bin/sagaflow")
	}); i < 0 {
		fail("runtime stage does not COPY --from=%s /out/sagaflow /usr/local/bin/sagaflow", build.name)
	}
	last := func(cmd string) (string, bool) {
		for i := len(final.body) - 1; i >= 0; i-- {
			if final.body[i].cmd == cmd {
				return final.body[i].args, true
			}
		}
		return "", false
	}
	if u, ok := last("USER"); !ok {
		fail("runtime stage runs as root (no USER)")
	} else if user, _, _ := strings.Cut(u, ":"); user == "root" || user == "0" {
		fail("runtime stage runs as root (USER %s)", u)
	}
	jsonList := func(cmd string) []string {
		v, ok := last(cmd)
		if !ok {
			return nil
		}
		var list []string
		if err := json.Unmarshal([]byte(v), &list); err != nil {
			fail("%s %s is not in exec (JSON) form", cmd, v)
		}
		return list
	}
	if ep := jsonList("ENTRYPOINT"); !slices.Equal(ep, []string{"/usr/local/bin/sagaflow"}) {
		fail("ENTRYPOINT is %q, want [\"/usr/local/bin/sagaflow\"]", ep)
	}
	if cmd := jsonList("CMD"); !slices.Equal(cmd, []string{"api"}) {
		fail("CMD is %q, want [\"api\"]", cmd)
	}
	if e, _ := last("EXPOSE"); !slices.Contains(strings.Fields(e), "8080") {
		fail("runtime stage does not EXPOSE 8080")
	}
	return errs
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// ---------- tests on the real files ----------

func TestCompose_loads(t *testing.T) {
	t.Parallel()
	p := project(t)
	if p.Name != projectName {
		t.Errorf("project name %q, want %q", p.Name, projectName)
	}
	if regexp.MustCompile(`(?m)^version\s*:`).MatchString(readRepoFile(t, composeFileName)) {
		t.Errorf("%s has a top-level version key; the compose spec has none", composeFileName)
	}
	if _, ok := p.Extensions["x-sagaflow-env"]; !ok {
		t.Errorf("%s has no x-sagaflow-env extension for the shared environment", composeFileName)
	}
}

func TestCompose_all_checks_pass(t *testing.T) {
	t.Parallel()
	for _, err := range checkProject(project(t)) {
		t.Error(err)
	}
}

func TestCompose_has_every_service(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, name := range expectedServices {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := checkServiceExists(p, name); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCompose_publishes_ports(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, pp := range expectedPorts {
		t.Run(fmt.Sprintf("%s_%s", pp.service, pp.published), func(t *testing.T) {
			t.Parallel()
			if err := checkPublished(p, pp); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCompose_dependencies(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, d := range expectedDependencies {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			if err := checkDependency(p, d); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("conditions_are_backed", func(t *testing.T) {
		t.Parallel()
		for _, err := range checkConditionsAreBacked(p) {
			t.Error(err)
		}
	})
}

func TestCompose_api_waits_for_migrate(t *testing.T) {
	t.Parallel()
	p := project(t)
	if err := checkDependency(p, dependency{"api", "migrate", completed}); err != nil {
		t.Fatal(err)
	}
	m, err := service(p, "migrate")
	if err != nil {
		t.Fatal(err)
	}
	if m.Restart != types.RestartPolicyNo {
		t.Errorf("migrate has restart %q, want %q: it is a one-shot job", m.Restart, types.RestartPolicyNo)
	}
}

func TestCompose_sagaflow_services_build_repo_dockerfile(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, s := range sagaflowServices {
		t.Run(s.service, func(t *testing.T) {
			t.Parallel()
			if err := checkBuildsSagaflow(p, s.service, s.command); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("no_other_service_builds", func(t *testing.T) {
		t.Parallel()
		if err := checkOnlyKnownServicesBuild(p); err != nil {
			t.Error(err)
		}
	})
}

func TestCompose_sagaflow_env_points_at_services(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, s := range sagaflowServices {
		for _, e := range expectedEndpoints {
			t.Run(s.service+"_"+e.env, func(t *testing.T) {
				t.Parallel()
				if err := checkEndpoint(p, s.service, e); err != nil {
					t.Error(err)
				}
			})
		}
	}
	t.Run("credentials_match_servers", func(t *testing.T) {
		t.Parallel()
		for _, err := range checkCredentials(p) {
			t.Error(err)
		}
	})
	t.Run("temporal_persists_in_postgres", func(t *testing.T) {
		t.Parallel()
		for _, err := range checkTemporalPersistence(p) {
			t.Error(err)
		}
	})
	t.Run("namespace", func(t *testing.T) {
		t.Parallel()
		for _, s := range sagaflowServices {
			sc, err := service(p, s.service)
			if err != nil {
				t.Fatal(err)
			}
			if ns, _ := envValue(sc, "TEMPORAL_NAMESPACE"); ns != "" && ns != "sagaflow" {
				t.Errorf("service %q: TEMPORAL_NAMESPACE=%q, want sagaflow (the one migrate registers)", s.service, ns)
			}
		}
	})
}

func TestCompose_redis_appendonly(t *testing.T) {
	t.Parallel()
	if err := checkRedisDurable(project(t)); err != nil {
		t.Error(err)
	}
}

func TestCompose_healthchecks(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, h := range expectedHealthchecks {
		t.Run(h.service, func(t *testing.T) {
			t.Parallel()
			if err := checkHealthcheck(p, h.service, h.want); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("api_listen_addr", func(t *testing.T) {
		t.Parallel()
		if err := checkAPIListenAddr(p); err != nil {
			t.Error(err)
		}
	})
}

func TestCompose_state_in_named_volumes(t *testing.T) {
	t.Parallel()
	p := project(t)
	for _, s := range statefulServices {
		t.Run(s.service, func(t *testing.T) {
			t.Parallel()
			if err := checkNamedVolume(p, s.service, s.target); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCompose_images_pinned(t *testing.T) {
	t.Parallel()
	for _, err := range checkImagesPinned(project(t)) {
		t.Error(err)
	}
}

func TestDockerfile_builds_cmd_sagaflow(t *testing.T) {
	t.Parallel()
	for _, err := range checkDockerfile(readRepoFile(t, dockerfileName), project(t)) {
		t.Error(err)
	}
}

// TestDockerfile_build_target_is_main_package: once cmd/sagaflow exists it is
// a main package (skipped until then).
func TestDockerfile_build_target_is_main_package(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(), "cmd", "sagaflow")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, "_test.go") })
	if len(files) == 0 {
		t.Skipf("%s has no Go files yet", dir)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if af.Name.Name != "main" {
			t.Errorf("%s is package %s, want main", f, af.Name.Name)
		}
	}
}

func TestDockerignore_excludes_local_state(t *testing.T) {
	t.Parallel()
	var patterns []string
	for _, line := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/"))
		}
	}
	for _, want := range []string{".git", ".data", "bin"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	// The build needs these; a pattern matching them would break it.
	for _, need := range []string{"go.mod", "go.sum", "cmd", "cmd/sagaflow", "internal"} {
		for _, pat := range patterns {
			if strings.HasPrefix(pat, "!") {
				continue
			}
			if ok, _ := filepath.Match(pat, need); ok {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", pat, need)
			}
		}
	}
}

// ---------- the checks can fail ----------

// model is the real compose file as a plain map, paths left relative, so a
// mutated copy written elsewhere still means the same thing.
var model = sync.OnceValues(func() (map[string]any, error) {
	file := filepath.Join(repoRoot(), composeFileName)
	return loader.LoadModelWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  repoRoot(),
		ConfigFiles: []types.ConfigFile{{Filename: file}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName(projectName, true)
		o.ResolvePaths = false
	})
})

// freshModel returns a deep copy of model that the caller may change.
func freshModel(t *testing.T) map[string]any {
	t.Helper()
	m, err := model()
	if err != nil {
		t.Fatalf("load model of %s: %v", composeFileName, err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// dig walks nested maps by key and fails the test when one is missing, so a
// mutation can never silently miss its target.
func dig(t *testing.T, m map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := m
	for i, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("model has no map at %s", strings.Join(path[:i+1], "."))
		}
		cur = next
	}
	return cur
}

func TestCompose_checks_reject_broken_documents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(t *testing.T, m map[string]any) // changes a copy of the real model
		raw    string                               // or: this document verbatim
		// wantLoadErr: the loader itself must refuse the document.
		wantLoadErr bool
		// wantProblem: a substring of one of the errors checkProject returns.
		wantProblem string
	}{
		{
			name:   "unchanged_copy_passes",
			mutate: func(*testing.T, map[string]any) {},
		},
		{
			name: "api_does_not_wait_for_migrate",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "api", "depends_on", "migrate")["condition"] = started
			},
			wantProblem: `service "api" depends on "migrate" with condition service_started, want service_completed_successfully`,
		},
		{
			name: "migrate_restarts_forever",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "migrate")["restart"] = "unless-stopped"
			},
			wantProblem: `waits for "migrate" to complete, but "migrate" has restart "unless-stopped"`,
		},
		{
			name: "worker_missing",
			mutate: func(t *testing.T, m map[string]any) {
				delete(dig(t, m, "services"), "worker")
			},
			wantProblem: `service "worker"`,
		},
		{
			name: "temporal_port_not_published",
			mutate: func(t *testing.T, m map[string]any) {
				delete(dig(t, m, "services", "temporal"), "ports")
			},
			wantProblem: `service "temporal" does not publish host port 7233`,
		},
		{
			name: "redis_without_appendonly",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "redis")["command"] = []string{"redis-server"}
			},
			wantProblem: "does not turn on appendonly",
		},
		{
			name: "database_url_names_missing_service",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "api", "environment")["DATABASE_URL"] = "postgres://sagaflow:sagaflow@db:5432/sagaflow"
			},
			wantProblem: `points at host "db", which is not a service in the file`,
		},
		{
			name: "amqp_url_as_guest",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "worker", "environment")["AMQP_URL"] = "amqp://guest:guest@rabbitmq:5672/"
			},
			wantProblem: "guest user",
		},
		{
			name: "temporal_address_unset",
			mutate: func(t *testing.T, m map[string]any) {
				delete(dig(t, m, "services", "migrate", "environment"), "TEMPORAL_ADDRESS")
			},
			wantProblem: `service "migrate": TEMPORAL_ADDRESS is not set`,
		},
		{
			name: "worker_runs_api",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "worker")["command"] = []string{"api"}
			},
			wantProblem: `service "worker" runs command`,
		},
		{
			name: "api_builds_elsewhere",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "api", "build")["context"] = "./deploy"
			},
			wantProblem: `service "api" builds from context`,
		},
		{
			name: "healthy_without_healthcheck",
			mutate: func(t *testing.T, m map[string]any) {
				delete(dig(t, m, "services", "rabbitmq"), "healthcheck")
			},
			wantProblem: `waits for "rabbitmq" to be healthy, but "rabbitmq" has no healthcheck`,
		},
		{
			name: "unpinned_image",
			mutate: func(t *testing.T, m map[string]any) {
				dig(t, m, "services", "temporal")["image"] = "temporalio/auto-setup:latest"
			},
			wantProblem: "not pinned",
		},
		{
			name: "depends_on_undefined_service",
			raw: `services:
  api:
    image: sagaflow:local
    depends_on:
      migrate:
        condition: service_completed_successfully
`,
			wantLoadErr: true,
		},
		{
			name: "unknown_service_attribute",
			raw: `services:
  redis:
    image: redis:7
    comand: ["redis-server", "--appendonly", "yes"]
`,
			wantLoadErr: true,
		},
		{
			name:        "not_yaml",
			raw:         "services:\n  api: [unterminated\n",
			wantLoadErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := []byte(tc.raw)
			if tc.mutate != nil {
				m := freshModel(t)
				tc.mutate(t, m)
				var err error
				if doc, err = json.MarshalIndent(m, "", "  "); err != nil { // JSON is YAML
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			file := filepath.Join(dir, composeFileName)
			if err := os.WriteFile(file, doc, 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := loadCompose(t.Context(), file)
			if tc.wantLoadErr {
				if err == nil {
					t.Fatalf("the loader accepted the broken document; checks report %v", checkProject(p))
				}
				t.Logf("load error, as wanted: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			problems := checkProject(p)
			if tc.wantProblem == "" {
				for _, err := range problems {
					t.Errorf("unchanged copy: %v", err)
				}
				return
			}
			if len(problems) == 0 {
				t.Fatalf("checks pass on the broken document; want a problem containing %q", tc.wantProblem)
			}
			if !slices.ContainsFunc(problems, func(err error) bool { return strings.Contains(err.Error(), tc.wantProblem) }) {
				t.Errorf("no problem contains %q; got:\n%v", tc.wantProblem, errors.Join(problems...))
			}
		})
	}
}

func TestDockerfile_check_rejects_broken(t *testing.T) {
	t.Parallel()
	good := readRepoFile(t, dockerfileName)
	p := project(t)
	cases := []struct {
		name, old, new, wantProblem string
	}{
		{"builds_other_package", "./cmd/sagaflow", "./cmd/other", `lacks "./cmd/sagaflow"`},
		{"runs_as_root", "USER 10001:10001", "USER root", "runs as root"},
		{"no_curl_for_healthcheck", "ca-certificates curl", "ca-certificates", `runs "curl"`},
		{"shell_form_entrypoint", `ENTRYPOINT ["/usr/local/bin/sagaflow"]`, "ENTRYPOINT /usr/local/bin/sagaflow", "exec (JSON) form"},
		{"download_after_sources", "COPY go.mod go.sum ./", "COPY . .", "go mod download does not follow a COPY of go.mod"},
	}
	if errs := checkDockerfile(good, p); len(errs) > 0 {
		t.Fatalf("the real Dockerfile fails the checks: %v", errors.Join(errs...))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if strings.Count(good, tc.old) != 1 {
				t.Fatalf("Dockerfile has %d occurrences of %q, want 1; update this case", strings.Count(good, tc.old), tc.old)
			}
			errs := checkDockerfile(strings.Replace(good, tc.old, tc.new, 1), p)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.wantProblem) }) {
				t.Errorf("no problem contains %q; got %v", tc.wantProblem, errs)
			}
		})
	}
}
