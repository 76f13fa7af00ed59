package otlpsink_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sagaflow/sagaflow/internal/otlpsink"
	"github.com/sagaflow/sagaflow/internal/telemetry"
)

// The spans that telemetry.SetupTracing exports reach the sink and are
// counted, plain and gzip-compressed.
func TestSink_counts_the_spans_SetupTracing_exports(t *testing.T) {
	for _, compression := range []string{"none", "gzip"} {
		t.Run(compression, func(t *testing.T) {
			tp, prop := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			t.Cleanup(func() { otel.SetTracerProvider(tp); otel.SetTextMapPropagator(prop) })
			s, err := otlpsink.Start("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", s.Endpoint())
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
			t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
			shutdown, err := telemetry.SetupTracing(context.Background(), "sagaflow-test", slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			const n = 1234
			for i := range n {
				ctx, parent := otel.Tracer("t").Start(context.Background(), "parent")
				if i%2 == 0 {
					_, child := otel.Tracer("u").Start(ctx, "child")
					child.End()
				}
				parent.End()
			}
			if err := shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got, want := s.Spans(), int64(n+n/2); got != want {
				t.Fatalf("sink counted %d spans, want %d (%d requests, %d rejected)", got, want, s.Requests(), s.Rejected())
			}
			if s.Rejected() != 0 || s.Requests() == 0 {
				t.Fatalf("%d requests, %d rejected", s.Requests(), s.Rejected())
			}
			res, err := http.Get(s.Endpoint() + "/spans")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			b, _ := io.ReadAll(res.Body)
			if strings.TrimSpace(string(b)) != "1851" {
				t.Fatalf("GET /spans = %q, want 1851", b)
			}
		})
	}
}

// CountSpans walks resource_spans → scope_spans → spans and skips the
// other fields; a truncated message is an error.
func TestCountSpans(t *testing.T) {
	msg := func(fields ...[]byte) []byte { return append([]byte(nil), bytesJoin(fields)...) }
	field := func(num protowire.Number, v []byte) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	span := []byte("span bytes are not decoded")
	scope := msg(field(1, []byte("scope")), field(2, span), field(2, span), field(3, []byte("schema")))
	rs := msg(field(1, []byte("resource")), field(2, scope), field(2, scope), varint(9, 7))
	req := msg(field(1, rs), field(1, rs), field(1, msg(field(1, []byte("no scopes")))))
	if n, err := otlpsink.CountSpans(req); err != nil || n != 8 {
		t.Fatalf("CountSpans = %d, %v; want 8", n, err)
	}
	if n, err := otlpsink.CountSpans(nil); err != nil || n != 0 {
		t.Fatalf("CountSpans(nil) = %d, %v", n, err)
	}
	if _, err := otlpsink.CountSpans(req[:len(req)-3]); err == nil {
		t.Fatal("a truncated request was counted without an error")
	}
}

func bytesJoin(parts [][]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
