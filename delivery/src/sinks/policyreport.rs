//! The `policyreport` sink: summarises events as `wgpolicyk8s.io/v1alpha2` reports in the
//! hub's own cluster — one `PolicyReport` per namespace and one `ClusterPolicyReport` for
//! events without a namespace — the shape Kyverno's policy-reporter reads and falcosidekick's
//! PolicyReport output writes (shared/reference/outputs-and-routing.md, issue 17).
//!
//! This module owns the mapping of an event to a report result ([`result_of`], pure), the
//! report object ([`report`], pure), the bounds ([`merge`]), the reading of the API
//! server's answers ([`classify_read`], [`classify_apply`]) and the results it holds per
//! report.
//!
//! - **Names**: `<namePrefix>-<namespace>` in the event's namespace, `<namePrefix>-cluster`
//!   for the ClusterPolicyReport; deterministic, so a restart or a second replica writes the
//!   same objects. Labelled `app.kubernetes.io/managed-by: falconer` and with the consumer.
//! - **Writes**: each batch applies every report it touched, whole, with server-side apply
//!   (`PATCH`, `application/apply-patch+yaml`, field manager `falconer`, `force`): one
//!   request per report and batch, no read-modify-write race on `resourceVersion`.
//! - **State**: the results of a report are held in memory once read. The first time a
//!   report is needed (after a start, or after it was evicted from the cache of
//!   [`MAX_CACHED_REPORTS`]) it is read with a GET, so a restart keeps what the report
//!   held. Results carry the event id (`properties.eventId`): an event sent again after a
//!   crash is not added twice.
//! - **Bounds**: the newest `maxResults` results (default 1000), and at most
//!   [`MAX_RESULTS_BYTES`] of results' JSON per report; the oldest go first. Messages,
//!   names and property values are cut to fixed lengths ([`MAX_MESSAGE`], [`MAX_VALUE`]).
//! - **Scope**: only events of the hub's own cluster (an edge's forwarded events would
//!   land in namespaces of another cluster) and at least `minSeverity`; others are skipped
//!   with the reason.
//! - **Errors**: 404 of the resource (CRD not installed), 403 (RBAC), 401, 408, 409, 429,
//!   5xx and connection errors → retry with the reason; 422/400 and other 4xx → the events
//!   of that report go to the dead letters with the API server's message; 404 of the
//!   namespace → that report's events are refused (the namespace is not in this cluster).

use crate::Home;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::phoenix::consumer_label;
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::{PolicyReportConfig, is_dns_label};
use falconer_model::event::Severity;
use falconer_store::Event;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

pub const GROUP: &str = "wgpolicyk8s.io";
pub const VERSION: &str = "v1alpha2";
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// Field manager of the applies and value of the `app.kubernetes.io/managed-by` label.
pub const FIELD_MANAGER: &str = "falconer";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Which consumer writes a report.
pub const CONSUMER_LABEL: &str = "falconer.io/consumer";
/// The property holding the Falconer event id of a result (dedup across restarts).
pub const EVENT_ID: &str = "eventId";

/// Most bytes of one result's `message`; longer ones are cut (with `…`).
pub const MAX_MESSAGE: usize = 1024;
/// Most bytes of a `policy`, `rule`, resource name or property value.
pub const MAX_VALUE: usize = 256;
/// Most bytes of the results' JSON in one report: etcd refuses objects over 1.5 MiB, and
/// policy-reporter and `kubectl` read whole reports.
pub const MAX_RESULTS_BYTES: usize = 1_000_000;
/// Most reports whose results are held in memory; the least recently used is forgotten
/// and read again (GET) when next needed.
pub const MAX_CACHED_REPORTS: usize = 64;

/// Reason of events of another cluster (an edge's, forwarded).
pub const OTHER_CLUSTER: &str =
    "an event of another cluster: reports are written in the hub's own cluster only";
/// Reason of events less severe than `minSeverity`.
pub const BELOW_MIN_SEVERITY: &str = "less severe than policyreport.minSeverity";
/// Reason of events without a namespace when `clusterReport` is off.
pub const NO_NAMESPACE: &str = "no namespace, and policyreport.clusterReport is off";

