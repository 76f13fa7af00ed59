-- The W3C trace context of the transaction that wrote an outbox row, so the
-- relay publishes the message in that request's trace (not its own). Written
-- by sagaflow from a parsed span context, never copied from a header; the
-- bounds are internal/telemetry's MaxTraceparentLen and MaxTracestateLen.
ALTER TABLE outbox
    ADD COLUMN traceparent text CHECK (length(traceparent) <= 128),
    ADD COLUMN tracestate  text CHECK (length(tracestate) <= 512);
