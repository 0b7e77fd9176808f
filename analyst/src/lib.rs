//! The analyst: explainable risk scores per workload, namespace and cluster (DESIGN.md §9,
//! docs/risk-model.md). The database aggregates the inputs; [`model::score`] turns them into
//! scores with their factors; the store keeps them with their history. Computed every
//! `analyst.interval_secs` and on demand, by one analyst at a time.

pub mod config;
pub mod metrics;
pub mod model;
pub mod server;
pub mod workload;

pub use config::{AnalystConfig, SeverityWeights, Weights};

use chrono::{DateTime, Utc};
use falconer_store::{RiskModel, RiskRun, RiskWindow, Store, StoreError};
use metrics::{AnalystMetrics, ClusterLabel, NamespaceLabel};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A handle to the analyst; cheap to clone.
#[derive(Clone)]
pub struct Analyst {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: AnalystConfig,
    metrics: AnalystMetrics,
    /// Held while this process computes: a second request in the meantime is told "busy"
    /// rather than queued (the PostgreSQL advisory lock does the same across processes).
    computing: tokio::sync::Mutex<()>,
}

impl Analyst {
    pub fn new(store: Store, config: AnalystConfig, registry: &mut Registry) -> Analyst {
        Analyst {
            inner: Arc::new(Inner {
                store,
                config,
                metrics: AnalystMetrics::new(registry),
                computing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn config(&self) -> &AnalystConfig {
        &self.inner.config
    }

    /// Computes every score now. `None` when another analyst (this process or another one on
    /// the same PostgreSQL) is computing right now.
    pub async fn recompute(&self) -> Result<Option<RiskRun>, StoreError> {
        self.recompute_at(Utc::now()).await
    }

    /// Computes every score as of `now` (alerts decay to that time).
    pub async fn recompute_at(&self, now: DateTime<Utc>) -> Result<Option<RiskRun>, StoreError> {
        use chrono::SubsecRound;
        // Stored times have microseconds.
        let now = now.trunc_subsecs(6);
        let inner = &self.inner;
        let Ok(_computing) = inner.computing.try_lock() else {
            inner.metrics.count("busy");
            return Ok(None);
        };
        let config = &inner.config;
        let lookback = chrono::Duration::days(i64::try_from(config.lookback_days).unwrap_or(1));
        let window = RiskWindow {
            now,
            since: now - lookback,
            half_life_secs: config.half_life_secs(),
        };
        let weights = config.weights.clone();
        let model: RiskModel = Box::new(move |inputs| model::score(&inputs, &weights, now));
        let retention = i64::try_from(config.history_retention_days)
            .unwrap_or(1)
            .saturating_mul(86_400);
        let started = Instant::now();
        match inner.store.compute_risk(window, retention, model).await {
            Ok(Some(run)) => {
                inner
                    .metrics
                    .duration
                    .observe(started.elapsed().as_secs_f64());
                inner.metrics.count("ok");
                if let Err(e) = self.publish().await {
                    tracing::warn!(error = %e, "Cannot read the new scores for the metrics");
                }
                Ok(Some(run))
            }
            Ok(None) => {
                inner.metrics.count("busy");
                Ok(None)
            }
            Err(e) => {
                inner.metrics.count("error");
                Err(e)
            }
        }
    }

    /// Sets the score gauges from the stored scores.
    async fn publish(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let top = u32::try_from(inner.config.top_n).unwrap_or(u32::MAX);
        let summary = inner.store.risk_summary(None, top).await?;
        let metrics = &inner.metrics;
        metrics.cluster_score.clear();
        // The highest `top_n` clusters only: cluster names come from senders, and a label per
        // name would let them grow the metrics without bound.
        let mut clusters: Vec<_> = summary.clusters.iter().collect();
        clusters.sort_by(|a, b| b.score.total_cmp(&a.score));
        for score in clusters.into_iter().take(inner.config.top_n) {
            metrics
                .cluster_score
                .get_or_create(&ClusterLabel {
                    cluster: score.cluster.clone(),
                })
                .set(score.score);
        }
        metrics.namespace_score.clear();
        for score in &summary.top_namespaces {
            metrics
                .namespace_score
                .get_or_create(&NamespaceLabel {
                    cluster: score.cluster.clone(),
                    namespace: score.name.clone(),
                })
                .set(score.score);
        }
        Ok(())
    }

    /// Computes every `analyst.interval_secs`, forever (abort the task to stop). Failures are
    /// logged and counted; the next tick tries again.
    pub async fn run(self) {
        let every = Duration::from_secs(self.inner.config.interval_secs.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(interval_secs = every.as_secs(), "Risk analyst running");
        loop {
            tick.tick().await;
            match self.recompute().await {
                Ok(Some(run)) => tracing::info!(
                    duration_ms = run.duration_ms,
                    clusters = run.clusters,
                    namespaces = run.namespaces,
                    workloads = run.workloads,
                    "Risk scores computed"
                ),
                Ok(None) => tracing::debug!("Another analyst is computing; skipped"),
                Err(e) => tracing::warn!(error = %e, "Risk computation failed"),
            }
        }
    }
}
