//! The custom resources of DESIGN.md §7 (group `falconer.io`, version `v1alpha1`, both
//! cluster-scoped): `Policy` says what runs on the cluster, `Setting` says where events go.
//!
//! These types are the single source of the CRD YAML (`falconer crdgen`): every doc comment
//! becomes a schema description, every serde default a schema default, and the rules the API
//! server can check on its own (patterns, enums, CEL) are declared here so a bad object is
//! refused at `kubectl apply` time instead of failing later in the manager or the hub.
//! What needs other objects to check (consumer names unique across Settings, Secrets present)
//! is done by the manager and reported in status conditions.

// Several `printcolumn(type_ = "string", ...)` arguments of one `#[kube]` attribute are distinct
// columns, not duplicates; the lint cannot tell.
#![allow(clippy::duplicated_attributes)]

use crate::event::{Kind, Severity};
use crate::group::GroupField;
pub use crate::matcher::{FieldPredicate, Filter, NamespaceFilter};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// API group of both resources.
pub const GROUP: &str = "falconer.io";
/// API version of both resources.
pub const VERSION: &str = "v1alpha1";

/// Where agents run unless a Policy says otherwise; the chart installs Falconer there.
pub const DEFAULT_NAMESPACE: &str = "falconer-system";
/// The hub's in-cluster Service as the chart names it.
pub const DEFAULT_HUB_URL: &str = "http://falconer-hub.falconer-system.svc:8080";
/// Secret (in the agents' namespace) holding the ingest token, and its key.
pub const DEFAULT_TOKEN_SECRET: &str = "falconer-ingest-token";
/// The label a Secret of the hub's namespace needs for the hub to read it as a consumer's
/// `secretRef` (`"true"`): the hub watches only Secrets labelled so.
pub const CONSUMER_SECRET_LABEL: &str = "falconer.io/consumer-secret";

pub const DEFAULT_FALCO_IMAGE: &str = "docker.io/falcosecurity/falco:0.44.1";
pub const DEFAULT_DRIVER_LOADER_IMAGE: &str = "docker.io/falcosecurity/falco-driver-loader:0.44.1";
pub const DEFAULT_KUBE_BENCH_IMAGE: &str = "docker.io/aquasec/kube-bench:v0.15.6";
pub const DEFAULT_TRIVY_IMAGE: &str = "docker.io/aquasec/trivy:0.65.0";
pub const DEFAULT_UPLOADER_IMAGE: &str = "docker.io/curlimages/curl:8.16.0";
pub const DEFAULT_FALCONER_IMAGE: &str =
    concat!("ghcr.io/falconer/falconer:", env!("CARGO_PKG_VERSION"));
pub const DEFAULT_KUBE_BENCH_SCHEDULE: &str = "0 3 * * *";
pub const DEFAULT_TRIVY_SCHEDULE: &str = "0 4 * * *";

/// Longest Policy name: child objects are named `<policy>-kube-bench` and a CronJob name may
/// have at most 52 characters (the Job controller appends 11).
pub const MAX_POLICY_NAME: usize = 40;

/// A cron schedule as CronJob accepts it: five fields, or one of the `@` macros.
const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|([0-9A-Za-z*?/,-]+\s+){4}[0-9A-Za-z*?/,-]+)$";
/// A DNS-1123 label: names of consumers and clusters end up in metric labels, object names
/// and URLs, so they stay this simple.
const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// `30d`, `12h`, `2w`.
const AGE_PATTERN: &str = r"^[1-9][0-9]*(h|d|w)$";

// ---------------------------------------------------------------------------------------------
// Policy

/// What runs on the cluster: the Falco DaemonSet and the kube-bench and Trivy CronJobs, all
/// reporting to the hub. The manager turns one Policy into those objects and keeps them as
/// declared; deleting the Policy deletes them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "falconer.io",
    version = "v1alpha1",
    kind = "Policy",
    plural = "policies",
    shortname = "fpol",
    category = "falconer",
    status = "PolicyStatus",
    derive = "PartialEq",
    doc = "What Falconer runs on the cluster: Falco on every node, kube-bench and Trivy on a schedule, all reporting to the hub.",
    validation = Rule::new("size(self.metadata.name) <= 40").message("a Policy name has at most 40 characters (child CronJob names are limited to 52)"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#, description = "Whether every enabled agent is running as declared"),
    printcolumn(name = "Falco", type_ = "boolean", json_path = ".spec.falco.enabled", description = "Falco enabled"),
    printcolumn(name = "Falco Pods", type_ = "string", json_path = ".status.falco.summary", description = "Falco pods ready / desired"),
    printcolumn(name = "Kube-bench", type_ = "boolean", json_path = ".spec.kubeBench.enabled", description = "kube-bench enabled"),
    printcolumn(name = "Trivy", type_ = "boolean", json_path = ".spec.trivy.enabled", description = "Trivy enabled"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Namespace the agents run in. It must exist, and hold the hub token Secret and the
    /// ConfigMaps named in `falco.customRules`. Immutable: create a new Policy to move agents.
    #[serde(default = "default_namespace")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespace is immutable; create a new Policy to move the agents"))]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub namespace: String,

    /// Base URL of the hub the agents report to (`/ingest` is appended). Defaults to the
    /// hub's in-cluster Service. No query, fragment or `$` (Falco expands `${VAR}` in its
    /// configuration).
    #[serde(default = "default_hub_url")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s?#$]+$"))]
    pub hub_url: String,

    /// The Secret holding the agents' hub tokens. Agents read it when they start; a token
    /// never appears in a ConfigMap, a pod spec or this resource.
    #[serde(default)]
    pub hub_token: HubToken,

    /// How agents verify the hub when `hubUrl` is `https://`.
    #[serde(default)]
    pub hub_tls: HubTls,

    /// Falco, on every node the selector and tolerations allow.
    #[serde(default)]
    pub falco: FalcoSpec,

    /// kube-bench CIS checks, on a schedule.
    #[serde(default)]
    pub kube_bench: KubeBenchSpec,

    /// Trivy vulnerability scans of the images running in the selected namespaces, on a
    /// schedule.
    #[serde(default)]
    pub trivy: TrivySpec,

    /// Image of the step that posts kube-bench and Trivy reports to the hub; it needs `sh`
    /// and `curl`.
    #[serde(default = "default_uploader_image")]
    #[schemars(length(min = 1))]
    pub uploader_image: String,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            namespace: default_namespace(),
            hub_url: default_hub_url(),
            hub_token: HubToken::default(),
            hub_tls: HubTls::default(),
            falco: FalcoSpec::default(),
            kube_bench: KubeBenchSpec::default(),
            trivy: TrivySpec::default(),
            uploader_image: default_uploader_image(),
        }
    }
}

/// The Secret in the agents' namespace holding their hub credentials.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HubToken {
    /// Name of the Secret.
    #[serde(default = "default_token_secret")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// One key every agent reads. Absent: each agent reads the key named after it (`falco`,
    /// `kube-bench`, `trivy`), so each has its own credential, bound on the hub to its
    /// source and cluster (the chart generates the Secret so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

impl HubToken {
    /// The key the agent `agent` (`falco`, `kube-bench`, `trivy`) reads.
    pub fn key_for<'a>(&'a self, agent: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(agent)
    }
}

impl Default for HubToken {
    fn default() -> Self {
        HubToken {
            secret_name: default_token_secret(),
            key: None,
        }
    }
}

/// TLS towards the hub. Without a CA, the system trust store of each agent image is used.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HubTls {
    /// A Secret key (in the agents' namespace) holding the PEM CA bundle that signed the
    /// hub's certificate, e.g. the `ca.crt` of a cert-manager Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaRef>,
    /// Skip verification of the hub's certificate. For tests only: the ingest token then
    /// travels to whoever answers.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A Secret key holding a PEM CA bundle.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key within the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// How Falco sees system calls.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// CO-RE eBPF probe built into Falco (kernel 5.8 or later); no driver download.
    #[default]
    #[serde(rename = "modern_ebpf")]
    ModernEbpf,
    /// Legacy eBPF probe, fetched or built for the node's kernel by the driver loader.
    #[serde(rename = "ebpf")]
    Ebpf,
    /// Kernel module, fetched or built for the node's kernel and loaded by the driver loader.
    #[serde(rename = "kmod")]
    Kmod,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::ModernEbpf => "modern_ebpf",
            Driver::Ebpf => "ebpf",
            Driver::Kmod => "kmod",
        }
    }
}

/// Falco, as a DaemonSet.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FalcoSpec {
    /// Run Falco. Turning it off removes the Falco DaemonSet, ConfigMap and ServiceAccount
    /// and nothing else.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Falco image.
    #[serde(default = "default_falco_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Kernel instrumentation: `modern_ebpf` (default), `ebpf` or `kmod`. The last two run the
    /// driver loader first and need more privileges and host mounts.
    #[serde(default)]
    pub driver: Driver,
    /// Driver loader image, used with the `ebpf` and `kmod` drivers.
    #[serde(default = "default_driver_loader_image")]
    #[schemars(length(min = 1))]
    pub driver_loader_image: String,
    /// Least severe rule priority Falco loads (Falco's `priority`).
    #[serde(default = "debug")]
    pub minimum_priority: Severity,
    /// ConfigMaps in the agents' namespace whose `.yaml` keys are Falco rules files, loaded
    /// after the default rules in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub custom_rules: Vec<ConfigMapRef>,
    /// CPU and memory of the Falco container. Default: requests 100m / 512Mi, limits
    /// 1 CPU / 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Run Falco only on nodes with these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the Falco pods. Default: tolerate the control-plane taints, so masters
    /// are watched too. Setting this list replaces the default.
    #[serde(default = "default_tolerations")]
    pub tolerations: Vec<Toleration>,
}

