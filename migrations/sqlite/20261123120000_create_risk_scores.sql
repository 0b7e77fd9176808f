-- Risk scores (DESIGN.md §9, docs/risk-model.md): the latest score of every cluster, namespace
-- and workload, and their history. A cluster's row has namespace '' (namespaces are never
-- empty in Kubernetes); `kind` is `Cluster`, `Namespace` or the workload's kind. Times are
-- microseconds since the Unix epoch (UTC).
CREATE TABLE risk_scores (
    cluster     TEXT    NOT NULL,
    level       TEXT    NOT NULL CHECK (level IN ('cluster', 'namespace', 'workload')),
    namespace   TEXT    NOT NULL DEFAULT '',
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    score       REAL    NOT NULL,
    previous    REAL,
    delta       REAL,
    computed_at INTEGER NOT NULL,
    -- [{"kind", "description", "points"}], most points first.
    factors     TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (cluster, kind, namespace, name)
);
CREATE INDEX risk_scores_level_score ON risk_scores (level, score DESC);

-- One row per object each time its score changed (by 0.1 or more), and when it appeared or
-- went away (score 0). Rows older than analyst.history_retention_days are deleted.
CREATE TABLE risk_history (
    cluster     TEXT    NOT NULL,
    namespace   TEXT    NOT NULL DEFAULT '',
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    computed_at INTEGER NOT NULL,
    score       REAL    NOT NULL,
    delta       REAL,
    factors     TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (cluster, kind, namespace, name, computed_at)
);
CREATE INDEX risk_history_computed_at ON risk_history (computed_at);

-- Every computation: when, how long, how many objects.
CREATE TABLE risk_runs (
    computed_at INTEGER PRIMARY KEY,
    duration_ms INTEGER NOT NULL,
    clusters    INTEGER NOT NULL,
    namespaces  INTEGER NOT NULL,
    workloads   INTEGER NOT NULL
);

-- The few events that call a pod exposed.
CREATE INDEX events_exposed ON events (time) WHERE tags LIKE '%"exposed"%';
