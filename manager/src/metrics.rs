//! The manager's Prometheus metrics, registered in one place. Labels are bounded: the
//! controller (`policy`, `setting`), an error class from `Error::metric_label`, an object kind
//! and a change (`created`, `updated`, `deleted`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub controller: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabel {
    pub kind: &'static str,
    pub change: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciliations: Family<ControllerLabel, Counter>,
    pub failures: Family<FailureLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub changes: Family<ChangeLabel, Counter>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciliations: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            }),
            changes: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        registry.register(
            "falconer_manager_reconciliations",
            "Reconcile passes started",
            m.reconciliations.clone(),
        );
        registry.register(
            "falconer_manager_reconcile_failures",
            "Reconcile passes that failed and were requeued with backoff",
            m.failures.clone(),
        );
        registry.register(
            "falconer_manager_reconcile_duration_seconds",
            "Time of one reconcile pass",
            m.duration.clone(),
        );
        registry.register(
            "falconer_manager_object_changes",
            "Objects the manager created, updated or deleted",
            m.changes.clone(),
        );
        registry.register(
            "falconer_manager_leader",
            "1 while this replica holds the leader lease and reconciles",
            m.leader.clone(),
        );
        m
    }

    pub fn reconciled(&self, controller: &'static str) {
        self.reconciliations
            .get_or_create(&ControllerLabel { controller })
            .inc();
    }

    pub fn failed(&self, controller: &'static str, error: &'static str) {
        self.failures
            .get_or_create(&FailureLabel { controller, error })
            .inc();
    }

    pub fn observe(&self, controller: &'static str, seconds: f64) {
        self.duration
            .get_or_create(&ControllerLabel { controller })
            .observe(seconds);
    }

    pub fn changed(&self, kind: &'static str, change: &'static str) {
        self.changes
            .get_or_create(&ChangeLabel { kind, change })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_labelled_by_controller() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        m.reconciled("policy");
        m.failed("policy", "conflict");
        m.changed("DaemonSet", "created");
        m.leader.set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains(r#"falconer_manager_reconciliations_total{controller="policy"} 1"#));
        assert!(text.contains(
            r#"falconer_manager_reconcile_failures_total{controller="policy",error="conflict"} 1"#
        ));
        assert!(text.contains(
            r#"falconer_manager_object_changes_total{kind="DaemonSet",change="created"} 1"#
        ));
        assert!(text.contains("falconer_manager_leader 1"));
    }
}
