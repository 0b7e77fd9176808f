//! The `phoenix` sink: turns events into Phoenix `SecurityEvent` objects
//! (`amtd.r6security.com/v1beta1`, cluster-scoped) in the hub's own cluster, so Phoenix's
//! AdaptiveMovingTargetDefense strategies act on Falconer's alerts exactly as they act on
//! those of Phoenix's own integrators (DESIGN.md §6, shared/reference/phoenix.md).
//!
//! This module owns the payload mapping ([`security_event`], pure), the object name
//! ([`object_name`]), the reading of the API server's answers ([`classify`]), the optional
//! dedup window and the optional TTL cleanup of the objects it created.
//!
//! Wiring: `PhoenixSink::build(consumer_name, &settings, &home)` inside the Tokio runtime,
//! then hand the sink to the worker. Dropping the sink stops its cleanup task.
//!
//! - **Object names** are `falconer-<consumer>-<event id as 32 hex digits>`: deterministic,
//!   so a create the worker repeats (after a timeout, a restart) meets `409 AlreadyExists`,
//!   which counts as delivered. The consumer is part of the name because two Phoenix
//!   consumers may receive the same event with different `ruleSource`s.
//! - **Scope**: only events of the hub's own cluster (never an edge's, forwarded), outside
//!   `denyNamespaces` (default `kube-system` and the hub's namespace), and of
//!   `requireSources` when given; others are skipped with the reason. A sender cannot steer
//!   Phoenix at the control plane or at the hub, nor past the cap below.
//! - **Rate cap** (`maxPerMinute`, default 30): past it the circuit opens for 5 minutes and
//!   events go to the dead letters with the reason (replayable), so a burst of alerts, real
//!   or forged, cannot restart every pod of the cluster.
//! - **Dedup window** (`dedupWindow`): at most one object per (`rule.type`, target) within
//!   the window, measured on the hub's receipt times (a sender cannot step past it by
//!   changing the time its alerts claim). Kept in memory: a hub restart forgets it (at worst
//!   one extra object per rule and pod).
//! - **TTL** (`ttl`): a task lists this consumer's objects (by label, never anyone else's)
//!   every `ttl / 10` (1 minute to 1 hour) and deletes those created longer than `ttl` ago.
//!   A task rather than a step inside `send`, because old objects must go even when no new
//!   events come. Phoenix never deletes SecurityEvents itself.
//! - **Errors**: 409 → delivered; 400/422 and other 4xx → refused with the API server's
//!   message (dead letter); 404 (Phoenix's CRD not installed), 403 (RBAC), 401, 408, 429, 5xx
//!   and connection errors → retry, naming the cause. Events wait in the store meanwhile.

use crate::Home;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::{Declared, FromConsumer};
use chrono::{DateTime, TimeDelta, Utc};
use falconer_model::crd::PhoenixConfig;
use falconer_store::Event;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// `rule.source` of Falco events unless the consumer says otherwise: what Phoenix's own
/// falco-integrator writes, so existing strategies keep matching.
pub const FALCO_RULE_SOURCE: &str = "FalcoIntegrator";
/// `rule.source` of KubeArmor events unless the consumer says otherwise: what Phoenix's own
/// kubearmor-integrator writes, so strategies written for it match.
pub const KUBEARMOR_RULE_SOURCE: &str = "KubeArmorIntegrator";
/// Field manager of the creates and value of the `app.kubernetes.io/managed-by` label.
pub const MANAGED_BY: &str = "falconer-hub";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Which consumer created an object; the TTL cleanup only lists its own consumer's.
pub const CONSUMER_LABEL: &str = "falconer.io/consumer";
/// The Falconer event an object stands for.
pub const EVENT_ID_ANNOTATION: &str = "falconer.io/event-id";

/// Reason of events that cannot become a SecurityEvent: Phoenix acts on pods only.
pub const NO_POD: &str = "no pod";
/// Reason of events dropped by the dedup window.
pub const DUPLICATE: &str = "duplicate within dedupWindow";
/// Reason of events of another cluster (an edge's, forwarded): Phoenix acts here only.
pub const OTHER_CLUSTER: &str = "an event of another cluster: Phoenix acts on the hub's own";
/// Reason of events in a namespace of `denyNamespaces`.
pub const DENIED_NAMESPACE: &str = "its namespace is on the deny list (denyNamespaces)";
/// Reason of events of a source not in `requireSources`.
pub const OTHER_SOURCE: &str = "its source is not in requireSources";
/// Reason of events without the hub's bound-sender tag under `requireBoundSender`.
pub const UNBOUND_SENDER: &str =
    "not posted with a credential bound to this cluster (requireBoundSender)";
