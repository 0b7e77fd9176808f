//! SQLite: the embedded default store, one file under the data directory. WAL journal with
//! `synchronous = FULL`, so an acknowledged event survives a power cut; one connection
//! writes, a small pool of read-only connections serves queries.

use crate::backend::{LIST_COLUMNS, RowParts};
use crate::delivery::{
    ConsumerRecord, DeadLetter, LAG_COUNT_LIMIT, Lag, Position, Progress, Start, first_id_at,
};
use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::finding::{
    FINDING_COLUMNS, FIX_ABSENT, Finding, FindingPage, FindingQuery, ReportOutcome, ReportWrite,
    SCOPE_UPSERT, open_findings,
};
use crate::query::{EventQuery, Page, Part, into_page, listing_parts};
use crate::stats::{
    BucketCount, EventStats, EventStatsQuery, FINDING_GROUPS, FINDING_TARGET, FindingStatsQuery,
    RuleCount, SourceCount, TargetCount, TargetKind, event_filter, finding_filter, severity_of,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqliteConnection};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

mod retention;
mod risk;

#[derive(Clone)]
pub(crate) struct Sqlite {
    writer: SqlitePool,
    readers: SqlitePool,
}

const INSERT: &str = "INSERT INTO events (id, dedup_key, time, received_at, source, \
    source_version, kind, severity, severity_raw, rule, message, tags, cluster, namespace, pod, \
    container, image, node, workload_kind, workload_name, fields, raw) ";

const INSERT_FINDINGS: &str = "INSERT INTO findings (key, cluster, source, scope, kind, rule, \
    severity, severity_raw, message, namespace, image, node, fields, state, first_seen, \
    last_seen, fixed_at, event_id, report) ";

/// A finding seen again keeps its `first_seen`; one that was fixed opens again.
const ON_FINDING_CONFLICT: &str = " ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, \
    kind = excluded.kind, rule = excluded.rule, severity = excluded.severity, \
    severity_raw = excluded.severity_raw, message = excluded.message, \
    namespace = excluded.namespace, image = excluded.image, node = excluded.node, \
    fields = excluded.fields, state = 'open', last_seen = excluded.last_seen, \
    fixed_at = NULL, event_id = excluded.event_id, report = excluded.report";

/// Rows per INSERT statement: 22 binds each, well under SQLite's 32766 variables.
const ROWS_PER_STATEMENT: usize = 500;

const UPSERT_CLUSTER: &str = "INSERT INTO clusters (name, first_seen, last_seen, events) \
    VALUES (?1, ?2, ?2, ?3) \
    ON CONFLICT (name) DO UPDATE SET \
    first_seen = min(first_seen, excluded.first_seen), \
    last_seen = max(last_seen, excluded.last_seen), \
    events = events + excluded.events";

impl Sqlite {
    pub async fn open(
        path: &Path,
        max_readers: u32,
        busy_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("creating data directory {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_with(options.clone().create_if_missing(true))
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(max_readers)
            .acquire_timeout(connect_timeout)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Sqlite { writer, readers })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::sqlite().await?.run(&self.writer).await?;
        Ok(())
    }

    pub async fn write(
        &self,
        events: &[&Event],
        reports: &[ReportWrite<'_>],
    ) -> Result<(Vec<Stored>, Vec<ReportOutcome>), StoreError> {
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let stored = insert_events(&mut tx, events).await?;
        let mut outcomes = Vec::with_capacity(reports.len());
        for write in reports {
            outcomes.push(apply_report(&mut tx, write, &stored).await?);
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
                Part::Time(v) => qb.push_bind(v.timestamp_micros()),
                Part::Int(v) => qb.push_bind(v),
                Part::Id(v) => qb.push_bind(v),
            };
        }
        let rows = qb.build().fetch_all(&self.readers).await?;
        let findings = rows
            .iter()
            .map(finding_from_row)
            .collect::<Result<_, _>>()?;
        Ok(crate::finding::into_page(findings, query.limit))
    }
}

