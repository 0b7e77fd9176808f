//! `loki`: each batch is one `POST /loki/api/v1/push` to Grafana Loki, JSON: the events
//! grouped into streams by their labels (in order of first appearance), each stream's
//! entries in time order, one entry per event — `["<unix ns>", "<line>"]`, the line being
//! the consumer's `format` (the event's JSON by default, the Falco alert as sent with
//! `format: falco`). `X-Scope-OrgID` is the `tenant`.
//!
//! Labels come only from bounded fields (`cluster`, `source`, `severity`, `namespace`,
//! `kind`, `rule`): every distinct label set is a stream in Loki's index, so pods,
//! containers, images, nodes and workloads are refused when the consumer starts, naming the
//! entry of `loki.labels`. A label whose value is empty is left out.
//!
//! Loki's answers go through the shared [`http`] status table (204 delivered, 429/5xx
//! retried with `Retry-After`, 401/403 retried until the operator fixes the credentials,
//! 413 split). A `400` is read first: Loki keeps the acceptable entries of a push and names
//! the refused ones (`entry with timestamp … ignored, reason: 'entry out of order'`, `…
//! has timestamp too old: …`); those events are refused with that reason (they can never be
//! accepted, so they go to the dead letters instead of being retried for ever), the other
//! events of the request are sent again (Loki drops an exact duplicate). A `400` naming no
//! event of the request refuses them all with Loki's answer.

use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::format::{self, BodyFormat};
use crate::sinks::http::{self, Action, BatchPost, Posted, chain, require};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::{LokiAuth, LokiConfig, LokiTimestamp};
use falconer_store::Event;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The path of Loki's push API under the base URL.
pub const PUSH_PATH: &str = "loki/api/v1/push";

/// An event field a stream may be labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Cluster,
    Source,
    Severity,
    Namespace,
    Kind,
    Rule,
}

impl Label {
    /// The label of `name`, or why it may not be one.
    pub fn parse(name: &str) -> Result<Label, String> {
        Ok(match name {
            "cluster" => Label::Cluster,
            "source" => Label::Source,
            "severity" => Label::Severity,
            "namespace" => Label::Namespace,
            "kind" => Label::Kind,
            // Bounded by the rule set: tens to hundreds of values, not one per pod.
            "rule" => Label::Rule,
            "pod" | "container" | "image" | "node" | "workload" | "hostname" | "id" | "message"
            | "tags" | "fields" => {
                return Err(format!(
                    "`{name}` is unbounded (every value is a new stream in Loki's index, which \
                     Loki's own guidance warns against); it stays searchable in the line, e.g. \
                     `| json | {name}=\"…\"`. Labels may be cluster, source, severity, \
                     namespace, kind and rule"
                ));
            }
            other => {
                return Err(format!(
                    "`{other}` is not an event field Falconer labels streams with; use \
                     cluster, source, severity, namespace, kind or rule"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Cluster => "cluster",
            Label::Source => "source",
            Label::Severity => "severity",
            Label::Namespace => "namespace",
            Label::Kind => "kind",
            Label::Rule => "rule",
        }
    }

    fn value(self, event: &Event) -> String {
        match self {
            Label::Cluster => event.cluster.clone(),
            Label::Source => event.source.clone(),
            Label::Severity => event.severity.as_str().to_string(),
            Label::Namespace => event.namespace.clone().unwrap_or_default(),
            Label::Kind => event.kind.as_str().to_string(),
            Label::Rule => event.rule.clone(),
        }
    }
}

/// The labels of `loki.labels`, or an error naming the entry and why.
pub fn labels(names: &[String]) -> Result<Vec<Label>, String> {
    if names.is_empty() {
        return Err("loki.labels: name at least one field (Loki needs a label per stream)".into());
    }
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let label = Label::parse(name).map_err(|why| format!("loki.labels[{i}]: {why}"))?;
        if out.contains(&label) {
            return Err(format!("loki.labels[{i}]: `{name}` is listed twice"));
        }
        out.push(label);
    }
    Ok(out)
}

/// How events become streams and entries (pure).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub labels: Vec<Label>,
    pub format: BodyFormat,
    pub timestamp: LokiTimestamp,
}

/// One stream of a push: its labels and, in entry order, the index of each event in the
/// batch with its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub labels: BTreeMap<&'static str, String>,
    pub entries: Vec<(i64, usize)>,
}

#[derive(Serialize)]
struct PushBody<'a> {
    streams: Vec<StreamBody<'a>>,
}

