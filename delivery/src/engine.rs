//! The delivery engine: keeps one worker running per desired consumer, restarts a worker
//! when its consumer changes, stops it when the consumer goes away, and reports each
//! consumer's state for the API, metrics and `Setting` status.

use crate::config::DeliveryConfig;
use crate::declared::{ConsumerReport, Desired, Origin};
use crate::error::DeliveryError;
use crate::metrics::{ConsumerLabel, DeliveryMetrics};
use crate::sink::{Outcome, Sink};
use crate::sinks::AnySink;
use crate::worker::{Board, Worker};
use falconer_model::crd::ConsumerState;
use falconer_model::matcher::Matcher;
use falconer_store::{ConsumerRecord, Event, Kind, Lag, Severity, Start, Store};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// A handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: DeliveryConfig,
    board: Arc<Board>,
    metrics: DeliveryMetrics,
    running: Mutex<BTreeMap<String, Running>>,
    /// Consumers that could not start, with why (bad settings, missing secret, duplicate).
    failed: Mutex<BTreeMap<String, (Desired, String)>>,
    /// Consumers the Setting watcher left out before they reached the engine (name
    /// conflicts, missing Secrets), as `Stopped` reports.
    left_out: Mutex<Vec<(Origin, ConsumerReport)>>,
    /// The consumers' stored records and lag as last read, for when the store does not
    /// answer in time.
    stored: Mutex<HashMap<String, (ConsumerRecord, Lag)>>,
    /// The cluster the hub runs in, when it does.
    home: Option<Home>,
}

/// How long listing consumers waits for the store before answering from what it read last.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The cluster the hub runs in, for sinks that act on it (Phoenix): a client, the cluster's
/// name (the hub's `cluster`) and the hub's own namespace.
#[derive(Clone)]
pub struct Home {
    pub client: kube::Client,
    pub cluster: String,
    pub namespace: String,
}

