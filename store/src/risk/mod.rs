//! Risk scores as the store keeps them (DESIGN.md §9): the aggregated inputs the analyst reads
//! (never single events), and the scores it writes back with their history.
//!
//! The model itself (weights, curve, factors) lives in the analyst crate and the types in
//! `falconer_model::risk` (re-exported here at their old path); the store only aggregates in
//! SQL, remembers the previous score of each object to give a delta, and keeps the history.
//! Both databases share the listings, the history lookup, the comparison with the previous
//! computation and the row mapping; the aggregation (PostgreSQL decays with `exp`, SQLite
//! with a polynomial), the bulk writes and the one-analyst lock are each database's own.

pub use falconer_model::risk::{
    AlertGroup, EXPOSED_TAG, Factor, FactorKind, History, HistoryAnswer, HistoryItem, HistoryQuery,
    MisconfigurationGroup, Placement, RiskInputs, RiskLevel, RiskPage, RiskQuery, RiskRun,
    RiskScore, RiskSort, RiskSummary, RiskWindow, VulnerabilityGroup, round1,
};

use crate::RiskModel;
use crate::error::StoreError;
use crate::event::{Severity, Workload};
use crate::sql::{self, Columns, Dialect, Part};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use std::collections::{HashMap, HashSet};

mod postgres;
mod sqlite;

/// Open (failed) misconfiguration findings per place and severity; the same SQL on both.
const MISCONFIGURATIONS: &str = "SELECT cluster, namespace, node, image, severity, \
    count(*) AS n FROM findings WHERE state = 'open' AND kind = 'misconfiguration' \
    GROUP BY cluster, namespace, node, image, severity";

/// (cluster, kind, namespace or '', name): the primary key of a score.
type ScoreKey = (String, String, String, String);

/// The primary key of `score`.
fn score_key(score: &RiskScore) -> ScoreKey {
    (
        score.cluster.clone(),
        score.kind.clone(),
        score.namespace.clone().unwrap_or_default(),
        score.name.clone(),
    )
}

/// The ORDER BY of a listing in `sort` order.
fn order_by(sort: RiskSort) -> &'static str {
    match sort {
        RiskSort::Score => " ORDER BY score DESC, cluster, namespace, kind, name",
        RiskSort::Name => " ORDER BY name, namespace, cluster, kind",
        RiskSort::Delta => {
            " ORDER BY delta IS NULL, delta DESC, score DESC, cluster, namespace, kind, name"
        }
    }
}

/// A history row to write.
struct HistoryRow<'a> {
    pub score: &'a RiskScore,
    /// The score written (0 for an object that went away).
    pub value: f64,
    pub delta: Option<f64>,
}

/// One row of the activity aggregate: a pod's events (or events outside any pod) per image
/// and node and, for runtime alerts, per rule and severity. One scan of the window gives both
/// the alert groups and the placements.
struct ActivityRow {
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
type ExposedPods = std::collections::HashSet<(String, Option<String>, String)>;

/// Splits the activity aggregate into alert groups (merged over images and nodes) and
/// placements.
fn fold_activity(
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
fn choose(
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
fn run_of(
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
fn fill_deltas(scores: &mut [RiskScore], previous: &HashMap<ScoreKey, f64>) {
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
fn history_rows<'a>(scores: &'a [RiskScore], gone: &'a [RiskScore]) -> Vec<HistoryRow<'a>> {
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
    crate::postgres::lock_key(b"falconer.analyst/risk")
}

/// Factors from their stored JSON text.
pub(crate) fn factors_from_json(text: &str) -> Result<Vec<Factor>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("risk factors: {e}")))
}

pub(crate) fn factors_to_json(factors: &[Factor]) -> Result<String, StoreError> {
    serde_json::to_string(factors)
        .map_err(|e| StoreError::Database(format!("encoding risk factors: {e}")))
}

/// The conditions of a listing after `WHERE level = …`, the same SQL on both databases.
fn conditions(query: &RiskQuery) -> Vec<Part> {
    let mut parts = vec![Part::Text(query.level.as_str().to_string())];
    if let Some(cluster) = &query.cluster {
        parts.push(Part::Sql(" AND cluster = "));
        parts.push(Part::Text(cluster.clone()));
    }
    if let Some(namespace) = &query.namespace {
        parts.push(Part::Sql(" AND namespace = "));
        parts.push(Part::Text(namespace.clone()));
    }
    if let Some(kind) = &query.kind {
        parts.push(Part::Sql(" AND lower(kind) = lower("));
        parts.push(Part::Text(kind.clone()));
        parts.push(Part::Sql(")"));
    }
    parts
}

/// One page of a listing, reading `columns` (the dialect's [`score_from_row`] columns).
fn scores_query<DB: Dialect>(query: &RiskQuery, columns: &str) -> QueryBuilder<'static, DB> {
    let mut parts = conditions(query);
    parts.push(Part::Sql(order_by(query.sort)));
    parts.push(Part::Sql(" LIMIT "));
    parts.push(Part::Int(i64::from(query.limit)));
    parts.push(Part::Sql(" OFFSET "));
    parts.push(Part::Int(i64::try_from(query.offset).unwrap_or(i64::MAX)));
    sql::build(
        format!("SELECT {columns} FROM risk_scores WHERE level = "),
        parts,
    )
}

/// How many scores a listing matches in all.
fn count_query<DB: Dialect>(query: &RiskQuery) -> QueryBuilder<'static, DB> {
    sql::build(
        "SELECT count(*) FROM risk_scores WHERE level = ",
        conditions(query),
    )
}

