-- Findings: the latest state of each problem a scanner reported (vulnerability,
-- misconfiguration, secret), one row per natural key. Every observation is also an event, so
-- the history stays in `events`. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE findings (
    key          BLOB    PRIMARY KEY,
    cluster      TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    rule         TEXT    NOT NULL,
    severity     INTEGER NOT NULL CHECK (severity BETWEEN 0 AND 7),
    severity_raw TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    namespace    TEXT,
    image        TEXT,
    node         TEXT,
    fields       TEXT    NOT NULL DEFAULT '{}',
    state        TEXT    NOT NULL CHECK (state IN ('open', 'fixed')),
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    fixed_at     INTEGER,
    -- The event of the latest observation, and the report application that made it.
    event_id     TEXT    NOT NULL,
    report       BLOB    NOT NULL
);

-- Applying a report fixes the open findings of its scopes it did not show.
CREATE INDEX findings_open_scope ON findings (cluster, source, scope) WHERE state = 'open';
CREATE INDEX findings_severity_key ON findings (severity, key);
CREATE INDEX findings_image ON findings (image, severity, key);
CREATE INDEX findings_node ON findings (node, severity, key);

-- The time of the newest report applied to each scope: an older report arriving late adds
-- history but does not roll the state back.
CREATE TABLE finding_scopes (
    cluster     TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    reported_at INTEGER NOT NULL,
    PRIMARY KEY (cluster, source, scope)
);
