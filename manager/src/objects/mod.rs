//! Pure functions from a `Policy` (and the cluster name) to the Kubernetes objects the
//! manager applies: names, labels, owner references, and which objects belong to which
//! agent. The controller and `falconer manager render` both call `plan`, so what render
//! prints is what the controller applies.

pub mod falco;
pub mod kube_bench;
pub mod trivy;
mod upload;

use falconer_model::crd::Policy;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, SeccompProfile, SecretKeySelector, SecretVolumeSource,
    SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Resource;
use kube::api::ObjectMeta;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The one field manager of every server-side apply by the manager.
pub const FIELD_MANAGER: &str = "falconer-manager";
/// Label naming the Policy an object was made for.
pub const POLICY_LABEL: &str = "falconer.io/policy";
/// `app.kubernetes.io/managed-by` of every object the manager makes; the controller watches
/// only objects with this label.
pub const MANAGED_BY: &str = "falconer-manager";
/// Where the hub CA bundle is mounted in every agent container that talks to the hub.
pub const HUB_CA_DIR: &str = "/etc/falconer/hub-ca";
/// Environment variable holding the ingest token inside agent containers.
pub const TOKEN_ENV: &str = "FALCONER_INGEST_TOKEN";

/// One agent of a Policy; its objects come and go together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Agent {
    Falco,
    KubeBench,
    Trivy,
}

impl Agent {
    pub const ALL: [Agent; 3] = [Agent::Falco, Agent::KubeBench, Agent::Trivy];

    /// `app.kubernetes.io/name` and the suffix of object names.
    pub fn as_str(self) -> &'static str {
        match self {
            Agent::Falco => "falco",
            Agent::KubeBench => "kube-bench",
            Agent::Trivy => "trivy",
        }
    }

    /// Human name, for events and conditions.
    pub fn title(self) -> &'static str {
        match self {
            Agent::Falco => "Falco",
            Agent::KubeBench => "kube-bench",
            Agent::Trivy => "Trivy",
        }
    }

    pub fn enabled(self, policy: &Policy) -> bool {
        match self {
            Agent::Falco => policy.spec.falco.enabled,
            Agent::KubeBench => policy.spec.kube_bench.enabled,
            Agent::Trivy => policy.spec.trivy.enabled,
        }
    }

    /// The agent's objects, whether or not it is enabled: the same list names what to apply
    /// when enabled and what to delete when disabled, so the two never drift apart.
    pub fn objects(self, policy: &Policy, cluster: &str) -> Vec<Child> {
        match self {
            Agent::Falco => falco::objects(policy, cluster),
            Agent::KubeBench => kube_bench::objects(policy, cluster),
            Agent::Trivy => trivy::objects(policy, cluster),
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// An object the manager owns.
// A pass handles about ten of these; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Child {
    ServiceAccount(ServiceAccount),
    ClusterRoleBinding(ClusterRoleBinding),
    ConfigMap(ConfigMap),
    DaemonSet(DaemonSet),
    CronJob(CronJob),
}

/// Kinds of `Child`, in the order they are applied (dependencies first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    ServiceAccount,
    ClusterRoleBinding,
    ConfigMap,
    DaemonSet,
    CronJob,
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::ServiceAccount => "ServiceAccount",
            ChildKind::ClusterRoleBinding => "ClusterRoleBinding",
            ChildKind::ConfigMap => "ConfigMap",
            ChildKind::DaemonSet => "DaemonSet",
            ChildKind::CronJob => "CronJob",
        }
    }
}

/// Which object: enough to delete it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildKey {
    pub kind: ChildKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ChildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.as_str(), self.name),
            None => write!(f, "{} {}", self.kind.as_str(), self.name),
        }
    }
}

impl Child {
    pub fn kind(&self) -> ChildKind {
        match self {
            Child::ServiceAccount(_) => ChildKind::ServiceAccount,
            Child::ClusterRoleBinding(_) => ChildKind::ClusterRoleBinding,
            Child::ConfigMap(_) => ChildKind::ConfigMap,
            Child::DaemonSet(_) => ChildKind::DaemonSet,
            Child::CronJob(_) => ChildKind::CronJob,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Child::ServiceAccount(o) => &o.metadata,
            Child::ClusterRoleBinding(o) => &o.metadata,
            Child::ConfigMap(o) => &o.metadata,
            Child::DaemonSet(o) => &o.metadata,
            Child::CronJob(o) => &o.metadata,
        }
    }

    pub fn key(&self) -> ChildKey {
        ChildKey {
            kind: self.kind(),
            namespace: self.meta().namespace.clone(),
            name: self.meta().name.clone().unwrap_or_default(),
        }
    }

