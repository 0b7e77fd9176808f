//! Risk scores as the store keeps them (DESIGN.md §9): the aggregated inputs the analyst reads
//! (never single events), and the scores it writes back with their history.
//!
//! The model itself (weights, curve, factors) lives in the analyst crate; the store only
//! aggregates in SQL, remembers the previous score of each object to give a delta, and keeps
//! the history.

use crate::event::{Severity, Workload};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

    pub(crate) fn key(&self) -> ScoreKey {
        (
            self.cluster.clone(),
            self.kind.clone(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }
}

/// (cluster, kind, namespace or '', name): the primary key of a score.
pub(crate) type ScoreKey = (String, String, String, String);

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

impl RiskSort {
    pub(crate) fn order_by(self) -> &'static str {
        match self {
            RiskSort::Score => " ORDER BY score DESC, cluster, namespace, kind, name",
            RiskSort::Name => " ORDER BY name, namespace, cluster, kind",
            RiskSort::Delta => {
                " ORDER BY delta IS NULL, delta DESC, score DESC, cluster, namespace, kind, name"
            }
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

/// A history row to write.
pub(crate) struct HistoryRow<'a> {
    pub score: &'a RiskScore,
    /// The score written (0 for an object that went away).
    pub value: f64,
    pub delta: Option<f64>,
}

/// One row of the activity aggregate: a pod's events (or events outside any pod) per image
/// and node and, for runtime alerts, per rule and severity. One scan of the window gives both
/// the alert groups and the placements.
pub(crate) struct ActivityRow {
    pub cluster: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub workload: Option<Workload>,
    pub image: Option<String>,
    pub node: Option<String>,
    /// Set for runtime alerts only.
    pub alert: Option<(String, Severity)>,
    pub count: i64,
    pub weight: f64,
    pub oldest: DateTime<Utc>,
}

/// (cluster, namespace, pod) of pods an event called exposed.
pub(crate) type ExposedPods = std::collections::HashSet<(String, Option<String>, String)>;

/// Splits the activity aggregate into alert groups (merged over images and nodes) and
/// placements.
pub(crate) fn fold_activity(
    rows: Vec<ActivityRow>,
    exposed: &ExposedPods,
) -> (Vec<AlertGroup>, Vec<Placement>) {
    type AlertKey = (
        String,
        Option<String>,
        Option<String>,
        Option<(String, String)>,
        String,
        Severity,
    );
    let mut alerts: std::collections::BTreeMap<AlertKey, AlertGroup> =
        std::collections::BTreeMap::new();
    let mut placements = std::collections::BTreeMap::new();
    for row in rows {
        if let Some(pod) = &row.pod {
            let key = (
                row.cluster.clone(),
                row.namespace.clone(),
                pod.clone(),
                row.workload.clone().map(|w| (w.kind, w.name)),
                row.image.clone(),
                row.node.clone(),
            );
            placements.entry(key).or_insert_with(|| Placement {
                cluster: row.cluster.clone(),
                namespace: row.namespace.clone(),
                pod: pod.clone(),
                workload: row.workload.clone(),
                image: row.image.clone(),
                node: row.node.clone(),
                exposed: exposed.contains(&(
                    row.cluster.clone(),
                    row.namespace.clone(),
                    pod.clone(),
                )),
            });
        }
        let Some((rule, severity)) = row.alert else {
            continue;
        };
        let key = (
            row.cluster.clone(),
            row.namespace.clone(),
            row.pod.clone(),
            row.workload.clone().map(|w| (w.kind, w.name)),
            rule.clone(),
            severity,
        );
        let group = alerts.entry(key).or_insert_with(|| AlertGroup {
            cluster: row.cluster,
            namespace: row.namespace,
            pod: row.pod,
            workload: row.workload,
            rule,
            severity,
            count: 0,
            weight: 0.0,
            oldest: row.oldest,
        });
        group.count += row.count;
        group.weight += row.weight;
        group.oldest = group.oldest.min(row.oldest);
    }
    (
        alerts.into_values().collect(),
        placements.into_values().collect(),
    )
}

/// Picks the one object a history query names, from the (cluster, namespace, kind) rows
/// matching it.
pub(crate) fn choose(
    found: Vec<(String, String, String)>,
) -> Result<Option<(String, String, String)>, HistoryAnswer> {
    let distinct = |pick: fn(&(String, String, String)) -> &String| {
        let mut values: Vec<String> = found.iter().map(|f| pick(f).clone()).collect();
        values.dedup();
        values
    };
    let clusters = distinct(|f| &f.0);
    if clusters.len() > 1 {
        return Err(HistoryAnswer::Ambiguous {
            field: "cluster",
            candidates: clusters,
        });
    }
    let mut namespaces = distinct(|f| &f.1);
    namespaces.sort();
    namespaces.dedup();
    if namespaces.len() > 1 {
        return Err(HistoryAnswer::Ambiguous {
            field: "namespace",
            candidates: namespaces,
        });
    }
    Ok(found.into_iter().next())
}

/// The counts of a computation that wrote `scores`.
pub(crate) fn run_of(
    scores: &[RiskScore],
    computed_at: DateTime<Utc>,
    started: std::time::Instant,
) -> RiskRun {
    let count = |level| scores.iter().filter(|s| s.level() == level).count() as i64;
    RiskRun {
        computed_at,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        clusters: count(RiskLevel::Cluster),
        namespaces: count(RiskLevel::Namespace),
        workloads: count(RiskLevel::Workload),
    }
}

/// Rounds to one decimal, as every score and point is served.
pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Fills `previous` and `delta` from the scores of the previous computation.
pub(crate) fn fill_deltas(scores: &mut [RiskScore], previous: &HashMap<ScoreKey, f64>) {
    for score in scores.iter_mut() {
        if let Some(&before) = previous.get(&score.key()) {
            score.previous = Some(before);
            score.delta = Some(round1(score.score - before));
        } else {
            score.previous = None;
            score.delta = None;
        }
    }
}

/// The history rows to write: objects whose score changed by 0.1 or more or that are new,
/// and objects that went away (`gone`: a last row with score 0).
pub(crate) fn history_rows<'a>(
    scores: &'a [RiskScore],
    gone: &'a [RiskScore],
) -> Vec<HistoryRow<'a>> {
    let mut rows = Vec::new();
    for score in scores {
        match score.previous {
            Some(before) if (score.score - before).abs() < 0.05 => {}
            _ => rows.push(HistoryRow {
                score,
                value: score.score,
                delta: score.delta,
            }),
        }
    }
    for score in gone {
        rows.push(HistoryRow {
            score,
            value: 0.0,
            delta: Some(round1(-score.score)),
        });
    }
    rows
}