impl Default for FalcoSpec {
    fn default() -> Self {
        FalcoSpec {
            enabled: true,
            image: default_falco_image(),
            driver: Driver::default(),
            driver_loader_image: default_driver_loader_image(),
            minimum_priority: Severity::Debug,
            custom_rules: Vec::new(),
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: default_tolerations(),
        }
    }
}

/// A ConfigMap in the agents' namespace.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// kube-bench, as a CronJob that posts its JSON report to the hub.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeBenchSpec {
    /// Run kube-bench. Turning it off removes its CronJob and ServiceAccount and nothing
    /// else.
    #[serde(default)]
    pub enabled: bool,
    /// When to run, in cron syntax (UTC unless the cluster says otherwise), e.g. `0 3 * * *`
    /// or `@daily`.
    #[serde(default = "default_kube_bench_schedule")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub schedule: String,
    /// kube-bench image.
    #[serde(default = "default_kube_bench_image")]
    #[schemars(length(min = 1))]
    pub image: String,
}

impl Default for KubeBenchSpec {
    fn default() -> Self {
        KubeBenchSpec {
            enabled: false,
            schedule: default_kube_bench_schedule(),
            image: default_kube_bench_image(),
        }
    }
}

/// Trivy, as a CronJob that lists the images running in the selected namespaces, scans each
/// and posts each JSON report to the hub.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrivySpec {
    /// Run Trivy. Turning it off removes its CronJob, ServiceAccount and ClusterRoleBinding
    /// and nothing else.
    #[serde(default)]
    pub enabled: bool,
    /// When to run, in cron syntax, e.g. `0 4 * * *` or `@daily`.
    #[serde(default = "default_trivy_schedule")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub schedule: String,
    /// Trivy image.
    #[serde(default = "default_trivy_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Namespaces whose running images are scanned, by label. Absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Image of the step that lists the running images (`falconer manager list-images`).
    #[serde(default = "default_falconer_image")]
    #[schemars(length(min = 1))]
    pub lister_image: String,
}

impl Default for TrivySpec {
    fn default() -> Self {
        TrivySpec {
            enabled: false,
            schedule: default_trivy_schedule(),
            image: default_trivy_image(),
            namespace_selector: None,
            lister_image: default_falconer_image(),
        }
    }
}

/// Observed state, rebuilt by the manager on every pass.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every enabled agent runs as declared), `FalcoReady`, `KubeBenchReady`,
    /// `TrivyReady`. A disabled agent's condition is `True` with reason `Disabled`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Cluster name the agents stamp on their reports (from the Settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Falco pods, from the DaemonSet's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub falco: Option<FalcoCounts>,
    /// kube-bench runs, from the CronJob's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_bench: Option<ScheduleState>,
    /// Trivy runs, from the CronJob's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trivy: Option<ScheduleState>,
}

/// Falco pods, as the DaemonSet counts them.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FalcoCounts {
    /// Nodes that should run Falco.
    pub desired: i32,
    /// Nodes whose Falco pod is ready.
    pub ready: i32,
    /// Nodes running the current pod template.
    pub updated: i32,
    /// `ready/desired`, for `kubectl get`.
    pub summary: String,
}

/// A scheduled agent, as its CronJob reports it.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleState {
    /// The schedule in force.
    pub schedule: String,
    /// Jobs running now.
    pub active: i32,
    /// When a Job was last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When a Job last finished successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
}

// ---------------------------------------------------------------------------------------------
// Setting

/// Where events go: the hub's consumers, this cluster's name and retention. Several Settings
/// may exist; their consumers are merged and consumer names must be unique across all of
/// them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[kube(
    group = "falconer.io",
    version = "v1alpha1",
    kind = "Setting",
    plural = "settings",
    shortname = "fset",
    category = "falconer",
    status = "SettingStatus",
    derive = "PartialEq",
    doc = "Where Falconer's hub delivers events (consumers), this cluster's name and retention.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.cluster",
        description = "This cluster's name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the Setting is valid and its Secrets exist"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingSpec {
    /// This cluster's name, stamped on every event its agents send. When several Settings
    /// name a cluster, they must agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub cluster: Option<String>,

    /// Consumers: each reads the stored events in order, filters them and delivers them to
    /// one sink.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub consumers: Vec<Consumer>,

    /// How long the hub keeps events after receiving them, e.g. `30d`, `12h`, `2w`; events
    /// a consumer has not delivered yet are kept until it has. Absent: the hub's
    /// `store.retention`. When several Settings set it, the shortest applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = AGE_PATTERN))]
    pub retention: Option<String>,

    /// Suppressions kept under GitOps: matching events are stored and counted but marked
    /// suppressed and not delivered (docs/triage.md). Each ends at its `expires`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub suppressions: Vec<crate::suppression::DeclaredSuppression>,
}

