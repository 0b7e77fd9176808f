//! `alertmanager`: each batch of events is one `POST /api/v2/alerts` to Prometheus
//! Alertmanager — a JSON array of alerts, one per event (or one per summary of folded
//! events). An alert is labelled only with bounded fields (`alertname` = the rule,
//! `severity`, `source`, `cluster`, `namespace`, `workload`, the consumer's `extraLabels`)
//! and `falconer_group`, so one problem is one alert there; its annotations carry the text,
//! the facts, the event id and the dashboard link.
//!
//! Alertmanager has no "event", only alerts that fire until their `endsAt`: every send sets
//! `endsAt` to now plus `resolveAfter` and `startsAt` to the group's first event, so the
//! alert keeps firing while its events (or summaries) come and resolves by itself once they
//! stop. The sink remembers each group's first event while its alert fires; Alertmanager
//! itself keeps the earliest `startsAt` of an alert that is still active.
//!
//! Several Alertmanagers (`urls`) are tried in turn for each request: the first that
//! accepts it wins. Alertmanager answers `200` (taken); `400` (an alert is invalid, the
//! message says which: the batch goes to the dead letters with it) and `422` (the body does
//! not fit the API schema; same); anything else, a timeout or a refused connection is
//! tried on the next Alertmanager, and when none takes the batch the worker retries it
//! (with a `429`'s `Retry-After`), through the shared [`http`] status table.

use crate::error::DeliveryError;
use crate::notify::{Notice, Notifier, Summary};
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::chat;
use crate::sinks::http::{self, Action, BatchPost, Posted, chain, require};
use crate::sinks::{Declared, FromConsumer};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use falconer_model::crd::{AlertmanagerAuth, AlertmanagerConfig, parse_window};
use falconer_model::group::GroupField;
use falconer_store::Event;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Alerts per request: Alertmanager takes many per POST; Prometheus sends up to 256.
const BATCH: usize = 100;
/// Most Alertmanagers in `urls`.
pub const MAX_URLS: usize = 8;
/// Most `extraLabels` (as the CRD says).
const MAX_EXTRA_LABELS: usize = 32;
/// The `summary` annotation is cut here: receivers (chat, e-mail) have their own limits.
const MAX_SUMMARY: usize = 4000;
/// The label carrying the group's id.
pub const GROUP_LABEL: &str = "falconer_group";

/// The label name of an event field.
pub fn label_name(field: GroupField) -> &'static str {
    match field {
        GroupField::Rule => "alertname",
        other => other.as_str(),
    }
}

/// How events become alerts: the consumer's label choice and `resolveAfter` (pure).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub labels: Vec<GroupField>,
    pub extra_labels: BTreeMap<String, String>,
    pub resolve_after: Duration,
}

impl Mapping {
    /// The alert for `notice`, sent at `now`, whose group's first event was at `starts_at`.
    pub fn alert(&self, notice: &Notice, starts_at: DateTime<Utc>, now: DateTime<Utc>) -> Value {
        let event = notice.event;
        let mut labels = Map::new();
        for (name, value) in &self.extra_labels {
            labels.insert(name.clone(), Value::String(value.clone()));
        }
        for field in &self.labels {
            let value = match field {
                GroupField::Severity => notice.severity.as_str().to_string(),
                // The owner only: an unowned pod's name would make every restart an alert.
                GroupField::Workload => event
                    .workload
                    .as_ref()
                    .map(|w| format!("{}/{}", w.kind, w.name))
                    .unwrap_or_default(),
                other => other.value(event),
            };
            if !value.is_empty() {
                labels.insert(label_name(*field).to_string(), Value::String(value));
            }
        }
        labels.insert(GROUP_LABEL.into(), Value::String(notice.group.clone()));

        let mut annotations = Map::new();
        annotations.insert(
            "summary".into(),
            Value::String(chat::cut(&notice.text, MAX_SUMMARY)),
        );
        annotations.insert("description".into(), Value::String(description(event)));
        annotations.insert(
            "falconer_event_id".into(),
            Value::String(event.id.to_string()),
        );
        if notice.summary {
            annotations.insert(
                "falconer_folded".into(),
                Value::String(notice.count.to_string()),
            );
        }
        if let Some(link) = &notice.link {
            annotations.insert("falconer_url".into(), Value::String(link.clone()));
        }

        let ends_at = now + TimeDelta::from_std(self.resolve_after).unwrap_or(TimeDelta::MAX);
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            // Alertmanager refuses an alert that starts after it ends (a sender's clock
            // ahead of the hub's).
            "startsAt": time(starts_at.min(now)),
            "endsAt": time(ends_at),
        });
        if let Some(link) = &notice.link {
            alert["generatorURL"] = Value::String(link.clone());
        }
        alert
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event's facts, one `Name: value` line each, then its time.
fn description(event: &Event) -> String {
    let mut lines: Vec<String> = chat::facts(event)
        .into_iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    lines.push(format!("Time: {}", time(event.time)));
    lines.join("\n")
}

