-- Tenants and their API keys, shared by every tenant. A tenant's own data
-- lives in its schema (see migrations/tenant).
CREATE TABLE sagaflow.tenants (
    name        text PRIMARY KEY,
    schema_name text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sagaflow.api_keys (
    key_hash   bytea PRIMARY KEY CHECK (length(key_hash) = 32),
    tenant     text NOT NULL REFERENCES sagaflow.tenants (name) ON DELETE CASCADE,
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON sagaflow.api_keys (tenant);
