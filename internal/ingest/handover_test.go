package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.temporal.io/api/serviceerror"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/tenant"
)

// fakeStore is an ingest.Products that refuses, for good, every call that
// holds one of bad's SKUs (as PostgreSQL refuses a whole statement for one
// row), or every call to a schema in badSchema, and fails the first
// transient calls with transientErrs, one each.
type fakeStore struct {
	mu            sync.Mutex
	bad           map[string]error // sku -> the error of a call holding it
	badSchema     map[string]error
	transientErrs []error
	calls         map[string][]int // schema -> sizes of its calls
	stored        map[string]int64 // schema/sku -> version
}

func (s *fakeStore) ApplyChanges(_ context.Context, schema string, ps []catalog.Product) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls, s.stored = map[string][]int{}, map[string]int64{}
	}
	s.calls[schema] = append(s.calls[schema], len(ps))
	if len(s.transientErrs) > 0 {
		err := s.transientErrs[0]
		s.transientErrs = s.transientErrs[1:]
		return 0, err
	}
	if err := s.badSchema[schema]; err != nil {
		return 0, err
	}
	for _, p := range ps {
		if err := s.bad[p.SKU]; err != nil {
			return 0, err
		}
	}
	for _, p := range ps {
		s.stored[schema+"/"+p.SKU] = max(s.stored[schema+"/"+p.SKU], p.Version)
	}
	return len(ps), nil
}

// fakeSink is a Sink with the same habits.
type fakeSink struct {
	mu            sync.Mutex
	bad           map[string]error
	transientErrs []error
	calls         []int
	got           map[string]int64 // tenant/sku -> version
}

func (s *fakeSink) Deliver(_ context.Context, changes []Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string]int64{}
	}
	s.calls = append(s.calls, len(changes))
	if len(s.transientErrs) > 0 {
		err := s.transientErrs[0]
		s.transientErrs = s.transientErrs[1:]
		return err
	}
	for _, c := range changes {
		if err := s.bad[c.Product.SKU]; err != nil {
			return fmt.Errorf("signal %s:sync: %w", c.Tenant, err)
		}
	}
	for _, c := range changes {
		s.got[c.Tenant+"/"+c.Product.SKU] = c.Product.Version
	}
	return nil
}

// batchOf parses one delivery per (tenant, sku, version) triple and
// resolves the tenants, as flush does before handOver.
func batchOf(t *testing.T, changes ...string) []entry {
	t.Helper()
	var ds []amqp.Delivery
	for i, c := range changes {
		var tn, sku string
		var v int64
		if _, err := fmt.Sscanf(strings.ReplaceAll(c, "/", " "), "%s %s %d", &tn, &sku, &v); err != nil {
			t.Fatalf("%q: %v", c, err)
		}
		ds = append(ds, amqp.Delivery{DeliveryTag: uint64(i + 1), RoutingKey: catalog.RoutingKey(tn),
			Body: envelope(t, tn, sku, fmt.Sprintf("m%d", i), v)})
	}
	es := parse(ds)
	for i := range es {
		if es[i].state != valid {
			t.Fatalf("%s: %s", changes[i], es[i].reason)
		}
		es[i].tenant = tenant.Tenant{Name: es[i].env.TenantID, Schema: "tenant_" + es[i].env.TenantID}
	}
	markRepeats(es)
	return es
}

// many is n changes of tenant tn, SKUs prefix-0..prefix-(n-1), version 1.
func many(tn, prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s/%s-%d/1", tn, prefix, i))
	}
	return out
}

// waits counts the transient failures handOver waited after.
type waits struct{ errs []error }

func (w *waits) wait(err error) error {
	w.errs = append(w.errs, err)
	if len(w.errs) > 100 {
		return errors.New("too many retries")
	}
	return nil
}