/// One route out of the hub: a sink and the events it wants.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.type != 'opensearch' || has(self.opensearch)").message("type opensearch needs an `opensearch` section"),
    validation = Rule::new("self.type != 'webhook' || has(self.webhook)").message("type webhook needs a `webhook` section"),
    validation = Rule::new("!has(self.webhook) || !has(self.webhook.format) || self.webhook.format != 'template' || has(self.template)").message("webhook.format template needs the consumer's `template`"),
    validation = Rule::new("self.type != 'falconer' || has(self.falconer)").message("type falconer needs a `falconer` section"),
    validation = Rule::new("self.type != 'file' || has(self.file)").message("type file needs a `file` section"),
    validation = Rule::new("self.type != 'slack' || has(self.slack)").message("type slack needs a `slack` section"),
    validation = Rule::new("!has(self.slack) || self.type == 'slack'").message("a `slack` section needs type slack"),
    validation = Rule::new("self.type != 'discord' || has(self.discord)").message("type discord needs a `discord` section"),
    validation = Rule::new("!has(self.discord) || self.type == 'discord'").message("a `discord` section needs type discord"),
    validation = Rule::new("self.type != 'teams' || has(self.teams)").message("type teams needs a `teams` section"),
    validation = Rule::new("!has(self.teams) || self.type == 'teams'").message("a `teams` section needs type teams"),
    validation = Rule::new("self.type != 'alertmanager' || has(self.alertmanager)").message("type alertmanager needs an `alertmanager` section"),
    validation = Rule::new("!has(self.alertmanager) || self.type == 'alertmanager'").message("an `alertmanager` section needs type alertmanager"),
    validation = Rule::new("self.type != 'email' || has(self.email)").message("type email needs an `email` section"),
    validation = Rule::new("!has(self.email) || self.type == 'email'").message("an `email` section needs type email"),
    validation = Rule::new("self.type != 'pagerduty' || has(self.pagerduty)").message("type pagerduty needs a `pagerduty` section"),
    validation = Rule::new("!has(self.pagerduty) || self.type == 'pagerduty'").message("a `pagerduty` section needs type pagerduty"),
    validation = Rule::new("self.type != 'opsgenie' || has(self.opsgenie)").message("type opsgenie needs an `opsgenie` section"),
    validation = Rule::new("!has(self.opsgenie) || self.type == 'opsgenie'").message("an `opsgenie` section needs type opsgenie"),
    validation = Rule::new("self.type != 'googlechat' || has(self.googlechat)").message("type googlechat needs a `googlechat` section"),
    validation = Rule::new("!has(self.googlechat) || self.type == 'googlechat'").message("a `googlechat` section needs type googlechat"),
    validation = Rule::new("self.type != 'mattermost' || has(self.mattermost)").message("type mattermost needs a `mattermost` section"),
    validation = Rule::new("!has(self.mattermost) || self.type == 'mattermost'").message("a `mattermost` section needs type mattermost"),
    validation = Rule::new("self.type != 'rocketchat' || has(self.rocketchat)").message("type rocketchat needs a `rocketchat` section"),
    validation = Rule::new("!has(self.rocketchat) || self.type == 'rocketchat'").message("a `rocketchat` section needs type rocketchat"),
    validation = Rule::new("self.type != 'syslog' || has(self.syslog)").message("type syslog needs a `syslog` section"),
    validation = Rule::new("!has(self.syslog) || self.type == 'syslog'").message("a `syslog` section needs type syslog"),
    validation = Rule::new("!has(self.opensearch) || self.type == 'opensearch'").message("an `opensearch` section needs type opensearch"),
    validation = Rule::new("!has(self.phoenix) || self.type == 'phoenix'").message("a `phoenix` section needs type phoenix"),
    validation = Rule::new("!has(self.webhook) || self.type == 'webhook'").message("a `webhook` section needs type webhook"),
    validation = Rule::new("!has(self.falconer) || self.type == 'falconer'").message("a `falconer` section needs type falconer"),
    validation = Rule::new("!has(self.file) || self.type == 'file'").message("a `file` section needs type file"),
    validation = Rule::new("self.type != 'nats' || has(self.nats)").message("type nats needs a `nats` section"),
    validation = Rule::new("!has(self.nats) || self.type == 'nats'").message("a `nats` section needs type nats"),
    validation = Rule::new("self.type != 'rabbitmq' || has(self.rabbitmq)").message("type rabbitmq needs a `rabbitmq` section"),
    validation = Rule::new("!has(self.rabbitmq) || self.type == 'rabbitmq'").message("a `rabbitmq` section needs type rabbitmq"),
    validation = Rule::new("self.type != 'mqtt' || has(self.mqtt)").message("type mqtt needs an `mqtt` section"),
    validation = Rule::new("!has(self.mqtt) || self.type == 'mqtt'").message("an `mqtt` section needs type mqtt"),
    validation = Rule::new("self.type != 'redis' || has(self.redis)").message("type redis needs a `redis` section"),
    validation = Rule::new("!has(self.redis) || self.type == 'redis'").message("a `redis` section needs type redis"),
    validation = Rule::new("self.type != 'loki' || has(self.loki)").message("type loki needs a `loki` section"),
    validation = Rule::new("!has(self.loki) || self.type == 'loki'").message("a `loki` section needs type loki"),
    validation = Rule::new("!has(self.policyreport) || self.type == 'policyreport'").message("a `policyreport` section needs type policyreport"),
)]
pub struct Consumer {
    /// Unique name across all Settings; the consumer's cursor, metrics and status are keyed
    /// by it, so renaming a consumer starts a new one.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Sink type; the section of the same name holds its settings.
    #[serde(rename = "type")]
    pub sink: SinkType,
    /// Settings of an `opensearch` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch: Option<OpenSearchConfig>,
    /// Settings of a `phoenix` sink (all optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phoenix: Option<PhoenixConfig>,
    /// Settings of a `webhook` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// Settings of a `falconer` sink (another hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub falconer: Option<FalconerConfig>,
    /// Settings of a `file` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileConfig>,
    /// Settings of a `slack` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<ChatConfig>,
    /// Settings of a `discord` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discord: Option<ChatConfig>,
    /// Settings of a `teams` sink (a Teams Workflows webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<ChatConfig>,
    /// Settings of an `alertmanager` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Settings of an `email` sink (SMTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// Settings of a `pagerduty` sink (Events API v2; the routing key is the Secret's
    /// `routingKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDutyConfig>,
    /// Settings of an `opsgenie` sink (Alert API; the API key is the Secret's `apiKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opsgenie: Option<OpsgenieConfig>,
    /// Settings of a `googlechat` sink (a Google Chat space's incoming webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub googlechat: Option<ChatConfig>,
    /// Settings of a `mattermost` sink (an incoming webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mattermost: Option<MattermostConfig>,
    /// Settings of a `rocketchat` sink (an incoming webhook integration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocketchat: Option<RocketChatConfig>,
    /// Settings of a `syslog` sink (RFC 5424, RFC 3164 or CEF over UDP, TCP or TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogConfig>,
    /// Settings of a `nats` sink (JetStream publish with acknowledgement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsConfig>,
    /// Settings of a `rabbitmq` sink (AMQP 0.9.1 with publisher confirms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<RabbitmqConfig>,
    /// Settings of an `mqtt` sink (QoS 1, persistent session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConfig>,
    /// Settings of a `redis` sink (`XADD` to a stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// Settings of a `loki` sink (Grafana Loki's push API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki: Option<LokiConfig>,
    /// Settings of a `policyreport` sink (all optional): `wgpolicyk8s.io/v1alpha2`
    /// PolicyReports per namespace in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policyreport: Option<PolicyReportConfig>,
    /// The text of each notification (chat, paging, Alertmanager, e-mail sinks), or the
    /// body of a `webhook` with `format: template`, in Jinja syntax over the event's fields,
    /// `fields`, `group` and `link` (docs/templates.md). Absent: the event's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub template: Option<String>,
    /// Noise control: the first event of a group is sent at once, its repeats within the
    /// window are folded into one summary sent when the window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// Noise control: at most this many messages per period; past it, events are folded
    /// into their group's next summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Which events this consumer receives (docs/filters.md). Empty: all of them.
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub filter: Filter,
    /// Also deliver events a suppression matched (docs/triage.md); off: they are stored and
    /// counted but not sent here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_suppressed: bool,
    /// Secret with this consumer's credentials; which keys are read depends on the sink
    /// type. Credentials are never written in a Setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// For a new consumer, deliver stored events from this time on instead of from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from: Option<Time>,
    /// Allow a plain `http://` URL to a host other than loopback although the consumer
    /// sends credentials (a token, a secret header, basic auth, an API key, a URL from its
    /// Secret) or signs its bodies. Off: such a consumer is refused, naming the URL field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

/// The kinds of sink the hub has.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    /// OpenSearch `_bulk` indexing.
    Opensearch,
    /// Phoenix `SecurityEvent` objects in this cluster.
    Phoenix,
    /// HTTP POST of JSON events.
    Webhook,
    /// Another Falconer hub's `/ingest` (multi-cluster).
    Falconer,
    /// JSON lines appended to a file on the hub.
    File,
    /// JSON lines on the hub's standard output.
    Stdout,
    /// A Slack incoming webhook: one Block Kit message per event.
    Slack,
    /// A Discord webhook: one embed per event.
    Discord,
    /// A Microsoft Teams Workflows webhook: one Adaptive Card per event.
    Teams,
    /// Prometheus Alertmanager's `POST /api/v2/alerts`: one alert per group, kept firing
    /// while its events come.
    Alertmanager,
    /// E-mail through an SMTP server: one message per event.
    Email,
    /// PagerDuty Events API v2: one alert per group, triggered by each of its events.
    Pagerduty,
    /// Opsgenie Alert API: one alert per group, its repeats counted on it.
    Opsgenie,
    /// A Google Chat incoming webhook: one card per event, a group's messages in one thread.
    Googlechat,
    /// A Mattermost incoming webhook: one Slack-style attachment per event.
    Mattermost,
    /// A Rocket.Chat incoming webhook: one Slack-style attachment per event.
    Rocketchat,
    /// A syslog server (rsyslog, syslog-ng, a SIEM's collector): one message per event.
    Syslog,
    /// NATS JetStream: one message per event, acknowledged by the stream.
    Nats,
    /// RabbitMQ (AMQP 0.9.1): one persistent message per event, confirmed by the broker.
    Rabbitmq,
    /// An MQTT broker: one QoS 1 message per event.
    Mqtt,
    /// A Redis stream: one entry per event.
    Redis,
    /// Grafana Loki's push API: one log line per event, in streams labelled by bounded
    /// fields.
    Loki,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReports (one per namespace) and a
    /// ClusterPolicyReport in this cluster, applied in place, bounded in size.
    Policyreport,
}

