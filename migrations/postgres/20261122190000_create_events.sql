-- Events: one row per normalized event (DESIGN.md §2). `raw` keeps the payload byte for byte.
-- Indexed names compare bytewise (COLLATE "C"): they are identifiers, not prose.
-- `tx` is the writing transaction's id: the delivery cursor reads only rows below the oldest
-- running transaction, so an event that commits late is never skipped (DESIGN.md §5).
CREATE TABLE events (
    id             uuid        PRIMARY KEY,
    tx             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    dedup_key      uuid,
    time           timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    source         text        NOT NULL,
    source_version text,
    kind           text        NOT NULL,
    severity       smallint    NOT NULL CHECK (severity BETWEEN 0 AND 7),
    severity_raw   text        NOT NULL,
    rule           text COLLATE "C"        NOT NULL,
    message        text        NOT NULL,
    tags           jsonb       NOT NULL DEFAULT '[]',
    cluster        text COLLATE "C"        NOT NULL,
    namespace      text COLLATE "C",
    pod            text COLLATE "C",
    container      text,
    image          text,
    node           text,
    workload_kind  text,
    workload_name  text,
    fields         jsonb       NOT NULL DEFAULT '{}',
    raw            text        NOT NULL
)
-- Events are 1–4 KB: keep them inline and uncompressed (compressing every row at ingest cost
-- more CPU than the disk it saves); only rows over 8 KB are compressed or moved out.
WITH (toast_tuple_target = 8160);

CREATE UNIQUE INDEX events_dedup_key ON events (dedup_key);
CREATE INDEX events_time_id ON events (time DESC, id DESC);
CREATE INDEX events_cluster_time ON events (cluster, time DESC);
CREATE INDEX events_namespace_pod_time ON events (namespace, pod, time DESC);
CREATE INDEX events_rule_time ON events (rule, time DESC);

CREATE TABLE clusters (
    name       text        PRIMARY KEY,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    events     bigint      NOT NULL DEFAULT 0
);