/// Default of `maxPerMinute`.
pub const MAX_PER_MINUTE: u32 = 30;
/// How long the circuit stays open once `maxPerMinute` was reached.
pub const CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(300);

/// Creates are one request per event; a batch bounds how long one `send` takes.
const BATCH_SIZE: usize = 100;
/// Page size of the TTL cleanup's list requests.
const CLEANUP_PAGE: u32 = 500;

/// Phoenix's `SecurityEvent` (spec only: Phoenix's status is an empty object nobody writes).
/// The schema is Phoenix's, not ours, so no schema is derived here.
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[kube(
    group = "amtd.r6security.com",
    version = "v1beta1",
    kind = "SecurityEvent",
    plural = "securityevents",
    schema = "disabled",
    derive = "PartialEq"
)]
pub struct SecurityEventSpec {
    /// Affected pods, each `<namespace>/<pod>`.
    pub targets: Vec<String>,
    pub rule: Rule,
    pub description: String,
}

/// What Phoenix compares with a strategy's rule: all three strings, exactly, including
/// empty ones. Always serialized, as Phoenix's Go types do.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(rename = "type", default)]
    pub rule_type: String,
    #[serde(default)]
    pub threat_level: String,
    #[serde(default)]
    pub source: String,
}

/// The part of names and label values that identifies a consumer: consumer names are DNS
/// labels in Settings, but config-file consumers are not checked by an API server.
pub(crate) fn consumer_label(consumer: &str) -> String {
    let cleaned: String = consumer
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "consumer".into()
    } else {
        trimmed.into()
    }
}

