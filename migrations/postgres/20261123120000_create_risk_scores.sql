-- Risk scores (DESIGN.md §9, docs/risk-model.md): the latest score of every cluster, namespace
-- and workload, and their history. A cluster's row has namespace '' (namespaces are never
-- empty in Kubernetes); `kind` is `Cluster`, `Namespace` or the workload's kind.
CREATE TABLE risk_scores (
    cluster     text COLLATE "C" NOT NULL,
    level       text        NOT NULL CHECK (level IN ('cluster', 'namespace', 'workload')),
    namespace   text COLLATE "C" NOT NULL DEFAULT '',
    kind        text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    score       float8      NOT NULL,
    previous    float8,
    delta       float8,
    computed_at timestamptz NOT NULL,
    -- [{"kind", "description", "points"}], most points first.
    factors     jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (cluster, kind, namespace, name)
);
CREATE INDEX risk_scores_level_score ON risk_scores (level, score DESC);

-- One row per object each time its score changed (by 0.1 or more), and when it appeared or
-- went away (score 0). Rows older than analyst.history_retention_days are deleted.
CREATE TABLE risk_history (
    cluster     text COLLATE "C" NOT NULL,
    namespace   text COLLATE "C" NOT NULL DEFAULT '',
    kind        text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    computed_at timestamptz NOT NULL,
    score       float8      NOT NULL,
    delta       float8,
    factors     jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (cluster, kind, namespace, name, computed_at)
);
CREATE INDEX risk_history_computed_at ON risk_history (computed_at);

-- Every computation: when, how long, how many objects.
CREATE TABLE risk_runs (
    computed_at timestamptz PRIMARY KEY,
    duration_ms bigint      NOT NULL,
    clusters    bigint      NOT NULL,
    namespaces  bigint      NOT NULL,
    workloads   bigint      NOT NULL
);

-- Scoring reads a week of events for where pods ran and which alerts they raised: an
-- index-only scan of this covering index reads a tenth of the table (events are 1–4 KB).
CREATE INDEX events_risk ON events (time) INCLUDE (kind, cluster, namespace, pod,
    workload_kind, workload_name, rule, severity, image, node);
-- The few events that call a pod exposed.
CREATE INDEX events_exposed ON events (time) WHERE tags ? 'exposed';
