package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/catalog"
	"github.com/sagaflow/sagaflow/internal/ingest"
	"github.com/sagaflow/sagaflow/internal/rabbit"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// Trace headers flow from publishers we do not control into our spans, the
// signal payloads and the dead queue: a valid one is continued (by a
// link), anything else is replaced by a fresh root and never passed on.
// Not parallel: it installs the global tracer provider.
func TestConsumer_trace_headers_are_checked_and_hostile_ones_replaced(t *testing.T) {
	rec := testenv.RecordSpans(t)
	f := setup(t)
	tn := f.tenant(t)
	const goodTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	good := "00-" + goodTrace + "-00f067aa0ba902b7-01"
	hostile := map[string]amqp.Table{
		"valid":        {rabbit.TraceparentHeader: good, rabbit.TracestateHeader: "vendor=1"},
		"none":         nil,
		"huge":         {rabbit.TraceparentHeader: good + strings.Repeat("-a", 20000)},
		"nul":          {rabbit.TraceparentHeader: "00-" + goodTrace + "-00f067aa0ba902b7-0\x00"},
		"control":      {rabbit.TraceparentHeader: "00-" + goodTrace + "-00f067aa0ba902b7-01\r\n"},
		"version_ff":   {rabbit.TraceparentHeader: "ff-" + goodTrace + "-00f067aa0ba902b7-01"},
		"zero_trace":   {rabbit.TraceparentHeader: "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01"},
		"zero_parent":  {rabbit.TraceparentHeader: "00-" + goodTrace + "-0000000000000000-01"},
		"not_a_string": {rabbit.TraceparentHeader: []byte(good)},
		"huge_state":   {rabbit.TraceparentHeader: good, rabbit.TracestateHeader: "a=" + strings.Repeat("b", 4000)},
		"nul_state":    {rabbit.TraceparentHeader: good, rabbit.TracestateHeader: "a=b\x00c"},
	}
	var msgs []msg
	skuOf := map[string]string{}
	for name, h := range hostile {
		m := change(tn.Name, "SKU-"+name, 1, uuid.NewString())
		m.headers = h
		if h == nil {
			m.headers = amqp.Table{"x-test": "yes"}
		}
		skuOf["SKU-"+name] = name
		msgs = append(msgs, m)
	}
	dead := msg{key: catalog.RoutingKey(tn.Name), body: []byte("not json"), id: "dead-" + uuid.NewString(),
		headers: amqp.Table{rabbit.TraceparentHeader: "ff-" + goodTrace + "-00f067aa0ba902b7-01\x00", rabbit.TracestateHeader: "a=\x01"}}
	msgs = append(msgs, dead)

	c := f.consumer(ingest.Options{Consumers: 1})
	run(t, c)
	f.publish(t, msgs...)
	eventually(t, 20*time.Second, "every change delivered", func() bool { return len(f.sink.accepted()) == len(hostile) })
	eventually(t, 20*time.Second, "the bad one dead-lettered", func() bool { return c.Stats().DeadLettered == 1 })

	for _, ch := range f.sink.accepted() {
		name := skuOf[ch.Product.SKU]
		sc := ch.Trace.SpanContext()
		if !sc.IsValid() || len(ch.Trace.TraceParent) != 55 {
			t.Errorf("%s: change carries no valid trace context: %+v", name, ch.Trace)
			continue
		}
		continued := name == "valid" || name == "huge_state" || name == "nul_state"
		if continued != (sc.TraceID().String() == goodTrace) {
			t.Errorf("%s: trace %s (continued: %v)", name, sc.TraceID(), continued)
		}
		if name != "valid" && ch.Trace.TraceState != "" {
			t.Errorf("%s: tracestate %q passed on", name, ch.Trace.TraceState)
		}
		if name == "valid" && ch.Trace.TraceParent != good {
			t.Errorf("valid: traceparent %q, want the message's %q", ch.Trace.TraceParent, good)
		}
	}
	for _, d := range f.get(t, catalog.DeadQueue, 1) {
		tc := rabbit.TraceContextFrom(d.Headers)
		if !tc.SpanContext().IsValid() || strings.ContainsAny(tc.TraceParent+tc.TraceState, "\x00\x01") || strings.HasPrefix(tc.TraceParent, "ff") {
			t.Errorf("dead letter carries trace headers %+v, want a fresh valid root", tc)
		}
	}

	// The batch's consumer span is a root linked to the valid message's context.
	var process []string
	linked := false
	for _, s := range rec.Ended() {
		if s.Name() != "process "+catalog.IngestQueue {
			continue
		}
		process = append(process, s.Name())
		if s.SpanKind() != trace.SpanKindConsumer || s.Parent().IsValid() {
			t.Errorf("process span: kind %s, parent %v", s.SpanKind(), s.Parent().SpanID())
		}
		for _, l := range s.Links() {
			if l.SpanContext.TraceID().String() == goodTrace {
				linked = true
			}
		}
	}
	if len(process) == 0 || !linked {
		t.Fatalf("process spans %v, linked to the message's trace: %v", process, linked)
	}
}
