//! Risk scores on PostgreSQL: aggregation with the decay computed in SQL, one analyst at a
//! time (a session advisory lock on a connection of its own), scores written in bulk.

use super::{
    ExposedPods, HistoryAnswer, HistoryQuery, MISCONFIGURATIONS, RiskInputs, RiskPage, RiskQuery,
    RiskRun, RiskWindow, activity_from_row, choose, compare, count_query, factors_to_json, history,
    history_item_from_row, history_rows, history_sql, inputs, misconfiguration_from_row,
    objects_query, risk_lock_key, run_of, score, score_from_row, scores_query,
    vulnerability_from_row,
};
use crate::RiskModel;
use crate::error::StoreError;
use crate::postgres::Postgres;
use crate::sql::map_all;
use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection};
use std::time::Instant;

/// The activity of the window in one scan (an index-only scan of `events_time_id`, which
/// includes these columns): per pod, image and node and, for runtime alerts, rule and
/// severity; each alert weighs 2^(−age / half-life) (an alert from the future weighs 1).
const ACTIVITY: &str = "SELECT cluster, namespace, pod, workload_kind, workload_name, image, \
    node, CASE WHEN kind = 'runtime_alert' THEN rule END AS alert_rule, \
    CASE WHEN kind = 'runtime_alert' THEN severity END AS alert_severity, count(*) AS n, \
    sum(CASE WHEN kind = 'runtime_alert' THEN \
    exp(-0.6931471805599453 * greatest(date_part('epoch', $1::timestamptz - time), 0) / $3) \
    ELSE 0 END) AS weight, min(time) AS oldest \
    FROM events WHERE time >= $2 AND (kind = 'runtime_alert' OR pod IS NOT NULL) \
    GROUP BY cluster, namespace, pod, workload_kind, workload_name, image, node, \
    alert_rule, alert_severity";

/// Pods an event called exposed (the tag is a literal so `events_exposed` applies; it is
/// `EXPOSED_TAG`).
const EXPOSED: &str = "SELECT DISTINCT cluster, namespace, pod FROM events \
    WHERE time >= $1 AND pod IS NOT NULL AND tags ? 'exposed'";

/// The analyst's own session: aggregation keeps one hash table of a few hundred bytes per
/// group, but the planner's guess of the number of groups is far too high and with the default
/// 4 MB it would sort on disk instead; JIT compilation costs more than it saves here.
const SESSION: &[&str] = &["SET work_mem = '128MB'", "SET jit = off"];

const VULNERABILITIES: &str = "SELECT cluster, image, severity, count(*) AS n, \
    count(*) FILTER (WHERE coalesce(fields->>'fixed_version', '') <> '') AS fixable \
    FROM findings WHERE state = 'open' AND kind = 'vulnerability' AND image IS NOT NULL \
    GROUP BY cluster, image, severity";

const SCORE_COLUMNS: &str =
    "cluster, namespace, kind, name, score, previous, delta, computed_at, factors::text AS factors";

impl Postgres {
    /// Reads the aggregated inputs, lets `model` score them and stores the scores, unless
    /// another analyst holds the lock (`None`).
    pub async fn compute_risk(
        &self,
        window: RiskWindow,
        retention_secs: i64,
        model: RiskModel,
    ) -> Result<Option<RiskRun>, StoreError> {
        use sqlx::Connection;
        let started = Instant::now();
        let Some(mut conn) = self
            .session_lock("falconer-analyst", risk_lock_key())
            .await?
        else {
            return Ok(None);
        };
        let result = compute(&mut conn, window, retention_secs, model, started).await;
        // Closing the connection releases the lock whatever happened.
        let _ = conn.close().await;
        result.map(Some)
    }

    pub async fn risk_scores(&self, query: &RiskQuery) -> Result<RiskPage, StoreError> {
        let mut conn = self.connection().await?;
        let items = scores_query::<sqlx::Postgres>(query, SCORE_COLUMNS)
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(score_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let total: i64 = count_query::<sqlx::Postgres>(query)
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await?;
        Ok(RiskPage { items, total })
    }

    pub async fn risk_computed_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT max(computed_at) FROM risk_runs")
            .fetch_one(&mut *self.connection().await?)
            .await?)
    }

    pub async fn risk_history(&self, query: &HistoryQuery) -> Result<HistoryAnswer, StoreError> {
        let mut conn = self.connection().await?;
        let found: Vec<(String, String, String)> = objects_query::<sqlx::Postgres>(query)
            .build_query_as()
            .fetch_all(&mut *conn)
            .await?;
        let (cluster, namespace, kind) = match choose(found) {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(HistoryAnswer::NotFound),
            Err(ambiguous) => return Ok(ambiguous),
        };
        let items = sqlx::query(&history_sql("factors::text AS factors"))
            .bind(&cluster)
            .bind(&namespace)
            .bind(&kind)
            .bind(&query.name)
            .bind(i64::from(query.limit))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(history_item_from_row)
            .collect::<Result<_, StoreError>>()?;
        Ok(history(query, (cluster, namespace, kind), items))
    }
}

