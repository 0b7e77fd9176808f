//! Findings: the latest state of each problem a scanner reports (a vulnerability in an image,
//! a failed benchmark check on a node), kept beside the events that record every observation.
//!
//! A scanner report is complete for its scopes (Trivy: one artifact; kube-bench: one node and
//! node type): applying it opens or refreshes every finding it shows and marks `fixed` every
//! open finding of those scopes it no longer shows. A report older than the newest one applied
//! to a scope only adds history. The store applies reports and keeps findings; these are the
//! types it takes and answers with.

use crate::event::{Event, Kind, Severity};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// One scanner report, normalized: written in one transaction with its observations.
#[derive(Debug, Clone)]
pub struct ScanReport {
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
}
