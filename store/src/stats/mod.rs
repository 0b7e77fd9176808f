//! Aggregates for dashboards: events counted per time bucket and severity, by source and by
//! rule over a time window; findings counted per image or node, state and severity. Both
//! databases compute them with `GROUP BY` over the indexed columns, never by reading rows
//! into the hub: the same filters, groups and row folding, each database with its own
//! bucket arithmetic and time type (`postgres`, `sqlite`).

use crate::error::StoreError;
use crate::event::{Kind, Severity};
use crate::finding::FindingState;
use crate::sql::{self, Dialect, Part};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

mod postgres;
mod sqlite;

/// Events in `from <= time < to`, optionally of one cluster and one kind, counted in buckets
/// of `bucket_micros` starting at `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventStatsQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub cluster: Option<String>,
    pub kind: Option<Kind>,
    pub bucket_micros: i64,
    /// How many sources and rules to list, most frequent first.
    pub top: u32,
}

/// Events counted per bucket and severity (only non-zero counts), and the most frequent
/// sources and rules of the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventStats {
    pub buckets: Vec<BucketCount>,
    pub by_source: Vec<SourceCount>,
    pub by_rule: Vec<RuleCount>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BucketCount {
    /// Index of the bucket: it starts at `from + index * bucket`.
    pub index: i64,
    pub severity: Severity,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceCount {
    pub source: String,
    pub count: i64,
    /// The newest event time of this source in the window.
    pub last: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleCount {
    pub rule: String,
    pub count: i64,
}

/// Findings (latest state), optionally of one cluster and one kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingStatsQuery {
    pub cluster: Option<String>,
    pub kind: Option<Kind>,
}

/// What a finding is about: the image it was found in, else the node, else its scan scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    Image,
    Node,
    Scope,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Image => "image",
            TargetKind::Node => "node",
            TargetKind::Scope => "scope",
        }
    }

    fn from_sql(text: &str) -> Result<TargetKind, StoreError> {
        match text {
            "image" => Ok(TargetKind::Image),
            "node" => Ok(TargetKind::Node),
            "scope" => Ok(TargetKind::Scope),
            other => Err(StoreError::Corrupt(format!("target kind {other}"))),
        }
    }
}

/// Findings of one target counted per state and severity.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCount {
    pub target_kind: TargetKind,
    pub target: String,
    pub state: FindingState,
    pub severity: Severity,
    pub count: i64,
}

/// The WHERE clause (after `WHERE TRUE`) of every event aggregate of `q`.
fn event_filter(q: &EventStatsQuery) -> Vec<Part> {
    let mut parts = vec![
        Part::Sql(" AND time >= "),
        Part::Time(q.from),
        Part::Sql(" AND time < "),
        Part::Time(q.to),
    ];
    if let Some(cluster) = &q.cluster {
        parts.push(Part::Sql(" AND cluster = "));
        parts.push(Part::Text(cluster.clone()));
    }
    if let Some(kind) = q.kind {
        parts.push(Part::Sql(" AND kind = "));
        parts.push(Part::Text(kind.as_str().to_string()));
    }
    parts
}

/// The WHERE clause (after `WHERE TRUE`) of the finding aggregate of `q`.
fn finding_filter(q: &FindingStatsQuery) -> Vec<Part> {
    let mut parts = Vec::new();
    if let Some(cluster) = &q.cluster {
        parts.push(Part::Sql(" AND cluster = "));
        parts.push(Part::Text(cluster.clone()));
    }
    if let Some(kind) = q.kind {
        parts.push(Part::Sql(" AND kind = "));
        parts.push(Part::Text(kind.as_str().to_string()));
    }
    parts
}

/// The same text on both databases: the target of a finding and its kind.
const FINDING_TARGET: &str = "CASE WHEN image IS NOT NULL THEN 'image' \
    WHEN node IS NOT NULL THEN 'node' ELSE 'scope' END AS target_kind, \
    COALESCE(image, node, scope) AS target";

const FINDING_GROUPS: &str =
    " GROUP BY target_kind, target, state, severity ORDER BY target_kind, target, state, severity";

/// The event counts of `q` per bucket and severity: `select` computes the bucket from `from`
/// and `bucket_micros` (bound in between by `") / "`) and names the severity column.
fn bucket_query<DB: Dialect>(
    q: &EventStatsQuery,
    select: &'static str,
    columns: &'static str,
) -> QueryBuilder<'static, DB> {
    let mut parts = vec![
        Part::Int(q.from.timestamp_micros()),
        Part::Sql(") / "),
        Part::Int(q.bucket_micros),
        Part::Sql(columns),
    ];
    parts.extend(event_filter(q));
    parts.push(Part::Sql(" GROUP BY 1, 2 ORDER BY 1, 2"));
    sql::build(select, parts)
}

/// The most frequent sources of `q` with their newest event time.
fn source_query<DB: Dialect>(q: &EventStatsQuery) -> QueryBuilder<'static, DB> {
    let mut parts = event_filter(q);
    parts.push(Part::Sql(" GROUP BY source ORDER BY 2 DESC, source LIMIT "));
    parts.push(Part::Int(i64::from(q.top)));
    sql::build(
        "SELECT source, count(*), max(time) FROM events WHERE TRUE",
        parts,
    )
}

/// The most frequent rules of `q`.
fn rule_query<DB: Dialect>(q: &EventStatsQuery) -> QueryBuilder<'static, DB> {
    let mut parts = event_filter(q);
    parts.push(Part::Sql(" GROUP BY rule ORDER BY 2 DESC, rule LIMIT "));
    parts.push(Part::Int(i64::from(q.top)));
    sql::build("SELECT rule, count(*) FROM events WHERE TRUE", parts)
}

/// The finding counts of `q`; `severity` reads the severity column as an `int8`.
fn target_query<DB: Dialect>(q: &FindingStatsQuery, severity: &str) -> QueryBuilder<'static, DB> {
    let mut parts = finding_filter(q);
    parts.push(Part::Sql(FINDING_GROUPS));
    sql::build(
        format!("SELECT {FINDING_TARGET}, state, {severity}, count(*) FROM findings WHERE TRUE"),
        parts,
    )
}

fn buckets(rows: Vec<(i64, i64, i64)>) -> Result<Vec<BucketCount>, StoreError> {
    rows.into_iter()
        .map(|(index, severity, count)| {
            Ok(BucketCount {
                index,
                severity: sql::severity(severity)?,
                count,
            })
        })
        .collect()
}

fn rules(rows: Vec<(String, i64)>) -> Vec<RuleCount> {
    rows.into_iter()
        .map(|(rule, count)| RuleCount { rule, count })
        .collect()
}

fn targets(rows: Vec<(String, String, String, i64, i64)>) -> Result<Vec<TargetCount>, StoreError> {
    rows.into_iter()
        .map(|(kind, target, state, severity, count)| {
            Ok(TargetCount {
                target_kind: TargetKind::from_sql(&kind)?,
                target,
                state: sql::state(&state)?,
                severity: sql::severity(severity)?,
                count,
            })
        })
        .collect()
}