/// The SecurityEvent name of `event` for `consumer`: a valid DNS subdomain (at most 105
/// characters), the same on every attempt.
pub fn object_name(consumer: &str, event: Uuid) -> String {
    format!("falconer-{}-{}", consumer_label(consumer), event.simple())
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// `rule.source` for `event`: the consumer's `ruleSource`, else what Phoenix's own
/// integrator of the event's source writes (`FalcoIntegrator`, `KubeArmorIntegrator`), else
/// the event's source.
pub fn rule_source<'a>(configured: Option<&'a str>, event: &'a Event) -> &'a str {
    match configured {
        Some(source) => source,
        None if event.source == "falco" => FALCO_RULE_SOURCE,
        None if event.source == "kubearmor" => KUBEARMOR_RULE_SOURCE,
        None => &event.source,
    }
}

/// The SecurityEvent for `event`, or the reason it has none ([`NO_POD`]).
pub fn security_event(
    consumer: &str,
    configured_source: Option<&str>,
    event: &Event,
) -> Result<SecurityEvent, &'static str> {
    let (Some(namespace), Some(pod)) = (non_empty(&event.namespace), non_empty(&event.pod)) else {
        return Err(NO_POD);
    };
    let spec = SecurityEventSpec {
        targets: vec![format!("{namespace}/{pod}")],
        rule: Rule {
            rule_type: event.rule.clone(),
            threat_level: event.severity_raw.clone(),
            source: rule_source(configured_source, event).to_owned(),
        },
        description: event.message.clone(),
    };
    Ok(SecurityEvent {
        metadata: ObjectMeta {
            name: Some(object_name(consumer, event.id)),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (CONSUMER_LABEL.to_owned(), consumer_label(consumer)),
            ])),
            annotations: Some(BTreeMap::from([(
                EVENT_ID_ANNOTATION.to_owned(),
                event.id.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec,
    })
}

/// What a failed create means for the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// May pass (Phoenix being installed, RBAC being fixed, API server busy or away).
    Retry(String),
    /// Will never pass for this object.
    Refused(String),
}

/// Reads a failed create: `Ok` when the object exists anyway (409, an earlier attempt made it).
pub fn classify(error: &kube::Error) -> Result<(), Failure> {
    let kube::Error::Api(status) = error else {
        return Err(Failure::Retry(format!(
            "cannot reach the Kubernetes API server: {error}"
        )));
    };
    let message = status.message.trim();
    match status.code {
        409 => Ok(()),
        404 => Err(Failure::Retry(
            "Phoenix is not installed: the API server has no securityevents.amtd.r6security.com/v1beta1; \
             events wait and are delivered once the SecurityEvent CRD exists"
                .into(),
        )),
        403 => Err(Failure::Retry(format!(
            "forbidden: the hub's ServiceAccount needs `create` (and, with `ttl`, `list` and \
             `delete`) on `securityevents` in API group `amtd.r6security.com`, granted by a \
             ClusterRole since the resource is cluster-scoped; API server: {message}"
        ))),
        401 => Err(Failure::Retry(format!(
            "the API server does not accept the hub's credentials: {message}"
        ))),
        408 | 429 | 500..=599 => Err(Failure::Retry(format!(
            "the API server answered {}: {message}",
            status.code
        ))),
        code => Err(Failure::Refused(format!(
            "the API server refused the SecurityEvent ({code} {}): {message}",
            status.reason
        ))),
    }
}

/// Parses `30s`, `5m`, `2h`, `1d`, `2w` with the units `units` allows.
fn parse_duration(text: &str, units: &str) -> Option<TimeDelta> {
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if number <= 0 || !units.contains(unit) {
        return None;
    }
    match unit {
        's' => TimeDelta::try_seconds(number),
        'm' => TimeDelta::try_minutes(number),
        'h' => TimeDelta::try_hours(number),
        'd' => TimeDelta::try_days(number),
        'w' => TimeDelta::try_weeks(number),
        _ => None,
    }
}

/// The global cap on SecurityEvents per minute: a burst of alerts (or of forged ones) past it
/// opens the circuit, and nothing more is created until it closes.
#[derive(Debug)]
struct Circuit {
    max_per_minute: usize,
    created: std::collections::VecDeque<std::time::Instant>,
    open_until: Option<std::time::Instant>,
}

impl Circuit {
    fn new(max_per_minute: u32) -> Circuit {
        Circuit {
            max_per_minute: max_per_minute.max(1) as usize,
            created: std::collections::VecDeque::new(),
            open_until: None,
        }
    }

    /// Why no object may be created now, if so.
    fn refuses(&mut self, consumer: &str, now: std::time::Instant) -> Option<String> {
        if let Some(until) = self.open_until {
            if now < until {
                return Some(self.reason());
            }
            self.open_until = None;
            tracing::info!(
                consumer,
                "Phoenix circuit closed: creating SecurityEvents again"
            );
        }
        while self
            .created
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.created.pop_front();
        }
        if self.created.len() >= self.max_per_minute {
            self.open_until = Some(now + CIRCUIT_OPEN_FOR);
            tracing::warn!(
                consumer,
                max_per_minute = self.max_per_minute,
                "Phoenix circuit open: too many SecurityEvents within a minute; events go to the dead letters for 5 minutes"
            );
            return Some(self.reason());
        }
        None
    }

    fn record(&mut self, now: std::time::Instant) {
        self.created.push_back(now);
    }

    fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    fn reason(&self) -> String {
        format!(
            "circuit open: {} SecurityEvents were created within a minute (maxPerMinute); \
             nothing is created for 5 minutes; replay this dead letter to act on it",
            self.max_per_minute
        )
    }
}

/// The last SecurityEvent created per (`rule.type`, target), by receipt time.
#[derive(Debug, Default)]
struct Dedup {
    window: TimeDelta,
    last: HashMap<(String, String), DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
}

impl Dedup {
    fn new(window: TimeDelta) -> Dedup {
        Dedup {
            window,
            ..Dedup::default()
        }
    }

    /// Whether an object for this rule and target was created less than a window away from
    /// `time` (either side: events arrive in commit order, not strictly in event time).
    fn is_duplicate(&self, key: &(String, String), time: DateTime<Utc>) -> bool {
        self.last
            .get(key)
            .is_some_and(|last| (time - *last).abs() < self.window)
    }

    fn record(&mut self, key: (String, String), time: DateTime<Utc>) {
        let last = self.last.entry(key).or_insert(time);
        *last = (*last).max(time);
        self.newest = Some(self.newest.map_or(time, |newest| newest.max(time)));
    }

    /// Forgets what no future event within a window of the newest can collide with, so memory
    /// stays bounded by the distinct rules and pods of one window.
    fn prune(&mut self) {
        if let Some(newest) = self.newest {
            let horizon = newest - self.window - self.window;
            self.last.retain(|_, last| *last > horizon);
        }
    }
}

/// A `phoenix` consumer's sink.
pub struct PhoenixSink {
    api: Api<SecurityEvent>,
    consumer: String,
    rule_source: Option<String>,
    dedup: Option<Dedup>,
    cleanup: Option<JoinHandle<()>>,
    /// The hub's own cluster: the only one Phoenix acts on.
    cluster: String,
    deny_namespaces: Vec<String>,
    require_sources: Vec<String>,
    require_bound_sender: bool,
    circuit: Circuit,
}