/// Report results pass at most 5000 per report (the CRD schema bound of `maxResults`).
const MAX_RESULTS_LIMIT: u32 = 5000;
/// Most events per `send`; each batch costs one apply per report it touches.
const BATCH_SIZE: usize = 500;

/// `severity` of a result: the CRD's enum.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResultSeverity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

/// `result` of a result: the CRD's enum.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

/// `metav1.Timestamp`: seconds and nanoseconds since the Unix epoch.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

/// `corev1.ObjectReference`, with the fields a report uses.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// One `PolicyReportResult` of v1alpha2 (its Go field `Subjects` is `resources` in JSON).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    #[serde(default)]
    pub source: String,
    pub policy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<ResultSeverity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Verdict>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scored: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// `PolicyReportSummary`: how many results have each verdict.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub pass: u32,
    pub fail: u32,
    pub warn: u32,
    pub error: u32,
    pub skip: u32,
}

/// A `PolicyReport` or `ClusterPolicyReport` as applied: the whole object this sink owns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ObjectReference>,
    pub summary: Summary,
    pub results: Vec<ReportResult>,
}

/// Which report an event goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportKey {
    /// The `PolicyReport` of a namespace.
    Namespace(String),
    /// The `ClusterPolicyReport`.
    Cluster,
}

impl ReportKey {
    pub fn kind(&self) -> &'static str {
        match self {
            ReportKey::Namespace(_) => "PolicyReport",
            ReportKey::Cluster => "ClusterPolicyReport",
        }
    }

    fn plural(&self) -> &'static str {
        match self {
            ReportKey::Namespace(_) => "policyreports",
            ReportKey::Cluster => "clusterpolicyreports",
        }
    }

    fn namespace(&self) -> Option<&str> {
        match self {
            ReportKey::Namespace(namespace) => Some(namespace),
            ReportKey::Cluster => None,
        }
    }

    /// `PolicyReport demo/falconer-demo` or `ClusterPolicyReport falconer-cluster`.
    fn describe(&self, name: &str) -> String {
        match self {
            ReportKey::Namespace(namespace) => format!("PolicyReport {namespace}/{name}"),
            ReportKey::Cluster => format!("ClusterPolicyReport {name}"),
        }
    }
}

/// The report's name: `<prefix>-<namespace>` or `<prefix>-cluster` (at most 40 + 1 + 63
/// characters, a DNS subdomain: the prefix and namespaces are DNS labels).
pub fn report_name(prefix: &str, key: &ReportKey) -> String {
    match key {
        ReportKey::Namespace(namespace) => format!("{prefix}-{namespace}"),
        ReportKey::Cluster => format!("{prefix}-cluster"),
    }
}

/// Falconer's severity on the report's scale.
pub fn severity_of(severity: Severity) -> ResultSeverity {
    match severity {
        Severity::Emergency | Severity::Alert | Severity::Critical => ResultSeverity::Critical,
        Severity::Error => ResultSeverity::High,
        Severity::Warning => ResultSeverity::Medium,
        Severity::Notice => ResultSeverity::Low,
        Severity::Informational | Severity::Debug => ResultSeverity::Info,
    }
}

/// `fail` for events at warning or worse, `warn` below.
pub fn verdict_of(severity: Severity) -> Verdict {
    if severity <= Severity::Warning {
        Verdict::Fail
    } else {
        Verdict::Warn
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = text[..end].to_owned();
    cut.push(ellipsis);
    cut
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// The API version of a workload kind Falconer knows (`Deployment` → `apps/v1`); empty for
/// others, which ObjectReference allows.
fn workload_api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "ReplicationController" | "Pod" => "v1",
        _ => "",
    }
}

