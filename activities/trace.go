package activities

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/temporal"
)

// tracerName is the instrumentation scope of the activities' own spans.
// They are children of the Temporal interceptor's RunActivity span.
const tracerName = "sagaflow/activities"

// Attributes of the activities' spans. None holds personal or card data:
// no user id (it may be an email), no payment token, no coupon code.
const (
	attrTenant         = attribute.Key("sagaflow.tenant")
	attrMeetingID      = attribute.Key("sagaflow.meeting.id")
	attrJoinID         = attribute.Key("sagaflow.join.id")
	attrOutcome        = attribute.Key("sagaflow.outcome")
	attrCompensation   = attribute.Key("sagaflow.compensation")
	attrCompensationOf = attribute.Key("sagaflow.compensation.reason")
	attrAmount         = attribute.Key("sagaflow.payment.amount_minor")
	attrCurrency       = attribute.Key("sagaflow.payment.currency")
	attrPaymentStatus  = attribute.Key("sagaflow.payment.status")
	attrCampaignID     = attribute.Key("sagaflow.campaign.id")
	attrBatchSize      = attribute.Key("sagaflow.coupon.batch_size")
	attrRankFirst      = attribute.Key("sagaflow.coupon.rank_first")
	attrRankLast       = attribute.Key("sagaflow.coupon.rank_last")
	attrLinked         = attribute.Key("sagaflow.coupon.linked_requests")
	attrUnlinked       = attribute.Key("sagaflow.coupon.unlinked_requests")
)

// startSpan starts one of the activities' spans (an internal one), a child
// of ctx's span, through the global tracer provider.
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span with err's outcome: "ok", the ApplicationError's type
// (such as MeetingFull, Declined) for a refusal, or "error"; an error sets
// the span's status (with the type only: messages may quote what a caller
// sent).
func endSpan(span trace.Span, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() != "" {
			outcome = appErr.Type()
		}
		span.SetStatus(codes.Error, outcome)
	}
	span.SetAttributes(attrOutcome.String(outcome))
	span.End()
}

// compensation are the attributes of a compensating step.
func compensation(reason string) []attribute.KeyValue {
	return []attribute.KeyValue{attrCompensation.Bool(true), attrCompensationOf.String(reason)}
}
