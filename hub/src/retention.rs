//! Retention: every `store.retention_interval_secs` the hub removes the events received longer
//! ago than the retention in force (a Setting's `spec.retention`, else `store.retention`),
//! keeping what a declared consumer has not delivered yet.

use chrono::{TimeDelta, Utc};
use falconer_delivery::Delivery;
use falconer_delivery::declared::Observed;
use falconer_store::retention::{RetentionRun, parse_age};
use falconer_store::{Store, StoreConfig, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// done, skipped (another hub was running it, or Settings not read yet), failed
    outcome: &'static str,
}

#[derive(Clone)]
struct RetentionMetrics {
    runs: Family<OutcomeLabel, Counter>,
    removed: Counter,
    held: Gauge,
    age: Gauge,
}

/// What one run came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done(RetentionRun),
    /// Nothing to do (retention `forever`), another hub is running it, or the Settings (which
    /// may set the retention and declare consumers) have not been read yet.
    Skipped(&'static str),
}

const NOT_SYNCED: &str = "the Settings have not been read yet";

pub struct Retention {
    store: Store,
    delivery: Delivery,
    configured: String,
    settings: Option<watch::Receiver<Observed>>,
    interval: Duration,
    metrics: RetentionMetrics,
}

impl Retention {
    /// `settings`: what the Setting watcher observed, when the hub runs in a cluster.
    pub fn new(
        store: Store,
        delivery: Delivery,
        config: &StoreConfig,
        settings: Option<watch::Receiver<Observed>>,
        registry: &mut Registry,
    ) -> Retention {
        let metrics = RetentionMetrics {
            runs: Family::default(),
            removed: Counter::default(),
            held: Gauge::default(),
            age: Gauge::default(),
        };
        registry.register(
            "falconer_retention_runs",
            "Retention runs: done, skipped (another hub ran it, or Settings not read yet), failed",
            metrics.runs.clone(),
        );
        registry.register(
            "falconer_retention_removed_events",
            "Events removed by retention",
            metrics.removed.clone(),
        );
        registry.register(
            "falconer_retention_held",
            "1 while a consumer keeps events older than the retention (it has not delivered them)",
            metrics.held.clone(),
        );
        registry.register(
            "falconer_retention_age_seconds",
            "The retention in force (0: forever)",
            metrics.age.clone(),
        );
        Retention {
            store,
            delivery,
            configured: config.retention.clone(),
            settings,
            interval: Duration::from_secs(config.retention_interval_secs),
            metrics,
        }
    }

    /// The retention in force and where it comes from. A Setting's value was checked by the
    /// API server's schema; one that still does not parse is ignored with a warning.
    pub fn age(&self) -> (Option<TimeDelta>, String) {
        let from_setting = self
            .settings
            .as_ref()
            .and_then(|s| s.borrow().retention.clone());
        if let Some(text) = from_setting {
            match parse_age(&text) {
                Ok(age) => return (age, format!("Setting spec.retention {text}")),
                Err(e) => tracing::warn!(error = e, "Ignoring a Setting's spec.retention"),
            }
        }
        // Checked at start-up.
        let age = parse_age(&self.configured).unwrap_or(None);
        (age, format!("store.retention {}", self.configured))
    }

    /// Runs retention once.
    pub async fn run_once(&self) -> Result<Outcome, StoreError> {
        if let Some(settings) = &self.settings
            && !settings.borrow().synced
        {
            return Ok(Outcome::Skipped(NOT_SYNCED));
        }
        let (age, source) = self.age();
        self.metrics.age.set(age.map_or(0, |a| a.num_seconds()));
        let Some(age) = age else {
            return Ok(Outcome::Skipped("retention is forever"));
        };
        let cutoff = Utc::now() - age;
        let Some(holders) = self.delivery.declared() else {
            return Ok(Outcome::Skipped("the declared consumers cannot be read"));
        };
        let Some(run) = self.store.enforce_retention(cutoff, &holders).await? else {
            return Ok(Outcome::Skipped("another hub is running retention"));
        };
        self.metrics.removed.inc_by(run.removed);
        self.metrics.held.set(i64::from(run.held_by.is_some()));
        if let Some(consumer) = &run.held_by {
            tracing::warn!(
                consumer,
                retention = source,
                "Keeping events older than the retention: this consumer has not delivered them yet"
            );
        }
        if run.removed > 0 || run.groups_removed > 0 || run.suppressions_removed > 0 {
            tracing::info!(
                events = run.removed,
                days = run.days_dropped,
                alert_groups = run.groups_removed,
                expired_suppressions = run.suppressions_removed,
                %cutoff,
                retention = source,
                "Removed old events"
            );
        }
        Ok(Outcome::Done(run))
    }

    /// Runs retention a minute after start (or sooner, with a shorter interval), then every
    /// interval, until the task is dropped. While the Settings have not been read, it tries
    /// again every minute.
    pub async fn run(self) {
        let soon = self.interval.min(Duration::from_secs(60));
        let mut wait = soon;
        loop {
            tokio::time::sleep(wait).await;
            wait = self.interval;
            let outcome = match self.run_once().await {
                Ok(Outcome::Done(_)) => "done",
                Ok(Outcome::Skipped(why)) => {
                    tracing::debug!(why, "Retention skipped");
                    if why == NOT_SYNCED {
                        wait = soon;
                    }
                    "skipped"
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Retention failed; it runs again next interval");
                    "failed"
                }
            };
            self.metrics
                .runs
                .get_or_create(&OutcomeLabel { outcome })
                .inc();
        }
    }
}
