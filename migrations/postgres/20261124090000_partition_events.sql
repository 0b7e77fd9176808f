-- Retention (DESIGN.md §4): events are partitioned by `day`, the UTC day the hub received them,
-- so old days are dropped whole (DROP TABLE of a partition) instead of deleted row by row.
-- A dedup key is unique within a day; the writer also looks in the day before, so a retry
-- across midnight is still recognised. Existing rows keep their `tx`, so no consumer
-- receives them again.

-- Creates the partition holding `day` unless it exists; true when it created it. The hub
-- calls it on start for the days around today, when a batch brings a day it has not seen,
-- and on every retention run.
CREATE FUNCTION falconer_events_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    partition text := 'events_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(quote_ident(partition)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L) '
        'WITH (toast_tuple_target = 8160)',
        partition, day, day + 1);
    RETURN true;
EXCEPTION
    -- Another hub created it meanwhile.
    WHEN duplicate_table OR unique_violation THEN
        RETURN false;
END;
$$;

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER TABLE events_unpartitioned RENAME CONSTRAINT events_pkey TO events_unpartitioned_pkey;
DROP INDEX events_dedup_key, events_time_id, events_cluster_time, events_namespace_pod_time,
    events_rule_time, events_tx_id, events_risk, events_exposed;

CREATE TABLE events (
    id             uuid        NOT NULL,
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
    raw            text        NOT NULL,
    -- The UTC day of `received_at`: the partition key.
    day            date        NOT NULL,
    PRIMARY KEY (id, day)
) PARTITION BY RANGE (day);

SELECT falconer_events_partition(d::date)
FROM (SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date AS d FROM events_unpartitioned) days;
SELECT falconer_events_partition((now() AT TIME ZONE 'UTC')::date + n) FROM generate_series(-1, 7) n;

INSERT INTO events (id, tx, dedup_key, time, received_at, source, source_version, kind,
    severity, severity_raw, rule, message, tags, cluster, namespace, pod, container, image,
    node, workload_kind, workload_name, fields, raw, day)
SELECT id, tx, dedup_key, time, received_at, source, source_version, kind, severity,
    severity_raw, rule, message, tags, cluster, namespace, pod, container, image, node,
    workload_kind, workload_name, fields, raw, (received_at AT TIME ZONE 'UTC')::date
FROM events_unpartitioned;

DROP TABLE events_unpartitioned;

-- The indexes of the unpartitioned table, now on every partition, except that one index
-- serves both the query API's newest-first pages (time, id) and the analyst's index-only
-- scans (the included columns), where there were two: every index costs ingest per row.
CREATE UNIQUE INDEX events_dedup_key ON events (dedup_key, day);
CREATE INDEX events_time_id ON events (time DESC, id DESC) INCLUDE (kind, cluster, namespace,
    pod, workload_kind, workload_name, rule, severity, image, node);
CREATE INDEX events_cluster_time ON events (cluster, time DESC);
CREATE INDEX events_namespace_pod_time ON events (namespace, pod, time DESC);
CREATE INDEX events_rule_time ON events (rule, time DESC);
CREATE INDEX events_tx_id ON events (tx, id);
CREATE INDEX events_exposed ON events (time) WHERE tags ? 'exposed';
