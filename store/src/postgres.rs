//! PostgreSQL: the production store. Batches go in as one `INSERT … SELECT FROM UNNEST`
//! of column arrays, so a commit of thousands of events is one statement.

use crate::backend::{LIST_COLUMNS, RowParts};
use crate::delivery::{
    ConsumerRecord, DeadLetter, LAG_COUNT_LIMIT, Lag, Position, Progress, Start, first_id_at,
};
use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::finding::{
    FINDING_COLUMNS, FIX_ABSENT, Finding, FindingPage, FindingQuery, ReportOutcome, ReportWrite,
    SCOPE_UPSERT, open_findings, scope_lock,
};
use crate::query::{EventQuery, Page, Part, into_page, listing_parts};
use crate::retention::{day_of, days_around};
use crate::stats::{
    BucketCount, EventStats, EventStatsQuery, FINDING_GROUPS, FINDING_TARGET, FindingStatsQuery,
    RuleCount, SourceCount, TargetCount, TargetKind, event_filter, finding_filter, severity_of,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Acquire, QueryBuilder, Row};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

mod retention;
mod risk;

#[derive(Clone)]
pub(crate) struct Postgres {
    pool: PgPool,
    /// For connections outside the pool: each consumer lock holds one.
    options: std::sync::Arc<PgConnectOptions>,
    /// The days whose `events` partition is known to exist.
    days: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<chrono::NaiveDate>>>,
}

/// One statement, so one round trip and an implicit transaction: insert the events (in the
/// order bound, which `write` sorts by dedup key so concurrent writers take unique-index locks
/// in the same order and cannot deadlock) unless their dedup key is stored on their day or
/// the day before (`$23`: the day before the batch's first), then count what was inserted per cluster (a
/// batch of nothing but duplicates leaves `clusters` alone). `input` is read once, so it is
/// not materialized.
const WRITE: &str = "WITH input AS ( \
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], \
    $5::text[], $6::text[], $7::text[], $8::int2[], $9::text[], $10::text[], $11::text[], \
    $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
    $19::text[], $20::text[], $21::text[], $22::text[]) \
    AS t(id, dedup_key, time, received_at, source, source_version, kind, severity, \
    severity_raw, rule, message, tags, cluster, namespace, pod, container, image, node, \
    workload_kind, workload_name, fields, raw)), \
  inserted AS ( \
    INSERT INTO events (id, dedup_key, time, received_at, source, source_version, kind, \
    severity, severity_raw, rule, message, tags, cluster, namespace, pod, container, image, \
    node, workload_kind, workload_name, fields, raw, day) \
    SELECT id, dedup_key, time, received_at, source, source_version, kind, severity, \
    severity_raw, rule, message, tags::jsonb, cluster, namespace, pod, container, image, node, \
    workload_kind, workload_name, fields::jsonb, raw, (received_at AT TIME ZONE 'UTC')::date \
    FROM input WHERE dedup_key IS NULL OR NOT EXISTS (SELECT 1 FROM events o \
    WHERE o.dedup_key = input.dedup_key AND o.day >= $23 \
    AND o.day < (input.received_at AT TIME ZONE 'UTC')::date) \
    ON CONFLICT (dedup_key, day) DO NOTHING RETURNING id, cluster, received_at), \
  seen AS ( \
    INSERT INTO clusters (name, first_seen, last_seen, events) \
    SELECT cluster, max(received_at), max(received_at), count(*) \
    FROM inserted GROUP BY cluster ORDER BY cluster \
    ON CONFLICT (name) DO UPDATE SET \
    first_seen = LEAST(clusters.first_seen, EXCLUDED.first_seen), \
    last_seen = GREATEST(clusters.last_seen, EXCLUDED.last_seen), \
    events = clusters.events + EXCLUDED.events) \
  SELECT id FROM inserted";

