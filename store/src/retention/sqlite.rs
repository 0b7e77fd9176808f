//! Retention on SQLite: events received before the cutoff are deleted oldest first, in
//! chunks short enough that ingest (the same single writer) waits milliseconds, not seconds.

use super::RetentionRun;
use crate::delivery::ConsumerRecord;
use crate::error::StoreError;
use crate::sqlite::Sqlite;
use chrono::{DateTime, Utc};

/// Events deleted per transaction.
const CHUNK: i64 = 2_000;

impl Sqlite {
    /// Deletes the events received before `cutoff`, oldest first, up to the first one a
    /// consumer in `holders` has not delivered. Always `Some`: SQLite has one hub.
    pub async fn enforce_retention(
        &self,
        cutoff: DateTime<Utc>,
        holders: &[ConsumerRecord],
    ) -> Result<Option<RetentionRun>, StoreError> {
        let mut run = RetentionRun::default();
        let newest: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM events")
            .fetch_one(&self.readers)
            .await?;
        let Some(newest) = newest else {
            return Ok(Some(run));
        };
        // The first event to keep; events are in `seq` order of receipt (one writer).
        let first_kept: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM events WHERE received_at >= ? ORDER BY seq LIMIT 1",
        )
        .bind(cutoff.timestamp_micros())
        .fetch_optional(&self.readers)
        .await?;
        // The newest event always stays: a new event's `seq` is one more than the largest
        // left, so keeping it means no number is ever given twice (cursors rely on that).
        let mut end = first_kept.unwrap_or(newest).min(newest);
        for holder in holders {
            let undelivered = holder.position.tx.saturating_add(1);
            if undelivered < end {
                end = undelivered;
                run.held_by = Some(holder.name.clone());
            }
        }
        loop {
            let deleted = sqlx::query(
                "DELETE FROM events WHERE seq IN \
                 (SELECT seq FROM events WHERE seq < ? ORDER BY seq LIMIT ?)",
            )
            .bind(end)
            .bind(CHUNK)
            .execute(&self.writer)
            .await?
            .rows_affected();
            run.removed += deleted;
            if deleted == 0 {
                return Ok(Some(run));
            }
        }
    }
}
