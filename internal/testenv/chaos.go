package testenv

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// ChaosReportEnv names the file that chaos cases append their line to
// (`make chaos` sets it and prints the table); unset, nothing is written.
const ChaosReportEnv = "SAGAFLOW_CHAOS_REPORT"

// ChaosCase is one row of `make chaos`: a fault or a bad input, what the
// system did, and whether the invariant held (the test passed).
type ChaosCase struct {
	t         testing.TB
	name      string
	invariant string
	mu        sync.Mutex
	outcome   []string
}

var reportMu sync.Mutex

// Chaos starts a row named name whose invariant is what the test asserts;
// the row is written when the test ends, held if the test passed.
func Chaos(t testing.TB, name, invariant string) *ChaosCase {
	c := &ChaosCase{t: t, name: name, invariant: invariant}
	t.Cleanup(c.write)
	return c
}

// Observe adds a figure or a fact to the row's outcome (safe for concurrent
// use).
func (c *ChaosCase) Observe(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outcome = append(c.outcome, fmt.Sprintf(format, args...))
}

func (c *ChaosCase) write() {
	path := os.Getenv(ChaosReportEnv)
	if path == "" {
		return
	}
	held := "yes"
	if c.t.Failed() {
		held = "NO"
	}
	c.mu.Lock()
	outcome := strings.Join(c.outcome, "; ")
	c.mu.Unlock()
	clean := func(s string) string { return strings.NewReplacer("\t", " ", "\n", " ").Replace(s) }
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Logf("chaos report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\t%s\t%s\n", clean(c.name), clean(outcome), clean(c.invariant), held)
}
