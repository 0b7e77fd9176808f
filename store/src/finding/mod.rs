//! Findings as the store applies and keeps them: the latest state of each problem a scanner
//! reports, changed by reports in the writer's transaction. The types are the model's
//! (`falconer_model::finding`), re-exported here at their old path. This module holds what
//! both databases share: the SQL of scopes, fixes, the upsert and listings, and the row
//! mapping; each database binds a report's findings its own way.

pub use falconer_model::finding::{
    Finding, FindingCursor, FindingPage, FindingQuery, FindingState, Observation, ReportOutcome,
    ReportStored, ScanReport,
};

use crate::error::StoreError;
use crate::sql::{self, Columns, Dialect, Part};
use sqlx::QueryBuilder;
use uuid::Uuid;

pub(crate) mod postgres;
pub(crate) mod sqlite;

/// A report as the writer hands it to a database: `slots[i]` is the index, among the batch's
/// unique events, of observation `i`'s event (or of the earlier event with its dedup key).
pub(crate) struct ReportWrite<'a> {
    pub report: &'a ScanReport,
    pub slots: Vec<usize>,
}

/// Columns of a finding, in the order the row mappers read them.
pub(crate) const FINDING_COLUMNS: &str = "key, cluster, source, scope, kind, rule, severity, \
     severity_raw, message, namespace, image, node, fields, state, first_seen, last_seen, \
     fixed_at, event_id";

/// The upsert of a report's findings: this, the rows (from arrays on PostgreSQL, a VALUES
/// list on SQLite), then [`ON_FINDING_CONFLICT`].
const INSERT_FINDINGS: &str = "INSERT INTO findings (key, cluster, source, scope, kind, rule, \
    severity, severity_raw, message, namespace, image, node, fields, state, first_seen, \
    last_seen, fixed_at, event_id, report) ";

/// A finding seen again keeps its `first_seen`; one that was fixed opens again.
const ON_FINDING_CONFLICT: &str = " ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, \
    kind = excluded.kind, rule = excluded.rule, severity = excluded.severity, \
    severity_raw = excluded.severity_raw, message = excluded.message, \
    namespace = excluded.namespace, image = excluded.image, node = excluded.node, \
    fields = excluded.fields, state = 'open', last_seen = excluded.last_seen, \
    fixed_at = NULL, event_id = excluded.event_id, report = excluded.report";

/// Upserts the scope's newest report time; returns a row only when this report is not older
/// than the newest applied before. Same SQL on both databases.
pub(crate) const SCOPE_UPSERT: &str = "INSERT INTO finding_scopes (cluster, source, scope, \
    reported_at) VALUES ($1, $2, $3, $4) ON CONFLICT (cluster, source, scope) DO UPDATE \
    SET reported_at = excluded.reported_at \
    WHERE finding_scopes.reported_at <= excluded.reported_at RETURNING 1";

/// Marks fixed the open findings of a scope that the report application `$5` did not show.
pub(crate) const FIX_ABSENT: &str = "UPDATE findings SET state = 'fixed', fixed_at = $4 \
    WHERE cluster = $1 AND source = $2 AND scope = $3 AND state = 'open' AND report <> $5";

/// The advisory-lock key of a scope (PostgreSQL): reports of one scope apply one at a time.
pub(crate) fn scope_lock(cluster: &str, source: &str, scope: &str) -> i64 {
    let key = crate::event::dedup_key(
        "finding-scope",
        &[cluster.as_bytes(), source.as_bytes(), scope.as_bytes()],
    );
    let bytes = key.as_bytes();
    i64::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

/// The open findings of a report to upsert: the last observation of each key wins, only for
/// scopes the report may change. Returns (observation index, key) pairs sorted by key, so
/// concurrent writers lock rows in the same order.
pub(crate) fn open_findings(report: &ScanReport, applied: &[bool]) -> Vec<(usize, Uuid)> {
    let mut latest = std::collections::HashMap::new();
    for (index, observation) in report.observations.iter().enumerate() {
        if let Some(key) = observation.finding
            && applied.get(observation.scope).copied().unwrap_or(false)
        {
            latest.insert(key, index);
        }
    }
    let mut pairs: Vec<(usize, Uuid)> = latest.into_iter().map(|(k, i)| (i, k)).collect();
    pairs.sort_unstable_by_key(|&(_, key)| key);
    pairs
}

/// The query of a finding listing on `DB`: most severe first, then by key.
pub(crate) fn listing<DB: Dialect>(q: &FindingQuery) -> QueryBuilder<'static, DB> {
    sql::build(
        format!("SELECT {FINDING_COLUMNS} FROM findings WHERE TRUE"),
        listing_parts(q),
    )
}

