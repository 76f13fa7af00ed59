-- The run a start produced: the run Temporal started, or the one that was
-- already running under the workflow ID. With it, an operator (or a client
-- that waits for the saga's end) reads the exact run from the row, instead
-- of asking Temporal to resolve the workflow ID's current run.
ALTER TABLE sagaflow.workflow_starts
    ADD COLUMN run_id text NOT NULL DEFAULT '' CHECK (octet_length(run_id) <= 255);