/// Inserts events (dedup keys unique) and counts them per cluster; one `Stored` per event.
async fn insert_events(
    tx: &mut SqliteConnection,
    events: &[&Event],
) -> Result<Vec<Stored>, StoreError> {
    {
        let json: Vec<String> = events
            .iter()
            .map(|e| json_text(&e.tags))
            .collect::<Result<_, StoreError>>()?;
        let rows: Vec<(&Event, &String)> = events.iter().copied().zip(&json).collect();
        let mut inserted = HashSet::new();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::new(INSERT);
            insert.push_values(chunk, |mut row, (e, tags)| {
                row.push_bind(e.id.to_string())
                    .push_bind(e.dedup_key)
                    .push_bind(e.time.timestamp_micros())
                    .push_bind(e.received_at.timestamp_micros())
                    .push_bind(e.source.as_str())
                    .push_bind(e.source_version.as_deref())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.severity.rank())
                    .push_bind(e.severity_raw.as_str())
                    .push_bind(e.rule.as_str())
                    .push_bind(e.message.as_str())
                    .push_bind(tags.as_str())
                    .push_bind(e.cluster.as_str())
                    .push_bind(e.namespace.as_deref())
                    .push_bind(e.pod.as_deref())
                    .push_bind(e.container.as_deref())
                    .push_bind(e.image.as_deref())
                    .push_bind(e.node.as_deref())
                    .push_bind(e.workload.as_ref().map(|w| w.kind.as_str()))
                    .push_bind(e.workload.as_ref().map(|w| w.name.as_str()))
                    .push_bind(e.fields.get())
                    .push_bind(e.raw.as_deref().map_or("null", |r| r.get()));
            });
            insert.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING id");
            let ids: Vec<String> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
            for id in ids {
                inserted.insert(parse_id(&id)?);
            }
        }

        // Events not inserted hit a dedup key stored before: answer with the stored id.
        let mut existing: HashMap<Uuid, Uuid> = HashMap::new();
        let conflicting: Vec<Uuid> = events
            .iter()
            .filter(|e| !inserted.contains(&e.id))
            .filter_map(|e| e.dedup_key)
            .collect();
        for keys in conflicting.chunks(ROWS_PER_STATEMENT) {
            let mut select =
                QueryBuilder::new("SELECT dedup_key, id FROM events WHERE dedup_key IN ");
            select.push_tuples(keys, |mut b, key| {
                b.push_bind(*key);
            });
            let rows: Vec<(Uuid, String)> = select.build_query_as().fetch_all(&mut *tx).await?;
            for (key, id) in rows {
                existing.insert(key, parse_id(&id)?);
            }
        }

        let mut clusters: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for e in events {
            let entry = clusters.entry(&e.cluster).or_insert((0, 0));
            entry.0 = entry.0.max(e.received_at.timestamp_micros());
            entry.1 += i64::from(inserted.contains(&e.id));
        }
        for (name, (seen, count)) in clusters {
            sqlx::query(UPSERT_CLUSTER)
                .bind(name)
                .bind(seen)
                .bind(count)
                .execute(&mut *tx)
                .await?;
        }

        events
            .iter()
            .map(|e| {
                if inserted.contains(&e.id) {
                    return Ok(Stored {
                        id: e.id,
                        duplicate: false,
                    });
                }
                e.dedup_key
                    .and_then(|key| existing.get(&key))
                    .map(|&id| Stored {
                        id,
                        duplicate: true,
                    })
                    .ok_or_else(|| {
                        StoreError::Database(format!("event {} was neither stored nor found", e.id))
                    })
            })
            .collect()
    }
}

