-- Findings: the latest state of each problem a scanner reported (vulnerability,
-- misconfiguration, secret), one row per natural key. Every observation is also an event, so
-- the history stays in `events`.
CREATE TABLE findings (
    key          uuid        PRIMARY KEY,
    cluster      text COLLATE "C" NOT NULL,
    source       text        NOT NULL,
    scope        text COLLATE "C" NOT NULL,
    kind         text        NOT NULL,
    rule         text COLLATE "C" NOT NULL,
    severity     smallint    NOT NULL CHECK (severity BETWEEN 0 AND 7),
    severity_raw text        NOT NULL,
    message      text        NOT NULL,
    namespace    text COLLATE "C",
    image        text COLLATE "C",
    node         text COLLATE "C",
    fields       jsonb       NOT NULL DEFAULT '{}',
    state        text        NOT NULL CHECK (state IN ('open', 'fixed')),
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    fixed_at     timestamptz,
    -- The event of the latest observation, and the report application that made it.
    event_id     uuid        NOT NULL,
    report       uuid        NOT NULL
);

-- Applying a report fixes the open findings of its scopes it did not show.
CREATE INDEX findings_open_scope ON findings (cluster, source, scope) WHERE state = 'open';
CREATE INDEX findings_severity_key ON findings (severity, key);
CREATE INDEX findings_image ON findings (image, severity, key);
CREATE INDEX findings_node ON findings (node, severity, key);

-- The time of the newest report applied to each scope: an older report arriving late adds
-- history but does not roll the state back.
CREATE TABLE finding_scopes (
    cluster     text COLLATE "C" NOT NULL,
    source      text        NOT NULL,
    scope       text COLLATE "C" NOT NULL,
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (cluster, source, scope)
);