#[derive(Serialize)]
struct StreamBody<'a> {
    stream: &'a BTreeMap<&'static str, String>,
    values: Vec<[String; 2]>,
}

impl Mapping {
    /// The Unix-nanosecond timestamp of `event`'s entry.
    pub fn time(&self, event: &Event) -> i64 {
        let at = match self.timestamp {
            LokiTimestamp::Event => event.time,
            LokiTimestamp::ReceivedAt => event.received_at,
        };
        at.timestamp_nanos_opt()
            .unwrap_or_else(|| at.timestamp().saturating_mul(1_000_000_000))
    }

    /// The labels of `event`'s stream: the chosen fields that have a value; the source when
    /// none has (Loki refuses a stream without labels).
    pub fn stream_labels(&self, event: &Event) -> BTreeMap<&'static str, String> {
        let mut labels: BTreeMap<&'static str, String> = self
            .labels
            .iter()
            .map(|label| (label.as_str(), label.value(event)))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        if labels.is_empty() {
            labels.insert(Label::Source.as_str(), event.source.clone());
        }
        labels
    }

    /// The streams of `events`, in order of first appearance, entries in time order (events
    /// of the same time in batch order).
    pub fn streams(&self, events: &[Event]) -> Vec<Stream> {
        let mut streams: Vec<Stream> = Vec::new();
        let mut index: HashMap<BTreeMap<&'static str, String>, usize> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let labels = self.stream_labels(event);
            let at = match index.get(&labels) {
                Some(at) => *at,
                None => {
                    index.insert(labels.clone(), streams.len());
                    streams.push(Stream {
                        labels,
                        entries: Vec::new(),
                    });
                    streams.len() - 1
                }
            };
            streams[at].entries.push((self.time(event), i));
        }
        for stream in &mut streams {
            // Stable: equal timestamps keep the batch's order.
            stream.entries.sort_by_key(|(time, _)| *time);
        }
        streams
    }

    /// The line of `event`: the consumer's format, as text.
    pub fn line(&self, event: &Event) -> String {
        let body = format::body(&self.format, event);
        match String::from_utf8(body.bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// The push body of `events` grouped as `streams`.
    pub fn body(&self, events: &[Event], streams: &[Stream]) -> Vec<u8> {
        let body = PushBody {
            streams: streams
                .iter()
                .map(|stream| StreamBody {
                    stream: &stream.labels,
                    values: stream
                        .entries
                        .iter()
                        .map(|(time, i)| [time.to_string(), self.line(&events[*i])])
                        .collect(),
                })
                .collect(),
        };
        // A struct of strings cannot fail to serialize.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// The entries a Loki `400` says it refused: (timestamp in Unix ns, Loki's reason), in the
/// order named. Reads the ingester's `entry with timestamp <Go time> ignored, reason:
/// '<why>',` and the distributor's `entry for stream '<labels>' has timestamp too old:
/// <Go time>, …` / `too new` lines; anything else is not attributed.
pub fn refused_entries(answer: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for line in answer.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("entry with timestamp ")
            && let Some((time, rest)) = rest.split_once(" ignored, reason: '")
            && let Some(ns) = parse_go_time(time)
        {
            let why = rest.trim_end_matches(',').trim_end_matches('\'');
            out.push((ns, why.to_string()));
            continue;
        }
        if line.starts_with("entry for stream '") {
            for marker in ["has timestamp too old: ", "has timestamp too new: "] {
                if let Some((_, rest)) = line.split_once(marker) {
                    let time = rest.split(',').next().unwrap_or_default();
                    if let Some(ns) = parse_go_time(time) {
                        let why = format!("{}{rest}", marker.trim_start_matches("has "));
                        out.push((ns, why.trim_end_matches(',').to_string()));
                    }
                }
            }
        }
    }
    out
}

/// A time as Go's `time.Time.String()` prints it (`2006-01-02 15:04:05.999999999 -0700
/// MST`, optionally followed by a monotonic clock reading), in Unix ns.
pub fn parse_go_time(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let parsed = chrono::DateTime::parse_from_str(
        &format!("{date} {time} {offset}"),
        "%Y-%m-%d %H:%M:%S%.f %z",
    )
    .ok()?;
    parsed.timestamp_nanos_opt()
}

/// What a `400` means for each event of the request: the ones Loki named are refused with
/// its reason, the others sent again; `None` when it named none of them.
pub fn results_of_400(
    answer: &str,
    why: &str,
    events: &[Event],
    mapping: &Mapping,
) -> Option<Vec<ItemResult>> {
    let refused = refused_entries(answer);
    if refused.is_empty() {
        return None;
    }
    let mut named = 0;
    let results: Vec<ItemResult> = events
        .iter()
        .map(|event| {
            let time = mapping.time(event);
            match refused.iter().find(|(ns, _)| *ns == time) {
                Some((_, reason)) => {
                    named += 1;
                    ItemResult::Refused(format!("{why}: {reason}"))
                }
                // Loki took it, or refused it on another ingester without saying so: a
                // second push of the same entry is a duplicate Loki drops.
                None => ItemResult::Retry(format!(
                    "{why}: sent again, Loki refused other entries of the request"
                )),
            }
        })
        .collect();
    (named > 0).then_some(results)
}

/// The credentials sent with each push (never printed: no `Debug`).
enum Credentials {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

pub struct Loki {
    client: reqwest::Client,
    /// `…/loki/api/v1/push`.
    url: reqwest::Url,
    headers: HeaderMap,
    credentials: Credentials,
    mapping: Mapping,
    batch: usize,
    /// What the last 429/503 asked for (`Retry-After`).
    asked: Option<Duration>,
}

/// `base` with the push path appended to its path.
pub fn push_url(base: &reqwest::Url) -> reqwest::Url {
    let mut url = base.clone();
    let path = format!("{}/{PUSH_PATH}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

impl Loki {
    pub fn build(
        declared: &Declared<'_>,
        base: reqwest::Url,
        settings: &LokiConfig,
    ) -> Result<Loki, DeliveryError> {
        let (name, secrets) = (declared.name, declared.secrets);
        let labels = labels(&settings.labels).map_err(|why| declared.config(why))?;
        let mut headers = HeaderMap::new();
        for (header, value) in &settings.headers {
            let header_name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                declared.config(format!("loki.headers: `{header}` is not a header name"))
            })?;
            if header_name == AUTHORIZATION || header_name.as_str() == "x-scope-orgid" {
                return Err(declared.config(format!(
                    "loki.headers: `{header}` is set by `auth` and `tenant`, not here"
                )));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                declared.config(format!(
                    "loki.headers: the value of `{header}` is not a header value"
                ))
            })?;
            headers.insert(header_name, value);
        }
        if let Some(tenant) = &settings.tenant {
            let valid = !tenant.is_empty()
                && tenant.len() <= 150
                && tenant != "."
                && tenant != ".."
                && tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c));
            if !valid {
                return Err(declared.config(format!(
                    "loki.tenant: `{tenant}` is not a Loki tenant id (1 to 150 of \
                     A-Z a-z 0-9 ! - _ . * ' ( ), not `.` or `..`)"
                )));
            }
            let value = HeaderValue::from_str(tenant)
                .map_err(|_| declared.config("loki.tenant: not a header value".into()))?;
            headers.insert(HeaderName::from_static("x-scope-orgid"), value);
        }
        let credentials = match settings.auth {
            LokiAuth::None => Credentials::None,
            LokiAuth::Basic => Credentials::Basic {
                username: require(name, secrets, "username", "loki.auth basic")?,
                password: require(name, secrets, "password", "loki.auth basic")?,
            },
            LokiAuth::Bearer => {
                Credentials::Bearer(require(name, secrets, "token", "loki.auth bearer")?)
            }
        };
        let format = BodyFormat::new(settings.format, declared, "loki.format")?;
        Ok(Loki {
            client: http::client(name, &settings.tls, secrets)?,
            url: push_url(&base),
            headers,
            credentials,
            mapping: Mapping {
                labels,
                format,
                timestamp: settings.timestamp,
            },
            batch: settings.batch_size.max(1) as usize,
            asked: None,
        })
    }
}

