//! One consumer's worker: read forward from the cursor, filter, send in batches, retry what
//! may pass (forever, in order, with backoff), dead-letter what never will, and move the
//! cursor only after the sink confirmed. All retry and bookkeeping lives here, so sinks stay
//! simple and behave the same.

use crate::backoff::Backoff;
use crate::config::DeliveryConfig;
use crate::metrics::{ConsumerLabel, DeliveryMetrics, ResultLabel};
use crate::noise::{Admit, Noise};
use crate::sink::{ItemResult, Outcome, Sink};
use falconer_model::crd::ConsumerState;
use falconer_model::matcher::Matcher;
use falconer_store::{Event, Position, Progress, Start, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Live state of every running consumer, shared by workers, the engine and the API.
#[derive(Default)]
pub struct Board {
    live: Mutex<BTreeMap<String, Live>>,
}

#[derive(Debug, Clone)]
pub struct Live {
    pub state: ConsumerState,
    pub last_error: Option<String>,
    /// Retries of the batch in flight: saved with the cursor once it goes through, shown
    /// meanwhile so a consumer that keeps failing does not read 0 retries.
    pub unsaved_retries: i64,
}

impl Board {
    pub fn set(&self, name: &str, state: ConsumerState, last_error: Option<String>) {
        if let Ok(mut live) = self.live.lock() {
            let entry = live.entry(name.to_string()).or_insert(Live {
                state,
                last_error: None,
                unsaved_retries: 0,
            });
            entry.state = state;
            entry.last_error = last_error;
        }
    }

    fn retried(&self, name: &str) {
        if let Ok(mut live) = self.live.lock()
            && let Some(entry) = live.get_mut(name)
        {
            entry.unsaved_retries += 1;
        }
    }

    fn saved(&self, name: &str, retries: i64) {
        if let Ok(mut live) = self.live.lock()
            && let Some(entry) = live.get_mut(name)
        {
            entry.unsaved_retries = (entry.unsaved_retries - retries).max(0);
        }
    }

    pub fn get(&self, name: &str) -> Option<Live> {
        self.live.lock().ok().and_then(|l| l.get(name).cloned())
    }

    pub fn remove(&self, name: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(name);
        }
    }
}

/// A read of the events after `from`, started before the batch ending at `from` was sent:
/// reading and sending overlap, and the read is used only if delivery did reach `from`.
struct ReadAhead {
    from: Position,
    task: tokio::task::JoinHandle<Result<Vec<(Position, Event)>, StoreError>>,
}

pub struct Worker<S: Sink> {
    pub name: String,
    pub sink_type: &'static str,
    pub sink: S,
    pub matcher: Matcher,
    /// Whether events a suppression matched are sent too (`includeSuppressed`).
    pub include_suppressed: bool,
    pub start: Start,
    pub store: Store,
    pub config: DeliveryConfig,
    pub board: Arc<Board>,
    pub metrics: DeliveryMetrics,
    pub stop: watch::Receiver<bool>,
    /// Poked by the API when dead letters are marked for replay.
    pub wake: Arc<Notify>,
    /// The consumer's `aggregate`/`rateLimit`, when it has them.
    pub noise: Option<Noise>,
}

/// Why a step ended early.
enum Interrupted {
    Stopped,
}

/// How a delivery session ended without being asked to stop.
enum Session {
    LockLost,
}

impl<S: Sink> Worker<S> {
    pub async fn run(mut self) {
        while let Ok(Session::LockLost) = self.session().await {}
        tracing::info!(consumer = %self.name, "Delivery stopped");
    }

