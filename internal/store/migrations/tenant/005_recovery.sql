-- What an operator needs to recover: the trace id of each product's
-- current version (so a parked item shows the trace of the change it holds)
-- and the bus messages RabbitMQ dead-lettered for this tenant, archived by
-- internal/deadletter.
ALTER TABLE products ADD COLUMN trace_id text NOT NULL DEFAULT '';

CREATE TABLE dead_letters (
    id           uuid PRIMARY KEY,
    -- sha256 of routing key, message id and body: a redelivery of the same
    -- dead message is the same row.
    fingerprint  bytea NOT NULL UNIQUE CHECK (length(fingerprint) = 32),
    message_id   text NOT NULL DEFAULT '',
    -- reason is a short kind (invalid, unknown_tenant, refused,
    -- delivery_limit, rejected, expired, maxlen, unroutable); detail is
    -- the full text the ingest or the broker gave.
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    transient    boolean NOT NULL DEFAULT false,
    routing_key  text NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    content_type text NOT NULL DEFAULT '',
    body         bytea NOT NULL,
    trace_id     text NOT NULL DEFAULT '',
    -- deaths counts how often the message died (again after a replay).
    deaths       int NOT NULL DEFAULT 1,
    dead_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz,
    replays      int NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_dead_at ON dead_letters (dead_at, id);
CREATE INDEX dead_letters_waiting ON dead_letters (reason) WHERE replayed_at IS NULL;

-- The trace id of the request that created each join.
ALTER TABLE joins ADD COLUMN trace_id text NOT NULL DEFAULT '';
