//! Consumers declared in the cluster: this module owns watching `Setting` objects and the
//! Secrets their consumers name, turning them (with the config file's consumers) into the
//! consumers delivery should run, and writing each consumer's delivery state back into its
//! Setting's `status.consumers`.
//!
//! Wiring (the engine's side):
//!
//! ```text
//! let watch = declared::watch_settings(client.clone(), &hub_namespace, config_consumers);
//! // watch.desired:  watch::Receiver<Vec<Desired>>  every consumer to run, secrets resolved
//! // watch.observed: watch::Receiver<Observed>      existing Settings + consumers left out
//! let mut writer = declared::StatusWriter::new(client);
//! // periodically, with the engine's reports:
//! writer.write(&watch.observed.borrow().clone(), &reports).await?;
//! ```
//!
//! - `desired` starts empty and gets its first full value once both the Settings and the
//!   Secrets have been listed; after that it changes only when the result changes (a Setting
//!   edited, a Secret rotated), never on a no-op resync. It holds the config file's consumers
//!   too, so in a cluster it is the one list the engine runs.
//! - A consumer name declared more than once (across Settings, within one, or by a Setting and
//!   the config file) is a conflict: **every** declaration is left out, logged and reported
//!   (`Stopped`, with the reason) in `observed.problems`, instead of silently picking one.
//!   So is a consumer whose Secret or a required key of it is missing. Leaving a consumer out
//!   only stops its worker: the engine must keep its cursor, so it resumes when the problem
//!   is fixed.
//! - Secrets live in the hub's namespace and only those labelled
//!   `falconer.io/consumer-secret: "true"` are watched (never the database URL or the
//!   tokens), so a
//!   rotated credential reaches `desired` without a restart. Only the keys a sink reads are
//!   copied: those it requires (`Consumer::required_secret_keys`: the sink's and a webhook's
//!   `secretHeaders`) and, when present, `ca.crt`, `tls.crt`, `tls.key` and (HTTP sinks) `url`,
//!   and a sink's optional keys (`email`: `username`, `password`)
//!   (`Consumer::readable_secret_keys`). Config-file
//!   consumers read theirs from the environment (`declared::secrets_from_env`).
//! - `StatusWriter` applies `status.consumers` with server-side apply under the field manager
//!   `falconer-hub`: the manager applies `conditions` and `observedGeneration` under its own,
//!   and neither removes the other's fields. A Setting is written only when its consumers'
//!   state changed since the last write (`updatedAt` aside), so a periodic report costs no
//!   API request when nothing moved.
//!
//! RBAC the hub needs for this: `get`, `list`, `watch` on `settings.falconer.io` and `patch`
//! on `settings/status` (ClusterRole); `list`, `watch` on `secrets` in its namespace (Role).

use crate::declared::{ConsumerReport, Desired, Origin, SecretValue, Secrets, secrets_from_env};
use falconer_model::crd::{Consumer, ConsumerState, ConsumerStatus, Setting};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The hub's field manager for `status.consumers` (the manager's is `falconer-manager`).
pub const FIELD_MANAGER: &str = "falconer-hub";

/// The hub reads only Secrets labelled as consumers' (`falconer.io/consumer-secret=true`):
/// not the database URL, the tokens, nor anything else in its namespace.
fn consumer_secrets() -> String {
    format!("{}=true", falconer_model::crd::CONSUMER_SECRET_LABEL)
}

/// The data of the Secrets in the hub's namespace: Secret name → key → value.
pub type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

// ---------------------------------------------------------------------------------------------
// Merging declarations

/// One consumer name declared more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub name: String,
    /// Where it is declared, in declaration order, each place once.
    pub origins: Vec<Origin>,
}

impl Conflict {
    pub fn message(&self) -> String {
        let places: Vec<String> = self.origins.iter().map(ToString::to_string).collect();
        format!(
            "consumer name `{}` is declared more than once ({}); names must be unique, so none \
             of these declarations runs until the others are renamed or removed",
            self.name,
            places.join(", ")
        )
    }
}

/// Every declared consumer, split into those whose name is unique and the conflicts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Merged {
    /// Config-file consumers first, then Settings oldest first (ties by name), each in its
    /// own order.
    pub consumers: Vec<(Origin, Consumer)>,
    pub conflicts: Vec<Conflict>,
}

