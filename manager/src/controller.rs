//! The two controllers: `reconcile_policy` applies a Policy's plan and rebuilds its status;
//! `reconcile_setting` checks a Setting against the others and its Secrets and writes its
//! conditions. Both are free functions of (object, context); `error_policy` logs, counts and
//! requeues with a per-object exponential backoff.

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::objects::{self, Agent, Child, ChildKey, ChildKind, FIELD_MANAGER};
use crate::setting_checks;
use crate::status::{self, AgentOutcome};
use falconer_model::crd::{Policy, PolicyStatus, Setting, SettingStatus};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::instrument;

/// How often a healthy object is looked at again even if nothing changed (Secrets a Setting
/// names are not watched; CronJob status changes are).
pub const RESYNC: Duration = Duration::from_secs(300);
/// First and longest wait after a failed pass.
pub const BACKOFF_MIN: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What both controllers share.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Every Setting, as the Setting controller's watch sees them.
    pub settings: Store<Setting>,
    /// The cluster name when no Setting names one.
    pub default_cluster: String,
    /// The hub's (and manager's) namespace, where Setting Secrets live.
    pub namespace: String,
    /// What a Policy may ask for (`manager:` in the configuration).
    pub limits: Limits,
    /// Consecutive failures per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        settings: Store<Setting>,
        default_cluster: String,
        namespace: String,
    ) -> Context {
        Context {
            client,
            recorder,
            metrics,
            settings,
            default_cluster,
            namespace,
            limits: Limits::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The same context, refusing Policies outside `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Context {
        self.limits = limits;
        self
    }

    fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Counts a failure of `key` and returns how long to wait before the next attempt.
    fn backoff(&self, key: &str) -> Duration {
        let attempt = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_owned()).or_default();
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        backoff(attempt)
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "Publishing an event failed");
        }
    }
}

/// 5 s, 10 s, 20 s, … capped at 5 min.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    (BACKOFF_MIN * factor).min(BACKOFF_MAX)
}

/// What an apply did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// Compares the object before and after an apply. `generation` moves only when the spec
/// changes, so status churn on a DaemonSet between the two reads is not an update;
/// objects without a generation (ConfigMaps, ServiceAccounts, RBAC) compare their
/// `resourceVersion`.
pub fn change(before: Option<&ObjectMeta>, after: &ObjectMeta) -> Change {
    let Some(before) = before else {
        return Change::Created;
    };
    let moved = match (before.generation, after.generation) {
        (Some(a), Some(b)) => a != b,
        _ => before.resource_version != after.resource_version,
    };
    if moved {
        Change::Updated
    } else {
        Change::Unchanged
    }
}

/// Server-side apply of `body` after reading the current object, so the change is known.
async fn apply<K>(api: Api<K>, name: &str, body: &serde_json::Value) -> Result<(K, Change)>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let before = api.get_opt(name).await?;
    let after = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    let change = change(before.as_ref().map(|b| b.meta()), after.meta());
    Ok((after, change))
}

/// The applied object, when its status feeds the Policy's status.
enum Applied {
    DaemonSet(Box<DaemonSet>),
    CronJob(Box<CronJob>),
    Other,
}

async fn apply_child(client: &Client, child: &Child) -> Result<(Applied, Change)> {
    let key = child.key();
    let ns = key.namespace.as_deref().unwrap_or_default();
    let body = child.to_value();
    let name = key.name.as_str();
    Ok(match child {
        Child::ServiceAccount(_) => {
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
            (Applied::Other, apply(api, name, &body).await?.1)
        }
        Child::ConfigMap(_) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            (Applied::Other, apply(api, name, &body).await?.1)
        }
        Child::ClusterRoleBinding(_) => {
            let api: Api<ClusterRoleBinding> = Api::all(client.clone());
            match apply(api.clone(), name, &body).await {
                // `roleRef` cannot change (bindings made by an older manager name another
                // role): replace the binding.
                Err(Error::Kube(kube::Error::Api(status)))
                    if status.code == 422 && status.message.contains("roleRef") =>
                {
                    tracing::info!(object = %key, "Replacing a binding whose roleRef changed");
                    api.delete(name, &DeleteParams::background()).await?;
                    (Applied::Other, apply(api, name, &body).await?.1)
                }
                other => (Applied::Other, other?.1),
            }
        }
        Child::DaemonSet(_) => {
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
            let (ds, change) = apply(api, name, &body).await?;
            (Applied::DaemonSet(Box::new(ds)), change)
        }
        Child::CronJob(_) => {
            let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
            let (cron, change) = apply(api, name, &body).await?;
            (Applied::CronJob(Box::new(cron)), change)
        }
    })
}

/// Deletes an object; false when it was already gone.
async fn delete_child(client: &Client, key: &ChildKey) -> Result<bool> {
    async fn delete<K>(api: Api<K>, name: &str) -> Result<bool>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    let ns = key.namespace.as_deref().unwrap_or_default();
    let c = client.clone();
    match key.kind {
        ChildKind::ServiceAccount => {
            delete(Api::<ServiceAccount>::namespaced(c, ns), &key.name).await
        }
        ChildKind::ConfigMap => delete(Api::<ConfigMap>::namespaced(c, ns), &key.name).await,
        ChildKind::DaemonSet => delete(Api::<DaemonSet>::namespaced(c, ns), &key.name).await,
        ChildKind::CronJob => delete(Api::<CronJob>::namespaced(c, ns), &key.name).await,
        ChildKind::ClusterRoleBinding => delete(Api::<ClusterRoleBinding>::all(c), &key.name).await,
    }
}

fn reference(key: &ChildKey) -> ObjectReference {
    let api_version = match key.kind {
        ChildKind::ServiceAccount | ChildKind::ConfigMap => "v1",
        ChildKind::DaemonSet => "apps/v1",
        ChildKind::CronJob => "batch/v1",
        ChildKind::ClusterRoleBinding => "rbac.authorization.k8s.io/v1",
    };
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(key.kind.as_str().into()),
        name: Some(key.name.clone()),
        namespace: key.namespace.clone(),
        ..ObjectReference::default()
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The cluster name agents stamp on reports: the Settings', else the manager's default.
pub fn cluster_name(ctx: &Context) -> String {
    let all: Vec<Setting> = ctx.settings.state().iter().map(|s| (**s).clone()).collect();
    setting_checks::cluster_name(&all).unwrap_or_else(|| ctx.default_cluster.clone())
}

/// One pass over a Policy: apply every enabled agent's objects, delete every disabled
/// agent's, rebuild the status. An agent whose objects fail is reported in its condition and
/// the pass fails (so it is retried with backoff), but the other agents are still applied.
#[instrument(skip(policy, ctx), fields(policy = %policy.name_any()))]
pub async fn reconcile_policy(policy: Arc<Policy>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciled("policy");
    let result = reconcile_policy_inner(&policy, &ctx).await;
    ctx.metrics
        .observe("policy", started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.succeeded(&format!("policy/{}", policy.name_any()));
    }
    result
}

async fn reconcile_policy_inner(policy: &Policy, ctx: &Context) -> Result<Action> {
    if policy.metadata.deletion_timestamp.is_some() {
        // The garbage collector is deleting the children through their owner references;
        // applying them now would recreate what it just removed.
        return Ok(Action::await_change());
    }
    let name = policy.name_any();
    let api: Api<Policy> = Api::all(ctx.client.clone());
    if let Err(reason) = policy.validate().and_then(|()| ctx.limits.check(policy)) {
        // Objects that skipped the CRD's checks, or ask for more than the manager allows;
        // retrying will not help, an edit will (and triggers a new pass).
        patch_policy_status(
            &api,
            &name,
            &status::invalid_policy_status(policy, &reason, &now()),
        )
        .await?;
        ctx.publish(
            policy,
            EventType::Warning,
            "InvalidSpec",
            "Validate",
            reason,
            None,
        )
        .await;
        return Ok(Action::await_change());
    }
    let cluster = cluster_name(ctx);
    let plan = objects::plan(policy, &cluster);
    let mut outcomes: BTreeMap<Agent, AgentOutcome> = BTreeMap::new();

    for (agent, child) in &plan.apply {
        if matches!(outcomes.get(agent), Some(AgentOutcome::Failed(_))) {
            continue;
        }
        let key = child.key();
        match apply_child(&ctx.client, child).await {
            Ok((applied, change)) => {
                if let Some((reason, verb)) = match change {
                    Change::Created => Some(("Created", "created")),
                    Change::Updated => Some(("Updated", "updated")),
                    Change::Unchanged => None,
                } {
                    ctx.metrics.changed(key.kind.as_str(), verb);
                    tracing::info!(object = %key, change = verb, "Applied");
                    ctx.publish(
                        policy,
                        EventType::Normal,
                        reason,
                        "Apply",
                        format!("{} {key} for {agent}", reason),
                        Some(reference(&key)),
                    )
                    .await;
                }
                match applied {
                    Applied::DaemonSet(ds) => {
                        outcomes.insert(*agent, AgentOutcome::Falco(ds));
                    }
                    Applied::CronJob(cron) => {
                        outcomes.insert(*agent, AgentOutcome::Scheduled(cron));
                    }
                    Applied::Other => {}
                }
            }
            Err(error) => {
                let message = format!("applying {key}: {error}");
                tracing::warn!(object = %key, %error, "Apply failed");
                ctx.publish(
                    policy,
                    EventType::Warning,
                    "ApplyFailed",
                    "Apply",
                    message.clone(),
                    Some(reference(&key)),
                )
                .await;
                outcomes.insert(*agent, AgentOutcome::Failed(message));
            }
        }
    }

    for (agent, key) in &plan.delete {
        if matches!(outcomes.get(agent), Some(AgentOutcome::Failed(_))) {
            continue;
        }
        match delete_child(&ctx.client, key).await {
            Ok(true) => {
                ctx.metrics.changed(key.kind.as_str(), "deleted");
                tracing::info!(object = %key, "Deleted");
                ctx.publish(
                    policy,
                    EventType::Normal,
                    "Deleted",
                    "Delete",
                    format!("Deleted {key}: {agent} is disabled"),
                    Some(reference(key)),
                )
                .await;
                outcomes.insert(*agent, AgentOutcome::Disabled);
            }
            Ok(false) => {
                outcomes.insert(*agent, AgentOutcome::Disabled);
            }
            Err(error) => {
                let message = format!("deleting {key}: {error}");
                tracing::warn!(object = %key, %error, "Delete failed");
                ctx.publish(
                    policy,
                    EventType::Warning,
                    "DeleteFailed",
                    "Delete",
                    message.clone(),
                    Some(reference(key)),
                )
                .await;
                outcomes.insert(*agent, AgentOutcome::Failed(message));
            }
        }
    }

    let status = status::policy_status(policy, &cluster, &outcomes, &now());
    patch_policy_status(&api, &name, &status).await?;

    let failed: Vec<String> = outcomes
        .values()
        .filter_map(|o| match o {
            AgentOutcome::Failed(message) => Some(message.clone()),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(Action::requeue(RESYNC))
    } else {
        Err(Error::Agents(failed.join("; ")))
    }
}

async fn patch_policy_status(api: &Api<Policy>, name: &str, status: &PolicyStatus) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": Policy::api_version(&()),
        "kind": Policy::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Logs, counts and requeues a failed pass with exponential backoff per object.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    object: &K,
    error: &Error,
    ctx: &Context,
) -> Action {
    let key = format!(
        "{controller}/{}",
        object.meta().name.as_deref().unwrap_or_default()
    );
    let wait = ctx.backoff(&key);
    ctx.metrics.failed(controller, error.metric_label());
    tracing::warn!(object = %key, %error, retry_in_s = wait.as_secs(), "Reconcile failed");
    Action::requeue(wait)
}

pub fn policy_error_policy(policy: Arc<Policy>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy("policy", policy.as_ref(), error, &ctx)
}

pub fn setting_error_policy(setting: Arc<Setting>, error: &Error, ctx: Arc<Context>) -> Action {
    error_policy("setting", setting.as_ref(), error, &ctx)
}

/// One pass over a Setting: check it against the other Settings and look up the Secrets its
/// consumers name, then write the manager's conditions. Problems are the user's to fix and go
/// to the status, not to the error path.
#[instrument(skip(setting, ctx), fields(setting = %setting.name_any()))]
pub async fn reconcile_setting(setting: Arc<Setting>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciled("setting");
    let result = reconcile_setting_inner(&setting, &ctx).await;
    ctx.metrics
        .observe("setting", started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.succeeded(&format!("setting/{}", setting.name_any()));
    }
    result
}

async fn reconcile_setting_inner(setting: &Setting, ctx: &Context) -> Result<Action> {
    if setting.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = setting.name_any();
    // The store may lag behind the object this pass was triggered with.
    let mut all: Vec<Setting> = ctx
        .settings
        .state()
        .iter()
        .filter(|s| s.name_any() != name)
        .map(|s| (**s).clone())
        .collect();
    all.push(setting.clone());
    let problems = setting_checks::problems(setting, &all);

    let mut secret_problems = Vec::new();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    for need in setting_checks::secret_needs(setting, &ctx.namespace) {
        let found = match secrets.get_opt(&need.name).await {
            // Only key names are kept; values are dropped here.
            Ok(Some(secret)) if !is_consumer_secret(&secret) => {
                secret_problems.push(format!(
                    "consumer {}: Secret {}/{} is not labelled {}=true; the hub reads only \
                     Secrets labelled so",
                    need.consumer,
                    need.namespace,
                    need.name,
                    falconer_model::crd::CONSUMER_SECRET_LABEL
                ));
                continue;
            }
            Ok(secret) => secret.map(|s| {
                let mut keys: Vec<String> = s.data.unwrap_or_default().into_keys().collect();
                keys.extend(s.string_data.unwrap_or_default().into_keys());
                keys
            }),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                secret_problems.push(format!(
                    "consumer {}: the manager may not read Secret {}/{} (RBAC)",
                    need.consumer, need.namespace, need.name
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        secret_problems.extend(setting_checks::secret_problems(&need, found.as_deref()));
    }

    let previous = setting
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let status = status::setting_status(
        setting.metadata.generation,
        previous,
        &problems,
        &secret_problems,
        &now(),
    );
    let was_ready = previous
        .iter()
        .any(|c| c.type_ == status::READY && c.status == "True");
    let is_ready = problems.is_empty() && secret_problems.is_empty();
    patch_setting_status(&Api::all(ctx.client.clone()), &name, &status).await?;
    if was_ready != is_ready || (setting.status.is_none() && !is_ready) {
        let (type_, reason, note) = if is_ready {
            (
                EventType::Normal,
                "Valid",
                "every consumer can be used".to_owned(),
            )
        } else {
            (
                EventType::Warning,
                "Invalid",
                problems
                    .iter()
                    .chain(&secret_problems)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        ctx.publish(setting, type_, reason, "Validate", note, None)
            .await;
    }
    Ok(Action::requeue(RESYNC))
}

async fn patch_setting_status(
    api: &Api<Setting>,
    name: &str,
    status: &SettingStatus,
) -> Result<()> {
    // Only the manager's fields: the hub applies `consumers` under its own field manager.
    let body = serde_json::json!({
        "apiVersion": Setting::api_version(&()),
        "kind": Setting::kind(&()),
        "status": {
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions,
        },
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod controller_tests;

/// Whether the hub reads `secret` as a consumer's (`falconer.io/consumer-secret: "true"`).
fn is_consumer_secret(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(falconer_model::crd::CONSUMER_SECRET_LABEL))
        .is_some_and(|value| value == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn a_new_object_is_created_and_a_generation_bump_is_an_update_but_status_churn_is_not() {
        let meta = |generation: Option<i64>, rv: &str| ObjectMeta {
            generation,
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        };
        assert_eq!(change(None, &meta(Some(1), "1")), Change::Created);
        assert_eq!(
            change(Some(&meta(Some(1), "5")), &meta(Some(2), "6")),
            Change::Updated
        );
        assert_eq!(
            change(Some(&meta(Some(2), "5")), &meta(Some(2), "9")),
            Change::Unchanged
        );
        assert_eq!(
            change(Some(&meta(None, "5")), &meta(None, "6")),
            Change::Updated
        );
        assert_eq!(
            change(Some(&meta(None, "5")), &meta(None, "5")),
            Change::Unchanged
        );
    }
}
