//! Risk scores as the store keeps them (DESIGN.md §9): the aggregated inputs the analyst reads
//! (never single events), and the scores it writes back with their history.
//!
//! The model itself (weights, curve, factors) lives in the analyst crate and the types in
//! `falconer_model::risk` (re-exported here at their old path); the store only aggregates in
//! SQL, remembers the previous score of each object to give a delta, and keeps the history.

pub use falconer_model::risk::{
    AlertGroup, EXPOSED_TAG, Factor, FactorKind, History, HistoryAnswer, HistoryItem, HistoryQuery,
    MisconfigurationGroup, Placement, RiskInputs, RiskLevel, RiskPage, RiskQuery, RiskRun,
    RiskScore, RiskSort, RiskSummary, RiskWindow, VulnerabilityGroup, round1,
};

use crate::event::{Severity, Workload};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// (cluster, kind, namespace or '', name): the primary key of a score.
pub(crate) type ScoreKey = (String, String, String, String);

/// The primary key of `score`.
pub(crate) fn score_key(score: &RiskScore) -> ScoreKey {
    (
        score.cluster.clone(),
        score.kind.clone(),
        score.namespace.clone().unwrap_or_default(),
        score.name.clone(),
    )
}

/// The ORDER BY of a listing in `sort` order.
pub(crate) fn order_by(sort: RiskSort) -> &'static str {
    match sort {
        RiskSort::Score => " ORDER BY score DESC, cluster, namespace, kind, name",
        RiskSort::Name => " ORDER BY name, namespace, cluster, kind",
        RiskSort::Delta => {
            " ORDER BY delta IS NULL, delta DESC, score DESC, cluster, namespace, kind, name"
        }
    }
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

/// Fills `previous` and `delta` from the scores of the previous computation.
pub(crate) fn fill_deltas(scores: &mut [RiskScore], previous: &HashMap<ScoreKey, f64>) {
    for score in scores.iter_mut() {
        if let Some(&before) = previous.get(&score_key(score)) {
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
            (score_key(&score("same", 0.0)), 10.0),
            (score_key(&score("up", 0.0)), 12.5),
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
}
