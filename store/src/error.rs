//! The store's one error type. Messages are strings so one failed commit can answer every
//! request of its batch; the full cause chain is logged where the error happens.

use std::error::Error as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refuses work right now; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The ingest journal has no room (the database is behind by `ingest.journal.max_bytes`)
    /// or cannot be written (its disk): nothing was accepted.
    #[error("{0}")]
    JournalFull(String),
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL `53100`): nothing of
    /// the write was kept; writing again succeeds once space returns.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The write queue is full: the hub is overloaded.
    #[error("store write queue is full")]
    Overloaded,
    /// Any other database failure: a bug or a broken schema, not the caller's mistake.
    #[error("database error: {0}")]
    Database(String),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored row could not be read back into an event.
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => is_unavailable_code(db.code().as_deref()),
            _ => false,
        };
        let full = match &e {
            sqlx::Error::Database(db) => is_disk_full_code(db.code().as_deref()),
            _ => false,
        };
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        if full {
            StoreError::DiskFull(message)
        } else if unavailable {
            StoreError::Unavailable(message)
        } else {
            StoreError::Database(message)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => match StoreError::from(inner) {
                StoreError::Unavailable(m) => StoreError::Unavailable(m),
                other => StoreError::Migration(other.to_string()),
            },
            other => StoreError::Migration(other.to_string()),
        }
    }
}

/// PostgreSQL's `disk_full` and SQLite's `SQLITE_FULL` (13, in the low byte of extended codes).
fn is_disk_full_code(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    code == "53100" || code.parse::<i32>().is_ok_and(|c| c & 0xff == 13)
}

/// PostgreSQL SQLSTATEs and SQLite result codes that mean "not now" rather than "wrong".
fn is_unavailable_code(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    // PostgreSQL: 08 connection exception, 53 insufficient resources, 57P0x shutdown/cannot
    // connect now, 3D000 database does not exist (dropped under us), 25006 read-only
    // transaction (a standby after failover), 40P01/40001 transient conflicts.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P0")
        || code == "3D000"
        || code == "25006"
        // Deadlock and serialization failures: the same work succeeds when retried.
        || code == "40P01"
        || code == "40001"
        // SQLite primary result codes (extended codes keep them in the low byte): BUSY 5,
        // LOCKED 6, READONLY 8, IOERR 10, FULL 13, CANTOPEN 14.
        || code
            .parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

impl StoreError {
    /// Failing to get a connection or start a transaction means the store is unavailable,
    /// whatever the database said (e.g. PostgreSQL refusing connections to the database).
    pub(crate) fn connecting(e: sqlx::Error) -> StoreError {
        match StoreError::from(e) {
            StoreError::Database(m) => StoreError::Unavailable(m),
            other => other,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Overloaded
                | StoreError::JournalFull(_)
                | StoreError::DiskFull(_)
        )
    }
}
