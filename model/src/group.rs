//! Alert groups: events of one problem share a group, keyed by bounded fields (by default
//! rule, cluster, namespace and workload — the node for a host event). Notification sinks
//! send a group's id downstream (PagerDuty `dedup_key`, Opsgenie `alias`) so one problem
//! stays one incident, and noise control folds a group's repeats into one summary.

use crate::event::Event;
use serde::{Deserialize, Serialize};

/// A field an alert group may be keyed by.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupField {
    Rule,
    Source,
    Severity,
    Cluster,
    Namespace,
    /// The owning workload (`Deployment/web`); the node for an event without a pod.
    Workload,
    /// The node the event happened on.
    Node,
    /// The pod: unbounded (every restart is a new pod), so never a default.
    Pod,
}

/// The default key of a group: one rule on one workload.
pub const DEFAULT_GROUP_BY: [GroupField; 4] = [
    GroupField::Rule,
    GroupField::Cluster,
    GroupField::Namespace,
    GroupField::Workload,
];

impl GroupField {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupField::Rule => "rule",
            GroupField::Source => "source",
            GroupField::Severity => "severity",
            GroupField::Cluster => "cluster",
            GroupField::Namespace => "namespace",
            GroupField::Workload => "workload",
            GroupField::Node => "node",
            GroupField::Pod => "pod",
        }
    }

    /// The event's value of this field (empty when it has none).
    pub fn value(self, event: &Event) -> String {
        let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
        match self {
            GroupField::Rule => event.rule.clone(),
            GroupField::Source => event.source.clone(),
            GroupField::Severity => event.severity.as_str().to_string(),
            GroupField::Cluster => event.cluster.clone(),
            GroupField::Namespace => or_empty(&event.namespace),
            GroupField::Workload => match (&event.workload, &event.pod) {
                (Some(w), _) => format!("{}/{}", w.kind, w.name),
                (None, Some(pod)) => format!("Pod/{pod}"),
                (None, None) => event
                    .node
                    .as_ref()
                    .map(|n| format!("Node/{n}"))
                    .unwrap_or_default(),
            },
            GroupField::Node => or_empty(&event.node),
            GroupField::Pod => or_empty(&event.pod),
        }
    }
}

/// The event's group under `by` (fields in the order given): its values, readable.
pub fn group_key(event: &Event, by: &[GroupField]) -> String {
    by.iter()
        .map(|f| format!("{}={}", f.as_str(), f.value(event)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The event's group id under `by`: 32 hex digits, the same for every event of the group
/// on every hub and across restarts.
pub fn group_id(event: &Event, by: &[GroupField]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for field in by {
        hash.update(field.as_str().as_bytes());
        hash.update([b'=']);
        hash.update(field.value(event).as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pod: &str) -> Event {
        serde_json::from_str(
            &serde_json::json!({
                "id": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e",
                "time": "2026-05-04T10:11:12Z",
                "received_at": "2026-05-04T10:11:12Z",
                "source": "falco",
                "kind": "runtime_alert",
                "severity": "critical",
                "severity_raw": "Critical",
                "rule": "Terminal shell in container",
                "message": "shell",
                "tags": [],
                "cluster": "prod",
                "namespace": "shop",
                "pod": pod,
                "workload": {"kind": "Deployment", "name": "web"},
                "fields": {},
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn two_pods_of_one_workload_share_a_group_unless_the_pod_is_in_the_key() {
        let (a, b) = (event("web-1"), event("web-2"));
        assert_eq!(
            group_key(&a, &DEFAULT_GROUP_BY),
            "rule=Terminal shell in container,cluster=prod,namespace=shop,workload=Deployment/web"
        );
        assert_eq!(
            group_id(&a, &DEFAULT_GROUP_BY),
            group_id(&b, &DEFAULT_GROUP_BY)
        );
        assert_eq!(group_id(&a, &DEFAULT_GROUP_BY).len(), 32);
        let by_pod = [GroupField::Rule, GroupField::Pod];
        assert_ne!(group_id(&a, &by_pod), group_id(&b, &by_pod));
    }

    #[test]
    fn a_host_event_is_grouped_by_its_node() {
        let mut e = event("x");
        e.pod = None;
        e.workload = None;
        e.node = Some("node-1".into());
        assert_eq!(GroupField::Workload.value(&e), "Node/node-1");
    }
}
