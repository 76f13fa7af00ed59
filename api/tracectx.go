package api

import (
	"context"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracedContext is the request's context for what it leaves for later
// (a workflow start, a coupon request in Redis): it carries the request's
// span, which the server's tracing middleware (traced) starts from the
// incoming traceparent. Where no middleware started one, it continues the
// incoming W3C context itself (the global propagator checks the header:
// one that is not valid gives no parent, so the work starts a new root).
func tracedContext(c *gin.Context) context.Context {
	ctx := c.Request.Context()
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(c.Request.Header))
}