struct Running {
    desired: Desired,
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// A consumer as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerView {
    pub name: String,
    #[serde(rename = "type")]
    pub sink: &'static str,
    pub origin: String,
    pub state: ConsumerState,
    pub lag_events: i64,
    pub lag_seconds: i64,
    pub delivered: i64,
    pub skipped: i64,
    pub retries: i64,
    pub dead_letters: i64,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Delivery {
    pub fn new(store: Store, config: DeliveryConfig, registry: &mut Registry) -> Delivery {
        Delivery::with_kube(store, config, registry, None)
    }

    /// An engine whose sinks may act on the hub's cluster (Phoenix).
    pub fn with_kube(
        store: Store,
        config: DeliveryConfig,
        registry: &mut Registry,
        home: Option<Home>,
    ) -> Delivery {
        Delivery {
            inner: Arc::new(Inner {
                store,
                config,
                board: Arc::new(Board::default()),
                metrics: DeliveryMetrics::new(registry),
                running: Mutex::new(BTreeMap::new()),
                failed: Mutex::new(BTreeMap::new()),
                left_out: Mutex::new(Vec::new()),
                stored: Mutex::new(HashMap::new()),
                home,
            }),
        }
    }

    /// Starts the consumers declared now, before it returns, so that a consumer starting
    /// "now" gets every event the hub accepts after this call; then follows `desired` in a
    /// task until its sender is dropped, and stops every worker. The task also measures lag
    /// for the metrics every `status_interval_secs`.
    pub fn spawn(self, mut desired: watch::Receiver<Vec<Desired>>) -> JoinHandle<()> {
        self.apply(desired.borrow_and_update().clone());
        tokio::spawn(self.follow(desired))
    }

    async fn follow(self, mut desired: watch::Receiver<Vec<Desired>>) {
        let mut tick =
            tokio::time::interval(Duration::from_secs(self.inner.config.status_interval_secs));
        loop {
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let wanted = desired.borrow_and_update().clone();
                    self.apply(wanted);
                }
                _ = tick.tick() => self.measure_lag().await,
            }
        }
        self.shutdown().await;
    }

    /// Makes the running workers match `desired`: starts new consumers, restarts changed ones,
    /// stops the others. A name declared twice runs in neither place.
    pub fn apply(&self, desired: Vec<Desired>) {
        let mut by_name: BTreeMap<String, Desired> = BTreeMap::new();
        let mut duplicates: HashMap<String, (Desired, String)> = HashMap::new();
        for d in desired {
            let name = d.consumer.name.clone();
            if let Some(first) = by_name.remove(&name) {
                let error = DeliveryError::Duplicate {
                    consumer: name.clone(),
                    first: first.origin.to_string(),
                    second: d.origin.to_string(),
                };
                duplicates.insert(name, (d, error.to_string()));
            } else if let Some((_, message)) = duplicates.get(&name) {
                let message = message.clone();
                duplicates.insert(name, (d, message));
            } else {
                by_name.insert(name, d);
            }
        }
        let Ok(mut running) = self.inner.running.lock() else {
            return;
        };
        let Ok(mut failed) = self.inner.failed.lock() else {
            return;
        };
        // Stop what is gone or changed.
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| by_name.get(*name) != Some(&r.desired))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                let _ = r.stop.send(true);
                self.inner.board.remove(&name);
                tracing::info!(consumer = %name, "Consumer stopped");
            }
        }
        failed.clear();
        for (name, (d, message)) in duplicates {
            tracing::error!(consumer = %name, error = %message, "Consumer not started");
            failed.insert(name, (d, message));
        }
        for (name, d) in by_name {
            if running.contains_key(&name) {
                continue;
            }
            match self.launch(&d) {
                Ok(r) => {
                    running.insert(name, r);
                }
                Err(e) => {
                    tracing::error!(consumer = %name, error = %e, "Consumer not started");
                    failed.insert(name, (d, e.to_string()));
                }
            }
        }
    }

    fn launch(&self, d: &Desired) -> Result<Running, DeliveryError> {
        Ok(self.start(
            d,
            AnySink::build(d, self.inner.home.as_ref(), &self.inner.config)?,
        ))
    }

    fn start<S: Sink>(&self, d: &Desired, sink: S) -> Running {
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        // "Now" is when the consumer was declared, not when its worker first runs: the events
        // the hub accepts in between belong to it too.
        let since = d
            .consumer
            .replay_from
            .as_ref()
            .and_then(|time| {
                chrono::DateTime::from_timestamp(
                    time.0.as_second(),
                    time.0.subsec_nanosecond().max(0) as u32,
                )
            })
            .unwrap_or_else(chrono::Utc::now);
        let start = Start::ReceivedSince(since);
        self.inner
            .board
            .set(&d.consumer.name, ConsumerState::Pending, None);
        let worker = Worker {
            name: d.consumer.name.clone(),
            sink_type: d.consumer.sink.as_str(),
            sink,
            matcher: Matcher::new(&d.consumer.filter),
            include_suppressed: d.consumer.include_suppressed,
            start,
            store: self.inner.store.clone(),
            config: self.inner.config.clone(),
            board: self.inner.board.clone(),
            metrics: self.inner.metrics.clone(),
            stop: stopped,
            wake: wake.clone(),
            noise: crate::noise::Noise::new(&d.consumer),
        };
        Running {
            desired: d.clone(),
            stop,
            wake,
            task: tokio::spawn(worker.run()),
        }
    }

    /// Stops every worker and waits for them; unsaved progress is redelivered after restart.
    pub async fn shutdown(&self) {
        let running: Vec<Running> = match self.inner.running.lock() {
            Ok(mut running) => std::mem::take(&mut *running).into_values().collect(),
            Err(_) => Vec::new(),
        };
        for r in &running {
            let _ = r.stop.send(true);
        }
        for r in running {
            let _ = r.task.await;
        }
    }

    /// Records the consumers left out before reaching the engine (shown as `Stopped`).
    pub fn set_left_out(&self, reports: Vec<(Origin, ConsumerReport)>) {
        if let Ok(mut left_out) = self.inner.left_out.lock() {
            *left_out = reports;
        }
    }

    /// Every consumer, running or not, with its state, counters and lag.
    /// When the store does not answer within [`STORE_WAIT`] (PostgreSQL down), the
    /// counters and lag are those read last and the state is the workers' live state.
    pub async fn consumers(&self) -> Result<Vec<ConsumerView>, DeliveryError> {
        let stored = match tokio::time::timeout(STORE_WAIT, self.read_stored()).await {
            Ok(Ok(stored)) => {
                if let Ok(mut last) = self.inner.stored.lock() {
                    last.clone_from(&stored);
                }
                stored
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Listing consumers from their last stored state");
                self.inner.stored.lock().map_err(|_| poisoned())?.clone()
            }
            Err(_) => self.inner.stored.lock().map_err(|_| poisoned())?.clone(),
        };
        let declared: Vec<(Desired, Option<String>)> = {
            let running = self.inner.running.lock().map_err(|_| poisoned())?;
            let failed = self.inner.failed.lock().map_err(|_| poisoned())?;
            running
                .values()
                .map(|r| (r.desired.clone(), None))
                .chain(failed.values().map(|(d, e)| (d.clone(), Some(e.clone()))))
                .collect()
        };
        let mut views = Vec::with_capacity(declared.len());
        for (d, failure) in declared {
            let name = d.consumer.name.clone();
            let (record, lag) = match stored.get(&name) {
                Some((record, lag)) => (Some(record), *lag),
                None => (None, Lag::default()),
            };
            let live = self.inner.board.get(&name);
            let state = match (&failure, &live) {
                (Some(_), _) => ConsumerState::Stopped,
                (None, Some(live)) => live.state,
                (None, None) => ConsumerState::Pending,
            };
            views.push(ConsumerView {
                sink: d.consumer.sink.as_str(),
                origin: d.origin.to_string(),
                state,
                lag_events: lag.events,
                lag_seconds: lag.seconds,
                delivered: record.map_or(0, |r| r.delivered),
                skipped: record.map_or(0, |r| r.skipped),
                retries: record.map_or(0, |r| r.retries)
                    + live.as_ref().map_or(0, |l| l.unsaved_retries),
                dead_letters: record.map_or(0, |r| r.dead_letters),
                last_error: failure
                    .or_else(|| live.and_then(|l| l.last_error))
                    .or_else(|| record.and_then(|r| r.last_error.clone())),
                last_delivered_at: record.and_then(|r| r.last_delivered_at),
                name,
            });
        }
        if let Ok(left_out) = self.inner.left_out.lock() {
            for (origin, report) in left_out.iter() {
                let record = stored.get(&report.name).map(|(r, _)| r);
                views.push(ConsumerView {
                    name: report.name.clone(),
                    sink: "unknown",
                    origin: origin.to_string(),
                    state: ConsumerState::Stopped,
                    lag_events: 0,
                    lag_seconds: 0,
                    delivered: record.map_or(0, |r| r.delivered),
                    skipped: record.map_or(0, |r| r.skipped),
                    retries: record.map_or(0, |r| r.retries),
                    dead_letters: record.map_or(0, |r| r.dead_letters),
                    last_error: report.last_error.clone(),
                    last_delivered_at: record.and_then(|r| r.last_delivered_at),
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(views)
    }

    /// Every stored consumer record with its lag.
    async fn read_stored(&self) -> Result<HashMap<String, (ConsumerRecord, Lag)>, DeliveryError> {
        let mut stored = HashMap::new();
        for record in self.inner.store.consumers().await? {
            let lag = self.inner.store.lag(record.position).await?;
            stored.insert(record.name.clone(), (record, lag));
        }
        Ok(stored)
    }

    /// The consumers' state in the shape of `Setting` status, with where each was declared.
    pub async fn reports(&self) -> Result<Vec<(Origin, ConsumerReport)>, DeliveryError> {
        let origins: HashMap<String, Origin> = {
            let running = self.inner.running.lock().map_err(|_| poisoned())?;
            let failed = self.inner.failed.lock().map_err(|_| poisoned())?;
            running
                .values()
                .map(|r| &r.desired)
                .chain(failed.values().map(|(d, _)| d))
                .map(|d| (d.consumer.name.clone(), d.origin.clone()))
                .collect()
        };
        Ok(self
            .consumers()
            .await?
            .into_iter()
            .filter_map(|v| {
                let origin = origins.get(&v.name)?.clone();
                Some((
                    origin,
                    ConsumerReport {
                        name: v.name,
                        state: v.state,
                        lag_events: v.lag_events,
                        lag_seconds: v.lag_seconds,
                        delivered: v.delivered,
                        retries: v.retries,
                        dead_letters: v.dead_letters,
                        last_error: v.last_error,
                        updated_at: None,
                    },
                ))
            })
            .collect())
    }

    /// The consumers declared now, running or not (one that cannot start yet, e.g. for a
    /// missing Secret, will deliver once it can): retention keeps what they have not
    /// delivered. `None` if the engine's state cannot be read (a poisoned lock): better to
    /// keep everything than to guess.
    pub fn declared(&self) -> Option<Vec<String>> {
        let running = self.inner.running.lock().ok()?;
        let failed = self.inner.failed.lock().ok()?;
        Some(running.keys().chain(failed.keys()).cloned().collect())
    }

    pub fn is_declared(&self, name: &str) -> bool {
        self.declared()
            .is_some_and(|names| names.iter().any(|n| n == name))
    }

    /// Marks dead letters (all, or those ids) for redelivery and wakes the consumer.
    pub async fn replay(&self, name: &str, ids: Option<Vec<i64>>) -> Result<u64, DeliveryError> {
        if !self.is_declared(name) {
            return Err(DeliveryError::UnknownConsumer(name.to_string()));
        }
        let marked = self.inner.store.request_replay(name, ids).await?;
        if let Ok(running) = self.inner.running.lock()
            && let Some(r) = running.get(name)
        {
            r.wake.notify_one();
        }
        Ok(marked)
    }

    /// Sends one synthetic event through a fresh instance of the consumer's sink (its filter
    /// is not applied) and says what the sink answered.
    pub async fn test(&self, name: &str) -> Result<Outcome, DeliveryError> {
        let desired = self.desired_of(name)?;
        let mut sink = AnySink::build(&desired, self.inner.home.as_ref(), &self.inner.config)?;
        Ok(sink.send(&[synthetic_event()]).await)
    }

    /// What the consumer's sink would send for `event` (the synthetic test event when
    /// `None`), with its template, without sending it; its filter is not applied.
    pub fn preview(
        &self,
        name: &str,
        event: Option<&Event>,
    ) -> Result<(&'static str, serde_json::Value), DeliveryError> {
        let desired = self.desired_of(name)?;
        let sink = AnySink::build(&desired, self.inner.home.as_ref(), &self.inner.config)?;
        let kind = desired.consumer.sink.as_str();
        Ok((kind, sink.preview(event.unwrap_or(&synthetic_event()))))
    }

    fn desired_of(&self, name: &str) -> Result<Desired, DeliveryError> {
        let running = self.inner.running.lock().map_err(|_| poisoned())?;
        let failed = self.inner.failed.lock().map_err(|_| poisoned())?;
        running
            .get(name)
            .map(|r| r.desired.clone())
            .or_else(|| failed.get(name).map(|(d, _)| d.clone()))
            .ok_or_else(|| DeliveryError::UnknownConsumer(name.to_string()))
    }

    async fn measure_lag(&self) {
        let records = match self.inner.store.consumers().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read consumer state for lag metrics");
                return;
            }
        };
        let sinks: HashMap<String, &'static str> = match self.inner.running.lock() {
            Ok(running) => running
                .iter()
                .map(|(name, r)| (name.clone(), r.desired.consumer.sink.as_str()))
                .collect(),
            Err(_) => return,
        };
        for record in records {
            let Some(&sink) = sinks.get(&record.name) else {
                continue;
            };
            if let Ok(lag) = self.inner.store.lag(record.position).await {
                let label = ConsumerLabel {
                    consumer: record.name.clone(),
                    sink,
                };
                self.inner
                    .metrics
                    .lag_events
                    .get_or_create(&label)
                    .set(lag.events);
                self.inner
                    .metrics
                    .lag_seconds
                    .get_or_create(&label)
                    .set(lag.seconds);
            }
        }
    }
}

fn poisoned() -> DeliveryError {
    DeliveryError::Config {
        consumer: String::new(),
        message: "internal state lock poisoned".into(),
    }
}

/// The event `POST /api/v1/consumers/{name}/test` sends, like falcosidekick's `/test`.
pub fn synthetic_event() -> Event {
    let now = chrono::Utc::now();
    let raw = serde_json::json!({"rule": "Test rule", "priority": "Debug", "output": "This is a test from Falconer"});
    Event {
        id: uuid::Uuid::now_v7(),
        dedup_key: None,
        time: now,
        received_at: now,
        source: "falconer".into(),
        source_version: Some(env!("CARGO_PKG_VERSION").into()),
        kind: Kind::Other,
        severity: Severity::Debug,
        severity_raw: "Debug".into(),
        rule: "Test rule".into(),
        message: "This is a test from Falconer".into(),
        tags: vec!["test".into()],
        cluster: "falconer-test".into(),
        namespace: None,
        pod: None,
        container: None,
        image: None,
        node: None,
        workload: None,
        fields: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("{}".into()).unwrap_or_default()
        }),
        raw: serde_json::value::to_raw_value(&raw).ok(),
        group: None,
        suppressed: None,
    }
}
