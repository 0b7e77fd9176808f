//! Risk scores on SQLite: the same aggregation as PostgreSQL. SQLite as bundled has no `exp`,
//! so the decay 2^(−a) is computed as 2^(−⌊a⌋) (a shift) times e^(−x) for the fraction
//! (x = (a − ⌊a⌋)·ln 2 < 0.7), a Taylor polynomial of degree 7: relative error below 2·10⁻⁶.
//! One process owns the file, so no lock is needed beyond the analyst's own.

use super::{Sqlite, micros};
use crate::RiskModel;
use crate::error::StoreError;
use crate::risk::{
    ActivityRow, ExposedPods, History, HistoryAnswer, HistoryItem, HistoryQuery,
    MisconfigurationGroup, RiskInputs, RiskPage, RiskQuery, RiskRun, RiskScore, RiskWindow,
    ScoreKey, VulnerabilityGroup, factors_from_json, factors_to_json, fill_deltas, fold_activity,
    history_rows, listing_conditions, order_by, score_key, severity, workload,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, SqliteConnection};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The activity of the window in one scan, as on PostgreSQL: per pod, image and node and,
/// for runtime alerts, rule and severity, with the decayed weight of the alerts.
const ACTIVITY: &str = "SELECT cluster, namespace, pod, workload_kind, workload_name, image, \
    node, alert_rule, alert_severity, count(*) AS n, \
    sum(CASE WHEN alert_rule IS NULL OR a >= 62 THEN 0.0 \
    ELSE (1.0 / (1 << CAST(a AS INTEGER))) \
    * (1 - x * (1 - x / 2 * (1 - x / 3 * (1 - x / 4 * (1 - x / 5 * (1 - x / 6 \
    * (1 - x / 7))))))) END) AS weight, \
    min(time) AS oldest \
    FROM (SELECT *, (a - CAST(a AS INTEGER)) * 0.6931471805599453 AS x FROM ( \
      SELECT cluster, namespace, pod, workload_kind, workload_name, image, node, time, \
      CASE WHEN kind = 'runtime_alert' THEN rule END AS alert_rule, \
      CASE WHEN kind = 'runtime_alert' THEN severity END AS alert_severity, \
      max(?1 - time, 0) * 1.0 / ?3 AS a \
      FROM events WHERE time >= ?2 AND (kind = 'runtime_alert' OR pod IS NOT NULL))) \
    GROUP BY cluster, namespace, pod, workload_kind, workload_name, image, node, \
    alert_rule, alert_severity";

/// Pods an event called exposed (the pattern is a literal so `events_exposed` applies; the
/// tag is `EXPOSED_TAG`).
const EXPOSED: &str = "SELECT DISTINCT cluster, namespace, pod FROM events \
    WHERE time >= ?1 AND pod IS NOT NULL AND tags LIKE '%\"exposed\"%'";

const VULNERABILITIES: &str = "SELECT cluster, image, severity, count(*) AS n, \
    sum(coalesce(json_extract(fields, '$.fixed_version'), '') <> '') AS fixable \
    FROM findings WHERE state = 'open' AND kind = 'vulnerability' AND image IS NOT NULL \
    GROUP BY cluster, image, severity";

const MISCONFIGURATIONS: &str = "SELECT cluster, namespace, node, image, severity, \
    count(*) AS n FROM findings WHERE state = 'open' AND kind = 'misconfiguration' \
    GROUP BY cluster, namespace, node, image, severity";

const SCORE_COLUMNS: &str =
    "cluster, namespace, kind, name, score, previous, delta, computed_at, factors";

/// Rows per INSERT: 10 binds each, well under SQLite's 32766 variables.
const ROWS_PER_STATEMENT: usize = 500;