impl SinkType {
    pub const ALL: &'static [SinkType] = &[
        SinkType::Opensearch,
        SinkType::Phoenix,
        SinkType::Webhook,
        SinkType::Falconer,
        SinkType::File,
        SinkType::Stdout,
        SinkType::Slack,
        SinkType::Discord,
        SinkType::Teams,
        SinkType::Alertmanager,
        SinkType::Email,
        SinkType::Pagerduty,
        SinkType::Opsgenie,
        SinkType::Googlechat,
        SinkType::Mattermost,
        SinkType::Rocketchat,
        SinkType::Syslog,
        SinkType::Nats,
        SinkType::Rabbitmq,
        SinkType::Mqtt,
        SinkType::Redis,
        SinkType::Loki,
        SinkType::Policyreport,
    ];

    /// The same string as in the Setting, module names and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkType::Opensearch => "opensearch",
            SinkType::Phoenix => "phoenix",
            SinkType::Webhook => "webhook",
            SinkType::Falconer => "falconer",
            SinkType::File => "file",
            SinkType::Stdout => "stdout",
            SinkType::Slack => "slack",
            SinkType::Discord => "discord",
            SinkType::Teams => "teams",
            SinkType::Alertmanager => "alertmanager",
            SinkType::Email => "email",
            SinkType::Pagerduty => "pagerduty",
            SinkType::Opsgenie => "opsgenie",
            SinkType::Googlechat => "googlechat",
            SinkType::Mattermost => "mattermost",
            SinkType::Rocketchat => "rocketchat",
            SinkType::Syslog => "syslog",
            SinkType::Nats => "nats",
            SinkType::Rabbitmq => "rabbitmq",
            SinkType::Mqtt => "mqtt",
            SinkType::Redis => "redis",
            SinkType::Loki => "loki",
            SinkType::Policyreport => "policyreport",
        }
    }

    /// Whether the sink publishes to a message broker (`nats`, `rabbitmq`, `mqtt`, `redis`),
    /// whose URL schemes are the broker's own (its sink checks them).
    pub fn is_broker(self) -> bool {
        matches!(
            self,
            SinkType::Nats | SinkType::Rabbitmq | SinkType::Mqtt | SinkType::Redis
        )
    }

    /// Whether the sink sends notices for people (chat, paging, Alertmanager, e-mail):
    /// these take a `template`, `aggregate` and `rateLimit`.
    pub fn is_notification(self) -> bool {
        matches!(
            self,
            SinkType::Slack
                | SinkType::Discord
                | SinkType::Teams
                | SinkType::Alertmanager
                | SinkType::Email
                | SinkType::Pagerduty
                | SinkType::Opsgenie
                | SinkType::Googlechat
                | SinkType::Mattermost
                | SinkType::Rocketchat
        )
    }

    /// Keys of the consumer's Secret this sink reads when present, besides the required
    /// ones and the TLS keys: the `email` sink's SMTP credentials (both or neither).
    pub fn optional_secret_keys(self) -> &'static [&'static str] {
        match self {
            SinkType::Email | SinkType::Rabbitmq | SinkType::Mqtt | SinkType::Redis => {
                &["username", "password"]
            }
            SinkType::Nats => &["token", "username", "password", "nkey", "creds"],
            _ => &[],
        }
    }

    /// Keys of the consumer's Secret this sink cannot work without.
    pub fn required_secret_keys(self, consumer: &Consumer) -> Vec<&'static str> {
        match self {
            SinkType::Opensearch => match consumer.opensearch.as_ref().map(|o| o.auth) {
                Some(OpenSearchAuth::Basic) => vec!["username", "password"],
                Some(OpenSearchAuth::ApiKey) => vec!["apiKey"],
                _ => Vec::new(),
            },
            SinkType::Falconer => vec!["token"],
            SinkType::Alertmanager => match consumer.alertmanager.as_ref().map(|a| a.auth) {
                Some(AlertmanagerAuth::Basic) => vec!["username", "password"],
                Some(AlertmanagerAuth::Bearer) => vec!["token"],
                _ => Vec::new(),
            },
            SinkType::Loki => match consumer.loki.as_ref().map(|l| l.auth) {
                Some(LokiAuth::Basic) => vec!["username", "password"],
                Some(LokiAuth::Bearer) => vec!["token"],
                _ => Vec::new(),
            },
            SinkType::Pagerduty => vec!["routingKey"],
            SinkType::Opsgenie => vec!["apiKey"],
            SinkType::Webhook if consumer.webhook.as_ref().is_some_and(|w| w.sign) => {
                vec!["hmacKey"]
            }
            _ => Vec::new(),
        }
    }
}

/// Keys every sink reads from its Secret when present: CA bundle, client certificate and key.
pub const TLS_SECRET_KEYS: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];
/// The Secret key that, when present, replaces an HTTP sink's whole URL.
pub const URL_SECRET_KEY: &str = "url";

impl Consumer {
    /// The URL written in the consumer's section, for the sinks that have one (`""` when the
    /// Secret's `url` key gives it); `None` for sinks without a URL, and for `alertmanager`,
    /// whose `url`/`urls` never come from the Secret (its sink checks each).
    pub fn configured_url(&self) -> Option<&str> {
        match self.sink {
            SinkType::Opensearch => self.opensearch.as_ref().map(|o| o.url.as_str()),
            SinkType::Webhook => self.webhook.as_ref().map(|w| w.url.as_str()),
            SinkType::Slack | SinkType::Discord | SinkType::Teams | SinkType::Googlechat => {
                self.chat().map(|c| c.url.as_str())
            }
            SinkType::Falconer => self.falconer.as_ref().map(|f| f.url.as_str()),
            SinkType::Pagerduty => self.pagerduty.as_ref().map(|p| p.url.as_str()),
            SinkType::Opsgenie => self.opsgenie.as_ref().map(|o| o.url.as_str()),
            SinkType::Rocketchat => self.rocketchat.as_ref().map(|c| c.url.as_str()),
            SinkType::Mattermost => self.mattermost.as_ref().map(|c| c.url.as_str()),
            SinkType::Nats => self.nats.as_ref().map(|c| c.url.as_str()),
            SinkType::Rabbitmq => self.rabbitmq.as_ref().map(|c| c.url.as_str()),
            SinkType::Mqtt => self.mqtt.as_ref().map(|c| c.url.as_str()),
            SinkType::Redis => self.redis.as_ref().map(|c| c.url.as_str()),
            SinkType::Loki => self.loki.as_ref().map(|c| c.url.as_str()),
            _ => None,
        }
    }

    /// The section of a chat sink (`slack`, `discord`, `teams`, `googlechat`) of the
    /// consumer's type.
    pub fn chat(&self) -> Option<&ChatConfig> {
        match self.sink {
            SinkType::Slack => self.slack.as_ref(),
            SinkType::Discord => self.discord.as_ref(),
            SinkType::Teams => self.teams.as_ref(),
            SinkType::Googlechat => self.googlechat.as_ref(),
            _ => None,
        }
    }

    /// Every sink type that has a section, with whether this consumer has that section.
    pub fn sections(&self) -> [(SinkType, bool); 22] {
        [
            (SinkType::Opensearch, self.opensearch.is_some()),
            (SinkType::Phoenix, self.phoenix.is_some()),
            (SinkType::Webhook, self.webhook.is_some()),
            (SinkType::Falconer, self.falconer.is_some()),
            (SinkType::File, self.file.is_some()),
            (SinkType::Slack, self.slack.is_some()),
            (SinkType::Discord, self.discord.is_some()),
            (SinkType::Teams, self.teams.is_some()),
            (SinkType::Alertmanager, self.alertmanager.is_some()),
            (SinkType::Email, self.email.is_some()),
            (SinkType::Pagerduty, self.pagerduty.is_some()),
            (SinkType::Opsgenie, self.opsgenie.is_some()),
            (SinkType::Googlechat, self.googlechat.is_some()),
            (SinkType::Mattermost, self.mattermost.is_some()),
            (SinkType::Rocketchat, self.rocketchat.is_some()),
            (SinkType::Syslog, self.syslog.is_some()),
            (SinkType::Nats, self.nats.is_some()),
            (SinkType::Rabbitmq, self.rabbitmq.is_some()),
            (SinkType::Mqtt, self.mqtt.is_some()),
            (SinkType::Redis, self.redis.is_some()),
            (SinkType::Loki, self.loki.is_some()),
            (SinkType::Policyreport, self.policyreport.is_some()),
        ]
    }

    /// Whether the consumer's type needs its section (all but `phoenix` and
    /// `policyreport`, whose settings are all optional, and `stdout`, which has none).
    pub fn needs_section(&self) -> bool {
        !matches!(
            self.sink,
            SinkType::Phoenix | SinkType::Policyreport | SinkType::Stdout
        )
    }

    /// Whether the consumer sends a credential or a signature with each request (its URL
    /// coming from the Secret counts: the URL is then the credential).
    pub fn sends_credentials(&self) -> bool {
        // A chat webhook's URL is its credential, inline or not.
        self.chat().is_some()
            || self.rocketchat.is_some()
            || self.mattermost.is_some()
            || !self.sink.required_secret_keys(self).is_empty()
            || self
                .webhook
                .as_ref()
                .is_some_and(|w| !w.secret_headers.is_empty())
            || self.configured_url().is_some_and(str::is_empty)
    }

    /// The message format of the consumer's section, for the sinks that have one.
    pub fn message_format(&self) -> Option<MessageFormat> {
        match self.sink {
            SinkType::Webhook => self.webhook.as_ref().map(|w| w.format),
            SinkType::Nats => self.nats.as_ref().map(|c| c.format),
            SinkType::Rabbitmq => self.rabbitmq.as_ref().map(|c| c.format),
            SinkType::Mqtt => self.mqtt.as_ref().map(|c| c.format),
            SinkType::Redis => self.redis.as_ref().map(|c| c.format),
            SinkType::Loki => self.loki.as_ref().map(|c| c.format),
            _ => None,
        }
    }

    /// Whether the consumer's `template` is used: by a notification sink, or as the body of
    /// a sink whose format is `template`.
    pub fn takes_template(&self) -> bool {
        self.sink.is_notification() || self.message_format() == Some(MessageFormat::Template)
    }

    /// A consumer of `sink` with no section, filter or secret yet (tests and builders fill
    /// in what they need).
    pub fn new(name: &str, sink: SinkType) -> Consumer {
        Consumer {
            name: name.into(),
            sink,
            opensearch: None,
            phoenix: None,
            webhook: None,
            falconer: None,
            file: None,
            slack: None,
            discord: None,
            teams: None,
            alertmanager: None,
            email: None,
            pagerduty: None,
            opsgenie: None,
            googlechat: None,
            mattermost: None,
            rocketchat: None,
            syslog: None,
            nats: None,
            rabbitmq: None,
            mqtt: None,
            redis: None,
            loki: None,
            policyreport: None,
            template: None,
            aggregate: None,
            rate_limit: None,
            filter: Filter::default(),
            include_suppressed: false,
            secret_ref: None,
            replay_from: None,
            allow_insecure_http: false,
        }
    }