impl Sqlite {
    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let sql = format!("SELECT {LIST_COLUMNS}, raw FROM events WHERE id = ?");
        // fetch_all, not fetch_optional: a statement left before SQLITE_DONE keeps its read
        // snapshot open on the pooled connection, and later reads there would see old data.
        let rows = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_all(&self.readers)
            .await?;
        rows.first().map(|r| from_row(r, true)).transpose()
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Page, StoreError> {
        let mut qb = QueryBuilder::new(format!("SELECT {LIST_COLUMNS} FROM events WHERE TRUE"));
        for part in listing_parts(query) {
            match part {
                Part::Sql(sql) => qb.push(sql),
                Part::Text(v) => qb.push_bind(v),
                Part::Time(v) => qb.push_bind(v.timestamp_micros()),
                Part::Int(v) => qb.push_bind(v),
                Part::Id(v) => qb.push_bind(v.to_string()),
            };
        }
        let rows = qb.build().fetch_all(&self.readers).await?;
        let events = rows
            .iter()
            .map(|r| from_row(r, false))
            .collect::<Result<_, _>>()?;
        Ok(into_page(events, query.limit))
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT name, first_seen, last_seen, events FROM clusters ORDER BY name",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|(name, first_seen, last_seen, events)| {
                Ok(Cluster {
                    name,
                    first_seen: micros(first_seen)?,
                    last_seen: micros(last_seen)?,
                    events,
                })
            })
            .collect()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// Applies one report inside the writer's transaction: scopes first (skipping those a newer
/// report already set), then the findings it shows, then the fixes.
async fn apply_report(
    tx: &mut SqliteConnection,
    write: &ReportWrite<'_>,
    stored: &[Stored],
) -> Result<ReportOutcome, StoreError> {
    let report = write.report;
    let run = Uuid::now_v7();
    let time = report.time.timestamp_micros();
    let mut applied = Vec::with_capacity(report.scopes.len());
    let scope_upsert = SCOPE_UPSERT.replace('$', "?");
    for scope in &report.scopes {
        let row: Option<i64> = sqlx::query_scalar(&scope_upsert)
            .bind(&report.cluster)
            .bind(&report.source)
            .bind(scope)
            .bind(time)
            .fetch_optional(&mut *tx)
            .await?;
        applied.push(row.is_some());
    }
    let open = open_findings(report, &applied);
    // 19 binds per row.
    for chunk in open.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::new(INSERT_FINDINGS);
        insert.push_values(chunk, |mut row, &(i, key)| {
            let observation = &report.observations[i];
            let e = &observation.event;
            row.push_bind(key)
                .push_bind(report.cluster.as_str())
                .push_bind(report.source.as_str())
                .push_bind(report.scopes[observation.scope].as_str())
                .push_bind(e.kind.as_str())
                .push_bind(e.rule.as_str())
                .push_bind(e.severity.rank())
                .push_bind(e.severity_raw.as_str())
                .push_bind(e.message.as_str())
                .push_bind(e.namespace.as_deref())
                .push_bind(e.image.as_deref())
                .push_bind(e.node.as_deref())
                .push_bind(e.fields.get())
                .push_bind("open")
                .push_bind(time)
                .push_bind(time)
                .push_bind(None::<i64>)
                .push_bind(stored[write.slots[i]].id.to_string())
                .push_bind(run);
        });
        insert.push(ON_FINDING_CONFLICT);
        insert.build().execute(&mut *tx).await?;
    }
    let fix = FIX_ABSENT.replace('$', "?");
    let mut fixed = 0;
    for (scope, applied) in report.scopes.iter().zip(&applied) {
        if *applied {
            fixed += sqlx::query(&fix)
                .bind(&report.cluster)
                .bind(&report.source)
                .bind(scope)
                .bind(time)
                .bind(run)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
    }
    Ok(ReportOutcome {
        stale: !applied.contains(&true),
        open: open.len() as u64,
        fixed,
    })
}

