//go:build cluster

package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// quorumQueue is a row of `rabbitmqctl list_queues name type members leader messages`.
type quorumQueue struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Members  []string `json:"members"`
	Leader   string   `json:"leader"`
	Messages int      `json:"messages"`
}

// rabbitQueues lists the quorum queues of the cluster's own RabbitMQ nodes
// (asking rabbit1, so it fails while rabbit1 is down).
func rabbitQueues() ([]quorumQueue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, clusterScript(), "rabbitmqctl", "list_queues", "-q", "name", "type", "members", "leader", "messages", "--formatter", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("clustertest: cluster.sh rabbitmqctl list_queues: %w", err)
	}
	var qs []quorumQueue
	if err := json.Unmarshal(out, &qs); err != nil {
		return nil, fmt.Errorf("clustertest: list_queues: %w: %s", err, out)
	}
	var quorum []quorumQueue
	for _, q := range qs {
		if q.Type == "quorum" {
			quorum = append(quorum, q)
		}
	}
	return quorum, nil
}

// TestCluster_sync_survives_a_rabbitmq_node_killed: the cluster's three
// RabbitMQ nodes hold a member of every quorum queue; 2,000 product changes
// go through both APIs (api1 and worker1 talk to rabbit1, api2 and worker2
// to rabbit2) and the node that leads the ingest queue is killed -9 after
// 700 of them (its supervisor starts it again). Every market ends at the
// latest version of every SKU; the queues end with their three members,
// drained.
func TestCluster_sync_survives_a_rabbitmq_node_killed(t *testing.T) {
	if os.Getenv("SAGAFLOW_CLUSTER_RABBITMQ_NODES") != "3" {
		t.Skip("the cluster runs no RabbitMQ nodes of its own: CLUSTER_RABBITMQ_NODES=3 deploy/cluster.sh up (make test-cluster does)")
	}
	chaos := testenv.Chaos(t, "cluster: 3 RabbitMQ nodes, quorum queues on all three, the ingest queue's leader node killed -9 mid sync burst",
		"every market at the latest version of every SKU; nothing stale, nothing parked; the queues keep 3 members")
	c := connect(t)
	before, err := rabbitQueues()
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[string]string{}
	for _, q := range before {
		if len(q.Members) != 3 {
			t.Fatalf("queue %s has members %v, want all three nodes", q.Name, q.Members)
		}
		leaders[q.Name] = q.Leader
	}
	if len(before) == 0 {
		t.Fatal("no quorum queue on the cluster's RabbitMQ nodes")
	}
	victim, _, _ := strings.Cut(leaders["sagaflow.catalog.ingest"], "@")
	if victim == "" {
		t.Fatalf("no leader of sagaflow.catalog.ingest among %+v", before)
	}
	s := newSyncRun(t, c, "r", 200)
	began := time.Now()
	put := s.put(t, 10, map[int]func(){700: func() { fault(t, "kill", victim) }})
	if t.Failed() {
		t.FailNow()
	}
	converged := s.assertSynced(t, 5*time.Minute)
	var after []quorumQueue
	waitFor(t, 2*time.Minute, victim+" back and every queue with three members, drained", func() (bool, string) {
		var err error
		if after, err = rabbitQueues(); err != nil {
			return false, err.Error()
		}
		for _, q := range after {
			if len(q.Members) != 3 || q.Messages != 0 {
				return false, q.Name + " not yet whole or drained"
			}
		}
		return true, ""
	})
	moved := 0
	for _, q := range after {
		if q.Leader != leaders[q.Name] {
			moved++
		}
		t.Logf("%s: leader %s (was %s), members %v", q.Name, q.Leader, leaders[q.Name], q.Members)
	}
	chaos.Observe("%s killed; 2,000 PUTs answered in %s (%d failed over); %d of %d queue leaders moved",
		victim, put.Round(time.Millisecond), c.failed.Load(), moved, len(after))
	chaos.Observe("3 markets x 200 SKUs at %s, converged %s after the last PUT (%s in all)", s.versions(), converged.Round(time.Second), time.Since(began).Round(time.Second))
}
