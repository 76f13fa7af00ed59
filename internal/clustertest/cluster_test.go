//go:build cluster

package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// Where the cluster is. Each has an environment variable, so the tests run
// against a cluster started elsewhere too.
const (
	// APIURLsEnv lists the API processes, space-separated (deploy/cluster.sh env).
	APIURLsEnv = "SAGAFLOW_CLUSTER_API_URLS"
	// ClusterScriptEnv is the path of deploy/cluster.sh (default: this checkout's).
	ClusterScriptEnv = "SAGAFLOW_CLUSTER_SCRIPT"
	// StackScriptEnv is the path of the deploy/stack.sh whose PostgreSQL the
	// cluster uses (default: this checkout's); the PostgreSQL fault restarts
	// its server.
	StackScriptEnv = "SAGAFLOW_CLUSTER_STACK"
	// SimURLEnv is the host the simulators listen on (default http://127.0.0.1).
	SimURLEnv = "SAGAFLOW_CLUSTER_SIM_HOST"
	// APIKeyEnv is the key of tenant demo (default demo-key, what cluster.sh seeds).
	APIKeyEnv = "SAGAFLOW_CLUSTER_API_KEY"
)

// Ports of the simulators (deploy/cluster.sh's header).
var simPorts = testenv.ClusterSimPorts

// retryFor bounds how long one request is retried across the APIs: longer
// than a PostgreSQL restart or an API process coming back.
const retryFor = 2 * time.Minute

var envOr, root = testenv.EnvOr, testenv.RepoRoot

// cluster is a client of the whole cluster: the APIs behind a client-side
// load balancer, the simulators, PostgreSQL and the scripts that inflict
// the faults. Safe for concurrent use.
type cluster struct {
	apis   []string
	key    string
	sim    string
	http   *http.Client
	next   atomic.Uint64
	failed atomic.Int64 // requests that failed over to another API
	db     *pgxpool.Pool
}

// connect finds the cluster and checks that both APIs answer, or skips
// the test with the command that starts one.
func connect(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		apis: strings.Fields(envOr(APIURLsEnv, "http://127.0.0.1:8080 http://127.0.0.1:8081")),
		key:  envOr(APIKeyEnv, "demo-key"),
		sim:  envOr(SimURLEnv, "http://127.0.0.1"),
		// A timeout longer than any answer of a healthy API (joins and
		// coupon requests answer in milliseconds) and short enough that a
		// request to a frozen process fails over.
		http: &http.Client{Timeout: 20 * time.Second},
	}
	for _, api := range c.apis {
		resp, err := c.http.Get(api + "/readyz")
		if err != nil {
			t.Skipf("clustertest: no cluster API at %s (%v): start one with `make cluster` or run `make test-cluster`", api, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("clustertest: %s/readyz = %d", api, resp.StatusCode)
		}
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		t.Fatal("clustertest: DATABASE_URL is not set: eval \"$(deploy/cluster.sh env)\" first")
	}
	db, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("clustertest: connect to PostgreSQL: %v", err)
	}
	t.Cleanup(db.Close)
	c.db = db
	return c
}

// errTransport marks an attempt whose answer never came.
var errTransport = errors.New("clustertest: no answer")

// try sends one request to api and decodes a JSON answer into out.
func (c *cluster) try(api, key, method, path string, body []byte, out any, headers map[string]string) (int, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, api+path, r)
	if err != nil {
		return 0, fmt.Errorf("clustertest: build %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %s%s: %v", errTransport, method, api, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %s%s: read the answer: %v", errTransport, method, api, path, err)
	}
	if out != nil && len(raw) > 0 && resp.StatusCode < 500 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("clustertest: %s %s: %d, body not JSON: %v: %s", method, path, resp.StatusCode, err, raw)
		}
	}
	return resp.StatusCode, nil
}

// call sends the request to the next API in turn, as a load balancer
// would. When an API gives no answer (refused, reset, timed out) or
// answers 5xx, the same request (same body, same Idempotency-Key) goes to
// the other API, and so on for up to retryFor. It returns the first
// answer below 500, or the last failure.
func (c *cluster) call(key, method, path string, body any, out any, headers map[string]string) (int, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("clustertest: encode %s %s: %w", method, path, err)
		}
	}
	n := c.next.Add(1)
	deadline := time.Now().Add(retryFor)
	for attempt := 0; ; attempt++ {
		api := c.apis[(n+uint64(attempt))%uint64(len(c.apis))]
		code, err := c.try(api, key, method, path, raw, out, headers)
		if (err == nil && code < 500) || (err != nil && !errors.Is(err, errTransport)) {
			return code, err
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("clustertest: %s %s: still %d after %s", method, path, code, retryFor)
			}
			return code, err
		}
		c.failed.Add(1)
		time.Sleep(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond)
	}
}

// must is call for tenant demo that fails the test unless the answer is want.
func (c *cluster) must(t *testing.T, want int, method, path string, body, out any) {
	t.Helper()
	code, err := c.call(c.key, method, path, body, out, nil)
	if err != nil || code != want {
		t.Fatalf("%s %s = %d %v, want %d", method, path, code, err, want)
	}
}

// simURL is the base URL of simulator name.
func (c *cluster) simURL(name string) string { return fmt.Sprintf("%s:%d", c.sim, simPorts[name]) }

// simDo sends an admin request to simulator name and decodes its answer.
func (c *cluster) simDo(t *testing.T, name, method, path string, body, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.simURL(name)+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("simulator %s: %s %s: %v", name, method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("simulator %s: %s %s = %d: %s", name, method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("simulator %s: %s %s: %v: %s", name, method, path, err, raw)
		}
	}
}

// script runs a deploy script (cluster.sh or stack.sh) with args and
// returns how long it took; it fails the test if the script fails.
func script(t *testing.T, path string, args ...string) time.Duration {
	t.Helper()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v: %s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	took := time.Since(began).Round(time.Millisecond)
	t.Logf("%s %s took %s", filepath.Base(path), strings.Join(args, " "), took)
	return took
}

func clusterScript() string {
	return envOr(ClusterScriptEnv, filepath.Join(root(), "deploy", "cluster.sh"))
}
func stackScript() string { return envOr(StackScriptEnv, filepath.Join(root(), "deploy", "stack.sh")) }

// fault runs deploy/cluster.sh with args (kill worker1, restart temporal).
func fault(t *testing.T, args ...string) time.Duration { return script(t, clusterScript(), args...) }

// waitFor polls cond every 500 ms until it holds, failing the test with
// what and the last state cond reported if it does not within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	began := time.Now()
	var last string
	var logged time.Time
	for {
		ok, state := cond()
		if ok {
			return time.Since(began)
		}
		last = state
		if time.Since(logged) > 10*time.Second {
			t.Logf("after %s waiting for %s: %s", time.Since(began).Round(time.Second), what, state)
			logged = time.Now()
		}
		if time.Since(began) > d {
			t.Fatalf("not within %s: %s (last: %s)", d, what, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// runID names what one run creates, so runs never collide.
func runID() string { return testenv.RunID()[:8] }