/// Merges the config file's consumers and the Settings' consumers. A name declared more than
/// once anywhere is a conflict and none of its declarations is kept.
pub fn merge(config: &[Consumer], settings: &[Setting]) -> Merged {
    let declared: Vec<(Origin, &Consumer)> = config
        .iter()
        .map(|c| (Origin::ConfigFile, c))
        .chain(Setting::oldest_first(settings).into_iter().flat_map(|s| {
            let origin = Origin::Setting(s.name_any());
            s.spec.consumers.iter().map(move |c| (origin.clone(), c))
        }))
        .collect();
    let mut places: BTreeMap<&str, Vec<&Origin>> = BTreeMap::new();
    for (origin, consumer) in &declared {
        places
            .entry(consumer.name.as_str())
            .or_default()
            .push(origin);
    }
    let mut merged = Merged::default();
    let mut reported = BTreeSet::new();
    for (origin, consumer) in &declared {
        let name = consumer.name.as_str();
        let origins = &places[name];
        if origins.len() == 1 {
            merged.consumers.push((origin.clone(), (*consumer).clone()));
        } else if reported.insert(name) {
            let mut unique: Vec<Origin> = Vec::new();
            for o in origins {
                if !unique.contains(o) {
                    unique.push((*o).clone());
                }
            }
            merged.conflicts.push(Conflict {
                name: name.to_owned(),
                origins: unique,
            });
        }
    }
    merged
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// The keys of `consumer`'s Secret its sink reads, from the Secrets of namespace `namespace`;
/// an error names what is missing, never a value.
pub fn resolve_secrets(
    consumer: &Consumer,
    secrets: &SecretData,
    namespace: &str,
) -> Result<Secrets, String> {
    let Some(secret_ref) = &consumer.secret_ref else {
        return Ok(Secrets::new());
    };
    let secret = &secret_ref.name;
    let Some(data) = secrets.get(secret) else {
        return Err(format!(
            "Secret {namespace}/{secret} does not exist or is not labelled {}: the hub reads \
             only Secrets labelled so",
            consumer_secrets()
        ));
    };
    let required = consumer.required_secret_keys();
    let missing: Vec<&str> = required
        .iter()
        .filter(|k| !data.contains_key(k.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "Secret {namespace}/{secret} has no key {}",
            missing.join(", ")
        ));
    }
    let readable = consumer.readable_secret_keys();
    let wanted = readable
        .iter()
        .map(String::as_str)
        .filter(|k| data.contains_key(*k));
    let mut resolved = Secrets::new();
    for key in wanted {
        let text = String::from_utf8(data[key].clone())
            .map_err(|_| format!("key {key} of Secret {namespace}/{secret} is not UTF-8 text"))?;
        resolved.insert(key.to_owned(), SecretValue(text));
    }
    Ok(resolved)
}

