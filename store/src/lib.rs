//! The records Falconer keeps and where it keeps them: the normalized event model
//! (DESIGN.md §2) and the store over PostgreSQL or embedded SQLite (§4).
//!
//! All database work runs on the runtime that opened the store, whatever runtime the caller
//! is on (actix-web workers each run their own): connections stay on one reactor.

pub mod config;
pub mod error;
pub mod event;
pub mod finding;
pub mod query;

mod backend;
mod metrics;
mod migrations;
mod postgres;
mod sqlite;
mod writer;

pub use config::{DatabaseUrl, StoreConfig};
pub use error::StoreError;
pub use event::{Cluster, Event, Kind, Severity, Stored, Workload, dedup_key};
pub use finding::{
    Finding, FindingCursor, FindingPage, FindingQuery, FindingState, Observation, Report,
    ReportOutcome, ReportStored,
};
pub use query::{Cursor, EventQuery, Page};

use backend::Backend;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// A handle to the store; cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    queue: mpsc::UnboundedSender<writer::Job>,
    permits: Arc<Semaphore>,
    max_pending: usize,
    metrics: metrics::StoreMetrics,
    runtime: Handle,
    database: &'static str,
}

impl Store {
    /// Connects, applies pending migrations and starts the writers on the current runtime.
    pub async fn open(config: &StoreConfig, registry: &mut Registry) -> Result<Store, StoreError> {
        let backend = connect(config).await?;
        let (database, writers) = match &backend {
            Backend::Postgres(db) => {
                db.migrate().await?;
                ("postgres", config.writers)
            }
            Backend::Sqlite(db) => {
                db.migrate().await?;
                ("sqlite", 1)
            }
        };
        let (queue, jobs) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(config.queue_max_events));
        let metrics = metrics::StoreMetrics::new(registry);
        let writer = Arc::new(writer::Writer {
            backend: backend.clone(),
            queue: tokio::sync::Mutex::new(jobs),
            permits: permits.clone(),
            bounds: writer::Bounds {
                max_events: config.batch_max_events,
                max_wait: Duration::from_millis(config.batch_max_wait_ms),
                commit_timeout: Duration::from_millis(config.commit_timeout_ms),
                max_pending: config.queue_max_events,
            },
            metrics: metrics.clone(),
        });
        for _ in 0..writers {
            tokio::spawn(writer.clone().run());
        }
        Ok(Store {
            inner: Arc::new(Inner {
                database,
                backend,
                queue,
                permits,
                max_pending: config.queue_max_events,
                metrics,
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
    /// one `Stored` per event in order. `Overloaded` when `queue_max_events` events are
    /// already waiting or being written.
    pub async fn insert(&self, events: Vec<Event>) -> Result<Vec<Stored>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.submit(events, Vec::new()).await?.events)
    }

    /// Stores scanner reports durably: each report's observations as events, and the latest
    /// state of its findings (opened, refreshed, or fixed when absent), all in the same
    /// transaction. Answers after commit with one `ReportStored` per report, in order. Every
    /// observation counts against `queue_max_events` like an event.
    pub async fn insert_reports(
        &self,
        reports: Vec<Report>,
    ) -> Result<Vec<ReportStored>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.submit(Vec::new(), reports).await?.reports)
    }

    async fn submit(
        &self,
        events: Vec<Event>,
        reports: Vec<Report>,
    ) -> Result<writer::Written, StoreError> {
        let size = events.len() + reports.iter().map(|r| r.observations.len()).sum::<usize>();
        // A clean report (no observations) still takes a permit: it is pending work.
        let permit = self.permits(size.max(1))?;
        let (reply, answer) = oneshot::channel();
        let job = writer::Job {
            events,
            reports,
            reply,
            _permit: permit,
        };
        let inner = &self.inner;
        inner
            .metrics
            .pending_events
            .set((inner.max_pending - inner.permits.available_permits()) as i64);
        self.inner
            .queue
            .send(job)
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    fn permits(&self, n: usize) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        let wanted = u32::try_from(n).map_err(|_| StoreError::Overloaded)?;
        self.inner
            .permits
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| StoreError::Overloaded)
    }

    pub async fn findings(&self, query: FindingQuery) -> Result<FindingPage, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.findings(&query).await })
            .await
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
