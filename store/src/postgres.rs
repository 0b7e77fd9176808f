//! PostgreSQL: the production store. The pool, migrations, the advisory locks that make one
//! hub or analyst do a job at a time, and how PostgreSQL types read and bind; each concept's
//! SQL is in its own `postgres` module.

use crate::error::StoreError;
use crate::retention::{day_of, days_around};
use crate::sql::{Columns, Dialect, Part, Plain};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub(crate) struct Postgres {
    pub(crate) pool: PgPool,
    /// For connections outside the pool: each consumer lock holds one.
    pub(crate) options: std::sync::Arc<PgConnectOptions>,
    /// The days whose `events` partition is known to exist.
    pub(crate) days:
        std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<chrono::NaiveDate>>>,
}

impl Postgres {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Postgres, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("store.database_url: {e}")))?
            .application_name("falconer");
        let pool = PgPoolOptions::new()
            // The writer holds one connection per commit; queries share the rest.
            .max_connections(max_connections + 1)
            .acquire_timeout(connect_timeout)
            .connect_with(options.clone())
            .await?;
        Ok(Postgres {
            pool,
            options: std::sync::Arc::new(options),
            days: Default::default(),
        })
    }

    /// Applies pending migrations and makes the partitions of the days around today.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::postgres().await?.run(&self.pool).await?;
        self.ensure_partitions(days_around(day_of(Utc::now())))
            .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn connection(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, StoreError> {
        self.pool.acquire().await.map_err(StoreError::connecting)
    }

    /// Takes the session advisory lock `key` on a connection of its own (named
    /// `application_name`); `None` when another session holds it. Closing the connection
    /// (dropping it, or the process dying) releases the lock.
    pub(crate) async fn session_lock(
        &self,
        application_name: &str,
        key: i64,
    ) -> Result<Option<PgConnection>, StoreError> {
        use sqlx::ConnectOptions;
        let mut conn = PgConnectOptions::clone(&self.options)
            .application_name(application_name)
            .connect()
            .await
            .map_err(StoreError::connecting)?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        Ok(held.then_some(conn))
    }
}

/// 64 bits of SHA-256 of `name`: the key of an advisory lock.
pub(crate) fn lock_key(name: &[u8]) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

impl Dialect for sqlx::Postgres {
    fn push_parts(qb: &mut QueryBuilder<'_, Self>, parts: Vec<Part>) {
        for part in parts {
            match part {
                Part::Sql(sql) => qb.push(sql),
                Part::Text(v) => qb.push_bind(v),
                Part::Time(v) => qb.push_bind(v),
                Part::Int(v) => qb.push_bind(v),
                Part::Id(v) | Part::Key(v) => qb.push_bind(v),
            };
        }
    }
}

impl Columns for PgRow {
    fn plain<T: Plain>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn id(&self, column: &str) -> Result<Uuid, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn rank(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get::<i16, _>(column)?.into())
    }

    fn opt_rank(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get::<Option<i16>, _>(column)?.map(i64::from))
    }

    fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get::<Json<T>, _>(column)?.0)
    }
}