/// What the result is about: the pod and its workload when known, else the node.
fn resources_of(event: &Event) -> Vec<ObjectReference> {
    let namespace = non_empty(&event.namespace).unwrap_or_default();
    let mut resources = Vec::new();
    if let Some(pod) = non_empty(&event.pod) {
        resources.push(ObjectReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: namespace.into(),
            name: truncate(pod, MAX_VALUE),
        });
    }
    if let Some(workload) = &event.workload
        && !workload.name.is_empty()
    {
        resources.push(ObjectReference {
            api_version: workload_api_version(&workload.kind).into(),
            kind: truncate(&workload.kind, MAX_VALUE),
            namespace: namespace.into(),
            name: truncate(&workload.name, MAX_VALUE),
        });
    }
    if resources.is_empty()
        && let Some(node) = non_empty(&event.node)
    {
        resources.push(ObjectReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: String::new(),
            name: truncate(node, MAX_VALUE),
        });
    }
    resources
}

/// The bounded properties of a result: strings only, each cut to [`MAX_VALUE`].
fn properties_of(event: &Event) -> BTreeMap<String, String> {
    let mut properties = BTreeMap::from([
        (EVENT_ID.to_owned(), event.id.to_string()),
        ("cluster".to_owned(), truncate(&event.cluster, MAX_VALUE)),
    ]);
    let optional = [
        ("groupId", &event.group),
        ("container", &event.container),
        ("image", &event.image),
        ("node", &event.node),
    ];
    for (key, value) in optional {
        if let Some(value) = non_empty(value) {
            properties.insert(key.to_owned(), truncate(value, MAX_VALUE));
        }
    }
    properties
}

/// The report result of `event` (pure).
pub fn result_of(event: &Event) -> ReportResult {
    let rule = truncate(&event.rule, MAX_VALUE);
    ReportResult {
        source: truncate(&event.source, MAX_VALUE),
        policy: rule.clone(),
        rule,
        category: event.kind.as_str().to_owned(),
        severity: Some(severity_of(event.severity)),
        timestamp: Some(Timestamp {
            seconds: event.time.timestamp(),
            // Below 10^9 by chrono's definition (leap seconds aside), so within i32.
            nanos: i32::try_from(event.time.timestamp_subsec_nanos().min(999_999_999)).unwrap_or(0),
        }),
        result: Some(verdict_of(event.severity)),
        scored: false,
        resources: resources_of(event),
        message: truncate(&event.message, MAX_MESSAGE),
        properties: properties_of(event),
    }
}

/// How many results have each verdict.
pub fn summary_of<'a>(results: impl IntoIterator<Item = &'a ReportResult>) -> Summary {
    let mut summary = Summary::default();
    for result in results {
        match result.result {
            Some(Verdict::Pass) => summary.pass += 1,
            Some(Verdict::Fail) => summary.fail += 1,
            Some(Verdict::Warn) => summary.warn += 1,
            Some(Verdict::Error) => summary.error += 1,
            Some(Verdict::Skip) => summary.skip += 1,
            None => {}
        }
    }
    summary
}

/// Appends `new` to `results` (skipping events already in the report, by event id), then
/// drops the oldest until at most `max` results and [`MAX_RESULTS_BYTES`] of their JSON are
/// left.
pub fn merge(results: &mut VecDeque<ReportResult>, new: Vec<ReportResult>, max: usize) {
    let mut known: HashSet<String> = results
        .iter()
        .filter_map(|r| r.properties.get(EVENT_ID).cloned())
        .collect();
    for result in new {
        if let Some(id) = result.properties.get(EVENT_ID)
            && !known.insert(id.clone())
        {
            continue;
        }
        results.push_back(result);
    }
    while results.len() > max.max(1) {
        results.pop_front();
    }
    // Serializing a struct of strings and numbers cannot fail.
    let size = |r: &ReportResult| serde_json::to_vec(r).map(|v| v.len() + 1).unwrap_or(0);
    let mut bytes: usize = results.iter().map(size).sum();
    while bytes > MAX_RESULTS_BYTES {
        match results.pop_front() {
            Some(oldest) => bytes -= size(&oldest),
            None => break,
        }
    }
}