    /// The keys of its Secret this consumer cannot work without: its sink's, and the
    /// webhook's `secretHeaders`; sorted, each once.
    pub fn required_secret_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .sink
            .required_secret_keys(self)
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(webhook) = &self.webhook {
            keys.extend(webhook.secret_headers.values().cloned());
        }
        if self.configured_url().is_some_and(str::is_empty) {
            keys.push(URL_SECRET_KEY.into());
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Every key of its Secret the consumer's sink may read: the required ones, and the
    /// TLS keys every sink reads when present (see [`SecretRef`]).
    pub fn readable_secret_keys(&self) -> Vec<String> {
        let mut keys = self.required_secret_keys();
        keys.extend(TLS_SECRET_KEYS.map(String::from));
        keys.extend(
            self.sink
                .optional_secret_keys()
                .iter()
                .map(|k| String::from(*k)),
        );
        if self.configured_url().is_some() {
            keys.push(URL_SECRET_KEY.into());
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

impl Setting {
    /// Settings oldest first, ties (and objects from files, which have no creation time) by
    /// name: the order consumers are listed in, and the one that decides conflicts (the
    /// oldest Setting keeps a cluster name a newer one contradicts).
    pub fn oldest_first(settings: &[Setting]) -> Vec<&Setting> {
        let mut ordered: Vec<&Setting> = settings.iter().collect();
        ordered.sort_by(|a, b| {
            let time = |s: &Setting| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
            time(a)
                .cmp(&time(b))
                .then_with(|| kube::ResourceExt::name_any(*a).cmp(&kube::ResourceExt::name_any(*b)))
        });
        ordered
    }
}

/// A Secret in the hub's namespace (the hub and manager may read Secrets there only). Keys
/// read by every sink when present: `ca.crt` (CA bundle), `tls.crt` and `tls.key` (client
/// certificate).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// How the hub authenticates to OpenSearch.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OpenSearchAuth {
    /// No credentials (or only a client certificate from the Secret).
    #[default]
    None,
    /// HTTP basic auth with the Secret's `username` and `password`.
    Basic,
    /// `Authorization: ApiKey` with the Secret's `apiKey`.
    ApiKey,
}

/// Which search engine an `opensearch` consumer writes to: both take the same `_bulk`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchFlavor {
    /// OpenSearch 2.7 or later.
    #[default]
    Opensearch,
    /// Elasticsearch 7.14 or later (8.x included).
    Elasticsearch,
}

/// OpenSearch sink settings.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenSearchConfig {
    /// Base URL of the cluster, e.g. `https://opensearch.logging.svc:9200`. Empty: the
    /// `url` key of `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// Index name prefix; the event's date (`YYYY.MM.DD`) is appended.
    #[serde(default = "default_index")]
    #[schemars(length(min = 1, max = 200))]
    pub index: String,
    /// Write to this data stream instead of dated indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_stream: Option<String>,
    /// Install Falconer's index template on start.
    #[serde(default = "yes")]
    pub template: bool,
    /// Credentials, read from `secretRef`.
    #[serde(default)]
    pub auth: OpenSearchAuth,
    /// `opensearch` (default) or `elasticsearch` (7.14 or later): the index template's
    /// types, and an answer must carry `X-Elastic-Product: Elasticsearch`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub flavor: SearchFlavor,
    /// Most events per `_bulk` request.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: u32,
    /// TLS towards OpenSearch.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Phoenix sink settings (DESIGN.md §6).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoenixConfig {
    /// `rule.source` of the SecurityEvents. Absent: `FalcoIntegrator` for Falco events (so
    /// existing Phoenix strategies keep matching), else the event's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_source: Option<String>,
    /// Create at most one SecurityEvent per rule and pod within this window, e.g. `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(s|m|h)$"))]
    pub dedup_window: Option<String>,
    /// Delete SecurityEvents this old, e.g. `24h`. Absent: keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = AGE_PATTERN))]
    pub ttl: Option<String>,
    /// Namespaces Phoenix is never asked to act in. Absent: `kube-system` and the hub's own
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub deny_namespaces: Option<Vec<String>>,
    /// Most SecurityEvents created within any minute (default 30). Past it the circuit opens
    /// for 5 minutes: events go to the dead letters with the reason (replay them to act).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_per_minute: Option<u32>,
    /// Act only on events of these sources, e.g. `[falco]`. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub require_sources: Vec<String>,
    /// Act only on events posted with an `ingest` credential bound to this cluster
    /// (`clusters: [<this cluster>]`; the chart's generated agent tokens are), which the hub
    /// marks with the tag `falconer.io/bound-sender=<name>`: an event from an unbound token,
    /// an open hub or another hub is skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_bound_sender: bool,
}

/// Default of `policyreport.maxResults`.
pub const POLICY_REPORT_MAX_RESULTS: u32 = 1000;
/// Default of `policyreport.namePrefix`.
pub const POLICY_REPORT_NAME_PREFIX: &str = "falconer";

fn default_policy_report_max_results() -> u32 {
    POLICY_REPORT_MAX_RESULTS
}

fn default_policy_report_name_prefix() -> String {
    POLICY_REPORT_NAME_PREFIX.into()
}

/// Settings of a `policyreport` sink (docs/sinks/policyreport.md): one `PolicyReport` per
/// namespace and one `ClusterPolicyReport` in the hub's own cluster, each holding the newest
/// results and applied whole with server-side apply.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyReportConfig {
    /// Most results one report keeps (default 1000): the newest; older ones are dropped.
    /// A report also stays under 1 MB of results whatever this says (etcd's object limit
    /// is 1.5 MiB).
    #[serde(default = "default_policy_report_max_results")]
    #[schemars(range(min = 1, max = 5000))]
    pub max_results: u32,
    /// Only events at least this severe become results; less severe ones are skipped.
    /// Absent: every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Start of the reports' names: `<namePrefix>-<namespace>` for a namespace's
    /// PolicyReport, `<namePrefix>-cluster` for the ClusterPolicyReport. Two `policyreport`
    /// consumers need different prefixes, or they overwrite each other's reports.
    #[serde(default = "default_policy_report_name_prefix")]
    #[schemars(length(min = 1, max = 40), regex(pattern = NAME_PATTERN))]
    pub name_prefix: String,
    /// Events without a namespace (host alerts, node findings) go to the
    /// ClusterPolicyReport (default); off: they are skipped.
    #[serde(default = "yes")]
    pub cluster_report: bool,
}

impl Default for PolicyReportConfig {
    fn default() -> Self {
        PolicyReportConfig {
            max_results: POLICY_REPORT_MAX_RESULTS,
            min_severity: None,
            name_prefix: POLICY_REPORT_NAME_PREFIX.into(),
            cluster_report: true,
        }
    }
}

/// Webhook sink settings.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!(has(self.batch) && self.batch && has(self.format) && self.format in ['falco', 'template'])").message("format falco and format template send one event per request: set batch: false"),
)]
pub struct WebhookConfig {
    /// Where to POST. Empty: the `url` key of `secretRef` (for URLs that are themselves a
    /// credential, like a chat webhook's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// POST a JSON array of events instead of one event per request.
    #[serde(default)]
    pub batch: bool,
    /// Extra request headers. Not for secrets: use `secretHeaders`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request headers whose values come from keys of `secretRef`: header name → key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_headers: BTreeMap<String, String>,
    /// Sign each body with HMAC-SHA256 using the `hmacKey` of `secretRef`.
    #[serde(default)]
    pub sign: bool,
    /// What each body is: `falconer` (the event as the query API shows it, default),
    /// `falco` (the alert exactly as Falco sent it, for falcosidekick and falco-talon),
    /// `cloudevents` (a CloudEvents 1.0 structured JSON event) or `template` (the consumer's
    /// `template`, rendered). `falco` and `template` send one event per request: no `batch`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub format: MessageFormat,
    /// `POST` (default) or `PUT` (falcosidekick's `webhook.method` choice).
    #[serde(default, skip_serializing_if = "is_default")]
    pub method: WebhookMethod,
    /// TLS towards the webhook.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    value == &T::default()
}

/// What the body of a broker message (and, with the log-outputs work, of other sinks) is.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// The event as the query API shows it: normalized fields, `fields` and the raw payload.
    #[default]
    Falconer,
    /// The alert exactly as the source sent it (Falco's JSON, falcosidekick's payload); an
    /// event of another source as a Falco-shaped alert built from its fields.
    Falco,
    /// A CloudEvents 1.0 event in the structured JSON format, the Falconer event as `data`.
    Cloudevents,
    /// The consumer's `template`, rendered.
    Template,
}

impl MessageFormat {
    fn is_default(&self) -> bool {
        *self == MessageFormat::default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::Falconer => "falconer",
            MessageFormat::Falco => "falco",
            MessageFormat::Cloudevents => "cloudevents",
            MessageFormat::Template => "template",
        }
    }
}

/// The HTTP method of a `webhook` consumer's requests.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum WebhookMethod {
    #[default]
    Post,
    Put,
}

impl WebhookMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookMethod::Post => "POST",
            WebhookMethod::Put => "PUT",
        }
    }
}

/// Settings of a sink that forwards to another hub.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FalconerConfig {
    /// Base URL of the other hub (`/ingest` is appended); its ingest token is the `token`
    /// key of `secretRef`. Empty: the `url` key of `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// TLS towards the other hub.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Settings of a chat sink (`slack`, `discord`, `teams`, `googlechat`): a webhook bound to
