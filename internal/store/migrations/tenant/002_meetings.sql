-- Paid meetings, their seats and the joins that take them.
CREATE TABLE meetings (
    id              uuid PRIMARY KEY,
    title           text NOT NULL,
    capacity        int NOT NULL CHECK (capacity > 0),
    fee_amount      bigint NOT NULL CHECK (fee_amount >= 0),
    fee_currency    text NOT NULL,
    cancel_deadline timestamptz,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    -- Maintained with the seats, under the meeting's row lock.
    reserved        int NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    confirmed       int NOT NULL DEFAULT 0 CHECK (confirmed >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (reserved + confirmed <= capacity)
);

-- One row per join that ever held a seat; a released seat keeps its row so
-- that a retried reserve of the same join does not take a second seat.
CREATE TABLE seats (
    join_id    text PRIMARY KEY,
    meeting_id uuid NOT NULL REFERENCES meetings (id),
    user_id    text NOT NULL,
    state      text NOT NULL CHECK (state IN ('reserved', 'confirmed', 'released')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX seats_one_confirmed_per_user ON seats (meeting_id, user_id) WHERE state = 'confirmed';

CREATE TABLE joins (
    id              text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    request_hash    text NOT NULL,
    meeting_id      uuid NOT NULL REFERENCES meetings (id),
    user_id         text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    reason          text NOT NULL DEFAULT '',
    payment_id      text NOT NULL DEFAULT '',
    payment_status  text NOT NULL DEFAULT 'none',
    steps           jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX joins_meeting ON joins (meeting_id);
