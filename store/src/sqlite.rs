//! SQLite: the embedded default store, one file under the data directory. WAL journal with
//! `synchronous = FULL`, so an acknowledged event survives a power cut; one connection
//! writes, a small pool of read-only connections serves queries. This module holds the pools,
//! migrations and how SQLite types read and bind (times as microseconds, event ids as
//! text); each concept's SQL is in its own `sqlite` module.

use crate::error::StoreError;
use crate::sql::{Columns, Dialect, Part, Plain};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub(crate) struct Sqlite {
    pub(crate) writer: SqlitePool,
    pub(crate) readers: SqlitePool,
}

/// Rows per multi-row INSERT: at most 22 binds each, well under SQLite's 32766 variables.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

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
            // After a failed write SQLite may have rolled the transaction back by itself
            // (SQLITE_FULL, IOERR, NOMEM); sqlx's own ROLLBACK then fails and the connection
            // believes it is still in a transaction, so the next BEGIN becomes a SAVEPOINT
            // and later "commits" never reach the file. A connection that is not back at
            // depth 0 (the ping runs after the dropped transaction's queued ROLLBACK) is
            // closed, which rolls back whatever SQLite still holds; the next write opens a
            // fresh one.
            .after_release(|conn, _| {
                Box::pin(async move {
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "SQLite writer connection left inside a transaction after a failed \
                             write; closing it"
                        );
                    }
                    Ok(clean)
                })
            })
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

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// SQL shared with PostgreSQL, whose binds are `$1`, `$2`…, with SQLite's `?1`, `?2`….
pub(crate) fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Database(format!("encoding JSON column: {e}")))
}

pub(crate) fn parse_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|e| StoreError::Corrupt(format!("id `{text}`: {e}")))
}

pub(crate) fn micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

impl Dialect for sqlx::Sqlite {
    fn push_parts(qb: &mut QueryBuilder<'_, Self>, parts: Vec<Part>) {
        for part in parts {
            match part {
                Part::Sql(sql) => qb.push(sql),
                Part::Text(v) => qb.push_bind(v),
                Part::Time(v) => qb.push_bind(v.timestamp_micros()),
                Part::Int(v) => qb.push_bind(v),
                Part::Id(v) => qb.push_bind(v.to_string()),
                Part::Key(v) => qb.push_bind(v),
            };
        }
    }
}

impl Columns for SqliteRow {
    fn plain<T: Plain>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        micros(self.try_get(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.try_get::<Option<i64>, _>(column)?
            .map(micros)
            .transpose()
    }

    fn id(&self, column: &str) -> Result<Uuid, StoreError> {
        parse_id(self.try_get(column)?)
    }

    fn rank(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_rank(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        serde_json::from_str(self.try_get(column)?)
            .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    }
}
