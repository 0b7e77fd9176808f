//! Risk scores (DESIGN.md §9) as the store keeps and serves them: the aggregated inputs the
//! analyst reads (never single events), the scores it writes back, their history and the
//! queries over them. The model itself (weights, curve, factors) lives in the analyst crate;
//! aggregation and storage in the store.

use crate::event::{Severity, Workload};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What the aggregation reads: runtime alerts since `since`, decayed to `now` with
/// `half_life_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskWindow {
    pub now: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub half_life_secs: f64,
}

/// Runtime alerts of one rule and severity in one pod (or outside any pod).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGroup {
    pub cluster: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// The owner the events named, when they named one.
    pub workload: Option<Workload>,
    pub rule: String,
    pub severity: Severity,
    pub count: i64,
    /// Sum over the alerts of 2^(−age / half-life): each alert counts 1 when new.
    pub weight: f64,
    pub oldest: DateTime<Utc>,
}

/// Where a pod ran and what with, from any event of the window that names a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub cluster: String,
    pub namespace: Option<String>,
    pub pod: String,
    pub workload: Option<Workload>,
    pub image: Option<String>,
    pub node: Option<String>,
    /// Some event of the pod carried the tag [`EXPOSED_TAG`].
    pub exposed: bool,
}

/// The tag an event carries to say its pod is reachable from outside the cluster.
pub const EXPOSED_TAG: &str = "exposed";

/// Open vulnerability findings of one image and severity.
#[derive(Debug, Clone, PartialEq)]
pub struct VulnerabilityGroup {
    pub cluster: String,
    pub image: String,
    pub severity: Severity,
    pub count: i64,
    /// Those with a fixed version available.
    pub fixable: i64,
}

/// Open (failed) misconfiguration findings of one place and severity.
#[derive(Debug, Clone, PartialEq)]
pub struct MisconfigurationGroup {
    pub cluster: String,
    pub namespace: Option<String>,
    pub node: Option<String>,
    /// The image a configuration scan (e.g. Trivy's Dockerfile checks) was about.
    pub image: Option<String>,
    pub severity: Severity,
    pub count: i64,
}

/// Everything a computation reads, already aggregated by the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskInputs {
    /// Every cluster the store knows.
    pub clusters: Vec<String>,
    pub alerts: Vec<AlertGroup>,
    pub placements: Vec<Placement>,
    pub vulnerabilities: Vec<VulnerabilityGroup>,
    pub misconfigurations: Vec<MisconfigurationGroup>,
}

/// What raised a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FactorKind {
    Runtime,
    Vulnerability,
    Misconfiguration,
    Exposure,
}

/// One reason for a score and the points it brought.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    pub kind: FactorKind,
    pub description: String,
    pub points: f64,
}

/// Which kind of object a score belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RiskLevel {
    Cluster,
    Namespace,
    Workload,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Cluster => "cluster",
            RiskLevel::Namespace => "namespace",
            RiskLevel::Workload => "workload",
        }
    }

    /// The level of an object of this kind (`Cluster`, `Namespace`, anything else a workload).
    pub fn of_kind(kind: &str) -> RiskLevel {
        match kind {
            "Cluster" => RiskLevel::Cluster,
            "Namespace" => RiskLevel::Namespace,
            _ => RiskLevel::Workload,
        }
    }
}

/// The score of one object, as stored and served (the API's score object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskScore {
    pub cluster: String,
    /// None for a cluster.
    pub namespace: Option<String>,
    /// `Cluster`, `Namespace` or a workload kind (`Deployment`, `DaemonSet`, …).
    pub kind: String,
    pub name: String,
    /// 0–100, one decimal.
    pub score: f64,
    /// The score of the previous computation; None when the object is new.
    pub previous: Option<f64>,
    pub delta: Option<f64>,
    pub computed_at: DateTime<Utc>,
    /// Most points first.
    pub factors: Vec<Factor>,
}

impl RiskScore {
    pub fn level(&self) -> RiskLevel {
        RiskLevel::of_kind(&self.kind)
    }
}

/// What one computation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskRun {
    pub computed_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub clusters: i64,
    pub namespaces: i64,
    pub workloads: i64,
}

/// How a listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RiskSort {
    /// Highest score first.
    #[default]
    Score,
    /// By name, then namespace and cluster.
    Name,
    /// Largest rise since the previous computation first (new objects last).
    Delta,
}

impl FromStr for RiskSort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "score" => Ok(RiskSort::Score),
            "name" => Ok(RiskSort::Name),
            "delta" => Ok(RiskSort::Delta),
            other => Err(format!(
                "unknown sort `{other}`; expected score, name or delta"
            )),
        }
    }
}

/// Filters of `GET /api/v1/risk/namespaces` and `/workloads`.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskQuery {
    /// Namespaces or workloads (a cluster listing is the summary's).
    pub level: RiskLevel,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// A workload kind, compared case-insensitively.
    pub kind: Option<String>,
    pub sort: RiskSort,
    pub limit: u32,
    pub offset: u64,
}

/// One page of scores and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskPage {
    pub items: Vec<RiskScore>,
    pub total: i64,
}

/// The latest computation and the top objects.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskSummary {
    pub computed_at: Option<DateTime<Utc>>,
    pub clusters: Vec<RiskScore>,
    pub top_namespaces: Vec<RiskScore>,
    pub top_workloads: Vec<RiskScore>,
}

/// Which object's history: `kind` is `Cluster`, `Namespace` or a workload kind, in any case.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub kind: String,
    pub name: String,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub limit: u32,
}

/// One recorded score of an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryItem {
    pub computed_at: DateTime<Utc>,
    pub score: f64,
    pub delta: Option<f64>,
    pub factors: Vec<Factor>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub kind: String,
    pub name: String,
    pub cluster: String,
    pub namespace: Option<String>,
    /// Newest first.
    pub items: Vec<HistoryItem>,
}

/// The answer to a history query.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryAnswer {
    Found(History),
    /// The object never had a score.
    NotFound,
    /// Objects of this kind and name exist in several clusters or namespaces: the named
    /// parameter (`cluster` or `namespace`) must choose one of `candidates`.
    Ambiguous {
        field: &'static str,
        candidates: Vec<String>,
    },
}

/// Rounds to one decimal, as every score and point is served.
pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_parses_its_three_names_only() {
        assert_eq!("score".parse(), Ok(RiskSort::Score));
        assert_eq!("delta".parse(), Ok(RiskSort::Delta));
        assert_eq!("name".parse(), Ok(RiskSort::Name));
        assert!("Score".parse::<RiskSort>().is_err());
    }
}
