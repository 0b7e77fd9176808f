-- Triage (docs/triage.md): every event stored from now on names its alert group (`group_id`,
-- the hub's `store.group_by` key hashed) and the suppression that matched it, if any. Groups
-- are kept up to date in the transaction that inserts the events. Times are microseconds.
-- Events stored before this migration have no group.
ALTER TABLE events ADD COLUMN group_id TEXT;
ALTER TABLE events ADD COLUMN suppressed TEXT;
CREATE INDEX events_group_time ON events (group_id, time DESC);

CREATE TABLE alert_groups (
    id               TEXT    PRIMARY KEY,
    rule             TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    severity         INTEGER NOT NULL,
    cluster          TEXT    NOT NULL,
    namespace        TEXT,
    workload         TEXT,
    count            INTEGER NOT NULL,
    suppressed       INTEGER NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    state_changed_at INTEGER NOT NULL
);
CREATE INDEX alert_groups_last_seen ON alert_groups (last_seen DESC, id DESC);
CREATE INDEX alert_groups_state_last_seen ON alert_groups (state, last_seen DESC, id DESC);

CREATE TABLE alert_group_changes (
    seq      INTEGER PRIMARY KEY,
    group_id TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    state    TEXT    NOT NULL,
    comment  TEXT
);
CREATE INDEX alert_group_changes_group ON alert_group_changes (group_id, seq);

CREATE TABLE suppressions (
    id         TEXT    PRIMARY KEY,
    match_json TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    expires    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    origin     TEXT    NOT NULL
);
