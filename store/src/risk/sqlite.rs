//! Risk scores on SQLite: the same aggregation as PostgreSQL. SQLite as bundled has no `exp`,
//! so the decay 2^(−a) is computed as 2^(−⌊a⌋) (a shift) times e^(−x) for the fraction
//! (x = (a − ⌊a⌋)·ln 2 < 0.7), a Taylor polynomial of degree 7: relative error below 2·10⁻⁶.
//! One process owns the file, so no lock is needed beyond the analyst's own.

use super::{
    ExposedPods, HistoryAnswer, HistoryQuery, MISCONFIGURATIONS, RiskInputs, RiskPage, RiskQuery,
    RiskRun, RiskWindow, activity_from_row, choose, compare, count_query, factors_to_json, history,
    history_item_from_row, history_rows, history_sql, inputs, misconfiguration_from_row,
    objects_query, run_of, score, score_from_row, scores_query, vulnerability_from_row,
};
use crate::RiskModel;
use crate::error::StoreError;
use crate::sql::map_all;
use crate::sqlite::{ROWS_PER_STATEMENT, Sqlite, micros, numbered};
use sqlx::{QueryBuilder, SqliteConnection};
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

const SCORE_COLUMNS: &str =
    "cluster, namespace, kind, name, score, previous, delta, computed_at, factors";

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
        let mut scores = score(model, inputs, window.now);
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let before = sqlx::query(&format!("SELECT {SCORE_COLUMNS} FROM risk_scores"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(score_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let gone = compare(&mut scores, before);
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
        let run = run_of(&scores, window.now, started);
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
        let items = scores_query::<sqlx::Sqlite>(query, SCORE_COLUMNS)
            .build()
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(score_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let total: Vec<i64> = count_query::<sqlx::Sqlite>(query)
            .build_query_scalar()
            .fetch_all(&self.readers)
            .await?;
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
        let found: Vec<(String, String, String)> = objects_query::<sqlx::Sqlite>(query)
            .build_query_as()
            .fetch_all(&self.readers)
            .await?;
        let (cluster, namespace, kind) = match choose(found) {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(HistoryAnswer::NotFound),
            Err(ambiguous) => return Ok(ambiguous),
        };
        let items = sqlx::query(&numbered(&history_sql("factors")))
            .bind(&cluster)
            .bind(&namespace)
            .bind(&kind)
            .bind(&query.name)
            .bind(i64::from(query.limit))
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(history_item_from_row)
            .collect::<Result<_, StoreError>>()?;
        Ok(history(query, (cluster, namespace, kind), items))
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
        .map(activity_from_row)
        .collect::<Result<Vec<_>, StoreError>>()?;
    let vulnerabilities = map_all(&mut *conn, VULNERABILITIES, vulnerability_from_row).await?;
    let misconfigurations =
        map_all(&mut *conn, MISCONFIGURATIONS, misconfiguration_from_row).await?;
    Ok(inputs(
        clusters,
        activity,
        &exposed,
        vulnerabilities,
        misconfigurations,
    ))
}
