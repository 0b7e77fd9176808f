-- Triage (docs/triage.md): every event stored from now on names its alert group (`group_id`,
-- the hub's `store.group_by` key hashed) and the suppression that matched it, if any. Groups
-- are kept up to date by the statement that inserts the events, so they are never behind.
-- Events stored before this migration have no group.
ALTER TABLE events ADD COLUMN group_id text, ADD COLUMN suppressed text;
-- A group's recent events (GET /api/v1/groups/{id}).
CREATE INDEX events_group_time ON events (group_id, time DESC);

CREATE TABLE alert_groups (
    id               text        PRIMARY KEY,
    rule             text        NOT NULL,
    source           text        NOT NULL,
    -- The most severe rank seen (0 = emergency).
    severity         int2        NOT NULL,
    cluster          text        NOT NULL,
    namespace        text,
    -- `Kind/name` of the owning workload; `Pod/…` or `Node/…` without one.
    workload         text,
    count            bigint      NOT NULL,
    -- Of `count`, the events a suppression matched.
    suppressed       bigint      NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    state            text        NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    state_changed_at timestamptz NOT NULL
);
CREATE INDEX alert_groups_last_seen ON alert_groups (last_seen DESC, id DESC);
CREATE INDEX alert_groups_state_last_seen ON alert_groups (state, last_seen DESC, id DESC);

-- Every state change of a group: who (the credential's name, or `falconer` when a new event
-- reopened it), when, and why.
CREATE TABLE alert_group_changes (
    seq      bigserial   PRIMARY KEY,
    group_id text        NOT NULL,
    at       timestamptz NOT NULL,
    actor    text        NOT NULL,
    state    text        NOT NULL,
    comment  text
);
CREATE INDEX alert_group_changes_group ON alert_group_changes (group_id, seq);

-- Suppressions: events matching `match_json` (a filter, docs/filters.md) until `expires` are
-- stored and counted but not delivered. `origin` is `api`, or `setting:<namespace>/<name>` for
-- entries declared in a Setting.
CREATE TABLE suppressions (
    id         text        PRIMARY KEY,
    match_json text        NOT NULL,
    reason     text        NOT NULL,
    expires    timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text        NOT NULL,
    origin     text        NOT NULL
);