/// The whole report object for `key` holding `results` (pure): name, labels, scope,
/// summary recomputed.
pub fn report(
    prefix: &str,
    consumer: &str,
    key: &ReportKey,
    results: &VecDeque<ReportResult>,
) -> Report {
    Report {
        api_version: API_VERSION.into(),
        kind: key.kind().into(),
        metadata: ObjectMeta {
            name: Some(report_name(prefix, key)),
            namespace: key.namespace().map(str::to_owned),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
                (CONSUMER_LABEL.to_owned(), consumer_label(consumer)),
            ])),
            ..ObjectMeta::default()
        },
        scope: key.namespace().map(|namespace| ObjectReference {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: namespace.into(),
        }),
        summary: summary_of(results),
        results: results.iter().cloned().collect(),
    }
}

/// What a failed request means for the events of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// May pass (the CRD being installed, RBAC being fixed, the API server busy or away).
    Retry(String),
    /// Will never pass for this report.
    Refused(String),
}

fn crd_missing() -> Failure {
    Failure::Retry(
        "the wgpolicyk8s.io PolicyReport CRD is not installed: the API server has no \
         policyreports/clusterpolicyreports.wgpolicyk8s.io/v1alpha2 (install it with Kyverno, \
         policy-reporter or kubernetes-sigs/wg-policy-prototypes); events wait and are \
         delivered once it exists"
            .into(),
    )
}

/// Reads a failure common to reads and applies.
fn classify_common(error: &kube::Error, what: &str) -> Failure {
    let kube::Error::Api(status) = error else {
        return Failure::Retry(format!("cannot reach the Kubernetes API server: {error}"));
    };
    let message = status.message.trim();
    match status.code {
        404 => crd_missing(),
        403 => Failure::Retry(format!(
            "forbidden: the hub's ServiceAccount needs `get`, `create` and `patch` on \
             `policyreports` and `clusterpolicyreports` in API group `wgpolicyk8s.io`, granted \
             by a ClusterRole (the chart's hub.policyreport: true); API server: {message}"
        )),
        401 => Failure::Retry(format!(
            "the API server does not accept the hub's credentials: {message}"
        )),
        408 | 409 | 429 | 500..=599 => Failure::Retry(format!(
            "the API server answered {}: {message}",
            status.code
        )),
        code => Failure::Refused(format!(
            "the API server refused the {what} ({code} {}): {message}",
            status.reason
        )),
    }
}

/// Reads a failed GET: `Ok` when the report does not exist yet (a 404 naming the object, as
/// the API server answers for a missing object of a known resource).
pub fn classify_read(error: &kube::Error, name: &str) -> Result<(), Failure> {
    if let kube::Error::Api(status) = error
        && status.code == 404
        && status.details.as_ref().is_some_and(|d| d.name == name)
    {
        return Ok(());
    }
    Err(classify_common(error, "report"))
}

/// Reads a failed apply. A 404 naming a namespace means the namespace is not in this
/// cluster: refused; any other 404 means the resource (the CRD) is missing: retried.
pub fn classify_apply(error: &kube::Error, what: &str) -> Failure {
    if let kube::Error::Api(status) = error
        && status.code == 404
        && status
            .details
            .as_ref()
            .is_some_and(|d| d.kind == "namespaces")
    {
        return Failure::Refused(format!(
            "{what}: its namespace does not exist in this cluster: {}",
            status.message.trim()
        ));
    }
    classify_common(error, what)
}

/// The results held for one report, and when it was last used (for eviction).
#[derive(Debug)]
struct Held {
    results: VecDeque<ReportResult>,
    used: u64,
}

/// A `policyreport` consumer's sink.
pub struct PolicyReportSink {
    client: Client,
    consumer: String,
    prefix: String,
    max_results: usize,
    min_severity: Option<Severity>,
    cluster_report: bool,
    /// The hub's own cluster: the only one whose events are reported.
    cluster: String,
    held: HashMap<ReportKey, Held>,
    clock: u64,
}

fn config_error(consumer: &str, message: String) -> DeliveryError {
    DeliveryError::Config {
        consumer: consumer.to_owned(),
        message,
    }
}

