//! The records Falconer keeps and where it keeps them: the normalized event model
//! (DESIGN.md §2) and the store over PostgreSQL or embedded SQLite (§4).
//!
//! All database work runs on the runtime that opened the store, whatever runtime the caller
//! is on (actix-web workers each run their own): connections stay on one reactor.

pub mod config;
pub mod delivery;
pub mod error;
pub mod finding;
pub mod retention;
pub mod risk;
pub mod stats;
pub mod triage;

mod backend;
mod events;
mod journal;
mod metrics;
mod migrations;
mod postgres;
mod sql;
mod sqlite;
mod writer;

/// Event queries: the filters and keyset pagination of `GET /api/v1/events`. They live in
/// the events module, beside the SQL that answers them.
pub mod query {
    pub use crate::events::{Cursor, EventQuery, Page};
}

pub use config::{DatabaseUrl, StoreConfig};
pub use delivery::{ConsumerRecord, DeadLetter, Lag, Position, Progress, Start};
pub use error::StoreError;
pub use falconer_model::event::{
    self, Cluster, Event, Kind, Severity, Stored, Workload, dedup_key,
};
pub use finding::{
    Finding, FindingCursor, FindingPage, FindingQuery, FindingState, Observation, ReportOutcome,
    ReportStored, ScanReport,
};
pub use journal::JournalConfig;
pub use query::{Cursor, EventQuery, Page};
pub use risk::{
    EXPOSED_TAG, Factor, FactorKind, History, HistoryAnswer, HistoryItem, HistoryQuery, RiskInputs,
    RiskLevel, RiskPage, RiskQuery, RiskRun, RiskScore, RiskSort, RiskSummary, RiskWindow,
};

/// The risk model as the store calls it: aggregated inputs in, scores out (`previous`,
/// `delta` and `computed_at` are the store's to fill).
pub type RiskModel = Box<dyn FnOnce(RiskInputs) -> Vec<RiskScore> + Send>;
pub use stats::{
    BucketCount, EventStats, EventStatsQuery, FindingStatsQuery, RuleCount, SourceCount,
    TargetCount, TargetKind,
};
pub use triage::{
    AlertGroup, Changed, GroupChange, GroupCursor, GroupDetail, GroupPage, GroupQuery, GroupState,
    Suppression, SuppressionSpec, Transition,
};

use backend::Backend;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use uuid::Uuid;

/// Held while this process delivers to a consumer; dropping it lets another replica take over.
pub struct ConsumerLock(Option<sqlx::PgConnection>);

impl ConsumerLock {
    /// Whether the lock's connection still answers (a lost connection has lost the lock).
    pub async fn is_held(&mut self) -> bool {
        match &mut self.0 {
            Some(conn) => sqlx::Connection::ping(conn).await.is_ok(),
            None => true,
        }
    }
}

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
    commits: watch::Receiver<u64>,
    runtime: Handle,
    database: &'static str,
    /// The ingest journal in front of PostgreSQL, when on.
    journal: Option<journal::Journal>,
    triage: Arc<triage::Triage>,
    max_suppression_days: u32,
}

/// Room in the write queue taken ahead of a write ([`Store::reserve`]); given back when
/// dropped or, once used, when the write is answered.
#[derive(Debug)]
pub struct Reservation(Option<OwnedSemaphorePermit>);

impl Store {
    /// Connects, applies pending migrations and starts the writers on the current runtime.
    pub async fn open(config: &StoreConfig, registry: &mut Registry) -> Result<Store, StoreError> {
        let off = JournalConfig {
            enabled: false,
            ..JournalConfig::default()
        };
        Store::open_journaled(config, &off, registry).await
    }

