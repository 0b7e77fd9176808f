//! Findings: the latest state of each problem a scanner reports (a vulnerability in an image,
//! a failed benchmark check on a node), kept beside the events that record every observation.
//!
//! A scanner report is complete for its scopes (Trivy: one artifact; kube-bench: one node and
//! node type): applying it opens or refreshes every finding it shows and marks `fixed` every
//! open finding of those scopes it no longer shows. A report older than the newest one applied
//! to a scope only adds history.

use crate::event::{Event, Kind, Severity};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// One scanner report, normalized: written in one transaction with its observations.
#[derive(Debug, Clone)]
pub struct Report {
    /// The parser's name (`trivy`, `kube-bench`), part of every scope's identity.
    pub source: String,
    pub cluster: String,
    /// What the report is complete for, e.g. the image it scanned. A scope without
    /// observations is clean: all its open findings become fixed.
    pub scopes: Vec<String>,
    /// When the scan ran; decides which report of a scope is the newest.
    pub time: DateTime<Utc>,
    pub observations: Vec<Observation>,
}

/// One result of a report: stored as an event (the history), and when it shows a problem,
/// the finding it opens or refreshes.
#[derive(Debug, Clone)]
pub struct Observation {
    pub event: Event,
    /// Index into the report's `scopes`.
    pub scope: usize,
    /// The finding's natural key when this result is a problem (a vulnerability, a failed
    /// check); `None` for a passing result, which only closes.
    pub finding: Option<Uuid>,
}

/// What applying a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    /// A newer report of every scope was applied before: only history was added.
    pub stale: bool,
    /// Distinct findings the report shows open.
    pub open: u64,
    /// Findings of its scopes it marked fixed.
    pub fixed: u64,
}

/// A stored report: one `Stored` per observation, in order, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportStored {
    pub events: Vec<crate::event::Stored>,
    pub outcome: ReportOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingState {
    Open,
    Fixed,
}

impl FindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::Open => "open",
            FindingState::Fixed => "fixed",
        }
    }
}

impl fmt::Display for FindingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FindingState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(FindingState::Open),
            "fixed" => Ok(FindingState::Fixed),
            other => Err(format!("unknown state `{other}`; expected open or fixed")),
        }
    }
}

impl Serialize for FindingState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The latest state of one finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The natural key (e.g. Trivy: cluster, artifact, vulnerability, package).
    pub key: Uuid,
    pub source: String,
    pub kind: Kind,
    pub cluster: String,
    pub scope: String,
    pub rule: String,
    pub severity: Severity,
    pub severity_raw: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub fields: Box<serde_json::value::RawValue>,
    pub state: FindingState,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_at: Option<DateTime<Utc>>,
    /// The event of the latest observation that showed it.
    pub event_id: Uuid,
}

/// Filters for listing findings: most severe first, then by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingQuery {
    pub kind: Option<Kind>,
    pub severity: Option<Severity>,
    /// Findings at least this severe.
    pub min_severity: Option<Severity>,
    pub state: Option<FindingState>,
    pub source: Option<String>,
    pub cluster: Option<String>,
    pub image: Option<String>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    pub rule: Option<String>,
    pub after: Option<FindingCursor>,
    pub limit: u32,
}

/// A position in the (severity, key) order of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingCursor {
    pub severity: Severity,
    pub key: Uuid,
}

impl FindingCursor {
    /// Opaque text for clients: `<rank>_<key>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.severity.rank(), self.key.simple())
    }

    pub fn decode(text: &str) -> Option<FindingCursor> {
        let (rank, key) = text.split_once('_')?;
        Some(FindingCursor {
            severity: Severity::from_rank(rank.parse().ok()?)?,
            key: Uuid::try_parse(key).ok()?,
        })
    }
}

/// One page of findings and where the next one starts.
#[derive(Debug, Clone)]
pub struct FindingPage {
    pub findings: Vec<Finding>,
    pub next: Option<FindingCursor>,
}

/// A report as the writer hands it to a database: `slots[i]` is the index, among the batch's
/// unique events, of observation `i`'s event (or of the earlier event with its dedup key).
pub(crate) struct ReportWrite<'a> {
    pub report: &'a Report,
    pub slots: Vec<usize>,
}

/// Columns of a finding, in the order the row mappers read them.
pub(crate) const FINDING_COLUMNS: &str = "key, cluster, source, scope, kind, rule, severity, \
     severity_raw, message, namespace, image, node, fields, state, first_seen, last_seen, \
     fixed_at, event_id";

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
pub(crate) fn open_findings(report: &Report, applied: &[bool]) -> Vec<(usize, Uuid)> {
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

pub(crate) fn listing_parts(q: &FindingQuery) -> Vec<crate::query::Part> {
    use crate::query::Part::*;
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
        parts.push(Id(after.key));
        parts.push(Sql("))"));
    }
    parts.push(Sql(" ORDER BY severity, key LIMIT "));
    parts.push(Int(i64::from(q.limit) + 1));
    parts
}

pub(crate) fn into_page(mut findings: Vec<Finding>, limit: u32) -> FindingPage {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_cursor_round_trips_and_refuses_garbage() {
        let cursor = FindingCursor {
            severity: Severity::Error,
            key: Uuid::now_v7(),
        };
        assert_eq!(FindingCursor::decode(&cursor.encode()), Some(cursor));
        for text in [
            "",
            "3",
            "9_0190f5a1b2c37d4e8f90a1b2c3d4e5f6",
            "x_y",
            "-1_00",
        ] {
            assert_eq!(FindingCursor::decode(text), None, "{text}");
        }
    }

    #[test]
    fn state_parses_only_open_and_fixed() {
        assert_eq!("open".parse(), Ok(FindingState::Open));
        assert_eq!("fixed".parse(), Ok(FindingState::Fixed));
        assert!("closed".parse::<FindingState>().is_err());
    }

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
        };
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let report = Report {
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
