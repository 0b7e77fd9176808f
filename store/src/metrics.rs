//! The store's Prometheus metrics, emitted by the writer only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone)]
pub(crate) struct StoreMetrics {
    pub batch_events: Histogram,
    pub batch_requests: Histogram,
    pub commit_seconds: Histogram,
    pub commits: Family<ResultLabel, Counter>,
    pub queue_depth: Gauge,
    pub pending_events: Gauge,
}

impl StoreMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = StoreMetrics {
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            batch_requests: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            commits: Family::default(),
            queue_depth: Gauge::default(),
            pending_events: Gauge::default(),
        };
        registry.register(
            "falconer_store_commit_batch_events",
            "Events written per group commit",
            metrics.batch_events.clone(),
        );
        registry.register(
            "falconer_store_commit_batch_requests",
            "Write requests sharing one group commit",
            metrics.batch_requests.clone(),
        );
        registry.register(
            "falconer_store_commit_duration_seconds",
            "Time to write and commit one batch",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "falconer_store_commits",
            "Group commits by result (ok, unavailable, error)",
            metrics.commits.clone(),
        );
        registry.register(
            "falconer_store_write_queue_depth",
            "Write requests waiting for the writer",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "falconer_store_pending_events",
            "Events accepted and not yet committed (bounded by store.queue_max_events)",
            metrics.pending_events.clone(),
        );
        metrics
    }
}