fn finding_from_row(row: &SqliteRow) -> Result<Finding, StoreError> {
    let parts = RowParts {
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
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
        fields: serde_json::value::RawValue::from_string(row.try_get("fields")?)
            .map_err(|e| StoreError::Corrupt(format!("fields: {e}")))?,
        state: RowParts::state(row.try_get("state")?)?,
        first_seen: micros(row.try_get("first_seen")?)?,
        last_seen: micros(row.try_get("last_seen")?)?,
        fixed_at: row
            .try_get::<Option<i64>, _>("fixed_at")?
            .map(micros)
            .transpose()?,
        event_id: parse_id(row.try_get("event_id")?)?,
    })
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Database(format!("encoding JSON column: {e}")))
}

fn parse_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|e| StoreError::Corrupt(format!("id `{text}`: {e}")))
}

fn micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

fn json<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn from_row(row: &SqliteRow, with_raw: bool) -> Result<Event, StoreError> {
    let mut parts = RowParts {
        kind: row.try_get("kind")?,
        severity: row.try_get("severity")?,
        workload_kind: row.try_get("workload_kind")?,
        workload_name: row.try_get("workload_name")?,
        raw: if with_raw { row.try_get("raw")? } else { None },
    };
    Ok(Event {
        id: parse_id(row.try_get("id")?)?,
        dedup_key: row.try_get("dedup_key")?,
        time: micros(row.try_get("time")?)?,
        received_at: micros(row.try_get("received_at")?)?,
        source: row.try_get("source")?,
        source_version: row.try_get("source_version")?,
        kind: parts.kind()?,
        severity: parts.severity()?,
        severity_raw: row.try_get("severity_raw")?,
        rule: row.try_get("rule")?,
        message: row.try_get("message")?,
        tags: json(row.try_get("tags")?, "tags")?,
        cluster: row.try_get("cluster")?,
        namespace: row.try_get("namespace")?,
        pod: row.try_get("pod")?,
        container: row.try_get("container")?,
        image: row.try_get("image")?,
        node: row.try_get("node")?,
        workload: parts.workload(),
        fields: serde_json::value::RawValue::from_string(row.try_get("fields")?)
            .map_err(|e| StoreError::Corrupt(format!("fields: {e}")))?,
        raw: parts.raw()?,
    })
}

// ---- Delivery -------------------------------------------------------------------------------
// One writer commits in `seq` order, so a cursor over `seq` never skips a late commit; the
// id half of a position is unused (nil).

const CONSUMER_COLUMNS: &str = "name, position_tx, position_id, received_since, delivered, skipped, retries, \
    dead_letters, last_error, last_delivered_at, created_at";
const DEAD_LETTER_COLUMNS: &str =
    "id, consumer, event_id, reason, attempts, created_at, replay_requested";

