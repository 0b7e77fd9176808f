//! What the store keeps for delivery to consumers (DESIGN.md §5): each consumer's cursor and
//! counters, and the events its sink refused for good (dead letters). The records and their
//! row mapping are the same on both databases; the cursor is not: which events a position
//! may already read (commit order) is each database's own (`postgres`, `sqlite`).

use crate::error::StoreError;
use crate::sql::Columns;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

mod postgres;
mod sqlite;

/// A place in commit order. PostgreSQL: (writing transaction id, event id); SQLite: (row
/// sequence, nil). Reading forward from a position never misses an event that commits later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub tx: i64,
    pub id: Uuid,
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the events received from now on.
    Now,
    /// With the events received at or after this time (`replayFrom`).
    ReceivedSince(DateTime<Utc>),
}

impl Start {
    pub fn since(self) -> DateTime<Utc> {
        match self {
            Start::Now => Utc::now(),
            Start::ReceivedSince(time) => time,
        }
    }
}

/// A consumer's durable delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerRecord {
    pub name: String,
    pub position: Position,
    /// Only events received at or after this are delivered to the consumer.
    pub received_since: DateTime<Utc>,
    /// Events the sink confirmed.
    pub delivered: i64,
    /// Events the filter passed over.
    pub skipped: i64,
    /// Failed attempts that were retried.
    pub retries: i64,
    /// Events that went to the dead-letter table.
    pub dead_letters: i64,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The worker's noise-control state (JSON), saved with the cursor.
    #[serde(skip)]
    pub noise: Option<String>,
}

/// What one step of delivery did; saved atomically with the new cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub delivered: i64,
    pub skipped: i64,
    pub retries: i64,
    /// Events refused for good, with the reason.
    pub dead: Vec<(Uuid, String)>,
    /// `Some(None)` clears the last error, `Some(Some(e))` sets it, `None` leaves it.
    pub last_error: Option<Option<String>>,
    /// The noise-control state after this step (`None` leaves it).
    pub noise: Option<String>,
}

/// An event a consumer's sink refused for good.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub event_id: Uuid,
    pub reason: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub replay_requested: bool,
}

/// How far a consumer is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Lag {
    /// Undelivered events, counted up to `LAG_COUNT_LIMIT` (a larger backlog shows as that).
    pub events: i64,
    /// Age of the oldest undelivered event, by when the hub received it.
    pub seconds: i64,
}

/// Counting a backlog costs an index scan; beyond this many it is reported as this many.
pub const LAG_COUNT_LIMIT: i64 = 1_000_000;

/// The smallest UUID v7 of a millisecond: every event received at or after `time` has an id
/// at least this large.
pub(crate) fn first_id_at(time: DateTime<Utc>) -> Uuid {
    let millis = time.timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

const CONSUMER_COLUMNS: &str = "name, position_tx, position_id, received_since, delivered, \
    skipped, retries, dead_letters, last_error, last_delivered_at, created_at, noise";

const DEAD_LETTER_COLUMNS: &str =
    "id, consumer, event_id, reason, attempts, created_at, replay_requested";

/// One consumer (`$1`: its name).
fn consumer_sql() -> String {
    format!("SELECT {CONSUMER_COLUMNS} FROM consumers WHERE name = $1")
}

fn consumers_sql() -> String {
    format!("SELECT {CONSUMER_COLUMNS} FROM consumers ORDER BY name")
}

/// A consumer's dead letters after id `$2`, at most `$3`.
fn dead_letters_sql() -> String {
    format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE consumer = $1 AND id > $2 \
         ORDER BY id LIMIT $3"
    )
}

fn consumer_from_row<R: Columns>(row: &R) -> Result<ConsumerRecord, StoreError> {
    Ok(ConsumerRecord {
        name: row.plain("name")?,
        position: Position {
            tx: row.plain("position_tx")?,
            id: row.id("position_id")?,
        },
        received_since: row.time("received_since")?,
        delivered: row.plain("delivered")?,
        skipped: row.plain("skipped")?,
        retries: row.plain("retries")?,
        dead_letters: row.plain("dead_letters")?,
        last_error: row.plain("last_error")?,
        last_delivered_at: row.opt_time("last_delivered_at")?,
        created_at: row.time("created_at")?,
        noise: row.plain("noise")?,
    })
}

fn dead_letter_from_row<R: Columns>(row: &R) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: row.plain("id")?,
        consumer: row.plain("consumer")?,
        event_id: row.id("event_id")?,
        reason: row.plain("reason")?,
        attempts: row.plain("attempts")?,
        created_at: row.time("created_at")?,
        replay_requested: row.plain("replay_requested")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_millisecond_bounds_every_id_generated_then_or_later() {
        let before = Utc::now();
        let id = Uuid::now_v7();
        assert!(first_id_at(before) <= id);
        let later = before + chrono::Duration::seconds(1);
        assert!(first_id_at(later) > id);
    }
}
