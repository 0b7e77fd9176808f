//! The records Falconer keeps and where it keeps them: the normalized event model
//! (DESIGN.md §2) and the store over PostgreSQL or embedded SQLite (§4).
//!
//! All database work runs on the runtime that opened the store, whatever runtime the caller
//! is on (actix-web workers each run their own): connections stay on one reactor.

pub mod config;
pub mod crd;
pub mod error;
pub mod event;
pub mod query;

mod backend;
mod metrics;
mod migrations;
mod postgres;
mod sqlite;
mod writer;

pub use config::{DatabaseUrl, StoreConfig};
pub use error::StoreError;
pub use event::{Cluster, Event, Kind, Severity, Stored, Workload};
pub use query::{Cursor, EventQuery, Page};

use backend::Backend;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// A handle to the store; cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    queue: mpsc::Sender<writer::Job>,
    runtime: Handle,
    database: &'static str,
}

impl Store {
    /// Connects, applies pending migrations and starts the writer on the current runtime.
    pub async fn open(config: &StoreConfig, registry: &mut Registry) -> Result<Store, StoreError> {
        let backend = connect(config).await?;
        match &backend {
            Backend::Postgres(db) => db.migrate().await?,
            Backend::Sqlite(db) => db.migrate().await?,
        }
        let (queue, jobs) = mpsc::channel(config.queue_capacity);
        let bounds = writer::Bounds {
            max_events: config.batch_max_events,
            max_wait: Duration::from_millis(config.batch_max_wait_ms),
            commit_timeout: Duration::from_millis(config.commit_timeout_ms),
        };
        let metrics = metrics::StoreMetrics::new(registry);
        tokio::spawn(writer::run(backend.clone(), jobs, bounds, metrics));
        Ok(Store {
            inner: Arc::new(Inner {
                database: match backend {
                    Backend::Postgres(_) => "postgres",
                    Backend::Sqlite(_) => "sqlite",
                },
                backend,
                queue,
                runtime: Handle::current(),
            }),
        })
    }

    /// Applies pending migrations and returns (`falconer migrate`).
    pub async fn migrate(config: &StoreConfig) -> Result<&'static str, StoreError> {
        let backend = connect(config).await?;
        let database = match &backend {
            Backend::Postgres(db) => db.migrate().await.map(|_| "postgres"),
            Backend::Sqlite(db) => db.migrate().await.map(|_| "sqlite"),
        };
        backend.close().await;
        database
    }

    /// `postgres` or `sqlite`.
    pub fn database(&self) -> &'static str {
        self.inner.database
    }

    /// Stores events durably. Answers once the transaction holding them has committed, with
    /// one `Stored` per event in order. `Overloaded` when the write queue is full.
    pub async fn insert(&self, events: Vec<Event>) -> Result<Vec<Stored>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .try_send(writer::Job { events, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    StoreError::Unavailable("store writer has stopped".into())
                }
            })?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.event(id).await })
            .await
    }

    pub async fn events(&self, query: EventQuery) -> Result<Page, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.events(&query).await })
            .await
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.clusters().await })
            .await
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.ping().await })
            .await
    }

    /// Closes the connections once in-flight work has finished.
    pub async fn close(&self) {
        let backend = self.inner.backend.clone();
        let _ = self
            .on_store_runtime(async move {
                backend.close().await;
                Ok(())
            })
            .await;
    }

    async fn on_store_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.inner
            .runtime
            .spawn(work)
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

async fn connect(config: &StoreConfig) -> Result<Backend, StoreError> {
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
    Ok(match &config.database_url {
        Some(url) => Backend::Postgres(
            postgres::Postgres::connect(url.expose(), config.max_connections, connect_timeout)
                .await?,
        ),
        None => Backend::Sqlite(
            sqlite::Sqlite::open(
                &config.sqlite_path(),
                config.max_connections,
                Duration::from_millis(config.sqlite_busy_timeout_ms),
                connect_timeout,
            )
            .await?,
        ),
    })
}
