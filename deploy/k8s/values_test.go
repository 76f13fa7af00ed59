package k8s_test

import (
	"context"
	"math"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"sigs.k8s.io/yaml"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// goModVersion is the version go.mod requires of module.
func goModVersion(t *testing.T, module string) string {
	t.Helper()
	raw, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", module)
	return ""
}

// readValues decodes a Helm values file (not strictly: the chart's own
// schema is not ours to restate).
func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// namespace is the one Namespace a kustomization creates.
func (m *manifests) namespace(t *testing.T) string {
	t.Helper()
	if len(m.namespaces) != 1 {
		t.Fatalf("%s creates %d namespaces, want 1", m.dir, len(m.namespaces))
	}
	for ns := range m.namespaces {
		return ns
	}
	return ""
}

// lookup walks a decoded YAML document along path; nil if absent.
func lookup(doc any, path ...string) any {
	for _, p := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[p]
	}
	return doc
}

func TestValues_temporal_runs_our_server_on_postgres_pgx_with_fixed_shards(t *testing.T) {
	v := readValues(t, "values/temporal.yaml")
	want := strings.TrimPrefix(goModVersion(t, "go.temporal.io/server"), "v")
	if got := lookup(v, "server", "image", "tag"); got != want {
		t.Errorf("server.image.tag is %v, go.mod embeds go.temporal.io/server %s: run the server we test against", got, want)
	}
	p := lookup(v, "server", "config", "persistence")
	if n, ok := lookup(p, "numHistoryShards").(float64); !ok || n != 512 {
		t.Errorf("server.config.persistence.numHistoryShards is %v, want 512 set explicitly (it can never change)", lookup(p, "numHistoryShards"))
	}
	for _, store := range []string{"defaultStore", "visibilityStore"} {
		name, _ := lookup(p, store).(string)
		sql := lookup(p, "datastores", name, "sql")
		if sql == nil {
			t.Errorf("%s %q has no sql datastore", store, name)
			continue
		}
		for _, k := range []string{"pluginName", "driverName"} {
			if got := lookup(sql, k); got != "postgres12_pgx" {
				t.Errorf("datastore %s: %s is %v, want postgres12_pgx", name, k, got)
			}
		}
		if lookup(sql, "password") != nil || lookup(sql, "existingSecret") == nil {
			t.Errorf("datastore %s: take the password from existingSecret, never from values", name)
		}
	}
}

