-- Dead bus messages whose tenant could not be resolved (no tenant in the
-- routing key or the body, or one that does not exist): an administrator's
-- table, never served to a tenant. Same columns as a tenant's dead_letters
-- (tenant/005_recovery.sql), plus the tenant name the message claimed.
CREATE TABLE sagaflow.dead_letters (
    id           uuid PRIMARY KEY,
    fingerprint  bytea NOT NULL UNIQUE CHECK (length(fingerprint) = 32),
    claimed      text NOT NULL DEFAULT '',
    message_id   text NOT NULL DEFAULT '',
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    transient    boolean NOT NULL DEFAULT false,
    routing_key  text NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    content_type text NOT NULL DEFAULT '',
    body         bytea NOT NULL,
    trace_id     text NOT NULL DEFAULT '',
    deaths       int NOT NULL DEFAULT 1,
    dead_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    replays      int NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_dead_at ON sagaflow.dead_letters (dead_at, id);