    /// [`Store::open`] with the ingest journal in front of PostgreSQL when `journal` is
    /// enabled (the embedded SQLite store never journals): events are acknowledged once
    /// journaled and loaded into the database behind the acknowledgement.
    pub async fn open_journaled(
        config: &StoreConfig,
        journal: &JournalConfig,
        registry: &mut Registry,
    ) -> Result<Store, StoreError> {
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
        let (committed, commits) = watch::channel(0);
        let triage = Arc::new(triage::Triage::new(config.group_by.clone()));
        triage.set_active(&backend.suppressions(Some(chrono::Utc::now())).await?);
        tokio::spawn(follow_suppressions(
            backend.clone(),
            Arc::downgrade(&triage),
        ));
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
            committed,
            triage: triage.clone(),
        });
        for _ in 0..writers {
            tokio::spawn(writer.clone().run());
        }
        let journal = match (&backend, journal.enabled) {
            (Backend::Postgres(_), true) => {
                let dir = journal
                    .dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("journal"));
                let load = loader(queue.clone(), permits.clone(), config.queue_max_events);
                Some(journal::Journal::open(&dir, journal, load, registry)?)
            }
            _ => None,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                database,
                backend,
                queue,
                permits,
                max_pending: config.queue_max_events,
                metrics,
                commits,
                runtime: Handle::current(),
                journal,
                triage,
                max_suppression_days: config.max_suppression_days,
            }),
        })
    }

    /// Whether accepted events go through the ingest journal (and so reach queries after
    /// the load delay).
    pub fn journaled(&self) -> bool {
        self.inner.journal.is_some()
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
        let reservation = self.reserve(events.len())?;
        self.insert_reserved(events, reservation).await
    }

    /// Takes `n` events' share of `queue_max_events` ahead of the write, so a caller can
    /// refuse work (`Overloaded`) before it spends memory parsing it.
    pub fn reserve(&self, n: usize) -> Result<Reservation, StoreError> {
        if let Some(journal) = &self.inner.journal {
            return match journal.is_full() {
                true => Err(journal_full()),
                false => Ok(Reservation(None)),
            };
        }
        self.permits(n.max(1)).map(|p| Reservation(Some(p)))
    }

    /// [`Store::insert`] with room reserved beforehand: more events than reserved take
    /// the difference now; the reservation is held until the commit, then given back.
    pub async fn insert_reserved(
        &self,
        events: Vec<Event>,
        reservation: Reservation,
    ) -> Result<Vec<Stored>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(journal) = &self.inner.journal {
            return journal.append(events).await;
        }
        let mut permit = match reservation.0 {
            Some(permit) => permit,
            None => self.permits(events.len())?,
        };
        if let Some(more) = events
            .len()
            .checked_sub(permit.num_permits())
            .filter(|n| *n > 0)
        {
            permit.merge(self.permits(more)?);
        }
        Ok(self.submit(events, Vec::new(), permit).await?.events)
    }

    /// Stores scanner reports durably: each report's observations as events, and the latest
    /// state of its findings (opened, refreshed, or fixed when absent), all in the same
    /// transaction. Answers after commit with one `ReportStored` per report, in order. Every
    /// observation counts against `queue_max_events` like an event.
    pub async fn insert_reports(
        &self,
        reports: Vec<ScanReport>,
    ) -> Result<Vec<ReportStored>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let size = reports.iter().map(|r| r.observations.len()).sum::<usize>();
        // A clean report (no observations) still takes a permit: it is pending work.
        let permit = self.permits(size.max(1))?;
        Ok(self.submit(Vec::new(), reports, permit).await?.reports)
    }

    async fn submit(
        &self,
        events: Vec<Event>,
        reports: Vec<ScanReport>,
        permit: OwnedSemaphorePermit,
    ) -> Result<writer::Written, StoreError> {
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

    /// True while `queue_max_events` events are waiting or being written: a new write would
    /// be refused, so the hub refuses the request before reading its body.
    pub fn is_full(&self) -> bool {
        match &self.inner.journal {
            Some(journal) => journal.is_full(),
            None => self.inner.permits.available_permits() == 0,
        }
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

    /// Events of a time window counted per bucket and severity, by source and by rule.
    pub async fn event_stats(&self, query: EventStatsQuery) -> Result<EventStats, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.event_stats(&query).await })
            .await
    }

    /// Findings counted per target (image, node or scope), state and severity.
    pub async fn finding_stats(
        &self,
        query: FindingStatsQuery,
    ) -> Result<Vec<TargetCount>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.finding_stats(&query).await })
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

    /// Changes after every commit of this process's writer: delivery workers wait on it
    /// instead of polling (other hub replicas' commits are found by their poll interval).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.clone()
    }

    pub async fn consumer(&self, name: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(async move { backend.consumer(&name).await })
            .await
    }

    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.consumers().await })
            .await
    }

    /// The consumer's record, created (starting as `start` says) when it has none yet.
    pub async fn ensure_consumer(
        &self,
        name: &str,
        start: Start,
    ) -> Result<ConsumerRecord, StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(async move {
            match backend.consumer(&name).await? {
                Some(record) => Ok(record),
                None => backend.create_consumer(&name, start).await,
            }
        })
        .await
    }

    /// Up to `limit` events after `position` in commit order, with their raw payload. Only
    /// events no later commit can precede are returned.
    pub async fn events_after(
        &self,
        position: Position,
        limit: u32,
    ) -> Result<Vec<(Position, Event)>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.events_after(position, limit).await })
            .await
    }

    pub async fn lag(&self, position: Position) -> Result<Lag, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.lag(position).await })
            .await
    }

    /// Moves a consumer's cursor and adds to its counters and dead letters, atomically.
    pub async fn save_progress(
        &self,
        name: &str,
        position: Position,
        progress: Progress,
    ) -> Result<(), StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(
            async move { backend.save_progress(&name, position, &progress).await },
        )
        .await
    }

    pub async fn dead_letters(
        &self,
        name: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(async move { backend.dead_letters(&name, after, limit).await })
            .await
    }

    /// Marks dead letters (all, or those ids) for redelivery; returns how many.
    pub async fn request_replay(
        &self,
        name: &str,
        ids: Option<Vec<i64>>,
    ) -> Result<u64, StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(async move { backend.request_replay(&name, ids.as_deref()).await })
            .await
    }

    /// Dead letters marked for replay, with their events (none if retention removed it).
    pub async fn replays(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<(DeadLetter, Option<Event>)>, StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(async move { backend.replays(&name, limit).await })
            .await
    }

    /// Removes redelivered dead letters and records new failures of the others.
    pub async fn finish_replay(
        &self,
        name: &str,
        delivered: Vec<i64>,
        failed: Vec<(i64, String)>,
    ) -> Result<(), StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(
            async move { backend.finish_replay(&name, &delivered, &failed).await },
        )
        .await
    }

    /// Makes this process the only one delivering to consumer `name` while the returned lock
    /// lives (PostgreSQL: a session advisory lock; SQLite: one process owns the file). `None`
    /// when another hub replica holds it.
    pub async fn lock_consumer(&self, name: &str) -> Result<Option<ConsumerLock>, StoreError> {
        let (backend, name) = (self.inner.backend.clone(), name.to_owned());
        self.on_store_runtime(async move {
            match backend {
                Backend::Postgres(db) => Ok(db
                    .lock_consumer(&name)
                    .await?
                    .map(|conn| ConsumerLock(Some(conn)))),
                Backend::Sqlite(_) => Ok(Some(ConsumerLock(None))),
            }
        })
        .await
    }

    /// Reads the aggregated inputs of `window`, scores them with `model` and stores the
    /// scores with their history (older than `retention_secs` removed). `None` when another
    /// analyst is computing right now (PostgreSQL advisory lock).
    pub async fn compute_risk(
        &self,
        window: RiskWindow,
        retention_secs: i64,
        model: RiskModel,
    ) -> Result<Option<RiskRun>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(
            async move { backend.compute_risk(window, retention_secs, model).await },
        )
        .await
    }

    /// Removes the events received before `cutoff` (DESIGN.md §4), but none that a consumer
    /// named in `holders` (the consumers running now) has not delivered yet. `None` when
    /// another hub is enforcing retention right now (PostgreSQL advisory lock).
    pub async fn enforce_retention(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        holders: &[String],
    ) -> Result<Option<retention::RetentionRun>, StoreError> {
        let backend = self.inner.backend.clone();
        let holders: std::collections::HashSet<String> = holders.iter().cloned().collect();
        self.on_store_runtime(async move {
            let records: Vec<ConsumerRecord> = backend
                .consumers()
                .await?
                .into_iter()
                .filter(|c| holders.contains(&c.name))
                .collect();
            let Some(mut run) = backend.enforce_retention(cutoff, &records).await? else {
                return Ok(None);
            };
            (run.groups_removed, run.suppressions_removed) = backend.forget_triage(cutoff).await?;
            Ok(Some(run))
        })
        .await
    }

    pub async fn risk_scores(&self, query: RiskQuery) -> Result<RiskPage, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.risk_scores(&query).await })
            .await
    }

    /// The latest computation's time, every cluster's score and the top `top` namespaces
    /// and workloads.
    pub async fn risk_summary(
        &self,
        cluster: Option<String>,
        top: u32,
    ) -> Result<RiskSummary, StoreError> {
        let backend = self.inner.backend.clone();
        let computed_at = self
            .on_store_runtime(async move { backend.risk_computed_at().await })
            .await?;
        let list = |level, limit| RiskQuery {
            level,
            cluster: cluster.clone(),
            namespace: None,
            kind: None,
            sort: RiskSort::Score,
            limit,
            offset: 0,
        };
        Ok(RiskSummary {
            computed_at,
            clusters: self
                .risk_scores(list(RiskLevel::Cluster, u32::MAX))
                .await?
                .items,
            top_namespaces: self
                .risk_scores(list(RiskLevel::Namespace, top))
                .await?
                .items,
            top_workloads: self
                .risk_scores(list(RiskLevel::Workload, top))
                .await?
                .items,
        })
    }

    pub async fn risk_history(&self, query: HistoryQuery) -> Result<HistoryAnswer, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.risk_history(&query).await })
            .await
    }

    /// Closes the connections once in-flight work has finished.
    pub async fn close(&self) {
        if let Some(journal) = &self.inner.journal {
            if journal.close().await {
                tracing::info!("Journal drained: everything it held is in the database");
            } else {
                tracing::warn!(
                    wait_secs = journal.drain().as_secs(),
                    "The journal was not loaded into the database before stopping; it is \
                     loaded at the next start from the same journal directory"
                );
            }
        }
        let backend = self.inner.backend.clone();
        let _ = self
            .on_store_runtime(async move {
                backend.close().await;
                Ok(())
            })
            .await;
    }

    pub async fn groups(&self, query: GroupQuery) -> Result<GroupPage, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.groups(&query).await })
            .await
    }

    /// A group with its history and recent events.
    pub async fn group(&self, id: String) -> Result<Option<GroupDetail>, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.group(&id).await })
            .await
    }

    /// Acknowledges, resolves or reopens a group on behalf of `actor`.
    pub async fn change_group(
        &self,
        id: String,
        transition: Transition,
        actor: String,
        comment: Option<String>,
    ) -> Result<Changed, StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move {
            backend
                .change_group(
                    &id,
                    transition,
                    &actor,
                    comment.as_deref(),
                    chrono::Utc::now(),
                )
                .await
        })
        .await
    }

    /// How far ahead a suppression may expire (`store.max_suppression_days`).
    pub fn max_suppression_days(&self) -> u32 {
        self.inner.max_suppression_days
    }

    /// Stores a suppression; events the writer files from now on are matched against it.
    pub async fn create_suppression(&self, suppression: Suppression) -> Result<(), StoreError> {
        let backend = self.inner.backend.clone();
        self.on_store_runtime(async move { backend.create_suppression(&suppression).await })
            .await?;
        self.reload_suppressions().await
    }

    /// Suppressions, oldest first: the active ones, or every one kept.
    pub async fn suppressions(&self, with_expired: bool) -> Result<Vec<Suppression>, StoreError> {
        let backend = self.inner.backend.clone();
        let active_at = (!with_expired).then(chrono::Utc::now);
        self.on_store_runtime(async move { backend.suppressions(active_at).await })
            .await
    }

    /// Deletes a suppression; false when there was none with that id.
    pub async fn delete_suppression(&self, id: Uuid) -> Result<bool, StoreError> {
        let backend = self.inner.backend.clone();
        let deleted = self
            .on_store_runtime(async move { backend.delete_suppression(id).await })
            .await?;
        self.reload_suppressions().await?;
        Ok(deleted)
    }

    /// Makes the stored suppressions of Settings exactly `declared`: stores the missing
    /// ones and deletes those no Setting declares any more. Returns (created, deleted).
    pub async fn sync_declared_suppressions(
        &self,
        declared: Vec<Suppression>,
    ) -> Result<(usize, usize), StoreError> {
        let stored = self.suppressions(true).await?;
        let mut changed = (0, 0);
        for gone in stored.iter().filter(|s| {
            falconer_model::suppression::is_declared(&s.origin)
                && !declared.iter().any(|d| d.id == s.id)
        }) {
            let backend = self.inner.backend.clone();
            let id = gone.id;
            if self
                .on_store_runtime(async move { backend.delete_suppression(id).await })
                .await?
            {
                changed.1 += 1;
            }
        }
        for new in declared
            .into_iter()
            .filter(|d| !stored.iter().any(|s| s.id == d.id))
        {
            let backend = self.inner.backend.clone();
            self.on_store_runtime(async move { backend.create_suppression(&new).await })
                .await?;
            changed.0 += 1;
        }
        if changed != (0, 0) {
            self.reload_suppressions().await?;
        }
        Ok(changed)
    }

    async fn reload_suppressions(&self) -> Result<(), StoreError> {
        let active = self.suppressions(false).await?;
        self.inner.triage.set_active(&active);
        Ok(())
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

/// How often the writer's suppressions are read again: for those another replica made or
/// deleted (this process's own changes apply at once).
const SUPPRESSIONS_REFRESH: Duration = Duration::from_secs(10);

/// Re-reads the active suppressions until the store is dropped.
async fn follow_suppressions(backend: Backend, triage: std::sync::Weak<triage::Triage>) {
    loop {
        tokio::time::sleep(SUPPRESSIONS_REFRESH).await;
        let Some(triage) = triage.upgrade() else {
            return;
        };
        match backend.suppressions(Some(chrono::Utc::now())).await {
            Ok(active) => triage.set_active(&active),
            Err(error) => tracing::warn!(%error, "Could not re-read the suppressions"),
        }
    }
}

fn journal_full() -> StoreError {
    StoreError::JournalFull("the ingest journal is full: the database is not keeping up".into())
}

/// The journal's way into the database: each record is one writer job, as a request
/// would be, waiting for room in the write queue instead of being refused.
fn loader(
    queue: mpsc::UnboundedSender<writer::Job>,
    permits: Arc<Semaphore>,
    max_pending: usize,
) -> journal::Load {
    Box::new(move |records| {
        let (queue, permits) = (queue.clone(), permits.clone());
        Box::pin(async move {
            let mut answers = Vec::with_capacity(records.len());
            for events in records {
                let n = u32::try_from(events.len().clamp(1, max_pending)).unwrap_or(u32::MAX);
                let (reply, answer) = oneshot::channel();
                let sent = match permits.clone().acquire_many_owned(n).await {
                    Ok(permit) => queue
                        .send(writer::Job {
                            events,
                            reports: Vec::new(),
                            reply,
                            _permit: permit,
                        })
                        .is_ok(),
                    Err(_) => false,
                };
                answers.push(sent.then_some(answer));
            }
            let mut results = Vec::with_capacity(answers.len());
            for answer in answers {
                let stopped = || StoreError::Unavailable("store writer has stopped".into());
                results.push(match answer {
                    Some(answer) => answer
                        .await
                        .map_err(|_| stopped())
                        .and_then(|r| r.map(drop)),
                    None => Err(stopped()),
                });
            }
            results
        })
    })
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
