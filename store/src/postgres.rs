//! PostgreSQL: the production store. Batches go in as one `INSERT … SELECT FROM UNNEST`
//! of column arrays, so a commit of thousands of events is one statement.

use crate::backend::{LIST_COLUMNS, RowParts};
use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::finding::{
    FINDING_COLUMNS, FIX_ABSENT, Finding, FindingPage, FindingQuery, ReportOutcome, ReportWrite,
    SCOPE_UPSERT, open_findings, scope_lock,
};
use crate::query::{EventQuery, Page, Part, into_page, listing_parts};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Acquire, QueryBuilder, Row};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub(crate) struct Postgres {
    pool: PgPool,
}

/// One statement, so one round trip and an implicit transaction: insert the events (in the
/// order bound, which `write` sorts by dedup key so concurrent writers take unique-index locks
/// in the same order and cannot deadlock), then count what was inserted per cluster (a
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
    node, workload_kind, workload_name, fields, raw) \
    SELECT id, dedup_key, time, received_at, source, source_version, kind, severity, \
    severity_raw, rule, message, tags::jsonb, cluster, namespace, pod, container, image, node, \
    workload_kind, workload_name, fields::jsonb, raw FROM input \
    ON CONFLICT (dedup_key) DO NOTHING RETURNING id, cluster, received_at), \
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
            .connect_with(options)
            .await?;
        Ok(Postgres { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::postgres().await?.run(&self.pool).await?;
        Ok(())
    }

    /// Events alone are one statement (an implicit transaction); with reports, one explicit
    /// transaction holds the events and every finding change.
    pub async fn write(
        &self,
        events: &[&Event],
        reports: &[ReportWrite<'_>],
    ) -> Result<(Vec<Stored>, Vec<ReportOutcome>), StoreError> {
        let mut conn = self.connection().await?;
        if reports.is_empty() {
            return Ok((insert_events(&mut conn, events).await?, Vec::new()));
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
        let stored = insert_events(&mut tx, events).await?;
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
async fn insert_events(
    conn: &mut PgConnection,
    input: &[&Event],
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
        sqlx::query_as("SELECT dedup_key, id FROM events WHERE dedup_key = ANY($1)")
            .bind(&conflicting)
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
