//! What every concept's SQL shares on both databases: a query as typed parts whose binds each
//! dialect encodes its own way ([`Dialect`]), and reading a column whatever the database
//! stores it as ([`Columns`]), so one row mapper serves both.

use crate::error::StoreError;
use crate::event::{Kind, Severity, Workload};
use crate::finding::FindingState;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::QueryBuilder;
use uuid::Uuid;

/// A piece of SQL text or a bind, in the order it is pushed.
pub(crate) enum Part {
    Sql(&'static str),
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
    /// An event id: text on SQLite.
    Id(Uuid),
    /// A finding's key: a UUID on both databases.
    Key(Uuid),
}

/// How a database takes the binds of [`Part`]s (times and ids are stored differently).
pub(crate) trait Dialect: sqlx::Database {
    fn push_parts(qb: &mut QueryBuilder<'_, Self>, parts: Vec<Part>);
}

/// A query on `DB`: `sql`, then `parts` (text and binds).
pub(crate) fn build<DB: Dialect>(
    sql: impl Into<String>,
    parts: Vec<Part>,
) -> QueryBuilder<'static, DB> {
    let mut qb = QueryBuilder::new(sql);
    DB::push_parts(&mut qb, parts);
    qb
}

/// Runs `sql` (no binds) on `conn` and maps every row with `from_row`.
pub(crate) async fn map_all<'c, DB, E, T>(
    conn: E,
    sql: &str,
    from_row: fn(&DB::Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Types both databases decode from the same column the same way.
pub(crate) trait Plain:
    for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
    + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
    + sqlx::Type<sqlx::Sqlite>
{
}

impl<T> Plain for T where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
{
}

/// Reading a row by column name: PostgreSQL has `timestamptz`, `uuid`, `int2` and `jsonb`
/// where SQLite keeps microseconds, text ids, integers and JSON text.
pub(crate) trait Columns {
    /// A column both databases decode alike (text, numbers, booleans).
    fn plain<T: Plain>(&self, column: &str) -> Result<T, StoreError>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// An id stored as text on SQLite (an event's, a consumer position's).
    fn id(&self, column: &str) -> Result<Uuid, StoreError>;
    /// A severity rank: `int2` on PostgreSQL.
    fn rank(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_rank(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A JSON column: `jsonb` on PostgreSQL, text on SQLite.
    fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T, StoreError>;
}

/// A severity stored as its rank.
pub(crate) fn severity(rank: i64) -> Result<Severity, StoreError> {
    i16::try_from(rank)
        .ok()
        .and_then(Severity::from_rank)
        .ok_or_else(|| StoreError::Corrupt(format!("severity {rank}")))
}

pub(crate) fn kind(text: &str) -> Result<Kind, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

pub(crate) fn state(text: &str) -> Result<FindingState, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// The owner named by an event's workload columns, when both are set.
pub(crate) fn workload(kind: Option<String>, name: Option<String>) -> Option<Workload> {
    match (kind, name) {
        (Some(kind), Some(name)) => Some(Workload { kind, name }),
        _ => None,
    }
}

/// An event's raw payload from its stored text.
pub(crate) fn raw(
    text: Option<String>,
) -> Result<Option<Box<serde_json::value::RawValue>>, StoreError> {
    text.map(|raw| {
        serde_json::value::RawValue::from_string(raw)
            .map_err(|e| StoreError::Corrupt(format!("raw payload: {e}")))
    })
    .transpose()
}
