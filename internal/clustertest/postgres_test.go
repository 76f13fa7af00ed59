//go:build cluster

package clustertest

import (
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/sim"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// ownPostgres skips the test unless the stack script runs, as its private
// server, the PostgreSQL the cluster uses (DATABASE_URL's port): a restart
// must never hit a server the script does not own.
func ownPostgres(t *testing.T) {
	t.Helper()
	u, err := url.Parse(os.Getenv("DATABASE_URL"))
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	cmd := exec.Command(stackScript(), "status")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "postgres: running on 127.0.0.1:"+u.Port()) {
		t.Skipf("%s does not run the PostgreSQL at DATABASE_URL (port %s); set %s to the deploy/stack.sh that does (its status says: %s)",
			stackScript(), u.Port(), StackScriptEnv, strings.TrimSpace(string(out)))
	}
}

// TestCluster_postgres_restart_mid_burst: 200 paid joins and 2,000 product
// changes at once through both APIs; PostgreSQL is stopped and started
// again (deploy/stack.sh restart postgres) in the middle. The joins' and
// the sync's invariants both hold.
func TestCluster_postgres_restart_mid_burst(t *testing.T) {
	chaos := testenv.Chaos(t, "cluster: 200 joins and 2,000 product changes, PostgreSQL restarted mid-burst",
		"every join accepted terminal, ledger exact, no seat leaked; every market at the latest version of every SKU")
	c := connect(t)
	ownPostgres(t)
	s := newSyncRun(t, c, "p", 200)
	c.setPayments(t, sim.PaymentConfig{Latency: 20 * time.Millisecond, DeclineRate: 0.2, TimeoutAfterCommit: 0.05}, true)
	began := time.Now()
	var restart time.Duration
	var wg sync.WaitGroup
	var put time.Duration
	wg.Go(func() { put = s.put(t, 10, nil) })
	r := postJoins(t, c, joinOptions{Joins: 200, Meetings: 5, Capacity: 30, Posters: 4, Pace: 100 * time.Millisecond,
		During: map[int]func(){80: func() { restart = script(t, stackScript(), "restart", "postgres") }}})
	posted := time.Since(began)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	byStatus := r.assertJoins(t, 4*time.Minute)
	converged := s.assertSynced(t, 5*time.Minute)
	chaos.Observe("postgres restarted in %s; 200 joins posted in %s and 2,000 PUTs in %s (%d requests retried)",
		restart, posted.Round(time.Millisecond), put.Round(time.Millisecond), c.failed.Load())
	chaos.Observe("joins %v; markets at %s %s later (%s in all)", byStatus, s.versions(), converged.Round(time.Second), time.Since(began).Round(time.Second))
}
