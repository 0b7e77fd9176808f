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
use crate::finding::{ReportStored, ReportWrite, ScanReport};
use crate::metrics::{ResultLabel, StoreMetrics};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

/// The writes of one request: plain events, or scanner reports (each report's observations
/// and finding changes commit in the same transaction).
pub(crate) struct Job {
    pub events: Vec<Event>,
    pub reports: Vec<ScanReport>,
    pub reply: oneshot::Sender<Result<Written, StoreError>>,
    /// Held until the job is answered: the events' share of `queue_max_events`.
    pub _permit: OwnedSemaphorePermit,
}

impl Job {
    /// Events this job writes, observations of its reports included.
    pub fn size(&self) -> usize {
        self.events.len()
            + self
                .reports
                .iter()
                .map(|r| r.observations.len())
                .sum::<usize>()
    }
}

/// What the store did with one job.
#[derive(Debug)]
pub(crate) struct Written {
    pub events: Vec<Stored>,
    pub reports: Vec<ReportStored>,
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
    /// Files each event under its alert group and suppression before it is written.
    pub triage: Arc<crate::triage::Triage>,
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
        let mut count = first.size();
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
            count += job.size();
            jobs.push(job);
        }
        self.metrics.queue_depth.set(queue.len() as i64);
        Some(jobs)
    }

    async fn commit(&self, mut jobs: Vec<Job>) {
        let started = Instant::now();
        for job in &mut jobs {
            for event in &mut job.events {
                self.triage.stamp(event);
            }
            for report in &mut job.reports {
                for observation in &mut report.observations {
                    self.triage.stamp(&mut observation.event);
                }
            }
        }
        let result = self.write(&jobs.iter().collect::<Vec<_>>()).await;
        let metrics = &self.metrics;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics
            .batch_events
            .observe(jobs.iter().map(Job::size).sum::<usize>() as f64);
        metrics.batch_requests.observe(jobs.len() as f64);
        let label = |result| ResultLabel { result };
        match result {
            Ok(written) => {
                metrics.commits.get_or_create(&label("ok")).inc();
                self.committed.send_modify(|n| *n = n.wrapping_add(1));
                for (job, mine) in jobs.into_iter().zip(written) {
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
                    let alone = self.write(&[&job]).await.and_then(|mut written| {
                        written
                            .pop()
                            .ok_or_else(|| StoreError::Database("a write answered nothing".into()))
                    });
                    if alone.is_ok() {
                        self.committed.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    let _ = job.reply.send(alone);
                }
            }
            Err(error) => {
                let result = if matches!(error, StoreError::DiskFull(_)) {
                    "disk_full"
                } else if error.is_retryable() {
                    "unavailable"
                } else {
                    "error"
                };
                metrics.commits.get_or_create(&label(result)).inc();
                tracing::warn!(requests = jobs.len(), %error, "Batch commit failed");
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Writes the jobs in one transaction, storing each dedup key once even when it appears
    /// several times in the batch; answers each job with one `Stored` per event, in order.
    async fn write(&self, jobs: &[&Job]) -> Result<Vec<Written>, StoreError> {
        let mut first_with_key: HashMap<uuid::Uuid, usize> = HashMap::new();
        let mut unique: Vec<&Event> = Vec::new();
        let mut slot = Vec::new();
        let mut reports = Vec::new();
        for job in jobs {
            for event in &job.events {
                slot.push(place(event, &mut unique, &mut first_with_key));
            }
            for report in &job.reports {
                let slots: Vec<usize> = report
                    .observations
                    .iter()
                    .map(|o| place(&o.event, &mut unique, &mut first_with_key))
                    .collect();
                slot.extend_from_slice(&slots);
                reports.push(ReportWrite { report, slots });
            }
        }
        let timeout = self.bounds.commit_timeout;
        let (stored, outcomes) =
            tokio::time::timeout(timeout, self.backend.write(&unique, &reports))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "commit did not finish within {} ms",
                        timeout.as_millis()
                    ))
                })??;
        let mut seen = vec![false; unique.len()];
        let mut answers = slot.iter().map(|&u| {
            // Later copies within the batch are duplicates of the first.
            let duplicate = stored[u].duplicate || seen[u];
            seen[u] = true;
            Stored {
                id: stored[u].id,
                duplicate,
            }
        });
        let mut outcomes = outcomes.into_iter();
        let mut written = Vec::with_capacity(jobs.len());
        for job in jobs {
            let events = answers.by_ref().take(job.events.len()).collect();
            let mut stored_reports = Vec::with_capacity(job.reports.len());
            for report in &job.reports {
                let events = answers.by_ref().take(report.observations.len()).collect();
                let outcome = outcomes.next().ok_or_else(|| {
                    StoreError::Database("a report was written without an outcome".into())
                })?;
                stored_reports.push(ReportStored { events, outcome });
            }
            written.push(Written {
                events,
                reports: stored_reports,
            });
        }
        Ok(written)
    }
}

/// The index of `event` among the unique events of a batch, adding it unless an event with
/// the same dedup key came first.
fn place<'a>(
    event: &'a Event,
    unique: &mut Vec<&'a Event>,
    first_with_key: &mut HashMap<uuid::Uuid, usize>,
) -> usize {
    let mut add = || {
        unique.push(event);
        unique.len() - 1
    };
    match event.dedup_key {
        Some(key) => *first_with_key.entry(key).or_insert_with(add),
        None => add(),
    }
}