impl Sqlite {
    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        let sql = format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE name = ?");
        let rows = sqlx::query(&sql)
            .bind(name)
            .fetch_all(&self.readers)
            .await?;
        rows.first().map(consumer_from_row).transpose()
    }

    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        let sql = format!("SELECT {CONSUMER_COLUMNS} FROM consumers ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.readers).await?;
        rows.iter().map(consumer_from_row).collect()
    }

    pub async fn create_consumer(
        &self,
        name: &str,
        start: Start,
    ) -> Result<ConsumerRecord, StoreError> {
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let now: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        let since = start.since();
        let position = match start {
            // One writer: nothing commits behind the newest row while this transaction holds
            // the write lock.
            Start::Now => now,
            Start::ReceivedSince(time) => sqlx::query_scalar::<_, Option<i64>>(
                "SELECT min(seq) - 1 FROM events WHERE id >= ? AND received_at >= ?",
            )
            .bind(first_id_at(time).to_string())
            .bind(time.timestamp_micros())
            .fetch_one(&mut *tx)
            .await?
            .unwrap_or(now),
        };
        let stamp = Utc::now().timestamp_micros();
        sqlx::query(
            "INSERT INTO consumers (name, position_tx, position_id, received_since, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(position)
        .bind(Uuid::nil().to_string())
        .bind(since.timestamp_micros())
        .bind(stamp)
        .bind(stamp)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let sql = format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE name = ?");
        let rows = sqlx::query(&sql).bind(name).fetch_all(&self.writer).await?;
        rows.first()
            .map(consumer_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::Database(format!("consumer {name} vanished")))
    }

    pub async fn events_after(
        &self,
        position: Position,
        limit: u32,
    ) -> Result<Vec<(Position, Event)>, StoreError> {
        let sql = format!(
            "SELECT seq, {LIST_COLUMNS}, raw FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(position.tx)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Position {
                        tx: r.try_get("seq")?,
                        id: Uuid::nil(),
                    },
                    from_row(r, true)?,
                ))
            })
            .collect()
    }

    pub async fn lag(&self, position: Position) -> Result<Lag, StoreError> {
        let events: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE seq > ? LIMIT {LAG_COUNT_LIMIT})"
        ))
        .bind(position.tx)
        .fetch_all(&self.readers)
        .await?;
        let events = events.first().copied().unwrap_or(0);
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT received_at FROM events WHERE seq > ? ORDER BY seq LIMIT 1")
                .bind(position.tx)
                .fetch_all(&self.readers)
                .await?
                .first()
                .copied();
        let seconds = match oldest {
            Some(micros) => (Utc::now() - self::micros(micros)?).num_seconds().max(0),
            None => 0,
        };
        Ok(Lag { events, seconds })
    }

    pub async fn save_progress(
        &self,
        name: &str,
        position: Position,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        let stamp = Utc::now().timestamp_micros();
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        sqlx::query(
            "UPDATE consumers SET position_tx = ?2, position_id = ?3, \
             delivered = delivered + ?4, skipped = skipped + ?5, retries = retries + ?6, \
             dead_letters = dead_letters + ?7, \
             last_error = CASE WHEN ?8 THEN ?9 ELSE last_error END, \
             last_delivered_at = CASE WHEN ?4 > 0 THEN ?10 ELSE last_delivered_at END, \
             updated_at = ?10 WHERE name = ?1",
        )
        .bind(name)
        .bind(position.tx)
        .bind(position.id.to_string())
        .bind(progress.delivered)
        .bind(progress.skipped)
        .bind(progress.retries)
        .bind(progress.dead.len() as i64)
        .bind(progress.last_error.is_some())
        .bind(progress.last_error.clone().flatten())
        .bind(stamp)
        .execute(&mut *tx)
        .await?;
        for (event_id, reason) in &progress.dead {
            sqlx::query(
                "INSERT INTO dead_letters (consumer, event_id, reason, created_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(name)
            .bind(event_id.to_string())
            .bind(reason)
            .bind(stamp)
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
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE consumer = ? AND id > ? \
             ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(name)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(dead_letter_from_row).collect()
    }

    pub async fn request_replay(&self, name: &str, ids: Option<&[i64]>) -> Result<u64, StoreError> {
        let mut update = QueryBuilder::new(
            "UPDATE dead_letters SET replay_requested = 1 WHERE replay_requested = 0 AND consumer = ",
        );
        update.push_bind(name);
        if let Some(ids) = ids {
            if ids.is_empty() {
                return Ok(0);
            }
            update.push(" AND id IN ");
            update.push_tuples(ids, |mut b, id| {
                b.push_bind(*id);
            });
        }
        let done = update.build().execute(&self.writer).await?;
        Ok(done.rows_affected())
    }

    pub async fn replays(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<(DeadLetter, Option<Event>)>, StoreError> {
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE consumer = ? \
             AND replay_requested = 1 ORDER BY id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(name)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let letter = dead_letter_from_row(row)?;
            let event = self.event(letter.event_id).await?;
            out.push((letter, event));
        }
        Ok(out)
    }

    pub async fn finish_replay(
        &self,
        name: &str,
        delivered: &[i64],
        failed: &[(i64, String)],
    ) -> Result<(), StoreError> {
        let stamp = Utc::now().timestamp_micros();
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let mut gone = 0;
        for id in delivered {
            gone += sqlx::query("DELETE FROM dead_letters WHERE consumer = ? AND id = ?")
                .bind(name)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
        }
        if gone > 0 {
            sqlx::query(
                "UPDATE consumers SET dead_letters = dead_letters - ?2, \
                 delivered = delivered + ?2, last_delivered_at = ?3, updated_at = ?3 \
                 WHERE name = ?1",
            )
            .bind(name)
            .bind(gone)
            .bind(stamp)
            .execute(&mut *tx)
            .await?;
        }
        for (id, reason) in failed {
            sqlx::query(
                "UPDATE dead_letters SET reason = ?, attempts = attempts + 1, \
                 replay_requested = 0 WHERE consumer = ? AND id = ?",
            )
            .bind(reason)
            .bind(name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn consumer_from_row(row: &SqliteRow) -> Result<ConsumerRecord, StoreError> {
    Ok(ConsumerRecord {
        name: row.try_get("name")?,
        position: Position {
            tx: row.try_get("position_tx")?,
            id: parse_id(row.try_get("position_id")?)?,
        },
        received_since: micros(row.try_get("received_since")?)?,
        delivered: row.try_get("delivered")?,
        skipped: row.try_get("skipped")?,
        retries: row.try_get("retries")?,
        dead_letters: row.try_get("dead_letters")?,
        last_error: row.try_get("last_error")?,
        last_delivered_at: row
            .try_get::<Option<i64>, _>("last_delivered_at")?
            .map(micros)
            .transpose()?,
        created_at: micros(row.try_get("created_at")?)?,
    })
}

fn dead_letter_from_row(row: &SqliteRow) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        consumer: row.try_get("consumer")?,
        event_id: parse_id(row.try_get("event_id")?)?,
        reason: row.try_get("reason")?,
        attempts: row.try_get("attempts")?,
        created_at: micros(row.try_get("created_at")?)?,
        replay_requested: row.try_get("replay_requested")?,
    })
}

fn push_parts(qb: &mut QueryBuilder<'_, sqlx::Sqlite>, parts: Vec<Part>) {
    for part in parts {
        match part {
            Part::Sql(sql) => qb.push(sql),
            Part::Text(v) => qb.push_bind(v),
            Part::Time(v) => qb.push_bind(v.timestamp_micros()),
            Part::Int(v) => qb.push_bind(v),
            Part::Id(v) => qb.push_bind(v.to_string()),
        };
    }
}

impl Sqlite {
    pub async fn event_stats(&self, q: &EventStatsQuery) -> Result<EventStats, StoreError> {
        let mut qb = QueryBuilder::new("SELECT (time - ");
        qb.push_bind(q.from.timestamp_micros())
            .push(") / ")
            .push_bind(q.bucket_micros)
            .push(" AS bucket, severity, count(*) FROM events WHERE TRUE");
        push_parts(&mut qb, event_filter(q));
        qb.push(" GROUP BY 1, 2 ORDER BY 1, 2");
        let rows: Vec<(i64, i64, i64)> = qb.build_query_as().fetch_all(&self.readers).await?;
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
        let rows: Vec<(String, i64, i64)> = qb.build_query_as().fetch_all(&self.readers).await?;
        let by_source = rows
            .into_iter()
            .map(|(source, count, last)| {
                Ok(SourceCount {
                    source,
                    count,
                    last: micros(last)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;

        let mut qb = QueryBuilder::new("SELECT rule, count(*) FROM events WHERE TRUE");
        push_parts(&mut qb, event_filter(q));
        qb.push(" GROUP BY rule ORDER BY 2 DESC, rule LIMIT ")
            .push_bind(i64::from(q.top));
        let rows: Vec<(String, i64)> = qb.build_query_as().fetch_all(&self.readers).await?;
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
            "SELECT {FINDING_TARGET}, state, severity, count(*) FROM findings WHERE TRUE"
        ));
        push_parts(&mut qb, finding_filter(q));
        qb.push(FINDING_GROUPS);
        let rows: Vec<(String, String, String, i64, i64)> =
            qb.build_query_as().fetch_all(&self.readers).await?;
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
