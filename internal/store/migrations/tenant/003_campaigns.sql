-- First-come coupon campaigns and the coupons they issued. The unique keys
-- make issuing idempotent: one coupon per user, one per rank.
CREATE TABLE campaigns (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    stock      int NOT NULL CHECK (stock > 0),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'done')),
    issued     int NOT NULL DEFAULT 0 CHECK (issued >= 0 AND issued <= stock),
    accepted   int, -- set when the campaign is done
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz
);

CREATE TABLE coupons (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    user_id     text NOT NULL,
    rank        int NOT NULL CHECK (rank > 0),
    code        text NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, user_id),
    UNIQUE (campaign_id, rank)
);
