//! The hub's Prometheus metrics, with bounded labels: source (known sources only), reason
//! (a fixed set) and HTTP status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabel {
    pub source: &'static str,
    /// invalid, too_large, overloaded, unavailable, error
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone)]
pub struct HubMetrics {
    pub requests: Family<StatusLabel, Counter>,
    pub request_seconds: Histogram,
    pub received: Family<SourceLabel, Counter>,
    pub accepted: Family<SourceLabel, Counter>,
    pub duplicates: Family<SourceLabel, Counter>,
    pub rejected: Family<RejectedLabel, Counter>,
    /// Requests refused for naming more clusters than a token may in a day.
    pub cluster_refusals: Counter,
}

impl HubMetrics {
    pub fn new(registry: &mut Registry) -> HubMetrics {
        let m = HubMetrics {
            requests: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            received: Family::default(),
            accepted: Family::default(),
            duplicates: Family::default(),
            rejected: Family::default(),
            cluster_refusals: Counter::default(),
        };
        registry.register(
            "falconer_ingest_requests",
            "Ingest requests by HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "falconer_ingest_request_duration_seconds",
            "Time from request to reply on the ingest API, commit included",
            m.request_seconds.clone(),
        );
        registry.register(
            "falconer_ingest_events_received",
            "Events received, valid or not",
            m.received.clone(),
        );
        registry.register(
            "falconer_ingest_events_accepted",
            "Events committed to the store (duplicates included)",
            m.accepted.clone(),
        );
        registry.register(
            "falconer_ingest_events_duplicate",
            "Accepted events that were already stored (retries)",
            m.duplicates.clone(),
        );
        registry.register(
            "falconer_ingest_events_rejected",
            "Events not stored, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "falconer_ingest_cluster_refusals",
            "Requests refused because their token named more clusters today than \
             ingest.max_clusters_per_token_per_day",
            m.cluster_refusals.clone(),
        );
        m
    }

    pub fn reject(&self, source: &'static str, reason: &'static str, n: usize) {
        if n > 0 {
            self.rejected
                .get_or_create(&RejectedLabel { source, reason })
                .inc_by(n as u64);
        }
    }
}
