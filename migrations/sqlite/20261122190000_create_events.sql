-- Events: one row per normalized event (DESIGN.md §2). `raw` keeps the payload byte for byte.
-- Times are microseconds since the Unix epoch (UTC). `seq` is the commit order: SQLite has a
-- single writer, so a delivery cursor over `seq` never skips a late commit.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,
    dedup_key      BLOB    UNIQUE,
    time           INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    source_version TEXT,
    kind           TEXT    NOT NULL,
    severity       INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 7),
    severity_raw   TEXT    NOT NULL,
    rule           TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    tags           TEXT    NOT NULL DEFAULT '[]',
    cluster        TEXT    NOT NULL,
    namespace      TEXT,
    pod            TEXT,
    container      TEXT,
    image          TEXT,
    node           TEXT,
    workload_kind  TEXT,
    workload_name  TEXT,
    fields         TEXT    NOT NULL DEFAULT '{}',
    raw            TEXT    NOT NULL
);

CREATE INDEX events_time_id ON events (time DESC, id DESC);
CREATE INDEX events_cluster_time ON events (cluster, time DESC);
CREATE INDEX events_namespace_pod_time ON events (namespace, pod, time DESC);
CREATE INDEX events_rule_time ON events (rule, time DESC);

CREATE TABLE clusters (
    name       TEXT    PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    events     INTEGER NOT NULL DEFAULT 0
);
