-- Sellers' products, the channels that sync them to markets, the version of
-- each product every channel has applied, and the parking lot of changes a
-- channel could not apply. A product's changes are announced through the
-- outbox (001_outbox.sql) in the transaction that writes them.
CREATE TABLE products (
    sku            text PRIMARY KEY,
    name           text NOT NULL,
    price_amount   bigint NOT NULL CHECK (price_amount >= 0),
    price_currency text NOT NULL,
    stock          bigint NOT NULL CHECK (stock >= 0),
    attributes     jsonb NOT NULL DEFAULT '{}',
    -- Grows by one with every change; markets never apply an older one.
    version        bigint NOT NULL CHECK (version > 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels (
    id                 uuid PRIMARY KEY,
    market             text NOT NULL,
    base_url           text NOT NULL,
    credentials        text NOT NULL,
    rate_limit_per_sec int NOT NULL CHECK (rate_limit_per_sec > 0),
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- The newest version of each product a channel has applied; never lowered.
-- No foreign key to products: the sync only marks SKUs it read from there,
-- and a key would make every mark take a share lock on the product's row.
CREATE TABLE channel_products (
    channel_id uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    sku        text NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    synced_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, sku)
);
CREATE INDEX channel_products_sku ON channel_products (sku);

-- The sync's dead-letter queue: one row per (channel, SKU) until an operator
-- retries or discards it.
CREATE TABLE parked_items (
    id          uuid PRIMARY KEY,
    channel_id  uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    sku         text NOT NULL,
    market      text NOT NULL,
    version     bigint NOT NULL,
    error       text NOT NULL,
    attempts    int NOT NULL CHECK (attempts >= 0),
    since       timestamptz NOT NULL DEFAULT now(),
    workflow_id text NOT NULL DEFAULT '',
    UNIQUE (channel_id, sku)
);
CREATE INDEX parked_items_since ON parked_items (since, id);
CREATE INDEX parked_items_sku ON parked_items (sku);