impl FromConsumer for Loki {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.loki.as_ref(), "loki")?;
        let base = http::endpoint(declared, "loki.url", &settings.url)?;
        Loki::build(declared, base, settings)
    }
}

impl Sink for Loki {
    fn batch_size(&self) -> usize {
        self.batch
    }

    fn retry_after(&mut self) -> Option<Duration> {
        self.asked.take()
    }

    /// The push body `event` alone would be sent in.
    fn preview(&self, event: &Event) -> serde_json::Value {
        let events = std::slice::from_ref(event);
        let body = self.mapping.body(events, &self.mapping.streams(events));
        serde_json::from_slice(&body).unwrap_or_default()
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        // A 413 (a gateway's or Loki's `grpc_server_max_recv_msg_size`) splits the batch.
        http::send_splitting(self, events).await
    }
}

/// One push request.
impl BatchPost for Loki {
    async fn post(&mut self, events: &[Event]) -> Posted {
        let streams = self.mapping.streams(events);
        let body = self.mapping.body(events, &streams);
        let bytes = body.len();
        let shown = http::redact(&self.url);
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("content-type", "application/json")
            .body(body);
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
                return Posted::Done(Outcome::Retry(format!(
                    "POST {shown}: {}",
                    chain(&e.without_url())
                )));
            }
        };
        let status = response.status();
        let action = http::action(status.as_u16());
        if action == Action::Deliver {
            return Posted::Done(Outcome::Delivered);
        }
        self.asked = http::retry_after(response.headers(), chrono::Utc::now());
        let answer = response.text().await.unwrap_or_default();
        let mut why = format!("POST {shown}: HTTP {status}");
        let with_answer = |why: &str| format!("{why}: {}", http::snippet(answer.trim()));
        Posted::Done(match action {
            Action::Deliver => Outcome::Delivered,
            Action::Split => {
                return Posted::TooLarge {
                    bytes,
                    why: with_answer(&why),
                };
            }
            Action::Retry => {
                why = with_answer(&why);
                if matches!(status.as_u16(), 401 | 403) {
                    why.push_str(
                        " (check loki.auth and the Secret's credentials, and loki.tenant: \
                         retried until they are fixed)",
                    );
                }
                if let Some(wait) = self.asked {
                    why.push_str(&format!(" (Retry-After: {} s)", wait.as_secs()));
                }
                Outcome::Retry(why)
            }
            Action::Refuse => {
                let named = (status.as_u16() == 400)
                    .then(|| results_of_400(&answer, &why, events, &self.mapping))
                    .flatten();
                match named {
                    Some(results) => Outcome::Each(results),
                    None => http::refuse_all(events.len(), &with_answer(&why)),
                }
            }
        })
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn lower_batch(&mut self, size: usize) {
        self.batch = size.max(1);
    }
}

#[cfg(test)]
#[path = "loki_tests.rs"]
mod tests;