func consumerWith(p Products, s Sink) *Consumer {
	return &Consumer{products: p, sink: s, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// refused lists the items handOver refused as tenant/sku.
func refused(items []*item) []string {
	var out []string
	for _, it := range items {
		if it.reason != "" {
			out = append(out, it.tenant.Name+"/"+it.product.SKU)
		}
	}
	return out
}

func TestHandOver_refuses_only_the_items_the_store_refuses(t *testing.T) {
	t.Parallel()
	untranslatable := &pgconn.PgError{Severity: "ERROR", Code: "22P05", Message: "unsupported Unicode escape sequence"}
	store := &fakeStore{bad: map[string]error{"A-7": untranslatable, "A-40": fmt.Errorf("apply: %w", untranslatable)}}
	sink := &fakeSink{}
	const n = 64
	es := batchOf(t, append(many("acme", "A", n), many("beta", "B", n)...)...)
	items := coalesce(es)
	var w waits
	if err := consumerWith(store, sink).handOver(context.Background(), items, w.wait); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(refused(items), " "); got != "acme/A-40 acme/A-7" {
		t.Errorf("refused %q, want acme/A-40 acme/A-7", got)
	}
	if len(w.errs) != 0 {
		t.Errorf("waited after %v: a permanent failure must not be retried", w.errs)
	}
	for _, it := range items {
		k := it.tenant.Name + "/" + it.product.SKU
		if it.reason != "" {
			if !strings.Contains(it.reason, "22P05") || it.entries[0].state != invalid || it.entries[0].reason != it.reason {
				t.Errorf("%s: reason %q, entry %v %q", k, it.reason, it.entries[0].state, it.entries[0].reason)
			}
			if _, ok := sink.got[k]; ok {
				t.Errorf("%s refused by the store but delivered", k)
			}
			continue
		}
		if store.stored[it.tenant.Schema+"/"+it.product.SKU] != 1 || sink.got[k] != 1 {
			t.Errorf("%s not stored or not delivered", k)
		}
	}
	// beta's schema in one call; acme's bisected: 2 bad among 64 cost at
	// most 2 calls per level for each.
	if c := store.calls["tenant_beta"]; len(c) != 1 || c[0] != n {
		t.Errorf("beta's calls %v, want one of %d", c, n)
	}
	k, levels := 2, bits.Len(n)
	if c := store.calls["tenant_acme"]; len(c) > 1+2*k*levels {
		t.Errorf("acme's store calls %d (%v), want at most %d", len(c), c, 1+2*k*levels)
	}
	if len(sink.calls) != 1 || sink.calls[0] != 2*n-2 {
		t.Errorf("sink calls %v, want one of %d", sink.calls, 2*n-2)
	}
}

func TestHandOver_a_refused_item_takes_the_messages_coalesced_into_it(t *testing.T) {
	t.Parallel()
	store := &fakeStore{bad: map[string]error{"BAD": &pgconn.PgError{Code: "22021", Message: "invalid byte sequence for encoding \"UTF8\": 0x00"}}}
	sink := &fakeSink{}
	es := batchOf(t, "acme/BAD/1", "acme/OK/1", "acme/BAD/3", "beta/BAD/1", "acme/BAD/2")
	items := coalesce(es)
	var w waits
	if err := consumerWith(store, sink).handOver(context.Background(), items, w.wait); err != nil {
		t.Fatal(err)
	}
	// acme/BAD and beta/BAD are refused: four messages, acme/OK goes on.
	for i, want := range []state{invalid, valid, invalid, invalid, invalid} {
		if es[i].state != want {
			t.Errorf("message %d: state %v, want %v (%s)", i, es[i].state, want, es[i].reason)
		}
	}
	if !strings.Contains(es[2].reason, "22021") || strings.Contains(es[2].reason, "superseded") {
		t.Errorf("the carrier's reason: %q", es[2].reason)
	}
	for _, i := range []int{0, 4} {
		if !strings.Contains(es[i].reason, "superseded by message m2 (version 3") || !strings.Contains(es[i].reason, "22021") {
			t.Errorf("message %d: reason %q", i, es[i].reason)
		}
	}
	if len(sink.got) != 1 || sink.got["acme/OK"] != 1 {
		t.Errorf("delivered %v, want only acme/OK", sink.got)
	}
}

func TestHandOver_retries_transient_failures_without_splitting_or_refusing(t *testing.T) {
	t.Parallel()
	transients := []error{
		&pgconn.PgError{Code: "08006", Message: "connection failure"},
		&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"},
		&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"},
		fmt.Errorf("apply: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}),
		&pgconn.PgError{Code: "40001", Message: "could not serialize access"},
		&pgconn.PgError{Code: "53300", Message: "too many connections"},
		context.DeadlineExceeded,
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		errors.New("conn closed"),
		// A refusal and an outage together: the outage wins.
		errors.Join(&pgconn.PgError{Code: "22P05"}, context.DeadlineExceeded),
	}
	sinkTransients := []error{
		serviceerror.NewUnavailable("frontend down"),
		serviceerror.NewDeadlineExceeded("timeout"),
		serviceerror.NewResourceExhausted(0, "namespace rps limit"),
		serviceerror.NewNamespaceNotFound("sagaflow"),
		fmt.Errorf("signal: %w", context.DeadlineExceeded),
	}
	store := &fakeStore{transientErrs: transients}
	sink := &fakeSink{transientErrs: sinkTransients}
	es := batchOf(t, many("acme", "A", 10)...)
	items := coalesce(es)
	var w waits
	if err := consumerWith(store, sink).handOver(context.Background(), items, w.wait); err != nil {
		t.Fatal(err)
	}
	if r := refused(items); len(r) != 0 {
		t.Errorf("refused %v after transient failures", r)
	}
	if len(w.errs) != len(transients)+len(sinkTransients) {
		t.Errorf("waited %d times, want %d", len(w.errs), len(transients)+len(sinkTransients))
	}
	for _, c := range store.calls["tenant_acme"] {
		if c != 10 {
			t.Errorf("store calls %v: a transient failure split the batch", store.calls)
			break
		}
	}
	for _, c := range sink.calls {
		if c != 10 {
			t.Errorf("sink calls %v: a transient failure split the batch", sink.calls)
			break
		}
	}
	if len(sink.got) != 10 {
		t.Errorf("delivered %d, want 10", len(sink.got))
	}
}

func TestHandOver_stops_when_the_wait_gives_up(t *testing.T) {
	t.Parallel()
	store := &fakeStore{transientErrs: []error{&pgconn.PgError{Code: "08006"}}}
	sink := &fakeSink{}
	items := coalesce(batchOf(t, many("acme", "A", 3)...))
	stop := errors.New("channel closed")
	err := consumerWith(store, sink).handOver(context.Background(), items, func(error) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want %v", err, stop)
	}
	if len(refused(items)) != 0 || len(sink.calls) != 0 {
		t.Errorf("refused %v, sink calls %v", refused(items), sink.calls)
	}
}

func TestHandOver_a_schema_that_refuses_everything_costs_one_call(t *testing.T) {
	t.Parallel()
	store := &fakeStore{badSchema: map[string]error{
		"tenant_acme": &pgconn.PgError{Code: "42P01", Message: `relation "tenant_acme.products" does not exist`},
	}}
	sink := &fakeSink{}
	items := coalesce(batchOf(t, append(many("acme", "A", 100), many("beta", "B", 5)...)...))
	var w waits
	if err := consumerWith(store, sink).handOver(context.Background(), items, w.wait); err != nil {
		t.Fatal(err)
	}
	if n := len(refused(items)); n != 100 {
		t.Errorf("refused %d, want acme's 100", n)
	}
	if c := store.calls["tenant_acme"]; len(c) != 1 {
		t.Errorf("acme's calls %v, want one", c)
	}
	if len(sink.got) != 5 || len(w.errs) != 0 {
		t.Errorf("delivered %v, waits %v", sink.got, w.errs)
	}
	if !strings.Contains(items[0].reason, "42P01") {
		t.Errorf("reason %q", items[0].reason)
	}
}

func TestHandOver_refuses_only_what_Temporal_refuses(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	sink := &fakeSink{bad: map[string]error{"B-3": serviceerror.NewInvalidArgument("Blob data size exceeds limit.")}}
	items := coalesce(batchOf(t, append(many("acme", "A", 20), many("beta", "B", 20)...)...))
	var w waits
	if err := consumerWith(store, sink).handOver(context.Background(), items, w.wait); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(refused(items), " "); got != "beta/B-3" {
		t.Errorf("refused %q, want beta/B-3", got)
	}
	if len(sink.got) != 39 || len(w.errs) != 0 {
		t.Errorf("delivered %d, waits %v", len(sink.got), w.errs)
	}
	for _, it := range items {
		if it.reason != "" && !strings.HasPrefix(it.reason, "Temporal refused the change for good: ") {
			t.Errorf("reason %q", it.reason)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		err  error
		want verdict
	}{
		"nul_in_text":            {&pgconn.PgError{Code: "22021"}, permanent},
		"untranslatable":         {fmt.Errorf("apply: %w", &pgconn.PgError{Code: "22P05"}), permanent},
		"check_violation":        {&pgconn.PgError{Code: "23514"}, permanent},
		"index_row_too_large":    {&pgconn.PgError{Code: "54000"}, permanent},
		"undefined_table":        {&pgconn.PgError{Code: "42P01"}, permanentAll},
		"undefined_column":       {&pgconn.PgError{Code: "42703"}, permanentAll},
		"invalid_schema":         {&pgconn.PgError{Code: "3F000"}, permanentAll},
		"connection_failure":     {&pgconn.PgError{Code: "08006"}, transient},
		"admin_shutdown":         {&pgconn.PgError{Code: "57P01"}, transient},
		"cannot_connect_now":     {&pgconn.PgError{Code: "57P03"}, transient},
		"query_canceled":         {&pgconn.PgError{Code: "57014"}, transient},
		"serialization":          {&pgconn.PgError{Code: "40001"}, transient},
		"deadlock":               {&pgconn.PgError{Code: "40P01"}, transient},
		"disk_full":              {&pgconn.PgError{Code: "53100"}, transient},
		"read_only":              {&pgconn.PgError{Code: "25006"}, transient},
		"bad_password":           {&pgconn.PgError{Code: "28P01"}, transient},
		"cached_plan":            {&pgconn.PgError{Code: "0A000"}, transient},
		"lock_timeout":           {&pgconn.PgError{Code: "55P03"}, transient},
		"bad_code":               {&pgconn.PgError{Code: "x"}, transient},
		"deadline":               {fmt.Errorf("x: %w", context.DeadlineExceeded), transient},
		"canceled":               {context.Canceled, transient},
		"refused":                {&net.OpError{Op: "dial", Err: errors.New("connection refused")}, transient},
		"unknown":                {errors.New("something"), transient},
		"marked":                 {Permanent(errors.New("no")), permanent},
		"temporal_invalid":       {fmt.Errorf("signal: %w", serviceerror.NewInvalidArgument("bad")), permanent},
		"temporal_too_large":     {serviceerror.NewResourceExhausted(0, "grpc: trying to send message larger than max (5000000 vs. 4194304)"), permanent},
		"temporal_rate_limit":    {serviceerror.NewResourceExhausted(0, "namespace rate limit exceeded"), transient},
		"temporal_unavailable":   {serviceerror.NewUnavailable("down"), transient},
		"temporal_deadline":      {serviceerror.NewDeadlineExceeded("slow"), transient},
		"temporal_no_namespace":  {serviceerror.NewNamespaceNotFound("sagaflow"), transient},
		"join_outage_wins":       {errors.Join(&pgconn.PgError{Code: "22P05"}, &pgconn.PgError{Code: "08006"}), transient},
		"join_both_permanent":    {errors.Join(&pgconn.PgError{Code: "22P05"}, &pgconn.PgError{Code: "42P01"}), permanentAll},
		"connect_error_wrapping": {&pgconn.ConnectError{}, transient},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := classify(c.err); got != c.want {
				t.Errorf("classify(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

func TestMarkRepeats_keys_by_tenant_and_message_id(t *testing.T) {
	t.Parallel()
	ds := []amqp.Delivery{
		{RoutingKey: catalog.RoutingKey("acme"), Body: envelope(t, "acme", "A", "42", 1)},
		{RoutingKey: catalog.RoutingKey("beta"), Body: envelope(t, "beta", "A", "42", 1)},
		{RoutingKey: catalog.RoutingKey("acme"), Body: envelope(t, "acme", "B", "42", 1)},
	}
	es := parse(ds)
	if fresh := markRepeats(es); len(fresh) != 2 || es[1].state != valid || es[2].state != repeated {
		t.Errorf("fresh %d, states %v %v %v", len(fresh), es[0].state, es[1].state, es[2].state)
	}
}

// BenchmarkHandOver reports the store calls a batch of 2000 items (one
// tenant) costs with k items the store refuses: 1 with none, O(k log n)
// with k.
func BenchmarkHandOver(b *testing.B) {
	const n = 2000
	var ds []amqp.Delivery
	for i := range n {
		ds = append(ds, amqp.Delivery{RoutingKey: catalog.RoutingKey("acme"), Body: envelope(b, "acme", fmt.Sprintf("S-%04d", i), fmt.Sprintf("m%d", i), 1)})
	}
	for _, k := range []int{0, 1, 10, 100} {
		b.Run(fmt.Sprintf("refused=%d", k), func(b *testing.B) {
			bad := map[string]error{}
			for i := range k {
				bad[fmt.Sprintf("S-%04d", (i*7919)%n)] = &pgconn.PgError{Code: "22P05"}
			}
			calls := 0
			for b.Loop() {
				es := parse(ds)
				for i := range es {
					es[i].tenant = tenant.Tenant{Name: "acme", Schema: "tenant_acme"}
				}
				items := coalesce(es)
				store := &fakeStore{bad: bad}
				if err := consumerWith(store, &fakeSink{}).handOver(context.Background(), items, func(error) error { return errors.New("no retry") }); err != nil {
					b.Fatal(err)
				}
				if r := len(refused(items)); r != k {
					b.Fatalf("refused %d, want %d", r, k)
				}
				calls = len(store.calls["tenant_acme"])
			}
			b.ReportMetric(float64(calls), "store-calls/batch")
		})
	}
}