/// one channel or space.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatConfig {
    /// The webhook URL (e.g. `https://hooks.slack.com/services/…`), for trials. Empty: the
    /// `url` key of `secretRef` — the URL is a credential, keep it in a Secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// TLS towards the chat service.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// How the hub authenticates to Alertmanager.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum AlertmanagerAuth {
    /// No credentials (or only a client certificate from the Secret).
    #[default]
    None,
    /// HTTP basic auth with the Secret's `username` and `password`.
    Basic,
    /// `Authorization: Bearer` with the Secret's `token`.
    Bearer,
}

fn default_alert_labels() -> Vec<GroupField> {
    DEFAULT_ALERT_LABELS.to_vec()
}

fn default_resolve_after() -> String {
    "5m".into()
}

/// The event fields an alert is labelled with unless `labels` says otherwise: all bounded.
pub const DEFAULT_ALERT_LABELS: [GroupField; 6] = [
    GroupField::Rule,
    GroupField::Severity,
    GroupField::Source,
    GroupField::Cluster,
    GroupField::Namespace,
    GroupField::Workload,
];

/// Alertmanager sink settings: each event (and each summary of folded events) re-sends its
/// group's alert with a later `endsAt`, so the alert fires while events come and resolves
/// by itself `resolveAfter` after the last one.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("has(self.url) != has(self.urls)").message("set exactly one of `url` and `urls`"),
)]
pub struct AlertmanagerConfig {
    /// Base URL of the Alertmanager, e.g. `http://alertmanager.monitoring.svc:9093`
    /// (`/api/v2/alerts` is appended). Exactly one of `url` and `urls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://\S+$"))]
    pub url: Option<String>,
    /// Base URLs of several Alertmanagers, tried in turn for each batch: the first that
    /// accepts it wins; when none does, the batch is retried. Exactly one of `url` and
    /// `urls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 1, max = 2048), regex(pattern = r"^https?://\S+$"))
    )]
    pub urls: Option<Vec<String>>,
    /// The event fields the alert is labelled with (`rule` is sent as `alertname`), besides
    /// `falconer_group`. `node` and `pod` are unbounded (every restart is a new pod): each
    /// value is another alert in Alertmanager, so they are never a default.
    #[serde(default = "default_alert_labels")]
    #[schemars(length(min = 1, max = 8))]
    pub labels: Vec<GroupField>,
    /// Static labels added to every alert (e.g. `team: security`), for Alertmanager's
    /// routes, at most 32. Names are Prometheus label names (`[a-zA-Z_][a-zA-Z0-9_]*`, not
    /// starting with `__`) and may not be one Falconer sets; the hub checks them when it
    /// starts the consumer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub extra_labels: BTreeMap<String, String>,
    /// How long after its group's last event (or summary) the alert resolves by itself,
    /// 1m to 24h: each send sets `endsAt` to now plus this.
    #[serde(default = "default_resolve_after")]
    #[schemars(regex(pattern = WINDOW_PATTERN))]
    pub resolve_after: String,
    /// Credentials, read from `secretRef`.
    #[serde(default)]
    pub auth: AlertmanagerAuth,
    /// TLS towards Alertmanager.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

/// Settings of a `pagerduty` sink: PagerDuty's Events API v2. The integration's routing
/// key is the `routingKey` key of `secretRef`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Where events are sent: `https://events.eu.pagerduty.com/v2/enqueue` for an EU
    /// account. Empty: the `url` key of `secretRef`.
    #[serde(default = "default_pagerduty_url")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// TLS towards PagerDuty.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// The most recipients (`to` and `cc` each) of an `email` consumer.
pub const MAX_EMAIL_RECIPIENTS: usize = 50;

/// How the `email` sink protects its SMTP connection.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Plain connection upgraded with `STARTTLS`, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "implicit TLS" (port 465).
    Tls,
    /// No TLS (port 25): to loopback only unless `allowPlaintext` is set.
    None,
}

impl EmailTls {
    /// The port of this mode unless the consumer sets one.
    pub fn default_port(self) -> u16 {
        match self {
            EmailTls::Starttls => 587,
            EmailTls::Tls => 465,
            EmailTls::None => 25,
        }
    }
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        PagerDutyConfig {
            url: default_pagerduty_url(),
            tls: SinkTls::default(),
        }
    }
}

/// Settings of an `email` sink: one message per event (or summary) through an SMTP server.
/// SMTP credentials are the `username` and `password` keys of `secretRef` (both or neither);
/// its `ca.crt` is trusted besides the system roots.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("self.tls != 'none' || (has(self.allowPlaintext) && self.allowPlaintext) || self.host in ['localhost', '127.0.0.1', '::1']").message("tls: none sends mail and credentials in clear: only to loopback, unless allowPlaintext is true"),
)]
pub struct EmailConfig {
    /// SMTP server (relay) host name; with TLS, the name its certificate must carry.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// SMTP port. Absent: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none`.
    #[serde(default)]
    pub tls: EmailTls,
    /// Allow `tls: none` to a host other than loopback: messages (and credentials, when the
    /// Secret has them) then travel in clear.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext: bool,
    /// Skip verification of the server's certificate (tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// The sender, `alerts@example.com` or `Falconer <alerts@example.com>`.
    #[schemars(length(min = 3, max = 320))]
    pub from: String,
    /// Recipients (1 to 50 addresses).
    #[schemars(length(min = 1, max = 50))]
    pub to: Vec<String>,
    /// Copy recipients (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub cc: Vec<String>,
    /// Put before every subject, e.g. `[prod]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub subject_prefix: Option<String>,
    /// Longest wait for each answer of the server, e.g. `30s` (at most 5m).
    #[serde(default = "default_email_timeout")]
    #[schemars(regex(pattern = WINDOW_PATTERN))]
    pub timeout: String,
}

fn default_email_timeout() -> String {
    "30s".into()
}

fn default_opsgenie_url() -> String {
    "https://api.opsgenie.com/v2/alerts".into()
}

/// Settings of an `opsgenie` sink: Opsgenie's Alert API. The API key (of an API
/// integration) is the `apiKey` key of `secretRef`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpsgenieConfig {
    /// Where alerts are created: `https://api.eu.opsgenie.com/v2/alerts` for an EU
    /// account. Empty: the `url` key of `secretRef`.
    #[serde(default = "default_opsgenie_url")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// Tags added to every alert, besides the event's own (at most 20 in all are sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub tags: Vec<String>,
    /// Who is notified, e.g. `[{type: team, name: security}]`. Empty: the integration's
    /// own team and rules decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub responders: Vec<OpsgenieResponder>,
    /// TLS towards Opsgenie.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

impl Default for OpsgenieConfig {
    fn default() -> Self {
        OpsgenieConfig {
            url: default_opsgenie_url(),
            tags: Vec::new(),
            responders: Vec::new(),
            tls: SinkTls::default(),
        }
    }
}

/// A team, user, escalation or schedule an Opsgenie alert is routed to, by name (a user
/// by username).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpsgenieResponder {
    #[serde(rename = "type")]
    pub kind: OpsgenieResponderType,
    /// The team's, escalation's or schedule's name, or the user's username.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
}

/// The kinds of Opsgenie responder.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpsgenieResponderType {
    Team,
    User,
    Escalation,
    Schedule,
}

impl OpsgenieResponderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpsgenieResponderType::Team => "team",
            OpsgenieResponderType::User => "user",
            OpsgenieResponderType::Escalation => "escalation",
            OpsgenieResponderType::Schedule => "schedule",
        }
    }
}

/// Settings of a `mattermost` sink: an incoming webhook bound to one channel.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MattermostConfig {
    /// The webhook URL (`https://<server>/hooks/<key>`), for trials. Empty: the `url` key
    /// of `secretRef` — the URL is a credential, keep it in a Secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// The name messages are posted as (when the server lets webhooks override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub username: Option<String>,
    /// The picture messages are posted with (when the server lets webhooks override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://\S+$"))]
    pub icon_url: Option<String>,
    /// TLS towards the Mattermost server.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Settings of a `nats` sink: each event published to JetStream and acknowledged by the
/// stream, `Nats-Msg-Id` = the event id (the stream's duplicate window drops a re-send).
/// Credentials from `secretRef`, all optional: `creds` (a credentials file), `nkey` (an
/// NKey seed), `token`, or `username` + `password`; `ca.crt`, `tls.crt`/`tls.key` for TLS.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, `nats://host:4222` or `tls://host:4222`. Empty: the `url` key of
    /// `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^((nats|tls)://\S+)?$"))]
    pub url: String,
    /// Subject of each message; `{cluster}`, `{source}`, `{severity}`, `{kind}` and
    /// `{namespace}` are replaced by the event's (characters a subject cannot hold become `_`).
    #[serde(default = "default_nats_subject")]
    #[schemars(length(min = 1, max = 255))]
    pub subject: String,
    /// The stream that must capture the subjects: checked when the consumer starts, so a
    /// subject no stream captures is reported instead of retried blind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub stream: Option<String>,
    /// The message body: `falconer` (default), `falco`, `cloudevents` or `template`
    /// (docs/sinks/webhook.md#formats).
    #[serde(default, skip_serializing_if = "MessageFormat::is_default")]
    pub format: MessageFormat,
    /// TLS towards the server.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Settings of a `rabbitmq` sink: each event a persistent message with `message_id` = the
