-- Delivery to consumers (DESIGN.md §5). A consumer's cursor is a position in commit order:
-- SQLite has one writer, so `seq` is that order and `position_id` is unused (nil).
CREATE TABLE consumers (
    name              TEXT    PRIMARY KEY,
    position_tx       INTEGER NOT NULL,
    position_id       TEXT    NOT NULL,
    received_since    INTEGER NOT NULL,
    delivered         INTEGER NOT NULL DEFAULT 0,
    skipped           INTEGER NOT NULL DEFAULT 0,
    retries           INTEGER NOT NULL DEFAULT 0,
    dead_letters      INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_delivered_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- Events a consumer's sink refused for good. Delivery goes on without them; they can be
-- listed and replayed.
CREATE TABLE dead_letters (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer         TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 1,
    created_at       INTEGER NOT NULL,
    replay_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_consumer ON dead_letters (consumer, id);