impl PhoenixSink {
    /// Checks the settings and, when `ttl` is set, starts the cleanup task (so this must be
    /// called inside the Tokio runtime). Nothing is sent to the API server here: a missing
    /// CRD shows up as retried sends, never as a sink that cannot start.
    pub fn build(
        consumer: &str,
        settings: &PhoenixConfig,
        home: &Home,
    ) -> Result<PhoenixSink, DeliveryError> {
        let client = home.client.clone();
        let dedup = settings
            .dedup_window
            .as_deref()
            .map(|text| {
                parse_duration(text, "smh").ok_or_else(|| DeliveryError::InvalidDuration {
                    field: "dedupWindow",
                    value: text.into(),
                    example: "30s, 5m or 1h",
                })
            })
            .transpose()?
            .map(Dedup::new);
        let ttl = settings
            .ttl
            .as_deref()
            .map(|text| {
                parse_duration(text, "hdw").ok_or_else(|| DeliveryError::InvalidDuration {
                    field: "ttl",
                    value: text.into(),
                    example: "12h, 30d or 2w",
                })
            })
            .transpose()?;
        let api: Api<SecurityEvent> = Api::all(client);
        let cleanup = match ttl {
            Some(ttl) => {
                let runtime =
                    tokio::runtime::Handle::try_current().map_err(|_| DeliveryError::NoRuntime)?;
                Some(runtime.spawn(cleanup_loop(api.clone(), consumer.to_owned(), ttl)))
            }
            None => None,
        };
        Ok(PhoenixSink {
            api,
            consumer: consumer.to_owned(),
            rule_source: settings.rule_source.clone(),
            dedup,
            cleanup,
            cluster: home.cluster.clone(),
            deny_namespaces: settings
                .deny_namespaces
                .clone()
                .unwrap_or_else(|| vec!["kube-system".into(), home.namespace.clone()]),
            require_sources: settings.require_sources.clone(),
            require_bound_sender: settings.require_bound_sender,
            circuit: Circuit::new(settings.max_per_minute.unwrap_or(MAX_PER_MINUTE)),
        })
    }

    /// Why Phoenix must not act on `event` at all, if so: another cluster's event, a denied
    /// namespace, a source not required.
    fn out_of_scope(&self, event: &Event) -> Option<&'static str> {
        if event.cluster != self.cluster {
            return Some(OTHER_CLUSTER);
        }
        if event
            .namespace
            .as_ref()
            .is_some_and(|ns| self.deny_namespaces.contains(ns))
        {
            return Some(DENIED_NAMESPACE);
        }
        if !self.require_sources.is_empty() && !self.require_sources.contains(&event.source) {
            return Some(OTHER_SOURCE);
        }
        let bound = |t: &String| t.starts_with(falconer_model::event::BOUND_SENDER_TAG);
        if self.require_bound_sender && !event.tags.iter().any(bound) {
            return Some(UNBOUND_SENDER);
        }
        None
    }

    /// Whether the rate cap stopped the creation of SecurityEvents for now.
    pub fn circuit_open(&self) -> bool {
        self.circuit.is_open()
    }

    async fn create(&self, object: &SecurityEvent) -> Result<(), Failure> {
        let params = PostParams {
            field_manager: Some(MANAGED_BY.into()),
            ..PostParams::default()
        };
        match self.api.create(&params, object).await {
            Ok(_) => Ok(()),
            Err(error) => classify(&error),
        }
    }
}

impl FromConsumer for PhoenixSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let home = declared.home.ok_or_else(|| {
            declared.config(
                "type phoenix creates SecurityEvents in the hub's own cluster, and this hub has \
                 no connection to a cluster: set kubernetes.settings: on (the hub then connects \
                 with KUBECONFIG or its pod's service account and takes its consumers from \
                 Setting objects; `auto` connects only in the `hub` subcommand inside a pod)"
                    .into(),
            )
        })?;
        let settings = declared.consumer.phoenix.clone().unwrap_or_default();
        PhoenixSink::build(declared.name, &settings, home)
            .map_err(|e| declared.config(e.to_string()))
    }
}

impl Drop for PhoenixSink {
    fn drop(&mut self) {
        if let Some(cleanup) = &self.cleanup {
            cleanup.abort();
        }
    }
}