/// event id, published with publisher confirms; `mandatory`, so a message no queue takes
/// is reported, not dropped. `username`/`password` from `secretRef` (else the URL's, else
/// guest).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RabbitmqConfig {
    /// Broker URL, `amqp://host:5672/vhost` or `amqps://host:5671/vhost`. Empty: the `url`
    /// key of `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(amqps?://\S+)?$"))]
    pub url: String,
    /// Exchange to publish to; empty: the default exchange, where the routing key is a
    /// queue's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 255))]
    pub exchange: String,
    /// Routing key of each message, with the placeholders of `nats.subject`.
    #[serde(default = "default_routing_key")]
    #[schemars(length(min = 1, max = 255))]
    pub routing_key: String,
    /// The message body: `falconer` (default), `falco`, `cloudevents` or `template`
    /// (docs/sinks/webhook.md#formats).
    #[serde(default, skip_serializing_if = "MessageFormat::is_default")]
    pub format: MessageFormat,
    /// TLS towards the broker.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Settings of an `mqtt` sink: each event published at QoS 1 on a session that is kept
/// (clean session off), so messages in flight survive a reconnect. `username`/`password`
/// from `secretRef`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://host:1883` or `mqtts://host:8883`. Empty: the `url` key of
    /// `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(mqtts?://\S+)?$"))]
    pub url: String,
    /// Topic of each message, with the placeholders of `nats.subject` (`+`, `#` and `/`
    /// in a value become `_`).
    #[serde(default = "default_mqtt_topic")]
    #[schemars(length(min = 1, max = 1024))]
    pub topic: String,
    /// The client id, which names the kept session. Absent: `falconer-<consumer>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub client_id: Option<String>,
    /// Publish with the retain flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain: bool,
    /// The message body: `falconer` (default), `falco`, `cloudevents` or `template`
    /// (docs/sinks/webhook.md#formats).
    #[serde(default, skip_serializing_if = "MessageFormat::is_default")]
    pub format: MessageFormat,
    /// TLS towards the broker.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Settings of a `redis` sink: each event one `XADD` entry with the fields `id` (the event
/// id) and `event` (the body). `username`/`password` from `secretRef`.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisConfig {
    /// Server URL, `redis://host:6379/0` or `rediss://host:6380/0`. Empty: the `url` key of
    /// `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(rediss?://\S+)?$"))]
    pub url: String,
    /// The stream's key, with the placeholders of `nats.subject`.
    #[serde(default = "default_redis_stream")]
    #[schemars(length(min = 1, max = 1024))]
    pub stream: String,
    /// Trim the stream to about this many entries (`MAXLEN ~`). Absent: no trimming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_len: Option<u64>,
    /// The message body: `falconer` (default), `falco`, `cloudevents` or `template`
    /// (docs/sinks/webhook.md#formats).
    #[serde(default, skip_serializing_if = "MessageFormat::is_default")]
    pub format: MessageFormat,
    /// TLS towards the server.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// How the hub authenticates to Loki (or the gateway in front of it).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum LokiAuth {
    /// No credentials (or only a client certificate from the Secret).
    #[default]
    None,
    /// HTTP basic auth with the Secret's `username` and `password` (Grafana Cloud: the
    /// instance id and an access token).
    Basic,
    /// `Authorization: Bearer` with the Secret's `token`.
    Bearer,
}

/// Which time a Loki entry carries.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum LokiTimestamp {
    /// The event's `time` (when it happened, by the source's clock).
    #[default]
    Event,
    /// The event's `received_at` (when the hub stored it): for sources whose clocks lag, or
    /// a backlog older than Loki accepts.
    ReceivedAt,
}

/// The event fields a Loki stream is labelled with unless `labels` says otherwise.
pub const DEFAULT_LOKI_LABELS: [&str; 4] = ["cluster", "source", "severity", "namespace"];

fn default_loki_labels() -> Vec<String> {
    DEFAULT_LOKI_LABELS.map(String::from).to_vec()
}

fn default_loki_batch() -> u32 {
    500
}

/// Settings of a `loki` sink: each batch one `POST /loki/api/v1/push`, the events grouped
/// into streams by their labels, one log line per event.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LokiConfig {
    /// Base URL of Loki or its gateway, e.g. `http://loki-gateway.logging.svc`
    /// (`/loki/api/v1/push` is appended). Empty: the `url` key of `secretRef`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// The tenant (`X-Scope-OrgID`) of a multi-tenant Loki. Absent: no header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 150), regex(pattern = r"^[A-Za-z0-9!._*'()-]+$"))]
    pub tenant: Option<String>,
    /// The event fields each stream is labelled with, bounded ones only: `cluster`,
    /// `source`, `severity`, `namespace`, `kind`, `rule`. Pod, container, image, node and
    /// workload names are unbounded (each value is a new stream in Loki's index) and are
    /// refused; they stay searchable in the line.
    #[serde(default = "default_loki_labels")]
    #[schemars(
        length(min = 1, max = 6),
        inner(
            length(min = 1, max = 64),
            regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$")
        )
    )]
    pub labels: Vec<String>,
    /// Credentials, read from `secretRef`.
    #[serde(default)]
    pub auth: LokiAuth,
    /// Extra request headers, e.g. for a gateway. Not for secrets: use `auth`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: BTreeMap<String, String>,
    /// What each line is: `falconer` (the event's JSON, default), `falco` (the alert as Falco
    /// sent it), `cloudevents` or `template` (docs/sinks/webhook.md#formats).
    #[serde(default, skip_serializing_if = "MessageFormat::is_default")]
    pub format: MessageFormat,
    /// The entries' timestamp: `event` (the event's time, default) or `receivedAt`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub timestamp: LokiTimestamp,
    /// Most events per push request.
    #[serde(default = "default_loki_batch")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: u32,
    /// TLS towards Loki.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// Settings of a `rocketchat` sink: an incoming webhook integration bound to one channel.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RocketChatConfig {
    /// The webhook URL (`https://<server>/hooks/<id>/<token>`), for trials. Empty: the
    /// `url` key of `secretRef` — the URL is a credential, keep it in a Secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048), regex(pattern = r"^(https?://\S+)?$"))]
    pub url: String,
    /// The name shown on messages instead of the integration's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub alias: Option<String>,
    /// An emoji shown as the messages' avatar, e.g. `:rotating_light:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^:[a-z0-9_+-]{1,64}:$"))]
    pub emoji: Option<String>,
    /// A picture shown as the messages' avatar (Rocket.Chat prefers `emoji` when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://\S+$"))]
    pub avatar: Option<String>,
    /// TLS towards the Rocket.Chat server.
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// How a `syslog` sink reaches its server.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    /// One datagram per message (RFC 5426): nothing confirms that a message arrived.
    Udp,
    /// TCP with octet-counting framing (RFC 6587).
    #[default]
    Tcp,
    /// TLS over TCP with octet-counting framing (RFC 5425).
    Tls,
}

impl SyslogProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SyslogProtocol::Udp => "udp",
            SyslogProtocol::Tcp => "tcp",
            SyslogProtocol::Tls => "tls",
        }
    }
}

/// What a `syslog` message looks like.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 header, the event's JSON as the message.
    #[default]
    Rfc5424,
    /// RFC 3164 ("BSD") header, the event's JSON as the message.
    Rfc3164,
    /// ArcSight CEF (`CEF:0|Falconer|Falconer|…`) after an RFC 3164 header.
    Cef,
}