/// Opens or refreshes the findings a report shows, from column arrays in one statement.
/// A finding seen again keeps its `first_seen`; one that was fixed opens again.
const UPSERT_FINDINGS: &str = "INSERT INTO findings (key, cluster, source, scope, kind, rule, \
    severity, severity_raw, message, namespace, image, node, fields, state, first_seen, \
    last_seen, fixed_at, event_id, report) \
    SELECT key, $1, $2, scope, kind, rule, severity, severity_raw, message, namespace, image, \
    node, fields::jsonb, 'open', $3, $3, NULL, event_id, $4 \
    FROM UNNEST($5::uuid[], $6::text[], $7::text[], $8::text[], $9::int2[], $10::text[], \
    $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::uuid[]) \
    AS t(key, scope, kind, rule, severity, severity_raw, message, namespace, image, node, \
    fields, event_id) \
    ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, kind = excluded.kind, \
    rule = excluded.rule, severity = excluded.severity, severity_raw = excluded.severity_raw, \
    message = excluded.message, namespace = excluded.namespace, image = excluded.image, \
    node = excluded.node, fields = excluded.fields, state = 'open', \
    last_seen = excluded.last_seen, fixed_at = NULL, event_id = excluded.event_id, \
    report = excluded.report";

impl Postgres {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Postgres, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("store.database_url: {e}")))?
            .application_name("falconer");
        let pool = PgPoolOptions::new()
            // The writer holds one connection per commit; queries share the rest.
            .max_connections(max_connections + 1)
            .acquire_timeout(connect_timeout)
            .connect_with(options.clone())
            .await?;
        Ok(Postgres {
            pool,
            options: std::sync::Arc::new(options),
            days: Default::default(),
        })
    }

    /// Applies pending migrations and makes the partitions of the days around today.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::postgres().await?.run(&self.pool).await?;
        self.ensure_partitions(days_around(day_of(Utc::now())))
            .await
    }

    /// Events alone are one statement (an implicit transaction); with reports, one explicit
    /// transaction holds the events and every finding change.
    pub async fn write(
        &self,
        events: &[&Event],
        reports: &[ReportWrite<'_>],
    ) -> Result<(Vec<Stored>, Vec<ReportOutcome>), StoreError> {
        // A hub that could not run retention for a week makes today's partition here.
        let days: std::collections::BTreeSet<chrono::NaiveDate> =
            events.iter().map(|e| day_of(e.received_at)).collect();
        self.ensure_partitions(days.iter().copied()).await?;
        // Dedup keys are also looked up on the day before the batch's first.
        let dedup_since = days.first().and_then(|day| day.pred_opt());
        let mut conn = self.connection().await?;
        if reports.is_empty() {
            return Ok((
                insert_events(&mut conn, events, dedup_since).await?,
                Vec::new(),
            ));
        }
        let mut tx = conn.begin().await.map_err(StoreError::connecting)?;
        // Reports of one scope apply one at a time; locks taken in one order cannot deadlock.
        let mut locks: Vec<i64> = reports
            .iter()
            .flat_map(|w| {
                w.report
                    .scopes
                    .iter()
                    .map(|scope| scope_lock(&w.report.cluster, &w.report.source, scope))
            })
            .collect();
        locks.sort_unstable();
        locks.dedup();
        for lock in locks {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock)
                .execute(&mut *tx)
                .await?;
        }
        // Findings before events: inserting events locks the cluster's row in `clusters`
        // until commit, and every other writer of that cluster waits for it, so that comes
        // last. Findings first point at their observation's own event id...
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut opened = Vec::with_capacity(reports.len());
        for write in reports {
            let (outcome, open) = apply_report(&mut tx, write).await?;
            outcomes.push(outcome);
            opened.push(open);
        }
        let stored = insert_events(&mut tx, events, dedup_since).await?;
        // ...then, where that event was a duplicate, at the one stored before.
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for (write, open) in reports.iter().zip(&opened) {
            for &(i, key) in open {
                let id = stored[write.slots[i]].id;
                if id != write.report.observations[i].event.id {
                    keys.push(key);
                    ids.push(id);
                }
            }
        }
        if !keys.is_empty() {
            sqlx::query(
                "UPDATE findings SET event_id = u.id FROM UNNEST($1::uuid[], $2::uuid[]) \
                 AS u(key, id) WHERE findings.key = u.key",
            )
            .bind(&keys)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((stored, outcomes))
    }

    pub async fn findings(&self, query: &FindingQuery) -> Result<FindingPage, StoreError> {
        let mut qb =
            QueryBuilder::new(format!("SELECT {FINDING_COLUMNS} FROM findings WHERE TRUE"));
        for part in crate::finding::listing_parts(query) {
            match part {
                Part::Sql(sql) => qb.push(sql),
                Part::Text(v) => qb.push_bind(v),
                Part::Time(v) => qb.push_bind(v),
                Part::Int(v) => qb.push_bind(v),
                Part::Id(v) => qb.push_bind(v),
            };
        }
        let rows = qb.build().fetch_all(&mut *self.connection().await?).await?;
        let findings = rows
            .iter()
            .map(finding_from_row)
            .collect::<Result<_, _>>()?;
        Ok(crate::finding::into_page(findings, query.limit))
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let sql = format!("SELECT {LIST_COLUMNS}, raw FROM events WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r, true)).transpose()
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Page, StoreError> {
        let mut qb = QueryBuilder::new(format!("SELECT {LIST_COLUMNS} FROM events WHERE TRUE"));
        for part in listing_parts(query) {
            match part {
                Part::Sql(sql) => qb.push(sql),
                Part::Text(v) => qb.push_bind(v),
                Part::Time(v) => qb.push_bind(v),
                Part::Int(v) => qb.push_bind(v),
                Part::Id(v) => qb.push_bind(v),
            };
        }
        let rows = qb.build().fetch_all(&mut *self.connection().await?).await?;
        let events = rows
            .iter()
            .map(|r| from_row(r, false))
            .collect::<Result<_, _>>()?;
        Ok(into_page(events, query.limit))
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT name, first_seen, last_seen, events FROM clusters ORDER BY name",
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, first_seen, last_seen, events)| Cluster {
                name,
                first_seen,
                last_seen,
                events,
            })
            .collect())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn connection(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.pool.acquire().await.map_err(StoreError::connecting)
    }
}