/// The (cluster, namespace, kind) of the objects a history query may name.
fn objects_query<DB: Dialect>(query: &HistoryQuery) -> QueryBuilder<'static, DB> {
    let mut parts = vec![
        Part::Text(query.kind.clone()),
        Part::Sql(") AND name = "),
        Part::Text(query.name.clone()),
    ];
    if let Some(cluster) = &query.cluster {
        parts.push(Part::Sql(" AND cluster = "));
        parts.push(Part::Text(cluster.clone()));
    }
    if let Some(namespace) = &query.namespace {
        parts.push(Part::Sql(" AND namespace = "));
        parts.push(Part::Text(namespace.clone()));
    }
    parts.push(Part::Sql(" ORDER BY cluster, namespace, kind LIMIT 100"));
    sql::build(
        "SELECT DISTINCT cluster, namespace, kind FROM risk_history WHERE lower(kind) = lower(",
        parts,
    )
}

/// The recorded scores of one object (`$1`–`$4`: cluster, namespace, kind, name), newest
/// first, at most `$5`; `factors` reads the factors as text.
fn history_sql(factors: &str) -> String {
    format!(
        "SELECT computed_at, score, delta, {factors} FROM risk_history \
         WHERE cluster = $1 AND namespace = $2 AND kind = $3 AND name = $4 \
         ORDER BY computed_at DESC LIMIT $5"
    )
}

/// The history of the object `(cluster, namespace, kind)` a query named.
fn history(
    query: &HistoryQuery,
    (cluster, namespace, kind): (String, String, String),
    items: Vec<HistoryItem>,
) -> HistoryAnswer {
    HistoryAnswer::Found(History {
        kind,
        name: query.name.clone(),
        cluster,
        namespace: (!namespace.is_empty()).then_some(namespace),
        items,
    })
}

/// The scores `model` gives `inputs`, computed at `now`.
fn score(model: RiskModel, inputs: RiskInputs, now: DateTime<Utc>) -> Vec<RiskScore> {
    let mut scores = model(inputs);
    for score in &mut scores {
        score.computed_at = now;
    }
    scores
}

/// Fills the deltas of `scores` from the scores stored `before`, and returns the objects
/// that went away (scored before, above 0, and not now).
fn compare(scores: &mut [RiskScore], before: Vec<RiskScore>) -> Vec<RiskScore> {
    let previous: HashMap<ScoreKey, f64> = before.iter().map(|s| (score_key(s), s.score)).collect();
    let current: HashSet<ScoreKey> = scores.iter().map(score_key).collect();
    let gone = before
        .into_iter()
        .filter(|s| !current.contains(&score_key(s)) && s.score > 0.0)
        .collect();
    fill_deltas(scores, &previous);
    gone
}

/// Everything a computation reads, from the rows of the aggregates.
fn inputs(
    clusters: Vec<String>,
    activity: Vec<ActivityRow>,
    exposed: &ExposedPods,
    vulnerabilities: Vec<VulnerabilityGroup>,
    misconfigurations: Vec<MisconfigurationGroup>,
) -> RiskInputs {
    let (alerts, placements) = fold_activity(activity, exposed);
    RiskInputs {
        clusters,
        alerts,
        placements,
        vulnerabilities,
        misconfigurations,
    }
}

fn score_from_row<R: Columns>(row: &R) -> Result<RiskScore, StoreError> {
    let namespace: String = row.plain("namespace")?;
    Ok(RiskScore {
        cluster: row.plain("cluster")?,
        namespace: (!namespace.is_empty()).then_some(namespace),
        kind: row.plain("kind")?,
        name: row.plain("name")?,
        score: row.plain("score")?,
        previous: row.plain("previous")?,
        delta: row.plain("delta")?,
        computed_at: row.time("computed_at")?,
        factors: factors_from_json(&row.plain::<String>("factors")?)?,
    })
}

fn history_item_from_row<R: Columns>(row: &R) -> Result<HistoryItem, StoreError> {
    Ok(HistoryItem {
        computed_at: row.time("computed_at")?,
        score: row.plain("score")?,
        delta: row.plain("delta")?,
        factors: factors_from_json(&row.plain::<String>("factors")?)?,
    })
}

fn activity_from_row<R: Columns>(row: &R) -> Result<ActivityRow, StoreError> {
    let rule: Option<String> = row.plain("alert_rule")?;
    let severity = row.opt_rank("alert_severity")?;
    Ok(ActivityRow {
        cluster: row.plain("cluster")?,
        namespace: row.plain("namespace")?,
        pod: row.plain("pod")?,
        workload: sql::workload(row.plain("workload_kind")?, row.plain("workload_name")?),
        image: row.plain("image")?,
        node: row.plain("node")?,
        alert: match (rule, severity) {
            (Some(rule), Some(rank)) => Some((rule, sql::severity(rank)?)),
            _ => None,
        },
        count: row.plain("n")?,
        weight: row.plain("weight")?,
        oldest: row.time("oldest")?,
    })
}

fn vulnerability_from_row<R: Columns>(row: &R) -> Result<VulnerabilityGroup, StoreError> {
    Ok(VulnerabilityGroup {
        cluster: row.plain("cluster")?,
        image: row.plain("image")?,
        severity: sql::severity(row.rank("severity")?)?,
        count: row.plain("n")?,
        fixable: row.plain("fixable")?,
    })
}

fn misconfiguration_from_row<R: Columns>(row: &R) -> Result<MisconfigurationGroup, StoreError> {
    Ok(MisconfigurationGroup {
        cluster: row.plain("cluster")?,
        namespace: row.plain("namespace")?,
        node: row.plain("node")?,
        image: row.plain("image")?,
        severity: sql::severity(row.rank("severity")?)?,
        count: row.plain("n")?,
    })
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