func TestValues_rabbitmq_declares_the_code_s_queues_as_quorum_on_three_nodes(t *testing.T) {
	m := decodeFile(t, "values/rabbitmq.yaml")
	prod := render(t, "overlays/production")
	if len(m.rabbitClusters) != 1 {
		t.Fatalf("%d RabbitmqClusters, want 1", len(m.rabbitClusters))
	}
	var cluster *rabbitmqCluster
	for _, c := range m.rabbitClusters {
		cluster = c
	}
	if r := cluster.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("RabbitmqCluster %s replicas %s, want 3 (quorum queues survive one node lost)", cluster.Metadata.Name, ptrString(r))
	}
	namespace := prod.namespace(t)
	if cluster.Metadata.Namespace != namespace {
		t.Errorf("RabbitmqCluster in namespace %q, the production overlay in %q", cluster.Metadata.Namespace, namespace)
	}
	// The processes connect to the cluster's Service, on the vhost the queues are in.
	u, err := amqp.ParseURI(prod.secrets[secretName].StringData["AMQP_URL"])
	if err != nil {
		t.Fatal(err)
	}
	if want := cluster.Metadata.Name + "." + namespace + ".svc.cluster.local"; u.Host != want {
		t.Errorf("AMQP_URL names host %s, the RabbitmqCluster's Service is %s", u.Host, want)
	}

	want := map[string]map[string]any{
		catalog.IngestQueue: {"x-dead-letter-exchange": catalog.DeadExchange, "x-delivery-limit": float64(rabbit.DeliveryLimit)},
		catalog.DeadQueue:   nil,
	}
	var names []string
	for obj, q := range m.rabbitQueues {
		s := q.Spec
		names = append(names, s.Name)
		if s.Type != "quorum" || !s.Durable || s.AutoDelete {
			t.Errorf("Queue %s: type %q durable %v autoDelete %v, want a durable quorum queue", obj, s.Type, s.Durable, s.AutoDelete)
		}
		if s.RabbitmqClusterReference.Name != cluster.Metadata.Name || q.Metadata.Namespace != cluster.Metadata.Namespace {
			t.Errorf("Queue %s refers to cluster %s/%s, want %s/%s", obj, q.Metadata.Namespace, s.RabbitmqClusterReference.Name,
				cluster.Metadata.Namespace, cluster.Metadata.Name)
		}
		if s.Vhost != u.Vhost {
			t.Errorf("Queue %s in vhost %q, AMQP_URL connects to vhost %q", obj, s.Vhost, u.Vhost)
		}
		if args, ok := want[s.Name]; ok && !(len(args) == 0 && len(s.Arguments) == 0) && !reflect.DeepEqual(s.Arguments, args) {
			t.Errorf("Queue %s arguments %v, internal/rabbit declares %v: a mismatch fails every declare with PRECONDITION_FAILED", obj, s.Arguments, args)
		}
	}
	slices.Sort(names)
	wantNames := []string{catalog.DeadQueue, catalog.IngestQueue}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Errorf("Queue objects for %v, the code declares %v", names, wantNames)
	}
}

func TestValues_redis_is_the_host_REDIS_URL_names_and_fsyncs_every_write(t *testing.T) {
	v := readValues(t, "values/redis.yaml")
	conf, _ := v["commonConfiguration"].(string)
	for _, line := range []string{"appendonly yes", "appendfsync always", "maxmemory-policy noeviction"} {
		if !slices.Contains(strings.Split(conf, "\n"), line) {
			t.Errorf("commonConfiguration lacks %q", line)
		}
	}
	prod := render(t, "overlays/production")
	u, err := url.Parse(prod.secrets[secretName].StringData["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	namespace := prod.namespace(t)
	// The chart's release sagaflow-redis (the install command in the file).
	if want := "sagaflow-redis-master." + namespace + ".svc.cluster.local"; u.Hostname() != want {
		t.Errorf("REDIS_URL names %s, the chart's primary is %s", u.Hostname(), want)
	}
}

// TestValues_rabbitmq_queues_accept_the_code_s_declare creates the Queue
// objects' queues on a real broker (a virtual host of this run) as the
// topology operator would, before any process runs, then declares the
// topology as every process does on start: a queue whose type or arguments
// differ fails that declare with PRECONDITION_FAILED.
func TestValues_rabbitmq_queues_accept_the_code_s_declare(t *testing.T) {
	ctx := context.Background()
	env, err := testenv.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ch, closeConn := testenv.AMQPChannel(t, env.Config.AMQPURL)
	defer closeConn()
	for obj, q := range decodeFile(t, "values/rabbitmq.yaml").rabbitQueues {
		args := amqp.Table{amqp.QueueTypeArg: q.Spec.Type}
		for k, v := range q.Spec.Arguments {
			// The operator sends JSON to the management API, which stores
			// a whole number as an integer.
			if f, ok := v.(float64); ok && f == math.Trunc(f) {
				v = int64(f)
			}
			args[k] = v
		}
		if _, err := ch.QueueDeclare(q.Spec.Name, q.Spec.Durable, q.Spec.AutoDelete, false, false, args); err != nil {
			t.Fatalf("Queue %s: declare as the operator would: %v", obj, err)
		}
	}
	if err := rabbit.DeclareTopology(ch); err != nil {
		t.Fatalf("the processes' declare fails on the queues the Queue objects create: %v", err)
	}
}