impl Sink for PhoenixSink {
    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let mut results = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if let Some(reason) = self.out_of_scope(event) {
                results.push(ItemResult::Skipped(reason));
                continue;
            }
            let object = match security_event(&self.consumer, self.rule_source.as_deref(), event) {
                Ok(object) => object,
                Err(reason) => {
                    results.push(ItemResult::Skipped(reason));
                    continue;
                }
            };
            let key = (
                object.spec.rule.rule_type.clone(),
                object.spec.targets.concat(),
            );
            if self
                .dedup
                .as_ref()
                .is_some_and(|dedup| dedup.is_duplicate(&key, event.received_at))
            {
                results.push(ItemResult::Skipped(DUPLICATE));
                continue;
            }
            let now = std::time::Instant::now();
            if let Some(reason) = self.circuit.refuses(&self.consumer, now) {
                results.push(ItemResult::Refused(reason));
                continue;
            }
            match self.create(&object).await {
                Ok(()) => {
                    self.circuit.record(now);
                    if let Some(dedup) = &mut self.dedup {
                        dedup.record(key, event.received_at);
                    }
                    results.push(ItemResult::Delivered);
                }
                Err(Failure::Refused(reason)) => results.push(ItemResult::Refused(reason)),
                Err(Failure::Retry(reason)) => {
                    // What failed here fails for every later event too (the API server, the
                    // CRD, RBAC): stop asking. When nothing was created or refused yet, the
                    // whole batch simply goes again.
                    let settled = results
                        .iter()
                        .any(|r| matches!(r, ItemResult::Delivered | ItemResult::Refused(_)));
                    if !settled {
                        return Outcome::Retry(reason);
                    }
                    results.extend(std::iter::repeat_n(
                        ItemResult::Retry(reason),
                        events.len() - index,
                    ));
                    return Outcome::Each(results);
                }
            }
        }
        if let Some(dedup) = &mut self.dedup {
            dedup.prune();
        }
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            Outcome::Delivered
        } else {
            Outcome::Each(results)
        }
    }
}

/// Label selector of `consumer`'s objects.
pub fn cleanup_selector(consumer: &str) -> String {
    format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{CONSUMER_LABEL}={}",
        consumer_label(consumer)
    )
}

/// Names of the objects created at or before `now - ttl` (objects without a creation time,
/// which the API server always sets, are left alone).
pub fn expired(objects: &[SecurityEvent], now: DateTime<Utc>, ttl: TimeDelta) -> Vec<String> {
    let horizon = (now - ttl).timestamp();
    objects
        .iter()
        .filter(|o| {
            o.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0.as_second() <= horizon)
        })
        .map(|o| o.name_any())
        .collect()
}

/// One cleanup pass: deletes `consumer`'s SecurityEvents older than `ttl`, page by page.
/// Returns how many were deleted. Without Phoenix's CRD there is nothing to delete.
pub async fn cleanup_expired(
    api: &Api<SecurityEvent>,
    consumer: &str,
    ttl: TimeDelta,
    now: DateTime<Utc>,
) -> Result<usize, DeliveryError> {
    let mut params = ListParams::default()
        .labels(&cleanup_selector(consumer))
        .limit(CLEANUP_PAGE);
    let mut deleted = 0;
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(deleted),
            Err(error) => return Err(cleanup_error(error)),
        };
        for name in expired(&page.items, now, ttl) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                // Someone (another pass, a person) was faster.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(cleanup_error(error)),
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(deleted),
        }
    }
}

fn cleanup_error(error: kube::Error) -> DeliveryError {
    DeliveryError::Kube {
        doing: "SecurityEvent cleanup".into(),
        message: error.to_string(),
    }
}

/// How often the cleanup runs: a tenth of the TTL, between a minute and an hour.
fn cleanup_period(ttl: TimeDelta) -> Duration {
    let tenth = ttl.num_seconds().max(0) as u64 / 10;
    Duration::from_secs(tenth.clamp(60, 3600))
}

async fn cleanup_loop(api: Api<SecurityEvent>, consumer: String, ttl: TimeDelta) {
    let mut tick = tokio::time::interval(cleanup_period(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match cleanup_expired(&api, &consumer, ttl, Utc::now()).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(consumer, deleted, "Deleted expired SecurityEvents.")
            }
            Err(error) => {
                tracing::warn!(consumer, %error, "Cannot delete expired SecurityEvents; trying again later.")
            }
        }
    }
}

#[cfg(test)]
#[path = "phoenix_tests.rs"]
mod tests;
