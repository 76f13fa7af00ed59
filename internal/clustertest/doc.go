// Package clustertest holds the fault runs of `make test-cluster`: black-box
// tests against the cluster deploy/cluster.sh starts (two API processes, two
// workers, a Temporal server of its own on PostgreSQL, the simulators). They
// talk HTTP to both APIs as a load balancer would, read the simulators'
// admin endpoints and PostgreSQL, kill and restart processes through the
// cluster's and the stack's scripts, and check the saga invariants of the
// chaos tests of internal/integration.
//
// The tests sit behind the build tag cluster, so `make test` never runs
// them: `go test -tags cluster ./internal/clustertest/` against a running
// cluster (make test-cluster brings one up and down).
package clustertest