/// Inserts events (dedup keys unique) with one statement; one `Stored` per event, in order.
/// A dedup key already stored on `dedup_since` (the day before the batch's first) or later
/// is a duplicate.
async fn insert_events(
    conn: &mut PgConnection,
    input: &[&Event],
    dedup_since: Option<chrono::NaiveDate>,
) -> Result<Vec<Stored>, StoreError> {
    let mut sorted = input.to_vec();
    sorted.sort_unstable_by_key(|e| e.dedup_key);
    let events = &sorted[..];
    let text = |f: fn(&Event) -> &str| events.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let opt = |f: fn(&Event) -> Option<&str>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let inserted: Vec<Uuid> = sqlx::query_scalar(WRITE)
        .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.dedup_key).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.time).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(text(|e| &e.source))
        .bind(opt(|e| e.source_version.as_deref()))
        .bind(text(|e| e.kind.as_str()))
        .bind(events.iter().map(|e| e.severity.rank()).collect::<Vec<_>>())
        .bind(text(|e| &e.severity_raw))
        .bind(text(|e| &e.rule))
        .bind(text(|e| &e.message))
        .bind(json_texts(
            events.iter().map(|e| serde_json::to_string(&e.tags)),
        )?)
        .bind(text(|e| &e.cluster))
        .bind(opt(|e| e.namespace.as_deref()))
        .bind(opt(|e| e.pod.as_deref()))
        .bind(opt(|e| e.container.as_deref()))
        .bind(opt(|e| e.image.as_deref()))
        .bind(opt(|e| e.node.as_deref()))
        .bind(opt(|e| e.workload.as_ref().map(|w| w.kind.as_str())))
        .bind(opt(|e| e.workload.as_ref().map(|w| w.name.as_str())))
        .bind(text(|e| e.fields.get()))
        .bind(text(|e| e.raw.as_deref().map_or("null", |r| r.get())))
        .bind(dedup_since)
        .fetch_all(&mut *conn)
        .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();

    // Events not inserted hit a dedup key stored before (committed by now: a conflicting
    // insert waits for the other transaction): answer with the stored id.
    let conflicting: Vec<Uuid> = events
        .iter()
        .filter(|e| !inserted.contains(&e.id))
        .filter_map(|e| e.dedup_key)
        .collect();
    let existing: HashMap<Uuid, Uuid> = if conflicting.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as("SELECT dedup_key, id FROM events WHERE dedup_key = ANY($1) AND day >= $2")
            .bind(&conflicting)
            .bind(dedup_since)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
    };
    // Answer in the caller's order, not the sorted one.
    let by_id: HashMap<Uuid, Stored> = events
        .iter()
        .map(|e| {
            if inserted.contains(&e.id) {
                return Ok((
                    e.id,
                    Stored {
                        id: e.id,
                        duplicate: false,
                    },
                ));
            }
            e.dedup_key
                .and_then(|key| existing.get(&key))
                .map(|&id| {
                    (
                        e.id,
                        Stored {
                            id,
                            duplicate: true,
                        },
                    )
                })
                .ok_or_else(|| {
                    StoreError::Database(format!("event {} was neither stored nor found", e.id))
                })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(input.iter().map(|e| by_id[&e.id]).collect())
}

/// Applies one report inside the writer's transaction: scopes first (skipping those a newer
/// report already set), then the findings it shows, then the fixes. Returns the outcome and
/// the (observation, key) pairs it upserted.
async fn apply_report(
    conn: &mut PgConnection,
    write: &ReportWrite<'_>,
) -> Result<(ReportOutcome, Vec<(usize, Uuid)>), StoreError> {
    let report = write.report;
    let run = Uuid::now_v7();
    let mut applied = Vec::with_capacity(report.scopes.len());
    for scope in &report.scopes {
        let row: Option<i32> = sqlx::query_scalar(SCOPE_UPSERT)
            .bind(&report.cluster)
            .bind(&report.source)
            .bind(scope)
            .bind(report.time)
            .fetch_optional(&mut *conn)
            .await?;
        applied.push(row.is_some());
    }
    let open = open_findings(report, &applied);
    if !open.is_empty() {
        let observation = |i: usize| &report.observations[i];
        let event = |i: usize| &report.observations[i].event;
        let text =
            |f: fn(&Event) -> &str| open.iter().map(|&(i, _)| f(event(i))).collect::<Vec<_>>();
        let opt = |f: fn(&Event) -> Option<&str>| {
            open.iter().map(|&(i, _)| f(event(i))).collect::<Vec<_>>()
        };
        sqlx::query(UPSERT_FINDINGS)
            .bind(&report.cluster)
            .bind(&report.source)
            .bind(report.time)
            .bind(run)
            .bind(open.iter().map(|&(_, key)| key).collect::<Vec<_>>())
            .bind(
                open.iter()
                    .map(|&(i, _)| report.scopes[observation(i).scope].as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(text(|e| e.kind.as_str()))
            .bind(text(|e| &e.rule))
            .bind(
                open.iter()
                    .map(|&(i, _)| event(i).severity.rank())
                    .collect::<Vec<_>>(),
            )
            .bind(text(|e| &e.severity_raw))
            .bind(text(|e| &e.message))
            .bind(opt(|e| e.namespace.as_deref()))
            .bind(opt(|e| e.image.as_deref()))
            .bind(opt(|e| e.node.as_deref()))
            .bind(text(|e| e.fields.get()))
            .bind(open.iter().map(|&(i, _)| event(i).id).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    let mut fixed = 0;
    for (scope, applied) in report.scopes.iter().zip(&applied) {
        if *applied {
            fixed += sqlx::query(FIX_ABSENT)
                .bind(&report.cluster)
                .bind(&report.source)
                .bind(scope)
                .bind(report.time)
                .bind(run)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }
    }
    let outcome = ReportOutcome {
        stale: !applied.contains(&true),
        open: open.len() as u64,
        fixed,
    };
    Ok((outcome, open))
}

fn finding_from_row(row: &PgRow) -> Result<Finding, StoreError> {
    let parts = RowParts {
        kind: row.try_get("kind")?,
        severity: row.try_get::<i16, _>("severity")?.into(),
        workload_kind: None,
        workload_name: None,
        raw: None,
    };
    Ok(Finding {
        key: row.try_get("key")?,
        source: row.try_get("source")?,
        kind: parts.kind()?,
        cluster: row.try_get("cluster")?,
        scope: row.try_get("scope")?,
        rule: row.try_get("rule")?,
        severity: parts.severity()?,
        severity_raw: row.try_get("severity_raw")?,
        message: row.try_get("message")?,
        namespace: row.try_get("namespace")?,
        image: row.try_get("image")?,
        node: row.try_get("node")?,
        fields: row
            .try_get::<Json<Box<serde_json::value::RawValue>>, _>("fields")?
            .0,
        state: RowParts::state(row.try_get("state")?)?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        fixed_at: row.try_get("fixed_at")?,
        event_id: row.try_get("event_id")?,
    })
}

fn json_texts(
    texts: impl Iterator<Item = serde_json::Result<String>>,
) -> Result<Vec<String>, StoreError> {
    texts
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Database(format!("encoding JSON column: {e}")))
}

fn from_row(row: &PgRow, with_raw: bool) -> Result<Event, StoreError> {
    let mut parts = RowParts {
        kind: row.try_get("kind")?,
        severity: row.try_get::<i16, _>("severity")?.into(),
        workload_kind: row.try_get("workload_kind")?,
        workload_name: row.try_get("workload_name")?,
        raw: if with_raw { row.try_get("raw")? } else { None },
    };
    Ok(Event {
        id: row.try_get("id")?,
        dedup_key: row.try_get("dedup_key")?,
        time: row.try_get("time")?,
        received_at: row.try_get("received_at")?,
        source: row.try_get("source")?,
        source_version: row.try_get("source_version")?,
        kind: parts.kind()?,
        severity: parts.severity()?,
        severity_raw: row.try_get("severity_raw")?,
        rule: row.try_get("rule")?,
        message: row.try_get("message")?,
        tags: row.try_get::<Json<Vec<String>>, _>("tags")?.0,
        cluster: row.try_get("cluster")?,
        namespace: row.try_get("namespace")?,
        pod: row.try_get("pod")?,
        container: row.try_get("container")?,
        image: row.try_get("image")?,
        node: row.try_get("node")?,
        workload: parts.workload(),
        fields: row
            .try_get::<Json<Box<serde_json::value::RawValue>>, _>("fields")?
            .0,
        raw: parts.raw()?,
    })
}

// ---- Delivery -------------------------------------------------------------------------------

/// Rows of transactions older than the oldest one still running: nothing can commit behind
/// them any more.
const SETTLED: &str = "tx < pg_snapshot_xmin(pg_current_snapshot())";

const MAX_ID: Uuid = Uuid::max();

impl Postgres {
    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, position_tx, position_id, received_since, delivered, skipped, retries, dead_letters, \
             last_error, last_delivered_at, created_at FROM consumers WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        row.map(|r| consumer_from_row(&r)).transpose()
    }

    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, position_tx, position_id, received_since, delivered, skipped, retries, dead_letters, \
             last_error, last_delivered_at, created_at FROM consumers ORDER BY name",
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.iter().map(consumer_from_row).collect()
    }

    pub async fn create_consumer(
        &self,
        name: &str,
        start: Start,
    ) -> Result<ConsumerRecord, StoreError> {
        let mut conn = self.connection().await?;
        let now: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8 - 1")
                .fetch_one(&mut *conn)
                .await?;
        // Start before every event received since then, and before every transaction still
        // running (its events may have been received since); the worker drops the rest by
        // `received_since`.
        let since = start.since();
        let position_tx = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT min(tx::text::int8) - 1 FROM events WHERE id >= $1 AND received_at >= $2",
        )
        .bind(first_id_at(since))
        .bind(since)
        .fetch_one(&mut *conn)
        .await?
        .map_or(now, |tx| tx.min(now));
        sqlx::query(
            "INSERT INTO consumers (name, position_tx, position_id, received_since) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(position_tx)
        .bind(MAX_ID)
        .bind(since)
        .execute(&mut *conn)
        .await?;
        drop(conn);
        self.consumer(name)
            .await?
            .ok_or_else(|| StoreError::Database(format!("consumer {name} vanished")))
    }

    pub async fn events_after(
        &self,
        position: Position,
        limit: u32,
    ) -> Result<Vec<(Position, Event)>, StoreError> {
        let sql = format!(
            "SELECT tx::text::int8 AS position_tx, {LIST_COLUMNS}, raw FROM events \
             WHERE (tx, id) > ($1::text::xid8, $2) AND {SETTLED} ORDER BY tx, id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(position.tx.to_string())
            .bind(position.id)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.iter()
            .map(|r| {
                let event = from_row(r, true)?;
                Ok((
                    Position {
                        tx: r.try_get("position_tx")?,
                        id: event.id,
                    },
                    event,
                ))
            })
            .collect()
    }

    pub async fn lag(&self, position: Position) -> Result<Lag, StoreError> {
        let mut conn = self.connection().await?;
        let events: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE (tx, id) > ($1::text::xid8, $2) \
             AND {SETTLED} LIMIT {LAG_COUNT_LIMIT}) AS backlog"
        ))
        .bind(position.tx.to_string())
        .bind(position.id)
        .fetch_one(&mut *conn)
        .await?;
        let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(&format!(
            "SELECT received_at FROM events WHERE (tx, id) > ($1::text::xid8, $2) AND {SETTLED} \
             ORDER BY tx, id LIMIT 1"
        ))
        .bind(position.tx.to_string())
        .bind(position.id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(Lag {
            events,
            seconds: oldest.map_or(0, |t| (Utc::now() - t).num_seconds().max(0)),
        })
    }

    pub async fn save_progress(
        &self,
        name: &str,
        position: Position,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::connecting)?;
        sqlx::query(
            "UPDATE consumers SET position_tx = $2, position_id = $3, \
             delivered = delivered + $4, skipped = skipped + $5, retries = retries + $6, \
             dead_letters = dead_letters + $7, \
             last_error = CASE WHEN $8 THEN $9 ELSE last_error END, \
             last_delivered_at = CASE WHEN $4 > 0 THEN now() ELSE last_delivered_at END, \
             updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .bind(position.tx)
        .bind(position.id)
        .bind(progress.delivered)
        .bind(progress.skipped)
        .bind(progress.retries)
        .bind(progress.dead.len() as i64)
        .bind(progress.last_error.is_some())
        .bind(progress.last_error.clone().flatten())
        .execute(&mut *tx)
        .await?;
        if !progress.dead.is_empty() {
            sqlx::query(
                "INSERT INTO dead_letters (consumer, event_id, reason) \
                 SELECT $1, * FROM UNNEST($2::uuid[], $3::text[])",
            )
            .bind(name)
            .bind(progress.dead.iter().map(|d| d.0).collect::<Vec<_>>())
            .bind(
                progress
                    .dead
                    .iter()
                    .map(|d| d.1.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn dead_letters(
        &self,
        name: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, consumer, event_id, reason, attempts, created_at, replay_requested \
             FROM dead_letters WHERE consumer = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(name)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    pub async fn request_replay(&self, name: &str, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let done = match ids {
            None => {
                sqlx::query(
                    "UPDATE dead_letters SET replay_requested = true WHERE consumer = $1 \
                     AND NOT replay_requested",
                )
                .bind(name)
                .execute(&mut *self.connection().await?)
                .await?
            }
            Some(ids) => {
                sqlx::query(
                    "UPDATE dead_letters SET replay_requested = true WHERE consumer = $1 \
                     AND id = ANY($2) AND NOT replay_requested",
                )
                .bind(name)
                .bind(ids)
                .execute(&mut *self.connection().await?)
                .await?
            }
        };
        Ok(done.rows_affected())
    }

    pub async fn replays(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<(DeadLetter, Option<Event>)>, StoreError> {
        let mut conn = self.connection().await?;
        let rows = sqlx::query(
            "SELECT id, consumer, event_id, reason, attempts, created_at, replay_requested \
             FROM dead_letters WHERE consumer = $1 AND replay_requested ORDER BY id LIMIT $2",
        )
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let letters: Vec<DeadLetter> = rows
            .iter()
            .map(dead_letter_from_row)
            .collect::<Result<_, _>>()?;
        let ids: Vec<Uuid> = letters.iter().map(|d| d.event_id).collect();
        let sql = format!("SELECT {LIST_COLUMNS}, raw FROM events WHERE id = ANY($1)");
        let events: HashMap<Uuid, Event> = sqlx::query(&sql)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| from_row(r, true).map(|e| (e.id, e)))
            .collect::<Result<_, _>>()?;
        Ok(letters
            .into_iter()
            .map(|d| {
                let event = events.get(&d.event_id).cloned();
                (d, event)
            })
            .collect())
    }

    pub async fn finish_replay(
        &self,
        name: &str,
        delivered: &[i64],
        failed: &[(i64, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::connecting)?;
        if !delivered.is_empty() {
            let gone = sqlx::query("DELETE FROM dead_letters WHERE consumer = $1 AND id = ANY($2)")
                .bind(name)
                .bind(delivered)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
            sqlx::query(
                "UPDATE consumers SET dead_letters = dead_letters - $2, delivered = delivered + $2, \
                 last_delivered_at = now(), updated_at = now() WHERE name = $1",
            )
            .bind(name)
            .bind(gone)
            .execute(&mut *tx)
            .await?;
        }
        if !failed.is_empty() {
            sqlx::query(
                "UPDATE dead_letters d SET reason = f.reason, attempts = attempts + 1, \
                 replay_requested = false FROM UNNEST($2::int8[], $3::text[]) AS f(id, reason) \
                 WHERE d.consumer = $1 AND d.id = f.id",
            )
            .bind(name)
            .bind(failed.iter().map(|f| f.0).collect::<Vec<_>>())
            .bind(failed.iter().map(|f| f.1.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn consumer_from_row(row: &PgRow) -> Result<ConsumerRecord, StoreError> {
    Ok(ConsumerRecord {
        name: row.try_get("name")?,
        position: Position {
            tx: row.try_get("position_tx")?,
            id: row.try_get("position_id")?,
        },
        received_since: row.try_get("received_since")?,
        delivered: row.try_get("delivered")?,
        skipped: row.try_get("skipped")?,
        retries: row.try_get("retries")?,
        dead_letters: row.try_get("dead_letters")?,
        last_error: row.try_get("last_error")?,
        last_delivered_at: row.try_get("last_delivered_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn dead_letter_from_row(row: &PgRow) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        consumer: row.try_get("consumer")?,
        event_id: row.try_get("event_id")?,
        reason: row.try_get("reason")?,
        attempts: row.try_get("attempts")?,
        created_at: row.try_get("created_at")?,
        replay_requested: row.try_get("replay_requested")?,
    })
}

impl Postgres {
    /// Takes the session advisory lock of a consumer on a connection of its own, so that only
    /// one hub replica delivers to it; `None` when another replica holds it. Closing the
    /// connection (dropping the lock, or the process dying) releases it.
    pub async fn lock_consumer(
        &self,
        name: &str,
    ) -> Result<Option<sqlx::PgConnection>, StoreError> {
        use sqlx::ConnectOptions;
        let mut conn = PgConnectOptions::clone(&self.options)
            .application_name("falconer-consumer-lock")
            .connect()
            .await
            .map_err(StoreError::connecting)?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(consumer_lock_key(name))
            .fetch_one(&mut conn)
            .await?;
        Ok(held.then_some(conn))
    }
}

/// The advisory-lock key of a consumer: 64 bits of SHA-256 of a namespaced name.
fn consumer_lock_key(name: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("falconer.consumer/{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

fn push_parts(qb: &mut QueryBuilder<'_, sqlx::Postgres>, parts: Vec<Part>) {
    for part in parts {
        match part {
            Part::Sql(sql) => qb.push(sql),
            Part::Text(v) => qb.push_bind(v),
            Part::Time(v) => qb.push_bind(v),
            Part::Int(v) => qb.push_bind(v),
            Part::Id(v) => qb.push_bind(v),
        };
    }
}

impl Postgres {
    pub async fn event_stats(&self, q: &EventStatsQuery) -> Result<EventStats, StoreError> {
        let mut conn = self.connection().await?;
        let mut qb = QueryBuilder::new("SELECT ((extract(epoch FROM time) * 1000000)::int8 - ");
        qb.push_bind(q.from.timestamp_micros())
            .push(") / ")
            .push_bind(q.bucket_micros)
            .push(" AS bucket, severity::int8, count(*) FROM events WHERE TRUE");
        push_parts(&mut qb, event_filter(q));
        qb.push(" GROUP BY 1, 2 ORDER BY 1, 2");
        let rows: Vec<(i64, i64, i64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
        let buckets = rows
            .into_iter()
            .map(|(index, severity, count)| {
                Ok(BucketCount {
                    index,
                    severity: severity_of(severity)?,
                    count,
                })
            })
            .collect::<Result<_, StoreError>>()?;

        let mut qb = QueryBuilder::new("SELECT source, count(*), max(time) FROM events WHERE TRUE");
        push_parts(&mut qb, event_filter(q));
        qb.push(" GROUP BY source ORDER BY 2 DESC, source LIMIT ")
            .push_bind(i64::from(q.top));
        let rows: Vec<(String, i64, DateTime<Utc>)> =
            qb.build_query_as().fetch_all(&mut *conn).await?;
        let by_source = rows
            .into_iter()
            .map(|(source, count, last)| SourceCount {
                source,
                count,
                last,
            })
            .collect();

        let mut qb = QueryBuilder::new("SELECT rule, count(*) FROM events WHERE TRUE");
        push_parts(&mut qb, event_filter(q));
        qb.push(" GROUP BY rule ORDER BY 2 DESC, rule LIMIT ")
            .push_bind(i64::from(q.top));
        let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *conn).await?;
        let by_rule = rows
            .into_iter()
            .map(|(rule, count)| RuleCount { rule, count })
            .collect();
        Ok(EventStats {
            buckets,
            by_source,
            by_rule,
        })
    }

    pub async fn finding_stats(
        &self,
        q: &FindingStatsQuery,
    ) -> Result<Vec<TargetCount>, StoreError> {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {FINDING_TARGET}, state, severity::int8, count(*) FROM findings WHERE TRUE"
        ));
        push_parts(&mut qb, finding_filter(q));
        qb.push(FINDING_GROUPS);
        let rows: Vec<(String, String, String, i64, i64)> = qb
            .build_query_as()
            .fetch_all(&mut *self.connection().await?)
            .await?;
        rows.into_iter()
            .map(|(kind, target, state, severity, count)| {
                Ok(TargetCount {
                    target_kind: TargetKind::from_sql(&kind)?,
                    target,
                    state: RowParts::state(&state)?,
                    severity: severity_of(severity)?,
                    count,
                })
            })
            .collect()
    }
}
