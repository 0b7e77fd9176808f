//! Retention on PostgreSQL: `events` is partitioned by the UTC day of receipt; old days are
//! dropped whole, one hub at a time (a session advisory lock on a connection of its own).

use super::{RetentionRun, day_of, days_around, partition_day, partition_name};
use crate::delivery::ConsumerRecord;
use crate::error::StoreError;
use crate::postgres::Postgres;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Acquire, PgConnection};
use std::collections::BTreeMap;

/// DDL on `events` waits at most this long for its lock, so a long query cannot make ingest
/// queue behind a retention run; the next run tries again.
const DDL_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

impl Postgres {
    /// Makes sure the partitions of `days` exist; each day is asked of the server once per
    /// hub. Creating one locks `events`; a lock not had within 5 s fails the call (and the
    /// batch that needed the day, which its clients retry) rather than stall every query.
    pub(crate) async fn ensure_partitions(
        &self,
        days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<(), StoreError> {
        let mut missing: Vec<NaiveDate> = {
            let known = self.days.lock().unwrap_or_else(|e| e.into_inner());
            days.into_iter().filter(|d| !known.contains(d)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let mut conn = self.connection().await?;
        for day in &missing {
            let mut tx = conn.begin().await.map_err(StoreError::connecting)?;
            sqlx::query(DDL_LOCK_TIMEOUT).execute(&mut *tx).await?;
            let created: bool = sqlx::query_scalar("SELECT falconer_events_partition($1)")
                .bind(day)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            if created {
                tracing::info!(
                    partition = partition_name(*day),
                    "Created an events partition"
                );
            }
        }
        self.days
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(missing);
        Ok(())
    }

    /// Drops the days received wholly before `cutoff`, oldest first, up to the first one a
    /// consumer in `holders` has not delivered; makes the days around today. `None` when
    /// another hub is running retention.
    pub async fn enforce_retention(
        &self,
        cutoff: DateTime<Utc>,
        holders: &[ConsumerRecord],
    ) -> Result<Option<RetentionRun>, StoreError> {
        let Some(mut conn) = self
            .session_lock("falconer-retention", RETENTION_LOCK)
            .await?
        else {
            return Ok(None);
        };
        // Closing the connection releases the lock, whatever happened.
        let result = drop_days(&mut conn, cutoff, holders).await;
        let _ = sqlx::Connection::close(conn).await;
        let run = result?;
        self.ensure_partitions(days_around(day_of(Utc::now())))
            .await?;
        Ok(Some(run))
    }
}

/// The advisory-lock key of retention runs (64 bits, like a consumer's).
const RETENTION_LOCK: i64 = 0x6661_6c63_7265_7431; // "falcret1"

async fn drop_days(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    holders: &[ConsumerRecord],
) -> Result<RetentionRun, StoreError> {
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'events'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    let days: BTreeMap<NaiveDate, String> = partitions
        .into_iter()
        .filter_map(|name| partition_day(&name).map(|day| (day, name)))
        .collect();
    // A day goes when all of it was received before the cutoff; today never goes.
    let last = day_of(cutoff).min(day_of(Utc::now()));
    let mut run = RetentionRun::default();
    for (day, name) in days.range(..last) {
        for holder in holders {
            let needed: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM \"{name}\" WHERE (tx, id) > ($1::text::xid8, $2))"
            ))
            .bind(holder.position.tx.to_string())
            .bind(holder.position.id)
            .fetch_one(&mut *conn)
            .await?;
            if needed {
                run.held_by = Some(holder.name.clone());
                return Ok(run);
            }
        }
        let mut tx = conn.begin().await.map_err(StoreError::connecting)?;
        sqlx::query(DDL_LOCK_TIMEOUT).execute(&mut *tx).await?;
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{name}\""))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(&format!("DROP TABLE \"{name}\""))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(partition = name, %day, events = count, "Dropped an events partition");
        run.removed += u64::try_from(count).unwrap_or(0);
        run.days_dropped += 1;
    }
    Ok(run)
}
