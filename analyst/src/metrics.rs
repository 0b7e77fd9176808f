//! The analyst's Prometheus metrics: the top clusters' and namespaces' scores (labels bounded
//! by `analyst.top_n`), and how computations go.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabel {
    pub cluster: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// ok, busy (another analyst was computing), error
    pub result: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone)]
pub struct AnalystMetrics {
    pub cluster_score: Family<ClusterLabel, FloatGauge>,
    pub namespace_score: Family<NamespaceLabel, FloatGauge>,
    pub duration: Histogram,
    pub computations: Family<ResultLabel, Counter>,
}

impl AnalystMetrics {
    pub fn new(registry: &mut Registry) -> AnalystMetrics {
        let m = AnalystMetrics {
            cluster_score: Family::default(),
            namespace_score: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            computations: Family::default(),
        };
        registry.register(
            "falconer_risk_cluster_score",
            "Risk score of each cluster (0-100), as of the latest computation",
            m.cluster_score.clone(),
        );
        registry.register(
            "falconer_risk_namespace_score",
            "Risk score of the analyst.top_n riskiest namespaces (0-100)",
            m.namespace_score.clone(),
        );
        registry.register(
            "falconer_risk_computation_duration_seconds",
            "Time to aggregate, score and store one risk computation",
            m.duration.clone(),
        );
        registry.register(
            "falconer_risk_computations",
            "Risk computations by result (ok, busy, error)",
            m.computations.clone(),
        );
        m
    }

    pub fn count(&self, result: &'static str) {
        self.computations
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}
