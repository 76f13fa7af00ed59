-- The W3C trace context of the request that recorded a workflow start, so
-- the starter starts the workflow in that trace (not one of its own). Only
-- a context rendered by the tracing API is written (internal/tracectx); the
-- checks bound what any writer can leave here.
ALTER TABLE sagaflow.workflow_starts
    ADD COLUMN traceparent text NOT NULL DEFAULT '' CHECK (octet_length(traceparent) <= 55),
    ADD COLUMN tracestate  text NOT NULL DEFAULT '' CHECK (octet_length(tracestate) <= 512);