async fn compute(
    conn: &mut PgConnection,
    window: RiskWindow,
    retention_secs: i64,
    model: RiskModel,
    started: Instant,
) -> Result<RiskRun, StoreError> {
    let inputs = read_inputs(conn, window).await?;
    let mut scores = score(model, inputs, window.now);
    let before = sqlx::query(&format!("SELECT {SCORE_COLUMNS} FROM risk_scores"))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(score_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let gone = compare(&mut scores, before);
    let history = history_rows(&scores, &gone);

    let mut tx = conn.begin().await.map_err(StoreError::connecting)?;
    sqlx::query("DELETE FROM risk_scores")
        .execute(&mut *tx)
        .await?;
    let factors = scores
        .iter()
        .map(|s| factors_to_json(&s.factors))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO risk_scores (cluster, level, namespace, kind, name, score, previous, delta, \
         computed_at, factors) SELECT cluster, level, namespace, kind, name, score, previous, \
         delta, $1, factors::jsonb FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::float8[], $8::float8[], $9::float8[], $10::text[]) \
         AS t(cluster, level, namespace, kind, name, score, previous, delta, factors)",
    )
    .bind(window.now)
    .bind(
        scores
            .iter()
            .map(|s| s.cluster.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        scores
            .iter()
            .map(|s| s.level().as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        scores
            .iter()
            .map(|s| s.namespace.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
    )
    .bind(scores.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>())
    .bind(scores.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
    .bind(scores.iter().map(|s| s.score).collect::<Vec<_>>())
    .bind(scores.iter().map(|s| s.previous).collect::<Vec<_>>())
    .bind(scores.iter().map(|s| s.delta).collect::<Vec<_>>())
    .bind(&factors)
    .execute(&mut *tx)
    .await?;
    let history_factors = history
        .iter()
        .map(|h| factors_to_json(if h.value > 0.0 { &h.score.factors } else { &[] }))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO risk_history (cluster, namespace, kind, name, computed_at, score, delta, \
         factors) SELECT cluster, namespace, kind, name, $1, score, delta, factors::jsonb \
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], \
         $7::float8[], $8::text[]) AS t(cluster, namespace, kind, name, score, delta, factors) \
         ON CONFLICT DO NOTHING",
    )
    .bind(window.now)
    .bind(
        history
            .iter()
            .map(|h| h.score.cluster.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        history
            .iter()
            .map(|h| h.score.namespace.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
    )
    .bind(
        history
            .iter()
            .map(|h| h.score.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        history
            .iter()
            .map(|h| h.score.name.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(history.iter().map(|h| h.value).collect::<Vec<_>>())
    .bind(history.iter().map(|h| h.delta).collect::<Vec<_>>())
    .bind(&history_factors)
    .execute(&mut *tx)
    .await?;
    let cutoff = window.now - chrono::Duration::seconds(retention_secs);
    sqlx::query("DELETE FROM risk_history WHERE computed_at < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM risk_runs WHERE computed_at < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    let run = run_of(&scores, window.now, started);
    sqlx::query(
        "INSERT INTO risk_runs (computed_at, duration_ms, clusters, namespaces, workloads) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (computed_at) DO NOTHING",
    )
    .bind(run.computed_at)
    .bind(run.duration_ms)
    .bind(run.clusters)
    .bind(run.namespaces)
    .bind(run.workloads)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(run)
}

async fn read_inputs(
    conn: &mut PgConnection,
    window: RiskWindow,
) -> Result<RiskInputs, StoreError> {
    let clusters: Vec<String> = sqlx::query_scalar("SELECT name FROM clusters ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    for setting in SESSION {
        sqlx::query(setting).execute(&mut *conn).await?;
    }
    let exposed: ExposedPods = sqlx::query_as(EXPOSED)
        .bind(window.since)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let activity = sqlx::query(ACTIVITY)
        .bind(window.now)
        .bind(window.since)
        .bind(window.half_life_secs)
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