fn listing_parts(q: &FindingQuery) -> Vec<Part> {
    use Part::*;
    let mut parts = Vec::new();
    let mut eq = |column: &'static str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(Sql(column));
            parts.push(Text(v));
        }
    };
    eq(" AND source = ", q.source.clone());
    eq(" AND cluster = ", q.cluster.clone());
    eq(" AND image = ", q.image.clone());
    eq(" AND namespace = ", q.namespace.clone());
    eq(" AND node = ", q.node.clone());
    eq(" AND rule = ", q.rule.clone());
    eq(" AND kind = ", q.kind.map(|k| k.as_str().to_string()));
    eq(" AND state = ", q.state.map(|s| s.as_str().to_string()));
    if let Some(severity) = q.severity {
        parts.push(Sql(" AND severity = "));
        parts.push(Int(severity.rank().into()));
    }
    if let Some(severity) = q.min_severity {
        parts.push(Sql(" AND severity <= "));
        parts.push(Int(severity.rank().into()));
    }
    if let Some(after) = q.after {
        parts.push(Sql(" AND (severity > "));
        parts.push(Int(after.severity.rank().into()));
        parts.push(Sql(" OR (severity = "));
        parts.push(Int(after.severity.rank().into()));
        parts.push(Sql(" AND key > "));
        parts.push(Key(after.key));
        parts.push(Sql("))"));
    }
    parts.push(Sql(" ORDER BY severity, key LIMIT "));
    parts.push(Int(i64::from(q.limit) + 1));
    parts
}

fn into_page(mut findings: Vec<Finding>, limit: u32) -> FindingPage {
    let limit = limit as usize;
    let next = if findings.len() > limit {
        findings.truncate(limit);
        findings.last().map(|f| FindingCursor {
            severity: f.severity,
            key: f.key,
        })
    } else {
        None
    };
    FindingPage { findings, next }
}

/// The page of a listing's rows.
pub(crate) fn page<R: Columns>(rows: &[R], limit: u32) -> Result<FindingPage, StoreError> {
    let findings = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    Ok(into_page(findings, limit))
}

/// A finding from the columns of [`FINDING_COLUMNS`].
fn from_row<R: Columns>(row: &R) -> Result<Finding, StoreError> {
    Ok(Finding {
        key: row.plain("key")?,
        source: row.plain("source")?,
        kind: sql::kind(&row.plain::<String>("kind")?)?,
        cluster: row.plain("cluster")?,
        scope: row.plain("scope")?,
        rule: row.plain("rule")?,
        severity: sql::severity(row.rank("severity")?)?,
        severity_raw: row.plain("severity_raw")?,
        message: row.plain("message")?,
        namespace: row.plain("namespace")?,
        image: row.plain("image")?,
        node: row.plain("node")?,
        fields: row.json("fields")?,
        state: sql::state(&row.plain::<String>("state")?)?,
        first_seen: row.time("first_seen")?,
        last_seen: row.time("last_seen")?,
        fixed_at: row.opt_time("fixed_at")?,
        event_id: row.id("event_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Kind, Severity};
    use chrono::Utc;

    #[test]
    fn the_last_observation_of_a_key_wins_and_stale_scopes_are_left_out() {
        let event = |rule: &str| Event {
            id: Uuid::now_v7(),
            dedup_key: None,
            time: Utc::now(),
            received_at: Utc::now(),
            source: "trivy".into(),
            source_version: None,
            kind: Kind::Vulnerability,
            severity: Severity::Error,
            severity_raw: "HIGH".into(),
            rule: rule.into(),
            message: String::new(),
            tags: Vec::new(),
            cluster: "c".into(),
            namespace: None,
            pod: None,
            container: None,
            image: None,
            node: None,
            workload: None,
            fields: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            raw: None,
            group: None,
            suppressed: None,
        };
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let report = ScanReport {
            source: "trivy".into(),
            cluster: "c".into(),
            scopes: vec!["one".into(), "two".into()],
            time: Utc::now(),
            observations: vec![
                Observation {
                    event: event("first"),
                    scope: 0,
                    finding: Some(b),
                },
                Observation {
                    event: event("pass"),
                    scope: 0,
                    finding: None,
                },
                Observation {
                    event: event("again"),
                    scope: 0,
                    finding: Some(b),
                },
                Observation {
                    event: event("other scope"),
                    scope: 1,
                    finding: Some(a),
                },
            ],
        };
        assert_eq!(open_findings(&report, &[true, true]), [(3, a), (2, b)]);
        assert_eq!(open_findings(&report, &[true, false]), [(2, b)]);
    }
}
