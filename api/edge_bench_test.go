package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/sagaflow/sagaflow/internal/otlpsink"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// BenchmarkCouponRequest_through_the_edge is the coupon hot path over the
// in-memory queue: authentication from the key cache, the body read, its
// UTF-8 check, the decode and the user_id rule. Compare with main's
// (`go test ./api -run '^$' -bench CouponRequest`).
func BenchmarkCouponRequest_through_the_edge(b *testing.B) {
	serveCouponRequests(b)
}

// serveCouponRequests sends b.N coupon requests through the edge handler.
func serveCouponRequests(b *testing.B) {
	t := &testing.T{}
	h, _, _ := newEdgeHandler(t)
	path := "/v1/campaigns/" + aUUID + "/requests"
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"user_id":"run-u1"}`))
		req.Header.Set("Authorization", "Bearer demo-key")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("= %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkCouponRequest_tracing is the same path with no exporter (the
// provider of a process with no OTEL_* variable: nothing sampled) and with
// every span sampled and exported over OTLP/HTTP to a sink that drops them
// (what `make bench-tracing` runs under k6): on − off is what tracing costs
// one request in this process.
//
//	go test ./api -run '^$' -bench CouponRequest_tracing -count 6
func BenchmarkCouponRequest_tracing(b *testing.B) {
	sink, err := otlpsink.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sink.Close() })
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
			if mode == "on" {
				exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.Endpoint()+"/v1/traces"))
				if err != nil {
					b.Fatal(err)
				}
				tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
			}
			testenv.UseTracerProvider(b, tp)
			serveCouponRequests(b)
			b.StopTimer()
			if err := tp.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			if mode == "on" && sink.Spans() == 0 {
				b.Fatal("nothing exported")
			}
		})
	}
}