    /// The object with `apiVersion` and `kind` set, as server-side apply and render need it.
    pub fn to_value(&self) -> serde_json::Value {
        fn with_type<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> serde_json::Value {
            // k8s-openapi types have string map keys only: this cannot fail.
            let mut value = serde_json::to_value(object).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert("apiVersion".into(), K::api_version(&()).into());
                map.insert("kind".into(), K::kind(&()).into());
            }
            value
        }
        match self {
            Child::ServiceAccount(o) => with_type(o),
            Child::ClusterRoleBinding(o) => with_type(o),
            Child::ConfigMap(o) => with_type(o),
            Child::DaemonSet(o) => with_type(o),
            Child::CronJob(o) => with_type(o),
        }
    }
}

/// What one reconcile pass does: apply these (in order), delete those (in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub apply: Vec<(Agent, Child)>,
    pub delete: Vec<(Agent, ChildKey)>,
}

/// The objects of every enabled agent, and the keys of every disabled agent's objects.
pub fn plan(policy: &Policy, cluster: &str) -> Plan {
    let mut apply = Vec::new();
    let mut delete = Vec::new();
    for agent in Agent::ALL {
        let mut objects = agent.objects(policy, cluster);
        objects.sort_by_key(Child::kind);
        if agent.enabled(policy) {
            apply.extend(objects.into_iter().map(|o| (agent, o)));
        } else {
            // Dependents first: the workload goes before the config and account it uses.
            delete.extend(objects.iter().rev().map(|o| (agent, o.key())));
        }
    }
    Plan { apply, delete }
}

/// `<policy>-<agent>`: namespaced objects of one agent share this name.
pub fn object_name(policy: &Policy, agent: Agent) -> String {
    format!("{}-{}", policy_name(policy), agent.as_str())
}

pub fn policy_name(policy: &Policy) -> &str {
    policy.metadata.name.as_deref().unwrap_or_default()
}

/// Labels every object of `agent` carries.
pub fn labels(policy: &Policy, agent: Agent) -> BTreeMap<String, String> {
    let mut labels = selector_labels(policy, agent);
    labels.insert("app.kubernetes.io/part-of".into(), "falconer".into());
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert(
        "app.kubernetes.io/component".into(),
        match agent {
            Agent::Falco => "runtime-detection",
            Agent::KubeBench => "cis-benchmark",
            Agent::Trivy => "vulnerability-scan",
        }
        .into(),
    );
    labels
}

/// The subset that selects an agent's pods; never changes for a given Policy, because a
/// DaemonSet's selector is immutable.
pub fn selector_labels(policy: &Policy, agent: Agent) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), agent.as_str().into()),
        (POLICY_LABEL.into(), policy_name(policy).into()),
    ])
}

/// Metadata of a child: name, namespace (None for cluster-scoped), labels, and the Policy as
/// controlling owner so deleting the Policy deletes the child. Without a uid (a Policy read
/// from a file by `render`) there is no owner reference: the real one is added in the cluster.
pub fn metadata(policy: &Policy, agent: Agent, name: String, namespaced: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: namespaced.then(|| policy.spec.namespace.clone()),
        labels: Some(labels(policy, agent)),
        owner_references: policy.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

pub fn service_account(policy: &Policy, agent: Agent, automount: bool) -> Child {
    Child::ServiceAccount(ServiceAccount {
        metadata: metadata(policy, agent, object_name(policy, agent), true),
        automount_service_account_token: Some(automount),
        ..ServiceAccount::default()
    })
}

/// The ingest token of `agent` (`falco`, `kube-bench`, `trivy`), from the Policy's Secret,
/// as an environment variable.
pub fn token_env(policy: &Policy, agent: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: TOKEN_ENV.into(),
        value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: policy.spec.hub_token.secret_name.clone(),
                key: policy.spec.hub_token.key_for(agent).to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hub CA volume and its mount, when the Policy names a CA.
pub fn hub_ca(policy: &Policy) -> Option<(Volume, VolumeMount)> {
    let ca = policy.spec.hub_tls.ca.as_ref()?;
    Some((
        Volume {
            name: "hub-ca".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.secret_name.clone()),
                items: Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                    key: ca.key.clone(),
                    path: "ca.crt".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "hub-ca".into(),
            mount_path: HUB_CA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ))
}

/// Path of the hub CA bundle inside containers, when one is mounted.
pub fn hub_ca_file(policy: &Policy) -> Option<String> {
    policy
        .spec
        .hub_tls
        .ca
        .as_ref()
        .map(|_| format!("{HUB_CA_DIR}/ca.crt"))
}

/// `<hubUrl>/ingest` with the given query.
pub fn ingest_url(policy: &Policy, query: &str) -> String {
    format!(
        "{}/ingest?{query}",
        policy.spec.hub_url.trim_end_matches('/')
    )
}

/// The restricted security context of containers that need no privileges.
pub fn restricted(run_as_user: Option<i64>) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user,
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }
}

