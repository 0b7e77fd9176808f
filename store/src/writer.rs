//! The group-commit writer. Every write goes through it: concurrent requests queue here and
//! share one transaction; each request is answered when the batch holding it has committed.
//! Several writer tasks may take turns on the queue (PostgreSQL): one gathers the next batch
//! while another commits, so the database is never idle waiting for a round trip.
//!
//! Backpressure is counted in events: a request takes permits for its events before it is
//! queued and gives them back when its batch is done. When none are left the request is
//! refused (`Overloaded`, 429) instead of growing memory; nothing accepted is dropped.

use crate::backend::Backend;
use crate::error::StoreError;
use crate::event::{Event, Stored};
use crate::metrics::{ResultLabel, StoreMetrics};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

pub(crate) struct Job {
    pub events: Vec<Event>,
    pub reply: oneshot::Sender<Result<Vec<Stored>, StoreError>>,
    /// Held until the job is answered: the events' share of `queue_max_events`.
    pub _permit: OwnedSemaphorePermit,
}

pub(crate) struct Bounds {
    pub max_events: usize,
    pub max_wait: Duration,
    pub commit_timeout: Duration,
    pub max_pending: usize,
}

/// The receiving side, shared by the writer tasks.
pub(crate) struct Writer {
    pub backend: Backend,
    pub queue: Mutex<mpsc::UnboundedReceiver<Job>>,
    pub permits: Arc<Semaphore>,
    pub bounds: Bounds,
    pub metrics: StoreMetrics,
    /// Bumped after every successful commit.
    pub committed: watch::Sender<u64>,
}

impl Writer {
    /// One writer task: takes a batch, commits it, answers its requests; until the queue is
    /// closed and drained.
    pub async fn run(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().await;
                self.gather(&mut queue).await
            };
            let Some(jobs) = batch else { break };
            self.commit(jobs).await;
            self.metrics
                .pending_events
                .set((self.bounds.max_pending - self.permits.available_permits()) as i64);
        }
    }

    async fn gather(&self, queue: &mut mpsc::UnboundedReceiver<Job>) -> Option<Vec<Job>> {
        let first = queue.recv().await?;
        let mut count = first.events.len();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + self.bounds.max_wait;
        while count < self.bounds.max_events {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !self.bounds.max_wait.is_zero() => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            count += job.events.len();
            jobs.push(job);
        }
        self.metrics.queue_depth.set(queue.len() as i64);
        Some(jobs)
    }

    async fn commit(&self, jobs: Vec<Job>) {
        let events: Vec<&Event> = jobs.iter().flat_map(|j| &j.events).collect();
        let started = Instant::now();
        let result = self.write(&events).await;
        let metrics = &self.metrics;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_events.observe(events.len() as f64);
        metrics.batch_requests.observe(jobs.len() as f64);
        let label = |result| ResultLabel { result };
        match result {
            Ok(stored) => {
                metrics.commits.get_or_create(&label("ok")).inc();
                self.committed.send_modify(|n| *n = n.wrapping_add(1));
                let mut stored = stored.into_iter();
                for job in jobs {
                    let mine: Vec<Stored> = stored.by_ref().take(job.events.len()).collect();
                    // A requester that went away still had its events committed; a retry
                    // of it will be answered as a duplicate.
                    let _ = job.reply.send(Ok(mine));
                }
            }
            // Not a passing outage: some request may carry what the database refuses.
            // Write each request alone so one bad request fails only itself.
            Err(StoreError::Database(message)) if jobs.len() > 1 => {
                metrics.commits.get_or_create(&label("error")).inc();
                tracing::warn!(requests = jobs.len(), error = %message,
                    "Batch failed; retrying its requests one by one");
                for job in jobs {
                    let events: Vec<&Event> = job.events.iter().collect();
                    let result = self.write(&events).await;
                    if result.is_ok() {
                        self.committed.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                let result = if error.is_retryable() {
                    "unavailable"
                } else {
                    "error"
                };
                metrics.commits.get_or_create(&label(result)).inc();
                tracing::warn!(requests = jobs.len(), events = events.len(), %error,
                    "Batch commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Writes events in one transaction, storing each dedup key once even when it appears
    /// several times in the batch; returns one `Stored` per input event, in order.
    async fn write(&self, events: &[&Event]) -> Result<Vec<Stored>, StoreError> {
        let mut first_with_key: HashMap<uuid::Uuid, usize> = HashMap::new();
        let mut unique: Vec<&Event> = Vec::with_capacity(events.len());
        let mut slot = Vec::with_capacity(events.len());
        for event in events {
            let index = match event.dedup_key {
                Some(key) => *first_with_key.entry(key).or_insert_with(|| {
                    unique.push(event);
                    unique.len() - 1
                }),
                None => {
                    unique.push(event);
                    unique.len() - 1
                }
            };
            slot.push(index);
        }
        let timeout = self.bounds.commit_timeout;
        let stored = tokio::time::timeout(timeout, self.backend.write(&unique))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "commit did not finish within {} ms",
                    timeout.as_millis()
                ))
            })??;
        let mut seen = vec![false; unique.len()];
        Ok(slot
            .iter()
            .map(|&u| {
                // Later copies within the batch are duplicates of the first.
                let duplicate = stored[u].duplicate || seen[u];
                seen[u] = true;
                Stored {
                    id: stored[u].id,
                    duplicate,
                }
            })
            .collect())
    }
}