    /// Delivers while holding the consumer's lock; returns when asked to stop or when the
    /// lock is lost.
    async fn session(&mut self) -> Result<Session, Interrupted> {
        let mut backoff = self.backoff();
        // One replica per consumer: wait for the lock while another hub holds it.
        let mut lock = loop {
            match self.store.lock_consumer(&self.name).await {
                Ok(Some(lock)) => break lock,
                Ok(None) => self.board.set(
                    &self.name,
                    ConsumerState::Pending,
                    Some("delivered by another hub replica; standing by".into()),
                ),
                Err(e) => self.degrade(&format!("taking the consumer lock: {e}")),
            }
            let wait =
                Duration::from_millis(self.config.poll_interval_ms).max(backoff.next_delay());
            self.pause(wait).await?;
        };
        backoff.reset();
        let (mut position, since) = loop {
            match self.store.ensure_consumer(&self.name, self.start).await {
                Ok(record) => {
                    // What was folded before a restart or a lost lock is summarized still.
                    if let Some(noise) = &mut self.noise {
                        noise.restore(record.noise.as_deref(), &self.name);
                    }
                    break (record.position, record.received_since);
                }
                Err(e) => {
                    self.degrade(&e.to_string());
                    self.pause(backoff.next_delay()).await?;
                }
            }
        };
        self.board.set(&self.name, ConsumerState::Active, None);
        let mut commits = self.store.commits();
        tracing::info!(consumer = %self.name, sink = self.sink_type, "Delivery started");
        // The next read batch, read while the current one is being sent.
        let mut ahead: Option<ReadAhead> = None;
        loop {
            if *self.stop.borrow() {
                return Err(Interrupted::Stopped);
            }
            self.replay().await?;
            let read = match ahead.take() {
                Some(next) if next.from == position => next.task.await.unwrap_or_else(|e| {
                    Err(StoreError::Unavailable(format!("read-ahead task: {e}")))
                }),
                other => {
                    if let Some(stale) = other {
                        stale.task.abort();
                    }
                    self.store
                        .events_after(position, self.config.read_batch)
                        .await
                }
            };
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    self.degrade(&format!("reading events: {e}"));
                    self.pause(backoff.next_delay()).await?;
                    continue;
                }
            };
            backoff.reset();
            // Before every batch: a lock whose connection is gone (a PostgreSQL restart) is
            // lost, and another replica may already deliver to this consumer. Start again,
            // without delivering meanwhile.
            if !lock.is_held().await {
                tracing::warn!(consumer = %self.name, "Consumer lock lost; restarting delivery");
                self.board.set(
                    &self.name,
                    ConsumerState::Pending,
                    Some("consumer lock lost".into()),
                );
                return Ok(Session::LockLost);
            }
            if batch.is_empty() {
                // Caught up: the wall clock closes noise-control windows.
                self.summarize(position, Some(chrono::Utc::now())).await?;
                let poll = Duration::from_millis(self.config.poll_interval_ms);
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            }
            if let Some(&(last, _)) = batch.last() {
                let store = self.store.clone();
                let limit = self.config.read_batch;
                ahead = Some(ReadAhead {
                    from: last,
                    task: tokio::spawn(async move { store.events_after(last, limit).await }),
                });
            }
            let delivered = self.deliver(batch, since).await;
            if delivered.is_err()
                && let Some(next) = ahead.take()
            {
                next.task.abort();
            }
            position = delivered?;
        }
    }

    /// Sends one read batch; returns the position up to which everything is settled.
    async fn deliver(
        &mut self,
        batch: Vec<(Position, Event)>,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Position, Interrupted> {
        let Some(&(last, _)) = batch.last() else {
            return Err(Interrupted::Stopped);
        };
        let total = batch.len();
        let mut suppressed = 0;
        let selected: Vec<(Position, Event)> = batch
            .into_iter()
            .filter(|(_, e)| {
                let silenced = e.suppressed.is_some() && !self.include_suppressed;
                suppressed += u64::from(silenced);
                !silenced && e.received_at >= since && self.matcher.matches(e)
            })
            .collect();
        let filtered = (total - selected.len()) as i64;
        self.count("suppressed", suppressed);
        self.count("filtered", filtered as u64 - suppressed);
        if selected.is_empty() {
            let progress = Progress {
                skipped: filtered,
                ..Progress::default()
            };
            self.save(last, progress).await?;
            return Ok(last);
        }
        let size = self.sink.batch_size().max(1);
        let mut rest = selected.into_iter().peekable();
        while rest.peek().is_some() {
            let mut chunk = Vec::with_capacity(size);
            let mut folded = 0;
            let mut end = last;
            while chunk.len() < size
                && let Some((position, event)) = rest.next()
            {
                end = position;
                match self.noise.as_mut().map(|n| n.admit(&event)) {
                    Some(Admit::Fold) => folded += 1,
                    _ => chunk.push(event),
                }
            }
            let mut progress = if chunk.is_empty() {
                Progress::default()
            } else {
                self.send_until_settled(chunk).await?
            };
            // A folded event is represented by its group's summary, saved in the state
            // below until sent.
            progress.skipped += folded;
            self.count("folded", folded as u64);
            if rest.peek().is_none() {
                // The last chunk settles the rest of the read batch, filtered events included.
                end = last;
                progress.skipped += filtered;
            }
            // Saved when something folded (what else changed — a window opened, a message
            // counted against the rate — may be lost to a restart: that repeats a message,
            // it loses none), so a consumer whose alerts all differ pays nothing.
            if folded > 0 {
                progress.noise = self.noise.as_ref().map(Noise::save);
            }
            self.save(end, progress).await?;
            // Windows the events just read closed (a backlog moves the clock on its own).
            self.summarize(end, None).await?;
        }
        Ok(last)
    }

    /// Sends `events` until every one is delivered, skipped or refused for good.
    async fn send_until_settled(
        &mut self,
        mut pending: Vec<Event>,
    ) -> Result<Progress, Interrupted> {
        let mut progress = Progress::default();
        let mut backoff = self.backoff();
        let label = self.label();
        loop {
            let started = Instant::now();
            let outcome = self.sink.send(&pending).await;
            self.metrics
                .send_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            let retry = match outcome {
                Outcome::Delivered => {
                    progress.delivered += pending.len() as i64;
                    self.count("delivered", pending.len() as u64);
                    None
                }
                Outcome::Retry(reason) => Some(reason),
                Outcome::Each(results) if results.len() != pending.len() => Some(format!(
                    "sink answered {} results for {} events",
                    results.len(),
                    pending.len()
                )),
                Outcome::Each(results) => {
                    let mut again = Vec::new();
                    let mut reason = None;
                    for (event, result) in pending.drain(..).zip(results) {
                        match result {
                            ItemResult::Delivered => {
                                progress.delivered += 1;
                                self.count("delivered", 1);
                            }
                            ItemResult::Skipped(_) => {
                                progress.skipped += 1;
                                self.count("skipped", 1);
                            }
                            ItemResult::Refused(why) => {
                                tracing::warn!(consumer = %self.name, event = %event.id, reason = %why,
                                    "Event refused by the sink; moved to dead letters");
                                self.count("dead_letter", 1);
                                progress.dead.push((event.id, why));
                            }
                            ItemResult::Retry(why) => {
                                reason.get_or_insert(why);
                                again.push(event);
                            }
                        }
                    }
                    pending = again;
                    if pending.is_empty() { None } else { reason }
                }
            };
            match retry {
                None => {
                    self.board.set(&self.name, ConsumerState::Active, None);
                    self.metrics.degraded.get_or_create(&label).set(0);
                    // Delivered: an outage's error is over, in the store too.
                    progress.last_error = Some(None);
                    return Ok(progress);
                }
                Some(reason) => {
                    progress.retries += 1;
                    self.board.retried(&self.name);
                    self.metrics.retries.get_or_create(&label).inc();
                    progress.last_error = Some(Some(reason.clone()));
                    self.degrade(&reason);
                    let asked = self.sink.retry_after();
                    let delay = crate::sinks::http::retry_delay(backoff.next_delay(), asked);
                    self.pause(delay).await?;
                }
            }
        }
    }

    /// Sends the summaries noise control has due at `now` (or at the clock of the events
    /// read, while catching up), each until it is delivered or refused for good, then saves
    /// the state at `position`. Stopped meanwhile, the saved state still holds them.
    async fn summarize(
        &mut self,
        position: Position,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), Interrupted> {
        let due = match &mut self.noise {
            Some(noise) => noise.due(now),
            None => return Ok(()),
        };
        if due.is_empty() {
            return Ok(());
        }
        let mut progress = Progress::default();
        let label = self.label();
        for (_, summary) in due {
            let mut backoff = self.backoff();
            loop {
                let reason = match self.sink.send_summary(&summary).await {
                    Outcome::Delivered => None,
                    Outcome::Each(results) => match results.into_iter().next() {
                        Some(ItemResult::Delivered | ItemResult::Skipped(_)) => None,
                        Some(ItemResult::Refused(why)) => {
                            let why = format!("summary of {} events: {why}", summary.folded);
                            tracing::warn!(consumer = %self.name, group = %summary.group, reason = %why,
                                "Summary refused by the sink; its first event moved to dead letters");
                            self.count("dead_letter", 1);
                            progress.dead.push((summary.sample.id, why));
                            break;
                        }
                        Some(ItemResult::Retry(why)) => Some(why),
                        None => Some("sink answered no result for a summary".into()),
                    },
                    Outcome::Retry(why) => Some(why),
                };
                let Some(reason) = reason else {
                    self.count("summary", 1);
                    break;
                };
                progress.retries += 1;
                self.board.retried(&self.name);
                self.metrics.retries.get_or_create(&label).inc();
                self.degrade(&reason);
                let asked = self.sink.retry_after();
                let delay = crate::sinks::http::retry_delay(backoff.next_delay(), asked);
                self.pause(delay).await?;
            }
        }
        self.board.set(&self.name, ConsumerState::Active, None);
        progress.noise = self.noise.as_ref().map(Noise::save);
        self.save(position, progress).await
    }

    /// Saves the cursor and counters; retried while the store is down (nothing is lost:
    /// unsaved progress is delivered again after a restart).
    async fn save(&mut self, position: Position, progress: Progress) -> Result<(), Interrupted> {
        let mut backoff = self.backoff();
        loop {
            match self
                .store
                .save_progress(&self.name, position, progress.clone())
                .await
            {
                Ok(()) => {
                    self.board.saved(&self.name, progress.retries);
                    return Ok(());
                }
                Err(e) => {
                    self.degrade(&format!("saving progress: {e}"));
                    self.pause(backoff.next_delay()).await?;
                }
            }
        }
    }

    /// Redelivers dead letters marked for replay, one attempt per round.
    async fn replay(&mut self) -> Result<(), Interrupted> {
        let letters = match self.store.replays(&self.name, self.config.read_batch).await {
            Ok(letters) if letters.is_empty() => return Ok(()),
            Ok(letters) => letters,
            Err(e) => {
                self.note_store_error(&e);
                return Ok(());
            }
        };
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        let mut events = Vec::new();
        let mut ids = Vec::new();
        for (letter, event) in letters {
            match event {
                Some(event) => {
                    ids.push(letter.id);
                    events.push(event);
                }
                None => failed.push((letter.id, "the event is no longer stored".to_string())),
            }
        }
        let mut retryable = false;
        for (ids, events) in ids
            .chunks(self.sink.batch_size().max(1))
            .zip(events.chunks(self.sink.batch_size().max(1)))
        {
            match self.sink.send(events).await {
                Outcome::Delivered => delivered.extend_from_slice(ids),
                Outcome::Retry(reason) => {
                    self.degrade(&reason);
                    retryable = true;
                }
                Outcome::Each(results) => {
                    for (id, result) in ids.iter().zip(results) {
                        match result {
                            ItemResult::Delivered | ItemResult::Skipped(_) => delivered.push(*id),
                            ItemResult::Refused(why) => failed.push((*id, why)),
                            ItemResult::Retry(why) => {
                                self.degrade(&why);
                                retryable = true;
                            }
                        }
                    }
                }
            }
        }
        self.count("delivered", delivered.len() as u64);
        if let Err(e) = self
            .store
            .finish_replay(&self.name, delivered, failed)
            .await
        {
            self.note_store_error(&e);
        }
        if retryable {
            self.metrics.retries.get_or_create(&self.label()).inc();
            let mut backoff = self.backoff();
            let asked = self.sink.retry_after();
            let delay = crate::sinks::http::retry_delay(backoff.next_delay(), asked);
            self.pause(delay).await?;
        }
        Ok(())
    }

    fn note_store_error(&self, e: &StoreError) {
        tracing::warn!(consumer = %self.name, error = %e, "Store error during delivery");
    }

    fn degrade(&self, reason: &str) {
        tracing::warn!(consumer = %self.name, sink = self.sink_type, error = %reason,
            "Delivery failed; retrying");
        self.board.set(
            &self.name,
            ConsumerState::Degraded,
            Some(reason.to_string()),
        );
        self.metrics.degraded.get_or_create(&self.label()).set(1);
    }

    fn count(&self, result: &'static str, n: u64) {
        if n > 0 {
            self.metrics
                .events
                .get_or_create(&ResultLabel {
                    consumer: self.name.clone(),
                    sink: self.sink_type,
                    result,
                })
                .inc_by(n);
        }
    }

    fn label(&self) -> ConsumerLabel {
        ConsumerLabel {
            consumer: self.name.clone(),
            sink: self.sink_type,
        }
    }

    fn backoff(&self) -> Backoff {
        let seed = self
            .name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        Backoff::new(
            Duration::from_millis(self.config.backoff_initial_ms),
            Duration::from_millis(self.config.backoff_max_ms),
            seed ^ Instant::now().elapsed().as_nanos() as u64,
        )
    }

    /// Waits, unless asked to stop.
    async fn pause(&mut self, delay: Duration) -> Result<(), Interrupted> {
        if *self.stop.borrow() {
            return Err(Interrupted::Stopped);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.stop.changed() => Err(Interrupted::Stopped),
        }
    }
}
