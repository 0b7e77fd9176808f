//! The group-commit writer: one task owns every write. Concurrent requests queue here and
//! share one transaction; each request is answered when the batch holding it has committed.

use crate::backend::Backend;
use crate::error::StoreError;
use crate::event::{Event, Stored};
use crate::metrics::{ResultLabel, StoreMetrics};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub(crate) struct Job {
    pub events: Vec<Event>,
    pub reply: oneshot::Sender<Result<Vec<Stored>, StoreError>>,
}

pub(crate) struct Bounds {
    pub max_events: usize,
    pub max_wait: Duration,
    pub commit_timeout: Duration,
}

pub(crate) async fn run(
    backend: Backend,
    mut queue: mpsc::Receiver<Job>,
    bounds: Bounds,
    metrics: StoreMetrics,
) {
    while let Some(first) = queue.recv().await {
        let mut count = first.events.len();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + bounds.max_wait;
        while count < bounds.max_events {
            let next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !bounds.max_wait.is_zero() => {
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
        metrics.queue_depth.set(queue.len() as i64);
        commit(&backend, jobs, &bounds, &metrics).await;
    }
}

async fn commit(backend: &Backend, jobs: Vec<Job>, bounds: &Bounds, metrics: &StoreMetrics) {
    let events: Vec<&Event> = jobs.iter().flat_map(|j| &j.events).collect();
    let started = Instant::now();
    let result = write(backend, &events, bounds.commit_timeout).await;
    metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.batch_events.observe(events.len() as f64);
    metrics.batch_requests.observe(jobs.len() as f64);
    metrics
        .commits
        .get_or_create(&ResultLabel {
            result: match &result {
                Ok(_) => "ok",
                Err(e) if e.is_retryable() => "unavailable",
                Err(_) => "error",
            },
        })
        .inc();
    match result {
        Ok(stored) => {
            let mut stored = stored.into_iter();
            for job in jobs {
                let mine: Vec<Stored> = stored.by_ref().take(job.events.len()).collect();
                // A requester that went away still had its events committed; nothing to do.
                let _ = job.reply.send(Ok(mine));
            }
        }
        // Not a passing outage: some request may carry what the database refuses. Write each
        // request alone so one bad request fails only itself.
        Err(StoreError::Database(message)) if jobs.len() > 1 => {
            tracing::warn!(requests = jobs.len(), error = %message, "Batch failed; retrying its requests one by one");
            for job in jobs {
                let events: Vec<&Event> = job.events.iter().collect();
                let _ = job
                    .reply
                    .send(write(backend, &events, bounds.commit_timeout).await);
            }
        }
        Err(error) => {
            tracing::warn!(requests = jobs.len(), events = events.len(), %error, "Batch commit failed");
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

/// Writes events in one transaction, storing each dedup key once even when it appears
/// several times in the batch; returns one `Stored` per input event, in order.
async fn write(
    backend: &Backend,
    events: &[&Event],
    timeout: Duration,
) -> Result<Vec<Stored>, StoreError> {
    let mut first_with_key: HashMap<&str, usize> = HashMap::new();
    let mut unique: Vec<&Event> = Vec::with_capacity(events.len());
    let mut slot = Vec::with_capacity(events.len());
    for event in events {
        let index = match event.dedup_key.as_deref() {
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
    let stored = tokio::time::timeout(timeout, backend.write(&unique))
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
