//! Delivery on PostgreSQL. A position is (writing transaction id, event id) and a reader only
//! sees rows of transactions older than the oldest still running, so a cursor never skips an
//! event that commits later; one hub replica delivers to a consumer (a session advisory lock).

use super::{
    ConsumerRecord, DEAD_LETTER_COLUMNS, DeadLetter, LAG_COUNT_LIMIT, Lag, Position, Progress,
    Start, consumer_from_row, consumer_sql, consumers_sql, dead_letter_from_row, dead_letters_sql,
    first_id_at,
};
use crate::error::StoreError;
use crate::event::Event;
use crate::events::{LIST_COLUMNS, from_row};
use crate::postgres::{Postgres, lock_key};
use crate::sql::{Columns, map_all};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// Rows of transactions older than the oldest one still running: nothing can commit behind
/// them any more.
const SETTLED: &str = "tx < pg_snapshot_xmin(pg_current_snapshot())";

const MAX_ID: Uuid = Uuid::max();

impl Postgres {
    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        let row = sqlx::query(&consumer_sql())
            .bind(name)
            .fetch_optional(&mut *self.connection().await?)
            .await?;
        row.map(|r| consumer_from_row(&r)).transpose()
    }

    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        map_all(
            &mut *self.connection().await?,
            &consumers_sql(),
            consumer_from_row,
        )
        .await
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
                        tx: r.plain("position_tx")?,
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
             noise = CASE WHEN $10 THEN $11 ELSE noise END, \
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
        .bind(progress.noise.is_some())
        .bind(progress.noise.as_deref())
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
        let rows = sqlx::query(&dead_letters_sql())
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
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE consumer = $1 \
             AND replay_requested ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
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

impl Postgres {
    /// Takes the session advisory lock of a consumer on a connection of its own, so that only
    /// one hub replica delivers to it; `None` when another replica holds it. Closing the
    /// connection (dropping the lock, or the process dying) releases it.
    pub async fn lock_consumer(
        &self,
        name: &str,
    ) -> Result<Option<sqlx::PgConnection>, StoreError> {
        self.session_lock("falconer-consumer-lock", consumer_lock_key(name))
            .await
    }
}

/// The advisory-lock key of a consumer: 64 bits of SHA-256 of a namespaced name.
fn consumer_lock_key(name: &str) -> i64 {
    lock_key(format!("falconer.consumer/{name}").as_bytes())
}
