//! Delivery on SQLite. One writer commits in `seq` order, so a cursor over `seq` never skips
//! a late commit; the id half of a position is unused (nil). One process owns the file, so no
//! lock is needed to deliver to a consumer.

use super::{
    ConsumerRecord, DEAD_LETTER_COLUMNS, DeadLetter, LAG_COUNT_LIMIT, Lag, Position, Progress,
    Start, consumer_from_row, consumer_sql, consumers_sql, dead_letter_from_row, dead_letters_sql,
    first_id_at,
};
use crate::error::StoreError;
use crate::event::Event;
use crate::events::{LIST_COLUMNS, from_row};
use crate::sql::{Columns, map_all};
use crate::sqlite::{Sqlite, micros, numbered};
use chrono::Utc;
use sqlx::QueryBuilder;
use uuid::Uuid;

impl Sqlite {
    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        let rows = sqlx::query(&numbered(&consumer_sql()))
            .bind(name)
            .fetch_all(&self.readers)
            .await?;
        rows.first().map(consumer_from_row).transpose()
    }

    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        map_all(&self.readers, &consumers_sql(), consumer_from_row).await
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
        let rows = sqlx::query(&numbered(&consumer_sql()))
            .bind(name)
            .fetch_all(&self.writer)
            .await?;
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
                        tx: r.plain("seq")?,
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
             noise = CASE WHEN ?11 THEN ?12 ELSE noise END, \
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
        .bind(progress.noise.is_some())
        .bind(progress.noise.as_deref())
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
        let rows = sqlx::query(&numbered(&dead_letters_sql()))
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