impl PolicyReportSink {
    /// Checks the settings; nothing is sent to the API server here (a missing CRD shows up
    /// as retried sends, never as a sink that cannot start).
    pub fn build(
        consumer: &str,
        settings: &PolicyReportConfig,
        home: &Home,
    ) -> Result<PolicyReportSink, DeliveryError> {
        if settings.max_results == 0 || settings.max_results > MAX_RESULTS_LIMIT {
            return Err(config_error(
                consumer,
                format!(
                    "policyreport.maxResults: {} is not between 1 and {MAX_RESULTS_LIMIT}",
                    settings.max_results
                ),
            ));
        }
        let prefix = &settings.name_prefix;
        if prefix.len() > 40 || !is_dns_label(prefix) {
            return Err(config_error(
                consumer,
                format!(
                    "policyreport.namePrefix: `{prefix}` is not a DNS label of at most 40 \
                     characters (lower-case letters, digits and `-`)"
                ),
            ));
        }
        Ok(PolicyReportSink {
            client: home.client.clone(),
            consumer: consumer.to_owned(),
            prefix: prefix.clone(),
            max_results: settings.max_results as usize,
            min_severity: settings.min_severity,
            cluster_report: settings.cluster_report,
            cluster: home.cluster.clone(),
            held: HashMap::new(),
            clock: 0,
        })
    }

    /// The report `event` goes to, or why it goes to none.
    fn place(&self, event: &Event) -> Result<ReportKey, ItemResult> {
        if event.cluster != self.cluster {
            return Err(ItemResult::Skipped(OTHER_CLUSTER));
        }
        if self.min_severity.is_some_and(|min| event.severity > min) {
            return Err(ItemResult::Skipped(BELOW_MIN_SEVERITY));
        }
        match non_empty(&event.namespace) {
            Some(namespace) if is_dns_label(namespace) => {
                Ok(ReportKey::Namespace(namespace.to_owned()))
            }
            Some(namespace) => Err(ItemResult::Refused(format!(
                "namespace `{}` is not a Kubernetes namespace name (a DNS label), so it has \
                 no PolicyReport",
                truncate(namespace, MAX_VALUE)
            ))),
            None if self.cluster_report => Ok(ReportKey::Cluster),
            None => Err(ItemResult::Skipped(NO_NAMESPACE)),
        }
    }

    fn api(&self, key: &ReportKey) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, key.kind());
        let resource = ApiResource::from_gvk_with_plural(&gvk, key.plural());
        match key {
            ReportKey::Namespace(namespace) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            ReportKey::Cluster => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// The results the report holds in the cluster (none when it does not exist yet).
    async fn read(&self, key: &ReportKey) -> Result<VecDeque<ReportResult>, Failure> {
        let name = report_name(&self.prefix, key);
        let object = match self.api(key).get(&name).await {
            Ok(object) => object,
            Err(error) => {
                return classify_read(&error, &name).map(|()| VecDeque::new());
            }
        };
        let results = object.data.get("results").cloned().unwrap_or_default();
        if results.is_null() {
            return Ok(VecDeque::new());
        }
        match serde_json::from_value::<VecDeque<ReportResult>>(results) {
            Ok(results) => Ok(results),
            Err(error) => {
                // Not a shape this sink wrote: replaced by the next apply rather than
                // blocking the consumer for good.
                tracing::warn!(
                    consumer = self.consumer,
                    report = key.describe(&name),
                    %error,
                    "Cannot read the report's results; it is rewritten with the new ones only."
                );
                Ok(VecDeque::new())
            }
        }
    }

    /// Adds `new` to the report of `key` and applies the whole report.
    async fn apply(&mut self, key: &ReportKey, new: Vec<ReportResult>) -> Result<(), Failure> {
        self.clock += 1;
        let mut results = match self.held.get_mut(key) {
            Some(held) => {
                held.used = self.clock;
                held.results.clone()
            }
            None => {
                let results = self.read(key).await?;
                self.hold(key, results.clone());
                results
            }
        };
        merge(&mut results, new, self.max_results);
        let object = report(&self.prefix, &self.consumer, key, &results);
        let name = report_name(&self.prefix, key);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(error) = self
            .api(key)
            .patch(&name, &params, &Patch::Apply(&object))
            .await
        {
            // Held results stay as they were read or last applied, so a retry adds the same
            // events once; a report refused for good (its namespace gone) is forgotten.
            let failure = classify_apply(&error, &key.describe(&name));
            if matches!(failure, Failure::Refused(_)) {
                self.held.remove(key);
            }
            return Err(failure);
        }
        self.hold(key, results);
        Ok(())
    }

    /// Keeps `results` as what the report of `key` holds, forgetting the least recently
    /// used report past [`MAX_CACHED_REPORTS`].
    fn hold(&mut self, key: &ReportKey, results: VecDeque<ReportResult>) {
        self.held.insert(
            key.clone(),
            Held {
                results,
                used: self.clock,
            },
        );
        while self.held.len() > MAX_CACHED_REPORTS {
            let Some(oldest) = self
                .held
                .iter()
                .min_by_key(|(_, held)| held.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            self.held.remove(&oldest);
        }
    }

    /// How many reports' results are held in memory.
    pub fn held_reports(&self) -> usize {
        self.held.len()
    }
}

impl FromConsumer for PolicyReportSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let home = declared.home.ok_or_else(|| {
            declared.config(
                "type policyreport writes PolicyReports in the hub's own cluster, and this hub \
                 has no connection to a cluster: set kubernetes.settings: on (the hub then \
                 connects with KUBECONFIG or its pod's service account and takes its consumers \
                 from Setting objects; `auto` connects only in the `hub` subcommand inside a \
                 pod)"
                    .into(),
            )
        })?;
        let settings = declared.consumer.policyreport.clone().unwrap_or_default();
        PolicyReportSink::build(declared.name, &settings, home)
    }
}