impl Sqlite {
    pub async fn compute_risk(
        &self,
        window: RiskWindow,
        retention_secs: i64,
        model: RiskModel,
    ) -> Result<Option<RiskRun>, StoreError> {
        let started = Instant::now();
        let inputs = {
            let mut conn = self
                .readers
                .acquire()
                .await
                .map_err(StoreError::connecting)?;
            read_inputs(&mut conn, window).await?
        };
        let mut scores = model(inputs);
        for score in &mut scores {
            score.computed_at = window.now;
        }
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let before = sqlx::query(&format!("SELECT {SCORE_COLUMNS} FROM risk_scores"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(score_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let previous: HashMap<ScoreKey, f64> =
            before.iter().map(|s| (score_key(s), s.score)).collect();
        let current: HashSet<ScoreKey> = scores.iter().map(score_key).collect();
        let gone: Vec<RiskScore> = before
            .into_iter()
            .filter(|s| !current.contains(&score_key(s)) && s.score > 0.0)
            .collect();
        fill_deltas(&mut scores, &previous);
        let history = history_rows(&scores, &gone);
        let now = window.now.timestamp_micros();
        sqlx::query("DELETE FROM risk_scores")
            .execute(&mut *tx)
            .await?;
        for chunk in scores.chunks(ROWS_PER_STATEMENT) {
            let factors = chunk
                .iter()
                .map(|s| factors_to_json(&s.factors))
                .collect::<Result<Vec<_>, _>>()?;
            let mut insert = QueryBuilder::new(
                "INSERT INTO risk_scores (cluster, level, namespace, kind, name, score, \
                 previous, delta, computed_at, factors) ",
            );
            insert.push_values(chunk.iter().zip(&factors), |mut row, (s, factors)| {
                row.push_bind(s.cluster.as_str())
                    .push_bind(s.level().as_str())
                    .push_bind(s.namespace.as_deref().unwrap_or(""))
                    .push_bind(s.kind.as_str())
                    .push_bind(s.name.as_str())
                    .push_bind(s.score)
                    .push_bind(s.previous)
                    .push_bind(s.delta)
                    .push_bind(now)
                    .push_bind(factors.as_str());
            });
            insert.build().execute(&mut *tx).await?;
        }
        for chunk in history.chunks(ROWS_PER_STATEMENT) {
            let factors = chunk
                .iter()
                .map(|h| factors_to_json(if h.value > 0.0 { &h.score.factors } else { &[] }))
                .collect::<Result<Vec<_>, _>>()?;
            let mut insert = QueryBuilder::new(
                "INSERT OR IGNORE INTO risk_history (cluster, namespace, kind, name, \
                 computed_at, score, delta, factors) ",
            );
            insert.push_values(chunk.iter().zip(&factors), |mut row, (h, factors)| {
                row.push_bind(h.score.cluster.as_str())
                    .push_bind(h.score.namespace.as_deref().unwrap_or(""))
                    .push_bind(h.score.kind.as_str())
                    .push_bind(h.score.name.as_str())
                    .push_bind(now)
                    .push_bind(h.value)
                    .push_bind(h.delta)
                    .push_bind(factors.as_str());
            });
            insert.build().execute(&mut *tx).await?;
        }
        let cutoff = (window.now - chrono::Duration::seconds(retention_secs)).timestamp_micros();
        sqlx::query("DELETE FROM risk_history WHERE computed_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM risk_runs WHERE computed_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        let run = crate::risk::run_of(&scores, window.now, started);
        sqlx::query(
            "INSERT OR IGNORE INTO risk_runs (computed_at, duration_ms, clusters, namespaces, \
             workloads) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(now)
        .bind(run.duration_ms)
        .bind(run.clusters)
        .bind(run.namespaces)
        .bind(run.workloads)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(run))
    }

    pub async fn risk_scores(&self, query: &RiskQuery) -> Result<RiskPage, StoreError> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {SCORE_COLUMNS} FROM risk_scores WHERE level = "
        ));
        qb.push_bind(query.level.as_str());
        push_conditions(&mut qb, query);
        qb.push(order_by(query.sort));
        qb.push(" LIMIT ");
        qb.push_bind(i64::from(query.limit));
        qb.push(" OFFSET ");
        qb.push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let items = qb
            .build()
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(score_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut count = QueryBuilder::new("SELECT count(*) FROM risk_scores WHERE level = ");
        count.push_bind(query.level.as_str());
        push_conditions(&mut count, query);
        let total: Vec<i64> = count.build_query_scalar().fetch_all(&self.readers).await?;
        Ok(RiskPage {
            items,
            total: total.first().copied().unwrap_or(0),
        })
    }

    pub async fn risk_computed_at(
        &self,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let computed_at: Vec<Option<i64>> =
            sqlx::query_scalar("SELECT max(computed_at) FROM risk_runs")
                .fetch_all(&self.readers)
                .await?;
        computed_at
            .into_iter()
            .flatten()
            .next()
            .map(micros)
            .transpose()
    }

    pub async fn risk_history(&self, query: &HistoryQuery) -> Result<HistoryAnswer, StoreError> {
        let mut qb = QueryBuilder::new(
            "SELECT DISTINCT cluster, namespace, kind FROM risk_history WHERE lower(kind) = lower(",
        );
        qb.push_bind(&query.kind);
        qb.push(") AND name = ");
        qb.push_bind(&query.name);
        if let Some(cluster) = &query.cluster {
            qb.push(" AND cluster = ");
            qb.push_bind(cluster);
        }
        if let Some(namespace) = &query.namespace {
            qb.push(" AND namespace = ");
            qb.push_bind(namespace);
        }
        qb.push(" ORDER BY cluster, namespace, kind LIMIT 100");
        let found: Vec<(String, String, String)> =
            qb.build_query_as().fetch_all(&self.readers).await?;
        let (cluster, namespace, kind) = match crate::risk::choose(found) {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(HistoryAnswer::NotFound),
            Err(ambiguous) => return Ok(ambiguous),
        };
        let rows = sqlx::query(
            "SELECT computed_at, score, delta, factors FROM risk_history \
             WHERE cluster = ? AND namespace = ? AND kind = ? AND name = ? \
             ORDER BY computed_at DESC LIMIT ?",
        )
        .bind(&cluster)
        .bind(&namespace)
        .bind(&kind)
        .bind(&query.name)
        .bind(i64::from(query.limit))
        .fetch_all(&self.readers)
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(HistoryItem {
                    computed_at: micros(row.try_get("computed_at")?)?,
                    score: row.try_get("score")?,
                    delta: row.try_get("delta")?,
                    factors: factors_from_json(row.try_get("factors")?)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(HistoryAnswer::Found(History {
            kind,
            name: query.name.clone(),
            cluster,
            namespace: (!namespace.is_empty()).then_some(namespace),
            items,
        }))
    }
}

fn push_conditions<'a>(qb: &mut QueryBuilder<'a, sqlx::Sqlite>, query: &'a RiskQuery) {
    for (before, value, after) in listing_conditions(query) {
        qb.push(before);
        qb.push_bind(value);
        qb.push(after);
    }
}

async fn read_inputs(
    conn: &mut SqliteConnection,
    window: RiskWindow,
) -> Result<RiskInputs, StoreError> {
    let clusters: Vec<String> = sqlx::query_scalar("SELECT name FROM clusters ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    let exposed: ExposedPods = sqlx::query_as(EXPOSED)
        .bind(window.since.timestamp_micros())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let activity = sqlx::query(ACTIVITY)
        .bind(window.now.timestamp_micros())
        .bind(window.since.timestamp_micros())
        .bind(window.half_life_secs * 1e6)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            let rule: Option<String> = row.try_get("alert_rule")?;
            let severity: Option<i64> = row.try_get("alert_severity")?;
            Ok(ActivityRow {
                cluster: row.try_get("cluster")?,
                namespace: row.try_get("namespace")?,
                pod: row.try_get("pod")?,
                workload: workload(row.try_get("workload_kind")?, row.try_get("workload_name")?),
                image: row.try_get("image")?,
                node: row.try_get("node")?,
                alert: match (rule, severity) {
                    (Some(rule), Some(rank)) => Some((rule, self::severity(rank)?)),
                    _ => None,
                },
                count: row.try_get("n")?,
                weight: row.try_get("weight")?,
                oldest: micros(row.try_get("oldest")?)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let (alerts, placements) = fold_activity(activity, &exposed);
    let vulnerabilities = sqlx::query(VULNERABILITIES)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(VulnerabilityGroup {
                cluster: row.try_get("cluster")?,
                image: row.try_get("image")?,
                severity: severity(row.try_get("severity")?)?,
                count: row.try_get("n")?,
                fixable: row.try_get("fixable")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let misconfigurations = sqlx::query(MISCONFIGURATIONS)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| {
            Ok(MisconfigurationGroup {
                cluster: row.try_get("cluster")?,
                namespace: row.try_get("namespace")?,
                node: row.try_get("node")?,
                image: row.try_get("image")?,
                severity: severity(row.try_get("severity")?)?,
                count: row.try_get("n")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(RiskInputs {
        clusters,
        alerts,
        placements,
        vulnerabilities,
        misconfigurations,
    })
}

fn score_from_row(row: &SqliteRow) -> Result<RiskScore, StoreError> {
    let namespace: String = row.try_get("namespace")?;
    Ok(RiskScore {
        cluster: row.try_get("cluster")?,
        namespace: (!namespace.is_empty()).then_some(namespace),
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        score: row.try_get("score")?,
        previous: row.try_get("previous")?,
        delta: row.try_get("delta")?,
        computed_at: micros(row.try_get("computed_at")?)?,
        factors: factors_from_json(row.try_get("factors")?)?,
    })
}
