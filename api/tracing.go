package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/internal/telemetry"
)

// tracerName is the instrumentation scope of the API's server spans.
const tracerName = "github.com/sagaflow/sagaflow/api"

// traced is the OpenTelemetry middleware: a SERVER span per request, named
// "METHOD /route" ("PUT /v1/products/:sku"), continuing the caller's W3C
// traceparent when it is valid (the global propagator refuses a malformed
// one, and the request starts a new trace). The probes and /metrics are
// not traced. The tracer is looked up at each request, so a provider set
// after NewHandler (or by a test) gets the spans.
//
// It is otelgin's span with the attributes the HTTP semantic conventions
// require of a server span (http.request.method, url.scheme, url.path,
// http.route, http.response.status_code, error.type for a 5xx) and none of
// the recommended ones (client and server address and port, user agent,
// protocol version, body size), set when the request ends and only if the span is recorded.
// otelgin computes its thirteen attributes and its metric attributes on
// every request, sampled or not; on the coupon hot path that was a third of
// what tracing cost (BenchmarkCouponRequest_tracing; docs/benchmarks.md).
// The request metrics are the API's own (accessLog).
func traced() gin.HandlerFunc {
	tracer := telemetry.LateTracerProvider().Tracer(tracerName)
	return func(c *gin.Context) {
		switch c.Request.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			c.Next()
			return
		}
		ctx := otel.GetTextMapPropagator().Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
		route := c.FullPath()
		name := c.Request.Method
		if route != "" {
			name += " " + route
		}
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
		// The first middleware: nothing before it needs the request back.
		c.Request = c.Request.WithContext(ctx)
		defer span.End()

		c.Next()

		if !span.IsRecording() {
			return
		}
		// All at once, at the end: one allocation for the span's attributes.
		scheme := "http"
		if c.Request.TLS != nil {
			scheme = "https"
		}
		status := c.Writer.Status()
		attrs := make([]attribute.KeyValue, 0, 6)
		attrs = append(attrs,
			semconv.HTTPRequestMethodKey.String(c.Request.Method),
			semconv.URLScheme(scheme),
			semconv.URLPath(c.Request.URL.Path),
			semconv.HTTPResponseStatusCode(status))
		if route != "" {
			attrs = append(attrs, semconv.HTTPRoute(route))
		}
		if status >= http.StatusInternalServerError {
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.SetAttributes(attrs...)
	}
}
