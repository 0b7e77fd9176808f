//! Events on PostgreSQL: batches go in as one `INSERT … SELECT FROM UNNEST` of column arrays,
//! so a commit of thousands of events is one statement, into the partition of their day.

use super::{CLUSTERS, EventQuery, Page, cluster_from_row, event_sql, from_row, listing, page};
use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::finding::postgres::apply_report;
use crate::finding::{ReportOutcome, ReportWrite, scope_lock};
use crate::postgres::Postgres;
use crate::retention::day_of;
use crate::sql::map_all;
use sqlx::{Acquire, PgConnection};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One statement, so one round trip and an implicit transaction: insert the events (in the
/// order bound, which `write` sorts by dedup key so concurrent writers take unique-index locks
/// in the same order and cannot deadlock) unless their dedup key is stored on their day or
/// the day before (`$23`: the day before the batch's first), then count what was inserted per cluster (a
/// batch of nothing but duplicates leaves `clusters` alone). `input` is read once, so it is
/// not materialized. The same statement files the inserted events under their alert groups
/// (`$24`; suppression ids `$25`): counts, severity, last seen, and a resolved group reopened by
/// an event no suppression matched, with its history row (sibling statements see the groups as
/// they were before this one, so `reopened` finds the resolved ones).
const WRITE: &str = "WITH input AS ( \
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], \
    $5::text[], $6::text[], $7::text[], $8::int2[], $9::text[], $10::text[], $11::text[], \
    $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], \
    $19::text[], $20::text[], $21::text[], $22::text[], $24::text[], $25::text[]) \
    AS t(id, dedup_key, time, received_at, source, source_version, kind, severity, \
    severity_raw, rule, message, tags, cluster, namespace, pod, container, image, node, \
    workload_kind, workload_name, fields, raw, group_id, suppressed)), \
  inserted AS ( \
    INSERT INTO events (id, dedup_key, time, received_at, source, source_version, kind, \
    severity, severity_raw, rule, message, tags, cluster, namespace, pod, container, image, \
    node, workload_kind, workload_name, fields, raw, day, group_id, suppressed) \
    SELECT id, dedup_key, time, received_at, source, source_version, kind, severity, \
    severity_raw, rule, message, tags::jsonb, cluster, namespace, pod, container, image, node, \
    workload_kind, workload_name, fields::jsonb, raw, (received_at AT TIME ZONE 'UTC')::date, \
    group_id, suppressed \
    FROM input WHERE dedup_key IS NULL OR NOT EXISTS (SELECT 1 FROM events o \
    WHERE o.dedup_key = input.dedup_key AND o.day >= $23 \
    AND o.day < (input.received_at AT TIME ZONE 'UTC')::date) \
    ON CONFLICT (dedup_key, day) DO NOTHING RETURNING id, cluster, received_at, time, \
    group_id, suppressed, severity, rule, source, namespace, \
    COALESCE(workload_kind || '/' || workload_name, 'Pod/' || pod, 'Node/' || node) AS workload), \
  seen AS ( \
    INSERT INTO clusters (name, first_seen, last_seen, events) \
    SELECT cluster, max(received_at), max(received_at), count(*) \
    FROM inserted GROUP BY cluster ORDER BY cluster \
    ON CONFLICT (name) DO UPDATE SET \
    first_seen = LEAST(clusters.first_seen, EXCLUDED.first_seen), \
    last_seen = GREATEST(clusters.last_seen, EXCLUDED.last_seen), \
    events = clusters.events + EXCLUDED.events), \
  reopened AS ( \
    INSERT INTO alert_group_changes (group_id, at, actor, state, comment) \
    SELECT g.id, now(), 'falconer', 'open', 'a new event arrived' FROM alert_groups g \
    WHERE g.state = 'resolved' AND g.id IN \
    (SELECT group_id FROM inserted WHERE suppressed IS NULL)), \
  grouped AS ( \
    INSERT INTO alert_groups AS g (id, rule, source, severity, cluster, namespace, workload, \
    count, suppressed, first_seen, last_seen, state, state_changed_at) \
    SELECT group_id, min(rule), min(source), min(severity), min(cluster), min(namespace), \
    min(workload), count(*), count(suppressed), min(time), max(time), 'open', now() \
    FROM inserted WHERE group_id IS NOT NULL GROUP BY group_id ORDER BY group_id \
    ON CONFLICT (id) DO UPDATE SET count = g.count + EXCLUDED.count, \
    suppressed = g.suppressed + EXCLUDED.suppressed, \
    severity = LEAST(g.severity, EXCLUDED.severity), \
    first_seen = LEAST(g.first_seen, EXCLUDED.first_seen), \
    last_seen = GREATEST(g.last_seen, EXCLUDED.last_seen), \
    state = CASE WHEN g.state = 'resolved' AND EXCLUDED.count > EXCLUDED.suppressed \
      THEN 'open' ELSE g.state END, \
    state_changed_at = CASE WHEN g.state = 'resolved' AND EXCLUDED.count > EXCLUDED.suppressed \
      THEN now() ELSE g.state_changed_at END) \
  SELECT id FROM inserted";

impl Postgres {
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

    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query(&event_sql())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r, true)).transpose()
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Page, StoreError> {
        let rows = listing::<sqlx::Postgres>(query)
            .build()
            .fetch_all(&mut *self.connection().await?)
            .await?;
        page(&rows, query.limit)
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        map_all(&mut *self.connection().await?, CLUSTERS, cluster_from_row).await
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
        .bind(opt(|e| e.group.as_deref()))
        .bind(
            events
                .iter()
                .map(|e| e.suppressed.map(|id| id.to_string()))
                .collect::<Vec<_>>(),
        )
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

fn json_texts(
    texts: impl Iterator<Item = serde_json::Result<String>>,
) -> Result<Vec<String>, StoreError> {
    texts
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Database(format!("encoding JSON column: {e}")))
}
