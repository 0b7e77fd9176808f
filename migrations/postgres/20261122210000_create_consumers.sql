-- Delivery to consumers (DESIGN.md §5). A consumer's cursor is a position in commit order:
-- (writing transaction id, event id). Workers read only rows of transactions older than the
-- oldest one still running, so no event can later appear behind a cursor.
CREATE INDEX events_tx_id ON events (tx, id);

CREATE TABLE consumers (
    name              text        PRIMARY KEY,
    position_tx       bigint      NOT NULL,
    position_id       uuid        NOT NULL,
    -- Events received before this are not for this consumer (it started "now", or replays
    -- from a time); the cursor alone cannot tell them from late commits.
    received_since    timestamptz NOT NULL,
    delivered         bigint      NOT NULL DEFAULT 0,
    skipped           bigint      NOT NULL DEFAULT 0,
    retries           bigint      NOT NULL DEFAULT 0,
    dead_letters      bigint      NOT NULL DEFAULT 0,
    last_error        text,
    last_delivered_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Events a consumer's sink refused for good (e.g. an OpenSearch mapping error). Delivery goes
-- on without them; they can be listed and replayed.
CREATE TABLE dead_letters (
    id               bigserial   PRIMARY KEY,
    consumer         text        NOT NULL,
    event_id         uuid        NOT NULL,
    reason           text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    replay_requested boolean     NOT NULL DEFAULT false
);
CREATE INDEX dead_letters_consumer ON dead_letters (consumer, id);