/// The syslog facility of a `syslog` sink's messages (RFC 5424 §6.2.1).
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFacility {
    User,
    Daemon,
    Auth,
    Syslog,
    Authpriv,
    #[default]
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl SyslogFacility {
    /// The facility's number.
    pub fn code(self) -> u8 {
        match self {
            SyslogFacility::User => 1,
            SyslogFacility::Daemon => 3,
            SyslogFacility::Auth => 4,
            SyslogFacility::Syslog => 5,
            SyslogFacility::Authpriv => 10,
            SyslogFacility::Local0 => 16,
            SyslogFacility::Local1 => 17,
            SyslogFacility::Local2 => 18,
            SyslogFacility::Local3 => 19,
            SyslogFacility::Local4 => 20,
            SyslogFacility::Local5 => 21,
            SyslogFacility::Local6 => 22,
            SyslogFacility::Local7 => 23,
        }
    }
}

/// The largest datagram a `syslog` sink sends over UDP.
pub const MAX_SYSLOG_UDP_BYTES: u32 = 65_000;

fn default_syslog_max_message_bytes() -> u32 {
    8192
}

/// Settings of a `syslog` sink: one message per event to a syslog server. With `protocol:
/// tls`, the `ca.crt` of `secretRef` is trusted besides the system roots and its `tls.crt` +
/// `tls.key` are the client certificate.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!has(self.protocol) || self.protocol != 'udp' || !has(self.maxMessageBytes) || self.maxMessageBytes <= 65000").message("maxMessageBytes: a UDP datagram carries at most 65000 bytes"),
)]
pub struct SyslogConfig {
    /// The server, `host:port` (`[::1]:6514` for an IPv6 address), e.g.
    /// `rsyslog.logging.svc:514`. With TLS, the host is the name its certificate must carry.
    #[schemars(
        length(min = 3, max = 261),
        regex(pattern = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$")
    )]
    pub address: String,
    /// `udp`, `tcp` (default) or `tls`.
    #[serde(default)]
    pub protocol: SyslogProtocol,
    /// `rfc5424` (default), `rfc3164` or `cef`.
    #[serde(default)]
    pub format: SyslogFormat,
    /// The facility of every message; default `local0`.
    #[serde(default)]
    pub facility: SyslogFacility,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164) of the messages; default `falconer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub app_name: Option<String>,
    /// The longest message sent, header included (default 8192, rsyslog's and most servers'
    /// default limit; at most 65000 over UDP). A longer message is not cut: its event goes
    /// to the dead letters with the reason.
    #[serde(default = "default_syslog_max_message_bytes")]
    #[schemars(range(min = 480, max = 1048576))]
    pub max_message_bytes: u32,
    /// TLS towards the server (`protocol: tls`).
    #[serde(default, skip_serializing_if = "SinkTls::is_default")]
    pub tls: SinkTls,
}

/// A span of time in whole seconds, minutes or hours: `30s`, `10m`, `1h`.
const WINDOW_PATTERN: &str = r"^[1-9][0-9]{0,5}(s|m|h)$";

/// `30s`, `10m` or `1h` as a duration; `None` if it is not one.
pub fn parse_window(text: &str) -> Option<std::time::Duration> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    (n > 0).then(|| std::time::Duration::from_secs(n * unit))
}

fn default_window() -> String {
    "60s".into()
}

fn default_group_by() -> Vec<GroupField> {
    crate::group::DEFAULT_GROUP_BY.to_vec()
}

fn default_per() -> String {
    "1m".into()
}

/// Folding a group's repeats into one summary per window.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Aggregate {
    /// How long after a group's first event its repeats are folded, e.g. `60s`, `10m`
    /// (at most 24h).
    #[serde(default = "default_window")]
    #[schemars(regex(pattern = WINDOW_PATTERN))]
    pub window: String,
    /// The fields that make a group. Default: rule, cluster, namespace, workload.
    #[serde(default = "default_group_by")]
    #[schemars(length(min = 1, max = 8))]
    pub by: Vec<GroupField>,
}

/// A ceiling on the messages a consumer sends.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Messages (events and summaries) per period.
    #[schemars(range(min = 1, max = 100000))]
    pub messages: u32,
    /// The period, e.g. `1m`, `1h` (at most 24h).
    #[serde(default = "default_per")]
    #[schemars(regex(pattern = WINDOW_PATTERN))]
    pub per: String,
}

/// File sink settings.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// Absolute path on the hub's filesystem.
    #[schemars(length(min = 2, max = 4096), regex(pattern = r"^/"))]
    pub path: String,
    /// Rotate when the file would grow past this many bytes: `path` becomes `path.1`,
    /// `path.1` becomes `path.2`, and so on.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 4096))]
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    #[serde(default = "default_keep")]
    #[schemars(range(max = 100))]
    pub keep: u32,
}

/// TLS towards a sink. CA and client certificate come from `secretRef` (`ca.crt`, `tls.crt`,
/// `tls.key`) when present there.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkTls {
    /// Skip verification of the sink's certificate (tests only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl SinkTls {
    fn is_default(&self) -> bool {
        self == &SinkTls::default()
    }
}

/// Observed state: conditions from the manager, delivery state from the hub.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SettingStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid` (the spec makes sense together with the other Settings), `SecretsResolved`
    /// (every `secretRef` exists with the keys its sink needs) and `Ready` (both).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Delivery state of each consumer, written by the hub.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub consumers: Vec<ConsumerStatus>,
}

/// What a consumer's delivery is doing.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerState {
    /// Not started yet.
    Pending,
    /// Delivering; the last batch was confirmed.
    Active,
    /// Retrying after failures; events wait, none are lost.
    Degraded,
    /// Not delivering: the consumer is invalid or its Secret is missing.
    Stopped,
}

/// One consumer's delivery, as the hub reports it.
#[derive(JsonSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// The consumer's name.
    pub name: String,
    /// What delivery is doing.
    pub state: ConsumerState,
    /// Stored events not yet delivered.
    #[serde(default)]
    pub lag_events: i64,
    /// Age of the oldest undelivered event, in seconds.
    #[serde(default)]
    pub lag_seconds: i64,
    /// Events delivered since the consumer was created.
    #[serde(default)]
    pub delivered: i64,
    /// Retried sends since the consumer was created.
    #[serde(default)]
    pub retries: i64,
    /// Events given up on (in the dead-letter table).
    #[serde(default)]
    pub dead_letters: i64,
    /// The last delivery error, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When this status was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

// ---------------------------------------------------------------------------------------------
// Schemas of the store's enums: the same strings the hub parses.

fn string_enum_schema(description: &str, values: Vec<&str>) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "description": description,
        "enum": values,
    })
}

impl JsonSchema for Severity {
    fn schema_name() -> Cow<'static, str> {
        "Severity".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        string_enum_schema(
            "Falco's priority scale, most severe first.",
            Severity::ALL.iter().map(|s| s.as_str()).collect(),
        )
    }
}

impl JsonSchema for Kind {
    fn schema_name() -> Cow<'static, str> {
        "Kind".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        string_enum_schema(
            "What an event is about.",
            Kind::ALL.iter().map(|k| k.as_str()).collect(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Checks the API server cannot make on its own, shared by `manager render` and the manager.

/// Whether `schedule` is a cron expression CronJob accepts (same rule as the CRD pattern).
pub fn is_cron_schedule(schedule: &str) -> bool {
    const MACROS: &[&str] = &[
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if MACROS.contains(&schedule) {
        return true;
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    fields.len() == 5
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "*?/,-".contains(c))
        })
}

pub use crate::names::is_dns_label;

impl Policy {
    /// What the CRD schema would refuse, checked again for objects that never went through
    /// an API server (`manager render`). Messages name the field.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        if name.is_empty() || name.len() > MAX_POLICY_NAME {
            return Err(format!(
                "metadata.name: `{name}` must have 1 to {MAX_POLICY_NAME} characters"
            ));
        }
        let spec = &self.spec;
        if !is_dns_label(&spec.namespace) {
            return Err(format!(
                "spec.namespace: `{}` is not a DNS label",
                spec.namespace
            ));
        }
        let hub = &spec.hub_url;
        if !(hub.starts_with("http://") || hub.starts_with("https://"))
            || hub.contains(['?', '#', '$'])
            || hub.contains(char::is_whitespace)
        {
            return Err(format!(
                "spec.hubUrl: `{hub}` must be an http(s) URL without query, fragment or `$`"
            ));
        }
        for (field, schedule) in [
            ("spec.kubeBench.schedule", &spec.kube_bench.schedule),
            ("spec.trivy.schedule", &spec.trivy.schedule),
        ] {
            if !is_cron_schedule(schedule) {
                return Err(format!(
                    "{field}: `{schedule}` is not a cron schedule (five fields or @daily, …)"
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// serde defaults (functions, because serde's `default = "..."` takes a path)

fn yes() -> bool {
    true
}
fn debug() -> Severity {
    Severity::Debug
}
fn default_namespace() -> String {
    DEFAULT_NAMESPACE.into()
}
fn default_hub_url() -> String {
    DEFAULT_HUB_URL.into()
}
fn default_token_secret() -> String {
    DEFAULT_TOKEN_SECRET.into()
}
fn default_ca_key() -> String {
    "ca.crt".into()
}
fn default_falco_image() -> String {
    DEFAULT_FALCO_IMAGE.into()
}
fn default_driver_loader_image() -> String {
    DEFAULT_DRIVER_LOADER_IMAGE.into()
}
fn default_kube_bench_image() -> String {
    DEFAULT_KUBE_BENCH_IMAGE.into()
}
fn default_kube_bench_schedule() -> String {
    DEFAULT_KUBE_BENCH_SCHEDULE.into()
}
fn default_trivy_image() -> String {
    DEFAULT_TRIVY_IMAGE.into()
}
fn default_trivy_schedule() -> String {
    DEFAULT_TRIVY_SCHEDULE.into()
}
fn default_uploader_image() -> String {
    DEFAULT_UPLOADER_IMAGE.into()
}
fn default_falconer_image() -> String {
    DEFAULT_FALCONER_IMAGE.into()
}
fn default_nats_subject() -> String {
    "falconer.{cluster}.{severity}".into()
}
fn default_routing_key() -> String {
    "falconer.{source}.{severity}".into()
}
fn default_mqtt_topic() -> String {
    "falconer/{cluster}/{severity}".into()
}
fn default_redis_stream() -> String {
    "falconer:events".into()
}
fn default_index() -> String {
    "falconer-events".into()
}
fn default_batch() -> u32 {
    500
}
fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}

/// Falco watches control-plane nodes too: that is where an attacker wants to be.
fn default_tolerations() -> Vec<Toleration> {
    [
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    ]
    .into_iter()
    .map(|key| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    })
    .collect()
}