/// The advisory-lock key of risk computation (PostgreSQL): one analyst computes at a time.
pub fn risk_lock_key() -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"falconer.analyst/risk");
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Factors from their stored JSON text.
pub(crate) fn factors_from_json(text: &str) -> Result<Vec<Factor>, crate::StoreError> {
    serde_json::from_str(text).map_err(|e| crate::StoreError::Corrupt(format!("risk factors: {e}")))
}

pub(crate) fn factors_to_json(factors: &[Factor]) -> Result<String, crate::StoreError> {
    serde_json::to_string(factors)
        .map_err(|e| crate::StoreError::Database(format!("encoding risk factors: {e}")))
}

/// A severity stored as its rank.
pub(crate) fn severity(rank: i64) -> Result<Severity, crate::StoreError> {
    i16::try_from(rank)
        .ok()
        .and_then(Severity::from_rank)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("severity {rank}")))
}

/// The owner named by an event's workload columns, when both are set.
pub(crate) fn workload(kind: Option<String>, name: Option<String>) -> Option<Workload> {
    match (kind, name) {
        (Some(kind), Some(name)) => Some(Workload { kind, name }),
        _ => None,
    }
}

/// The conditions of a listing after `WHERE level = …`, the same SQL on both databases:
/// (text before the bind, value, text after).
pub(crate) fn listing_conditions(query: &RiskQuery) -> Vec<(&'static str, &str, &'static str)> {
    let mut conditions = Vec::new();
    if let Some(cluster) = &query.cluster {
        conditions.push((" AND cluster = ", cluster.as_str(), ""));
    }
    if let Some(namespace) = &query.namespace {
        conditions.push((" AND namespace = ", namespace.as_str(), ""));
    }
    if let Some(kind) = &query.kind {
        conditions.push((" AND lower(kind) = lower(", kind.as_str(), ")"));
    }
    conditions
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(name: &str, value: f64) -> RiskScore {
        RiskScore {
            cluster: "c".into(),
            namespace: Some("ns".into()),
            kind: "Deployment".into(),
            name: name.into(),
            score: value,
            previous: None,
            delta: None,
            computed_at: Utc::now(),
            factors: Vec::new(),
        }
    }

    #[test]
    fn a_changed_score_gets_a_delta_and_a_history_row_and_an_unchanged_one_only_a_delta() {
        let mut scores = vec![score("same", 10.0), score("up", 20.0), score("new", 5.0)];
        let previous: HashMap<ScoreKey, f64> = [
            (score("same", 0.0).key(), 10.0),
            (score("up", 0.0).key(), 12.5),
        ]
        .into_iter()
        .collect();
        let gone = vec![score("gone", 7.0)];
        fill_deltas(&mut scores, &previous);
        let rows = history_rows(&scores, &gone);
        assert_eq!(scores[0].delta, Some(0.0));
        assert_eq!(scores[1].delta, Some(7.5));
        assert_eq!(scores[1].previous, Some(12.5));
        assert_eq!(scores[2].delta, None);
        let written: Vec<(&str, f64, Option<f64>)> = rows
            .iter()
            .map(|r| (r.score.name.as_str(), r.value, r.delta))
            .collect();
        assert_eq!(
            written,
            [
                ("up", 20.0, Some(7.5)),
                ("new", 5.0, None),
                ("gone", 0.0, Some(-7.0))
            ]
        );
    }

    #[test]
    fn sort_parses_its_three_names_only() {
        assert_eq!("score".parse(), Ok(RiskSort::Score));
        assert_eq!("delta".parse(), Ok(RiskSort::Delta));
        assert_eq!("name".parse(), Ok(RiskSort::Name));
        assert!("Score".parse::<RiskSort>().is_err());
    }
}