/// A config-file consumer's secret keys, from the environment (`secrets_from_env`).
fn resolve_env_secrets(consumer: &Consumer) -> Result<Secrets, String> {
    let Some(secret_ref) = &consumer.secret_ref else {
        return Ok(Secrets::new());
    };
    let required = consumer.required_secret_keys();
    let readable = consumer.readable_secret_keys();
    let keys: Vec<&str> = readable.iter().map(String::as_str).collect();
    let found = secrets_from_env(&secret_ref.name, &keys);
    let missing: Vec<String> = required
        .iter()
        .filter(|k| !found.contains_key(k.as_str()))
        .map(|k| crate::declared::secret_env_name(&secret_ref.name, k))
        .collect();
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(format!(
            "environment variable {} is not set",
            missing.join(", ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The view published to the engine

/// What the watcher saw besides the consumers to run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// Every Setting that exists now, with the consumer names it declares (spec order):
    /// `StatusWriter` writes these Settings and these consumers only.
    pub settings: BTreeMap<String, Vec<String>>,
    /// Consumers declared but left out (name conflicts, missing Secrets or keys), each as a
    /// `Stopped` report whose `lastError` says why. The config file's appear with
    /// `Origin::ConfigFile`, for the API and logs.
    pub problems: Vec<(Origin, ConsumerReport)>,
    /// Settings this hub cannot read (e.g. written for a newer CRD), with the parse error;
    /// their consumers are unknown, so none of them runs.
    pub unreadable: BTreeMap<String, String>,
    /// The shortest `spec.retention` of the Settings that set one (it overrides
    /// `store.retention`).
    pub retention: Option<String>,
    /// The suppressions of every Setting, with the Setting's name (the hub stores them).
    pub suppressions: Vec<(String, falconer_model::suppression::DeclaredSuppression)>,
    /// True once every Setting and Secret has been read: until then the declared consumers
    /// and the retention are not known yet.
    pub synced: bool,
}

fn report(name: &str, state: ConsumerState, last_error: Option<String>) -> ConsumerReport {
    ConsumerStatus {
        name: name.to_owned(),
        state,
        lag_events: 0,
        lag_seconds: 0,
        delivered: 0,
        retries: 0,
        dead_letters: 0,
        last_error,
        updated_at: None,
    }
}

/// A consumer that does not run, and why.
pub fn stopped(name: &str, reason: String) -> ConsumerReport {
    report(name, ConsumerState::Stopped, Some(reason))
}

/// A declared consumer delivery has not reported on yet.
pub fn pending(name: &str) -> ConsumerReport {
    report(name, ConsumerState::Pending, None)
}

/// The consumers to run and what was left out, from everything declared and the Secrets of
/// the hub's namespace.
pub fn view(
    config: &[Consumer],
    settings: &[Setting],
    secrets: &SecretData,
    namespace: &str,
) -> (Vec<Desired>, Observed) {
    let merged = merge(config, settings);
    let mut desired = Vec::new();
    let mut observed = Observed {
        settings: settings
            .iter()
            .map(|s| {
                let mut names: Vec<String> = Vec::new();
                for consumer in &s.spec.consumers {
                    if !names.contains(&consumer.name) {
                        names.push(consumer.name.clone());
                    }
                }
                (s.name_any(), names)
            })
            .collect(),
        retention: settings
            .iter()
            .filter_map(|s| s.spec.retention.as_ref())
            .filter_map(|r| match falconer_store::retention::parse_age(r) {
                Ok(Some(age)) => Some((age, r.clone())),
                _ => None,
            })
            .min()
            .map(|(_, r)| r),
        suppressions: settings
            .iter()
            .flat_map(|s| {
                s.spec
                    .suppressions
                    .iter()
                    .map(move |d| (s.name_any(), d.clone()))
            })
            .collect(),
        ..Observed::default()
    };
    for conflict in &merged.conflicts {
        for origin in &conflict.origins {
            observed
                .problems
                .push((origin.clone(), stopped(&conflict.name, conflict.message())));
        }
    }
    for (origin, consumer) in merged.consumers {
        let resolved = match origin {
            Origin::ConfigFile => resolve_env_secrets(&consumer),
            Origin::Setting(_) => resolve_secrets(&consumer, secrets, namespace),
        };
        match resolved {
            Ok(secrets) => desired.push(Desired {
                consumer,
                origin,
                secrets,
            }),
            Err(reason) => observed
                .problems
                .push((origin, stopped(&consumer.name, reason))),
        }
    }
    (desired, observed)
}

// ---------------------------------------------------------------------------------------------
// Watching

/// Objects of one kind as a watch last listed them, by name.
struct Mirror<T> {
    items: BTreeMap<String, T>,
    /// Filled during a relist, swapped in when it is complete, so a relist never shows a
    /// half-empty state.
    relist: Option<BTreeMap<String, T>>,
    ready: bool,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Mirror {
            items: BTreeMap::new(),
            relist: None,
            ready: false,
        }
    }
}

impl<T> Mirror<T> {
    fn apply<K: Resource>(&mut self, event: watcher::Event<K>, keep: impl Fn(K) -> T) {
        match event {
            watcher::Event::Apply(object) => {
                self.items.insert(object.name_any(), keep(object));
            }
            watcher::Event::Delete(object) => {
                self.items.remove(&object.name_any());
            }
            watcher::Event::Init => self.relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(object) => {
                self.relist
                    .get_or_insert_default()
                    .insert(object.name_any(), keep(object));
            }
            watcher::Event::InitDone => {
                self.items = self.relist.take().unwrap_or_default();
                self.ready = true;
            }
        }
    }
}

/// A Setting as this hub reads it: no managed fields, no status. Settings are watched as
/// untyped objects and parsed one by one, so one this hub cannot read (e.g. written against a
/// newer CRD during an upgrade) is reported instead of stopping the watch of all.
fn keep_setting(mut object: DynamicObject) -> Result<Setting, String> {
    object.metadata.managed_fields = None;
    if let Some(fields) = object.data.as_object_mut() {
        fields.remove("status");
    }
    object.try_parse::<Setting>().map_err(|e| e.to_string())
}

/// Only the data of a Secret: not its annotations, which may hold a plain-text copy of it
/// (`kubectl.kubernetes.io/last-applied-configuration`).
fn keep_secret_data(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect()
}

/// The watcher's outputs; `task` runs until every receiver is dropped.
pub struct SettingsWatch {
    pub desired: watch::Receiver<Vec<Desired>>,
    pub observed: watch::Receiver<Observed>,
    pub task: JoinHandle<()>,
}

enum Change {
    Settings(Result<watcher::Event<DynamicObject>, watcher::Error>),
    Secrets(Result<watcher::Event<Secret>, watcher::Error>),
}

/// Starts watching Settings (cluster-wide) and the Secrets of `namespace`, publishing the
/// consumers to run (`config_consumers` included). Call inside the Tokio runtime.
pub fn watch_settings(
    client: Client,
    namespace: &str,
    config_consumers: Vec<Consumer>,
) -> SettingsWatch {
    let (desired_tx, desired) = watch::channel(Vec::new());
    let (observed_tx, observed) = watch::channel(Observed::default());
    let task = tokio::spawn(run(
        client,
        namespace.to_owned(),
        config_consumers,
        desired_tx,
        observed_tx,
    ));
    SettingsWatch {
        desired,
        observed,
        task,
    }
}

async fn run(
    client: Client,
    namespace: String,
    config: Vec<Consumer>,
    desired_tx: watch::Sender<Vec<Desired>>,
    observed_tx: watch::Sender<Observed>,
) {
    let settings = watcher(
        Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<Setting>(&())),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Change::Settings);
    let secrets = watcher(
        Api::<Secret>::namespaced(client, &namespace),
        watcher::Config::default().labels(&consumer_secrets()),
    )
    .default_backoff()
    .map(Change::Secrets);
    let mut changes = std::pin::pin!(futures_util::stream::select(settings, secrets));

    let mut setting_mirror: Mirror<Result<Setting, String>> = Mirror::default();
    let mut secret_mirror: Mirror<BTreeMap<String, Vec<u8>>> = Mirror::default();
    let mut logged = BTreeSet::new();

    while let Some(change) = changes.next().await {
        match change {
            Change::Settings(Ok(event)) => setting_mirror.apply(event, keep_setting),
            Change::Secrets(Ok(event)) => secret_mirror.apply(event, keep_secret_data),
            Change::Settings(Err(error)) => tracing::warn!(
                %error,
                "Cannot watch Settings (the hub needs get, list and watch on settings.falconer.io); retrying."
            ),
            Change::Secrets(Err(error)) => tracing::warn!(
                %error,
                namespace,
                "Cannot watch Secrets (the hub needs list and watch on secrets in its namespace); retrying."
            ),
        }
        if !(setting_mirror.ready && secret_mirror.ready) {
            continue;
        }
        let settings: Vec<Setting> = setting_mirror
            .items
            .values()
            .filter_map(|s| s.as_ref().ok())
            .cloned()
            .collect();
        let (desired, mut observed) = view(&config, &settings, &secret_mirror.items, &namespace);
        for (name, setting) in &setting_mirror.items {
            if let Err(error) = setting {
                observed.settings.insert(name.clone(), Vec::new());
                observed.unreadable.insert(name.clone(), error.clone());
            }
        }
        logged = log_new_problems(&observed, logged);
        observed.synced = true;

        desired_tx.send_if_modified(|current| replace_if_changed(current, desired));
        observed_tx.send_if_modified(|current| replace_if_changed(current, observed));
        if desired_tx.is_closed() && observed_tx.is_closed() {
            return;
        }
    }
}

/// Logs each problem once, when it appears (not on every watch event); returns what is
/// logged now, for the next call.
fn log_new_problems(
    observed: &Observed,
    logged: BTreeSet<(Origin, String, String)>,
) -> BTreeSet<(Origin, String, String)> {
    let mut now = BTreeSet::new();
    for (origin, report) in &observed.problems {
        let reason = report.last_error.clone().unwrap_or_default();
        let key = (origin.clone(), report.name.clone(), reason);
        if !logged.contains(&key) {
            tracing::error!(consumer = key.1, origin = %key.0, reason = key.2, "Consumer left out.");
        }
        now.insert(key);
    }
    for (setting, error) in &observed.unreadable {
        let key = (
            Origin::Setting(setting.clone()),
            String::new(),
            error.clone(),
        );
        if !logged.contains(&key) {
            tracing::error!(
                setting,
                error,
                "Cannot read this Setting; its consumers are left out."
            );
        }
        now.insert(key);
    }
    now
}

fn replace_if_changed<T: PartialEq>(current: &mut T, new: T) -> bool {
    if *current == new {
        false
    } else {
        *current = new;
        true
    }
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