impl Sink for PolicyReportSink {
    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let mut results: Vec<Option<ItemResult>> = vec![None; events.len()];
        // Reports in the order the batch first touches them, each with its events.
        let mut order: Vec<ReportKey> = Vec::new();
        let mut members: HashMap<ReportKey, Vec<usize>> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            match self.place(event) {
                Ok(key) => {
                    if !members.contains_key(&key) {
                        order.push(key.clone());
                    }
                    members.entry(key).or_default().push(index);
                }
                Err(result) => results[index] = Some(result),
            }
        }
        let mut failed: Option<String> = None;
        for key in order {
            let indices = members.remove(&key).unwrap_or_default();
            let outcome = match &failed {
                // What failed (the API server, the CRD, RBAC) fails for every report: stop
                // asking.
                Some(reason) => Err(Failure::Retry(reason.clone())),
                None => {
                    let new = indices.iter().map(|&i| result_of(&events[i])).collect();
                    self.apply(&key, new).await
                }
            };
            let result = match outcome {
                Ok(()) => ItemResult::Delivered,
                Err(Failure::Refused(reason)) => ItemResult::Refused(reason),
                Err(Failure::Retry(reason)) => {
                    failed = Some(reason.clone());
                    ItemResult::Retry(reason)
                }
            };
            for index in indices {
                results[index] = Some(result.clone());
            }
        }
        let results: Vec<ItemResult> = results
            .into_iter()
            .map(|r| r.unwrap_or(ItemResult::Delivered))
            .collect();
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            return Outcome::Delivered;
        }
        let settled = results
            .iter()
            .any(|r| matches!(r, ItemResult::Delivered | ItemResult::Refused(_)));
        match failed {
            // Nothing reached a report: the whole batch simply goes again.
            Some(reason) if !settled => Outcome::Retry(reason),
            _ => Outcome::Each(results),
        }
    }

    fn preview(&self, event: &Event) -> serde_json::Value {
        let result = serde_json::to_value(result_of(event)).unwrap_or_default();
        match self.place(event) {
            Ok(key) => serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": key.kind(),
                "namespace": key.namespace(),
                "name": report_name(&self.prefix, &key),
                "result": result,
            }),
            Err(ItemResult::Skipped(why)) => serde_json::json!({"skipped": why, "result": result}),
            Err(ItemResult::Refused(why) | ItemResult::Retry(why)) => {
                serde_json::json!({"refused": why, "result": result})
            }
            Err(ItemResult::Delivered) => serde_json::json!({"result": result}),
        }
    }
}

#[cfg(test)]
#[path = "policyreport_tests.rs"]
mod tests;
