//! Delivery metrics, emitted by the worker only. The `consumer` label is bounded by the
//! configured consumers; `sink` by the sink types.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    pub consumer: String,
    pub sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub consumer: String,
    pub sink: &'static str,
    /// delivered, skipped, filtered, dead_letter
    pub result: &'static str,
}

#[derive(Clone)]
pub struct DeliveryMetrics {
    pub events: Family<ResultLabel, Counter>,
    pub retries: Family<ConsumerLabel, Counter>,
    pub send_seconds: Family<ConsumerLabel, Histogram>,
    pub lag_events: Family<ConsumerLabel, Gauge>,
    pub lag_seconds: Family<ConsumerLabel, Gauge>,
    /// 1 while the consumer is degraded (retrying), else 0.
    pub degraded: Family<ConsumerLabel, Gauge>,
}

impl DeliveryMetrics {
    pub fn new(registry: &mut Registry) -> DeliveryMetrics {
        let m = DeliveryMetrics {
            events: Family::default(),
            retries: Family::default(),
            send_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            lag_events: Family::default(),
            lag_seconds: Family::default(),
            degraded: Family::default(),
        };
        registry.register(
            "falconer_delivery_events",
            "Events handled per consumer: delivered, skipped by the sink, filtered, dead_letter",
            m.events.clone(),
        );
        registry.register(
            "falconer_delivery_retries",
            "Sends retried per consumer",
            m.retries.clone(),
        );
        registry.register(
            "falconer_delivery_send_duration_seconds",
            "Time of one send to a sink",
            m.send_seconds.clone(),
        );
        registry.register(
            "falconer_delivery_lag_events",
            "Stored events not yet delivered (counted up to 1,000,000)",
            m.lag_events.clone(),
        );
        registry.register(
            "falconer_delivery_lag_seconds",
            "Age of the oldest undelivered event",
            m.lag_seconds.clone(),
        );
        registry.register(
            "falconer_delivery_degraded",
            "1 while a consumer is retrying failed sends",
            m.degraded.clone(),
        );
        m
    }
}
