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

/// Where a group stands in triage.
/// The group of `event` as a consumer's noise control and notifications key it: the store's
/// group (the one the API lists and people acknowledge, whatever `store.group_by` is) when
/// `by` is the default key and the store filed the event, else the id under `by`.
pub fn group_of(event: &Event, by: &[GroupField]) -> String {
    match &event.group {
        Some(stored) if by.is_empty() || by == DEFAULT_GROUP_BY => stored.clone(),
        _ => group_id(event, by),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    /// Nobody has taken it yet (and every group a new event reopens).
    Open,
    /// Someone is on it; it keeps counting.
    Acknowledged,
    /// Handled; a new event that no suppression matches opens it again.
    Resolved,
}

impl GroupState {
    pub const ALL: [GroupState; 3] = [
        GroupState::Open,
        GroupState::Acknowledged,
        GroupState::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Open => "open",
            GroupState::Acknowledged => "acknowledged",
            GroupState::Resolved => "resolved",
        }
    }
}

impl std::str::FromStr for GroupState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        GroupState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not a group state (open, acknowledged, resolved)"))
    }
}

/// A change a person asks for: `POST /api/v1/groups/{id}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Acknowledge,
    Resolve,
    Reopen,
}

impl Transition {
    pub fn parse(action: &str) -> Option<Transition> {
        match action {
            "acknowledge" => Some(Transition::Acknowledge),
            "resolve" => Some(Transition::Resolve),
            "reopen" => Some(Transition::Reopen),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Acknowledge => "acknowledge",
            Transition::Resolve => "resolve",
            Transition::Reopen => "reopen",
        }
    }

    /// The state it leads to.
    pub fn target(self) -> GroupState {
        match self {
            Transition::Acknowledge => GroupState::Acknowledged,
            Transition::Resolve => GroupState::Resolved,
            Transition::Reopen => GroupState::Open,
        }
    }

    /// The states it may start from: acknowledge an open group, resolve an open or
    /// acknowledged one, reopen an acknowledged or resolved one.
    pub fn allowed_from(self, state: GroupState) -> bool {
        match self {
            Transition::Acknowledge => state == GroupState::Open,
            Transition::Resolve => state != GroupState::Resolved,
            Transition::Reopen => state != GroupState::Open,
        }
    }
}

/// An alert group as stored: one problem, however many events it has had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    pub id: String,
    pub rule: String,
    pub source: String,
    /// The most severe of its events.
    pub severity: crate::event::Severity,
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Kind/name` of the owning workload; `Pod/…` or `Node/…` without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Events stored in the group, suppressed ones included.
    pub count: i64,
    /// Of `count`, the events a suppression matched.
    pub suppressed: i64,
    pub first_seen: chrono::DateTime<chrono::Utc>,
    pub last_seen: chrono::DateTime<chrono::Utc>,
    pub state: GroupState,
    pub state_changed_at: chrono::DateTime<chrono::Utc>,
}

/// One state change of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupChange {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The credential's name, or `falconer` when a new event reopened the group.
    pub actor: String,
    pub state: GroupState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Filters for listing groups, most recently seen first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupQuery {
    pub state: Option<GroupState>,
    pub source: Option<String>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub rule: Option<String>,
    /// Groups at least this severe.
    pub min_severity: Option<crate::event::Severity>,
    /// Groups seen at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Groups last seen before this time.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub after: Option<GroupCursor>,
    pub limit: u32,
}

/// A position in the (last_seen desc, id desc) order of groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCursor {
    pub last_seen: chrono::DateTime<chrono::Utc>,
    pub id: String,
}

impl GroupCursor {
    /// Opaque text for clients: `<microseconds>_<group id>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.last_seen.timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Option<GroupCursor> {
        let (micros, id) = text.split_once('_')?;
        let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        Some(GroupCursor {
            last_seen: chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: valid.then(|| id.to_string())?,
        })
    }
}

/// One page of groups and where the next starts.
#[derive(Debug, Clone)]
pub struct GroupPage {
    pub groups: Vec<AlertGroup>,
    pub next: Option<GroupCursor>,
}

/// Whether `id` looks like a group id (32 lowercase hex digits).
pub fn is_group_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
    fn transitions_start_only_from_the_states_that_allow_them() {
        use GroupState::*;
        let allowed = |t: Transition| {
            GroupState::ALL
                .into_iter()
                .filter(|s| t.allowed_from(*s))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Transition::Acknowledge), [Open]);
        assert_eq!(allowed(Transition::Resolve), [Open, Acknowledged]);
        assert_eq!(allowed(Transition::Reopen), [Acknowledged, Resolved]);
        assert_eq!(Transition::parse("snooze"), None);
    }

    #[test]
    fn group_cursors_round_trip_and_refuse_what_is_not_one() {
        let cursor = GroupCursor {
            last_seen: chrono::DateTime::from_timestamp_micros(1_777_889_472_123_456).unwrap(),
            id: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(GroupCursor::decode(&cursor.encode()), Some(cursor));
        for text in ["", "1_abc", "x_0123456789abcdef0123456789abcdef", "_"] {
            assert_eq!(GroupCursor::decode(text), None, "{text}");
        }
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
