-- Workflow starts waiting to be sent to Temporal. A request that must start
-- a saga writes its domain rows and its start here in one transaction; the
-- starter sends them (idempotently, by workflow ID) and marks them started.
-- So a crash between the database and Temporal loses nothing, and the API
-- does not wait for Temporal.
CREATE TABLE sagaflow.workflow_starts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant        text NOT NULL REFERENCES sagaflow.tenants (name) ON DELETE CASCADE,
    workflow_id   text NOT NULL UNIQUE,
    workflow_type text NOT NULL,
    task_queue    text NOT NULL,
    input         jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    attempts      int NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT '',
    next_attempt  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_starts_pending ON sagaflow.workflow_starts (next_attempt, id) WHERE started_at IS NULL;