pub fn host_path(name: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
            path: path.into(),
            type_: None,
        }),
        ..Default::default()
    }
}

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// SHA-256 of `text`, hex; pod template annotations carry it so a config change rolls pods.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use falconer_model::crd::PolicySpec;

    /// A Policy as it comes from the API server: named, with a uid and a generation.
    pub fn policy(spec: PolicySpec) -> Policy {
        let mut policy = Policy::new("prod", spec);
        policy.metadata.uid = Some("8c2a3f7e-0000-4000-8000-000000000001".into());
        policy.metadata.generation = Some(3);
        policy
    }

    pub fn all_enabled() -> Policy {
        let mut spec = PolicySpec::default();
        spec.kube_bench.enabled = true;
        spec.trivy.enabled = true;
        policy(spec)
    }

    #[test]
    fn a_policy_with_every_agent_enabled_applies_every_object_and_deletes_nothing() {
        let plan = plan(&all_enabled(), "prod-eu");
        let keys: Vec<String> = plan
            .apply
            .iter()
            .map(|(_, c)| c.key().to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "ServiceAccount falconer-system/prod-falco",
                "ConfigMap falconer-system/prod-falco",
                "DaemonSet falconer-system/prod-falco",
                "ServiceAccount falconer-system/prod-kube-bench",
                "CronJob falconer-system/prod-kube-bench",
                "ServiceAccount falconer-system/prod-trivy",
                "ClusterRoleBinding falconer:prod-trivy",
                "CronJob falconer-system/prod-trivy",
            ]
        );
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_disabled_agent_deletes_exactly_the_objects_it_would_apply_and_nothing_else() {
        let enabled = all_enabled();
        let mut disabled = enabled.clone();
        disabled.spec.falco.enabled = false;
        let before = plan(&enabled, "c");
        let after = plan(&disabled, "c");
        let falco_objects: Vec<ChildKey> = before
            .apply
            .iter()
            .filter(|(a, _)| *a == Agent::Falco)
            .map(|(_, c)| c.key())
            .collect();
        let mut deleted: Vec<ChildKey> = after.delete.iter().map(|(_, k)| k.clone()).collect();
        deleted.reverse();
        assert_eq!(deleted, falco_objects);
        assert!(after.delete.iter().all(|(a, _)| *a == Agent::Falco));
        let others: Vec<_> = before
            .apply
            .iter()
            .filter(|(a, _)| *a != Agent::Falco)
            .cloned()
            .collect();
        assert_eq!(after.apply, others);
    }

    #[test]
    fn the_workload_is_deleted_before_the_config_and_account_it_uses() {
        let mut p = all_enabled();
        p.spec.falco.enabled = false;
        let order: Vec<ChildKind> = plan(&p, "c").delete.iter().map(|(_, k)| k.kind).collect();
        assert_eq!(
            order,
            [
                ChildKind::DaemonSet,
                ChildKind::ConfigMap,
                ChildKind::ServiceAccount
            ]
        );
    }

    #[test]
    fn every_child_is_controlled_by_its_policy_and_labelled_for_the_watch() {
        let p = all_enabled();
        for (agent, child) in plan(&p, "c").apply {
            let meta = child.meta();
            let owners = meta.owner_references.clone().unwrap_or_default();
            assert_eq!(owners.len(), 1, "{}", child.key());
            assert_eq!(owners[0].kind, "Policy");
            assert_eq!(owners[0].api_version, "falconer.io/v1alpha1");
            assert_eq!(owners[0].name, "prod");
            assert_eq!(owners[0].uid, "8c2a3f7e-0000-4000-8000-000000000001");
            assert_eq!(owners[0].controller, Some(true));
            let labels = meta.labels.clone().unwrap_or_default();
            assert_eq!(labels["app.kubernetes.io/managed-by"], MANAGED_BY);
            assert_eq!(labels[POLICY_LABEL], "prod");
            assert_eq!(labels["app.kubernetes.io/name"], agent.as_str());
        }
    }

    #[test]
    fn a_policy_read_from_a_file_has_no_uid_so_its_children_have_no_owner_reference() {
        let mut p = all_enabled();
        p.metadata.uid = None;
        for (_, child) in plan(&p, "c").apply {
            assert_eq!(child.meta().owner_references, None);
        }
    }

    #[test]
    fn objects_carry_api_version_and_kind_for_server_side_apply() {
        for (_, child) in plan(&all_enabled(), "c").apply {
            let value = child.to_value();
            assert!(value["apiVersion"].is_string(), "{}", child.key());
            assert_eq!(value["kind"], child.kind().as_str());
        }
    }

    #[test]
    fn the_ingest_url_joins_the_hub_url_without_doubling_slashes() {
        let mut p = all_enabled();
        p.spec.hub_url = "https://hub.example:8443/".into();
        assert_eq!(
            ingest_url(&p, "source=trivy"),
            "https://hub.example:8443/ingest?source=trivy"
        );
    }
}