/// Whether `name` is a Prometheus label name Falconer leaves to the consumer.
fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err("not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)".into());
    }
    if name.starts_with("__") {
        return Err("names starting with `__` are reserved by Prometheus".into());
    }
    let ours = [
        GroupField::Rule,
        GroupField::Source,
        GroupField::Severity,
        GroupField::Cluster,
        GroupField::Namespace,
        GroupField::Workload,
        GroupField::Node,
        GroupField::Pod,
    ]
    .map(label_name);
    if ours.contains(&name) || name == GROUP_LABEL {
        return Err("Falconer sets this label from the event; choose another name".into());
    }
    Ok(())
}

/// The credentials sent with each request (never printed: no `Debug`).
enum Credentials {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

/// When a group's alert started and until when it fires, as last sent.
#[derive(Debug, Clone, Copy)]
struct Episode {
    starts: DateTime<Utc>,
    ends: DateTime<Utc>,
}

pub struct Alertmanager {
    client: reqwest::Client,
    /// `…/api/v2/alerts` of each Alertmanager, in the order tried.
    endpoints: Vec<reqwest::Url>,
    credentials: Credentials,
    mapping: Mapping,
    notifier: Notifier,
    batch: usize,
    /// The longest `Retry-After` of the last failed request.
    asked: Option<Duration>,
    /// Groups whose alert fires, by group id.
    episodes: HashMap<String, Episode>,
    clock: fn() -> DateTime<Utc>,
}

/// `base` with `api/v2/alerts` appended to its path.
fn alerts_url(base: &reqwest::Url) -> reqwest::Url {
    let mut url = base.clone();
    let path = format!("{}/api/v2/alerts", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

impl FromConsumer for Alertmanager {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings: &AlertmanagerConfig =
            declared.section(declared.consumer.alertmanager.as_ref(), "alertmanager")?;
        let bases: Vec<(String, &str)> = match (&settings.url, &settings.urls) {
            (Some(url), None) => vec![("alertmanager.url".into(), url.as_str())],
            (None, Some(urls)) => {
                if urls.is_empty() || urls.len() > MAX_URLS {
                    return Err(declared.config(format!(
                        "alertmanager.urls: name 1 to {MAX_URLS} Alertmanagers"
                    )));
                }
                urls.iter()
                    .enumerate()
                    .map(|(i, u)| (format!("alertmanager.urls[{i}]"), u.as_str()))
                    .collect()
            }
            _ => {
                return Err(
                    declared.config("alertmanager: set exactly one of `url` and `urls`".into())
                );
            }
        };
        let mut endpoints = Vec::with_capacity(bases.len());
        for (field, base) in bases {
            if base.trim().is_empty() {
                return Err(declared.config(format!("{field}: empty; give the base URL")));
            }
            endpoints.push(alerts_url(&http::endpoint(declared, &field, base)?));
        }
        if settings.labels.is_empty() {
            return Err(declared.config(
                "alertmanager.labels: name at least one field (`rule` is the alertname)".into(),
            ));
        }
        if settings.extra_labels.len() > MAX_EXTRA_LABELS {
            return Err(declared.config(format!(
                "alertmanager.extraLabels: at most {MAX_EXTRA_LABELS} labels"
            )));
        }
        for name in settings.extra_labels.keys() {
            check_label_name(name).map_err(|why| {
                declared.config(format!("alertmanager.extraLabels.{name}: {why}"))
            })?;
        }
        let resolve_after = parse_window(&settings.resolve_after)
            .filter(|d| (60..=24 * 3600).contains(&d.as_secs()))
            .ok_or_else(|| {
                declared.config(format!(
                    "alertmanager.resolveAfter: `{}` is not a span of 1m to 24h (e.g. `5m`, `1h`)",
                    settings.resolve_after
                ))
            })?;
        let (name, secrets) = (declared.name, declared.secrets);
        let credentials = match settings.auth {
            AlertmanagerAuth::None => Credentials::None,
            AlertmanagerAuth::Basic => Credentials::Basic {
                username: require(name, secrets, "username", "alertmanager.auth basic")?,
                password: require(name, secrets, "password", "alertmanager.auth basic")?,
            },
            AlertmanagerAuth::Bearer => {
                Credentials::Bearer(require(name, secrets, "token", "alertmanager.auth bearer")?)
            }
        };
        let client = http::client(name, &settings.tls, secrets)?;
        let mapping = Mapping {
            labels: settings.labels.clone(),
            extra_labels: settings.extra_labels.clone(),
            resolve_after,
        };
        let mut sink = Alertmanager::new(client, endpoints, mapping, Notifier::new(declared)?);
        sink.credentials = credentials;
        Ok(sink)
    }
}

impl Alertmanager {
    pub fn new(
        client: reqwest::Client,
        endpoints: Vec<reqwest::Url>,
        mapping: Mapping,
        notifier: Notifier,
    ) -> Alertmanager {
        Alertmanager {
            client,
            endpoints,
            credentials: Credentials::None,
            mapping,
            notifier,
            batch: BATCH,
            asked: None,
            episodes: HashMap::new(),
            clock: Utc::now,
        }
    }

    /// When the alert of `group` started, for an event at `at` sent at `now`: its firing
    /// episode's first event, else this one.
    fn starts_at(
        &self,
        pending: &HashMap<String, Episode>,
        group: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let at = at.min(now);
        let known = pending
            .get(group)
            .or_else(|| self.episodes.get(group).filter(|e| e.ends > now));
        known.map_or(at, |e| e.starts.min(at))
    }

    /// The alerts for `notices` (with their first-event times), sent at `now`, and the
    /// episodes they start or extend.
    fn alerts(
        &self,
        notices: &[(Notice<'_>, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> (Vec<Value>, HashMap<String, Episode>) {
        let mut pending: HashMap<String, Episode> = HashMap::new();
        let ends = now + TimeDelta::from_std(self.mapping.resolve_after).unwrap_or(TimeDelta::MAX);
        let alerts = notices
            .iter()
            .map(|(notice, first)| {
                let starts = self.starts_at(&pending, &notice.group, *first, now);
                pending.insert(notice.group.clone(), Episode { starts, ends });
                self.mapping.alert(notice, starts, now)
            })
            .collect();
        (alerts, pending)
    }

    /// Posts `alerts` to each Alertmanager in turn until one takes them.
    async fn post_alerts(&mut self, alerts: &[Value]) -> Result<(), (Action, String)> {
        let body = Value::Array(alerts.to_vec()).to_string();
        let mut reasons = Vec::new();
        self.asked = None;
        for url in &self.endpoints {
            let mut request = self
                .client
                .post(url.clone())
                .header("content-type", "application/json")
                .body(body.clone());
            request = match &self.credentials {
                Credentials::None => request,
                Credentials::Basic { username, password } => {
                    request.basic_auth(username, Some(password))
                }
                Credentials::Bearer(token) => request.bearer_auth(token),
            };
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    reasons.push(format!(
                        "POST {}: {}",
                        http::redact(url),
                        chain(&e.without_url())
                    ));
                    continue;
                }
            };
            if http::action(response.status().as_u16()) == Action::Deliver {
                return Ok(());
            }
            let mut asked = None;
            let (action, why) = http::failure(response, &mut asked).await;
            match action {
                // Every Alertmanager would say the same of this content.
                Action::Refuse | Action::Split => return Err((action, why)),
                Action::Deliver | Action::Retry => {
                    self.asked = self.asked.max(asked);
                    reasons.push(why);
                }
            }
        }
        Err((Action::Retry, reasons.join("; ")))
    }

    fn forget_resolved(&mut self, now: DateTime<Utc>) {
        self.episodes.retain(|_, e| e.ends > now);
    }
}

impl BatchPost for Alertmanager {
    async fn post(&mut self, events: &[Event]) -> Posted {
        let now = (self.clock)();
        self.forget_resolved(now);
        let notices: Vec<(Notice, DateTime<Utc>)> = events
            .iter()
            .map(|e| (self.notifier.event(e), e.time))
            .collect();
        let (alerts, pending) = self.alerts(&notices, now);
        match self.post_alerts(&alerts).await {
            Ok(()) => {
                self.episodes.extend(pending);
                Posted::Done(Outcome::Delivered)
            }
            Err((Action::Split, why)) => Posted::TooLarge {
                bytes: Value::Array(alerts).to_string().len(),
                why,
            },
            Err((Action::Refuse, why)) => Posted::Done(http::refuse_all(events.len(), &why)),
            Err((_, why)) => Posted::Done(Outcome::Retry(why)),
        }
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn lower_batch(&mut self, size: usize) {
        self.batch = size.max(1);
    }
}

impl Sink for Alertmanager {
    fn batch_size(&self) -> usize {
        self.batch
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        http::send_splitting(self, events).await
    }

    fn retry_after(&mut self) -> Option<Duration> {
        self.asked.take()
    }

    /// The request body for `event` alone: an array of one alert.
    fn preview(&self, event: &Event) -> Value {
        let now = (self.clock)();
        let (alerts, _) = self.alerts(&[(self.notifier.event(event), event.time)], now);
        Value::Array(alerts)
    }

    async fn send_summary(&mut self, summary: &Summary) -> Outcome {
        let now = (self.clock)();
        self.forget_resolved(now);
        let notice = self.notifier.summary(summary);
        let (alerts, pending) = self.alerts(&[(notice, summary.sample.time)], now);
        match self.post_alerts(&alerts).await {
            Ok(()) => {
                self.episodes.extend(pending);
                Outcome::Delivered
            }
            Err((Action::Retry, why)) => Outcome::Retry(why),
            Err((_, why)) => Outcome::Each(vec![ItemResult::Refused(why)]),
        }
    }
}

#[cfg(test)]
#[path = "alertmanager_tests.rs"]
mod tests;
