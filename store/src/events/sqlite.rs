//! Events on SQLite: one writer inserts them in chunks of multi-row INSERTs and counts them
//! per cluster, in the same transaction as any reports of the batch.

use super::{CLUSTERS, EventQuery, Page, cluster_from_row, event_sql, from_row, listing, page};
use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::finding::sqlite::apply_report;
use crate::finding::{ReportOutcome, ReportWrite};
use crate::sql::map_all;
use crate::sqlite::{ROWS_PER_STATEMENT, Sqlite, json_text, numbered, parse_id};
use sqlx::{QueryBuilder, SqliteConnection};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

const INSERT: &str = "INSERT INTO events (id, dedup_key, time, received_at, source, \
    source_version, kind, severity, severity_raw, rule, message, tags, cluster, namespace, pod, \
    container, image, node, workload_kind, workload_name, fields, raw, group_id, suppressed) ";

/// A batch's events of each group, added to it (microsecond times): the head, then one row
/// per group (`push_values`), then [`GROUP_CONFLICT`].
const UPSERT_GROUPS: &str = "INSERT INTO alert_groups (id, rule, source, severity, cluster, \
    namespace, workload, count, suppressed, first_seen, last_seen, state, state_changed_at) ";

const GROUP_CONFLICT: &str = " ON CONFLICT (id) DO UPDATE SET count = count + excluded.count, \
    suppressed = suppressed + excluded.suppressed, \
    severity = min(severity, excluded.severity), \
    first_seen = min(first_seen, excluded.first_seen), \
    last_seen = max(last_seen, excluded.last_seen), \
    state = CASE WHEN state = 'resolved' AND excluded.count > excluded.suppressed \
      THEN 'open' ELSE state END, \
    state_changed_at = CASE WHEN state = 'resolved' AND excluded.count > excluded.suppressed \
      THEN excluded.state_changed_at ELSE state_changed_at END";

/// The history row of a group a new event reopened.
const REOPENED: &str = "INSERT INTO alert_group_changes (group_id, at, actor, state, comment) \
    VALUES (?1, ?2, 'falconer', 'open', 'a new event arrived')";

const UPSERT_CLUSTER: &str = "INSERT INTO clusters (name, first_seen, last_seen, events) \
    VALUES (?1, ?2, ?2, ?3) \
    ON CONFLICT (name) DO UPDATE SET \
    first_seen = min(first_seen, excluded.first_seen), \
    last_seen = max(last_seen, excluded.last_seen), \
    events = events + excluded.events";

impl Sqlite {
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

    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        // fetch_all, not fetch_optional: a statement left before SQLITE_DONE keeps its read
        // snapshot open on the pooled connection, and later reads there would see old data.
        let rows = sqlx::query(&numbered(&event_sql()))
            .bind(id.to_string())
            .fetch_all(&self.readers)
            .await?;
        rows.first().map(|r| from_row(r, true)).transpose()
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Page, StoreError> {
        let rows = listing::<sqlx::Sqlite>(query)
            .build()
            .fetch_all(&self.readers)
            .await?;
        page(&rows, query.limit)
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        map_all(&self.readers, CLUSTERS, cluster_from_row).await
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
                    .push_bind(e.raw.as_deref().map_or("null", |r| r.get()))
                    .push_bind(e.group.as_deref())
                    .push_bind(e.suppressed.map(|id| id.to_string()));
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

        update_groups(tx, events.iter().filter(|e| inserted.contains(&e.id))).await?;

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

/// One group's share of a batch.
struct GroupRow<'a> {
    first: &'a Event,
    severity: i16,
    count: i64,
    suppressed: i64,
    first_seen: i64,
    last_seen: i64,
}

/// Files inserted events under their groups; a resolved group that gets an event no
/// suppression matched opens again, with a history row.
async fn update_groups<'a>(
    tx: &mut SqliteConnection,
    inserted: impl Iterator<Item = &'a &'a Event>,
) -> Result<(), StoreError> {
    let mut groups: BTreeMap<&str, GroupRow<'_>> = BTreeMap::new();
    for e in inserted {
        let Some(id) = e.group.as_deref() else {
            continue;
        };
        let time = e.time.timestamp_micros();
        let row = groups.entry(id).or_insert(GroupRow {
            first: e,
            severity: e.severity.rank(),
            count: 0,
            suppressed: 0,
            first_seen: time,
            last_seen: time,
        });
        row.severity = row.severity.min(e.severity.rank());
        row.count += 1;
        row.suppressed += i64::from(e.suppressed.is_some());
        row.first_seen = row.first_seen.min(time);
        row.last_seen = row.last_seen.max(time);
    }
    let now = chrono::Utc::now().timestamp_micros();
    let groups: Vec<(&str, GroupRow<'_>)> = groups.into_iter().collect();
    // A few statements per batch, not two per group: each statement is a round trip to
    // SQLite's thread.
    for chunk in groups.chunks(ROWS_PER_STATEMENT) {
        let mut resolved = QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT id FROM alert_groups WHERE state = 'resolved' AND id IN (",
        );
        let mut ids = resolved.separated(", ");
        for (id, _) in chunk {
            ids.push_bind(*id);
        }
        ids.push_unseparated(")");
        let resolved: HashSet<String> = resolved
            .build_query_scalar()
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let mut upsert = QueryBuilder::<sqlx::Sqlite>::new(UPSERT_GROUPS);
        upsert.push_values(chunk, |mut b, (id, row)| {
            let e = row.first;
            b.push_bind(*id)
                .push_bind(e.rule.as_str())
                .push_bind(e.source.as_str())
                .push_bind(row.severity)
                .push_bind(e.cluster.as_str())
                .push_bind(e.namespace.as_deref())
                .push_bind(crate::triage::workload_of(e))
                .push_bind(row.count)
                .push_bind(row.suppressed)
                .push_bind(row.first_seen)
                .push_bind(row.last_seen)
                .push("'open'")
                .push_bind(now);
        });
        upsert.push(GROUP_CONFLICT);
        upsert.build().execute(&mut *tx).await?;
        for (id, row) in chunk {
            if resolved.contains(*id) && row.count > row.suppressed {
                sqlx::query(REOPENED)
                    .bind(*id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    Ok(())
}
