package deploy

// The Dockerfile is read line by line for the few facts compose relies on.
// buildkit's parser (github.com/moby/buildkit/frontend/dockerfile/parser) is
// not used: v0.34.2 upgrades grpc and the OpenTelemetry Prometheus exporter
// under the Temporal server.

import (
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

// dockerStage is one FROM stage: its name (the word after AS) and its
// instructions, each as the upper-case keyword followed by its words.
type dockerStage struct {
	name string
	ins  [][]string
}

// last returns the arguments of the stage's last keyword instruction, nil if none.
func (s dockerStage) last(keyword string) []string {
	for i := len(s.ins) - 1; i >= 0; i-- {
		if s.ins[i][0] == keyword {
			return s.ins[i][1:]
		}
	}
	return nil
}

// readDockerfile returns the stages of ../Dockerfile, continuation lines
// joined and comments dropped; it wants a build and a runtime stage.
func readDockerfile(t *testing.T) (build, final dockerStage) {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		words[0] = strings.ToUpper(words[0])
		if words[0] == "FROM" {
			stages = append(stages, dockerStage{name: words[len(words)-1]})
		} else if len(stages) > 0 {
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, words)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build and a runtime stage", len(stages))
	}
	return stages[0], stages[len(stages)-1]
}

// The runtime stage's ENTRYPOINT is the binary the build stage compiles from
// ./cmd/sagaflow (compose passes only the subcommand), and it runs as non-root.
func TestDockerfile_runs_cmd_sagaflow_as_non_root(t *testing.T) {
	build, final := readDockerfile(t)
	run := build.last("RUN")
	o := slices.Index(run, "-o")
	if !strings.Contains(strings.Join(run, " "), "go build") || run[len(run)-1] != "./cmd/sagaflow" || o < 0 || o+1 >= len(run) {
		t.Fatalf("the build stage's last RUN is %q, want go build -o <binary> ./cmd/sagaflow", run)
	}
	var entrypoint []string
	if err := json.Unmarshal([]byte(strings.Join(final.last("ENTRYPOINT"), " ")), &entrypoint); err != nil || len(entrypoint) != 1 {
		t.Fatalf("ENTRYPOINT %s, want the binary alone in exec (JSON) form", strings.Join(final.last("ENTRYPOINT"), " "))
	}
	want := []string{"COPY", "--from=" + build.name, run[o+1], entrypoint[0]}
	if !slices.ContainsFunc(final.ins, func(in []string) bool { return slices.Equal(in, want) }) {
		t.Errorf("the runtime stage has no %q: its ENTRYPOINT is not the binary built", want)
	}
	if user := final.last("USER"); len(user) == 0 || slices.Contains([]string{"root", "0"}, strings.Split(user[0], ":")[0]) {
		t.Errorf("the runtime stage runs as root (USER %q)", user)
	}
}

// The image EXPOSEs the API port: the one config defaults to and the one the
// compose api listens on.
func TestDockerfile_exposes_the_api_port(t *testing.T) {
	_, final := readDockerfile(t)
	def := defaults(t).HTTPAddr
	_, port, _ := net.SplitHostPort(def)
	composed := listenPort(t, service(t, project(t), "api"), "SAGAFLOW_HTTP_ADDR", def)
	if expose := final.last("EXPOSE"); !slices.Equal(expose, []string{port}) || composed != port {
		t.Errorf("Dockerfile EXPOSEs %q; SAGAFLOW_HTTP_ADDR defaults to port %s, compose's api listens on %s", expose, port, composed)
	}
}

// The runtime stage installs the tool each compose healthcheck of a sagaflow
// service runs (curl for the api), or the service never becomes healthy.
func TestDockerfile_installs_healthcheck_tools(t *testing.T) {
	_, final := readDockerfile(t)
	var installed []string
	for _, in := range final.ins {
		if in[0] == "RUN" {
			installed = append(installed, in[1:]...)
		}
	}
	p := project(t)
	for name := range sagaflowServices {
		if cmd := strings.Fields(healthcheck(service(t, p, name))); len(cmd) > 0 && !slices.Contains(installed, cmd[0]) {
			t.Errorf("service %q healthcheck runs %q, which the runtime stage does not install", name, cmd[0])
		}
	}
}
