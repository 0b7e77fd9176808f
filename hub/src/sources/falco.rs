//! Falco alerts (`json_output: true`), as Falco's `http_output` and falcosidekick's webhook
//! send them, parsed into normalized events. Pure functions: no I/O.
//!
//! Accepted shapes: Falco 0.36–0.44 — `evt.time` (ns integer) or `evt.time.iso8601` in
//! `output_fields`, `null` values for missing fields (and the older `<NA>`), the optional
//! `message` property (0.39+), container-plugin metadata (0.41+), falcosidekick's extra
//! `uuid` and custom fields.

use chrono::{DateTime, SubsecRound, Utc};
use falconer_store::{Event, Kind, Severity, Workload};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use uuid::Uuid;

/// What the request tells about events beyond their payload.
pub struct Context<'a> {
    /// Cluster named by the request (`X-Falconer-Cluster` or `?cluster=`); wins over the payload.
    pub cluster: Option<&'a str>,
    /// The hub's own cluster name, for events that name none.
    pub default_cluster: &'a str,
    pub received_at: DateTime<Utc>,
}

/// Falco sources whose alerts are audit records rather than runtime detections.
const AUDIT_SOURCES: &[&str] = &[
    "k8s_audit",
    "aws_cloudtrail",
    "gcp_auditlog",
    "okta",
    "github",
];

/// The alert as Falco writes it, borrowing from the request body: the fast path. Top-level
/// keys are read in any case, and `OutputFields` as `output_fields` ([`falco_key`]).
struct Alert<'a> {
    time: Cow<'a, str>,
    rule: Cow<'a, str>,
    priority: Cow<'a, str>,
    source: Option<Cow<'a, str>>,
    hostname: Option<Cow<'a, str>>,
    output: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    tags: Option<Vec<String>>,
    output_fields: Option<&'a RawValue>,
}

/// Falco's top-level keys, as Falco writes them.
const FALCO_KEYS: [&str; 9] = [
    "time",
    "rule",
    "priority",
    "source",
    "hostname",
    "output",
    "message",
    "tags",
    "output_fields",
];

/// The Falco key `key` stands for: itself, or a spelling in another case (`Rule`,
/// `PRIORITY`) or without the underscore (`OutputFields`), as Go senders write them —
/// falco-talon's examples do, and Go's JSON decoder matches keys without regard to case.
pub fn falco_key(key: &str) -> Option<&'static str> {
    if let Some(exact) = FALCO_KEYS.iter().find(|k| **k == key) {
        return Some(exact);
    }
    FALCO_KEYS.iter().copied().find(|canonical| {
        let mut given = key.bytes().filter(|b| *b != b'_');
        let mut wanted = canonical.bytes().filter(|b| *b != b'_');
        loop {
            match (given.next(), wanted.next()) {
                (None, None) => return true,
                (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
                _ => return false,
            }
        }
    })
}

/// A string borrowed from the body when it needs no unescaping.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for Alert<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Alert<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Falco alert")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Alert<'de>, A::Error> {
                let mut seen: [Option<Cow<'de, str>>; 9] = Default::default();
                let mut strings: [Option<Cow<'de, str>>; 7] = Default::default();
                let mut tags = None;
                let mut output_fields = None;
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let Some(name) = falco_key(&key) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let slot = FALCO_KEYS.iter().position(|k| *k == name).unwrap_or(0);
                    if let Some(first) = &seen[slot] {
                        return Err(A::Error::custom(format!(
                            "field `{name}` is given twice (as `{first}` and `{key}`)"
                        )));
                    }
                    seen[slot] = Some(key);
                    match name {
                        "tags" => tags = map.next_value::<Option<Vec<String>>>()?,
                        "output_fields" => {
                            output_fields = map.next_value::<Option<&'de RawValue>>()?
                        }
                        _ => strings[slot] = map.next_value::<Option<Text<'de>>>()?.map(|t| t.0),
                    }
                }
                let [time, rule, priority, source, hostname, output, message] = strings;
                Ok(Alert {
                    time: time.ok_or_else(|| A::Error::missing_field("time"))?,
                    rule: rule.ok_or_else(|| A::Error::missing_field("rule"))?,
                    priority: priority.ok_or_else(|| A::Error::missing_field("priority"))?,
                    source,
                    hostname,
                    output,
                    message,
                    tags,
                    output_fields,
                })
            }
        }
        d.deserialize_map(Fields)
    }
}

/// `output_fields`, borrowed from the body. Keys may repeat or come in several spellings
/// (`k8s.ns.name`, `k8s_ns_name`); the last occurrence of a key wins, as in any JSON reader.
struct Fields<'a>(HashMap<Cow<'a, str>, &'a RawValue>);

impl<'a> Fields<'a> {
    /// The first of `keys` holding a real value: a string, not empty, not Falco's old `<NA>`.
    fn real(&self, keys: &[&str]) -> Option<Cow<'a, str>> {
        keys.iter().find_map(|key| {
            let raw = self.0.get(*key)?;
            if !raw.get().starts_with('"') {
                return None;
            }
            let text: Cow<'a, str> = serde_json::from_str(raw.get()).ok()?;
            (!text.is_empty() && text != "<NA>").then_some(text)
        })
    }
}

pub fn parse(raw: &RawValue, ctx: &Context<'_>) -> Result<Event, String> {
    let text = raw.get();
    // Valid alerts take the borrowed, typed path; anything it refuses is explained field by
    // field by `explain`, which names what is wrong.
    let alert: Alert<'_> = serde_json::from_str(text).map_err(|e| explain(text, e))?;
    let severity: Severity = alert
        .priority
        .parse()
        .map_err(|e| format!("field `priority`: {e}"))?;
    for (key, value) in [
        ("rule", &alert.rule),
        ("priority", &alert.priority),
        ("time", &alert.time),
    ] {
        if value.trim().is_empty() {
            return Err(format!("field `{key}` is empty"));
        }
    }
    let time = DateTime::parse_from_rfc3339(&alert.time)
        .map_err(|_| {
            format!(
                "field `time`: `{}` is not an RFC 3339 timestamp",
                alert.time
            )
        })?
        .with_timezone(&Utc)
        .trunc_subsecs(6);
    let fields: Box<RawValue> = match alert.output_fields {
        Some(fields) if fields.get() != "null" => {
            if !fields.get().starts_with('{') {
                let got = match fields.get().as_bytes()[0] {
                    b'[' => "an array",
                    b'"' => "a string",
                    b't' | b'f' => "a boolean",
                    _ => "a number",
                };
                return Err(format!(
                    "field `output_fields`: expected an object, got {got}"
                ));
            }
            fields.to_owned()
        }
        _ => RawValue::from_string("{}".into()).map_err(|e| e.to_string())?,
    };
    let known = Fields(
        serde_json::from_str(fields.get()).map_err(|e| format!("field `output_fields`: {e}"))?,
    );
    let cluster = match ctx.cluster {
        Some(cluster) => cluster.to_owned(),
        None => match known.real(&["falconer.cluster", "cluster", "k8s.cluster.name"]) {
            Some(cluster) => {
                falconer_model::names::check_cluster_name(&cluster)
                    .map_err(|e| format!("cluster in `output_fields`: {e}"))?;
                cluster.into_owned()
            }
            None => ctx.default_cluster.to_owned(),
        },
    };
    let image = match (
        known.real(&["container.image.repository", "container_image_repository"]),
        known.real(&["container.image.tag", "container_image_tag"]),
    ) {
        (Some(repository), Some(tag)) => Some(format!("{repository}:{tag}")),
        (Some(repository), None) => Some(repository.into_owned()),
        (None, _) => known.real(&["container.image"]).map(Cow::into_owned),
    };
    let workload = [
        ("k8s.deployment.name", "Deployment"),
        ("k8s.statefulset.name", "StatefulSet"),
        ("k8s.daemonset.name", "DaemonSet"),
        ("k8s.rs.name", "ReplicaSet"),
        ("k8s.rc.name", "ReplicationController"),
    ]
    .into_iter()
    .find_map(|(key, kind)| {
        known.real(&[key]).map(|name| Workload {
            kind: kind.to_owned(),
            name: name.into_owned(),
        })
    });
    let namespace = known
        .real(&["k8s.ns.name", "k8s_ns_name"])
        .map(Cow::into_owned);
    let pod = known
        .real(&["k8s.pod.name", "k8s_pod_name"])
        .map(Cow::into_owned);
    // Falco names the host itself as container `host`.
    let container = known
        .real(&["container.name", "container_name"])
        .filter(|_| known.real(&["container.id", "container_id"]).as_deref() != Some("host"))
        .map(Cow::into_owned);
    let falco_source = alert.source.as_deref().unwrap_or("syscall");
    let kind = if AUDIT_SOURCES.contains(&falco_source) {
        Kind::Audit
    } else if falco_source == "internal" {
        Kind::Other
    } else {
        Kind::RuntimeAlert
    };
    let message = match (&alert.message, &alert.output) {
        (Some(message), _) => message.to_string(),
        (None, Some(output)) => strip_output_prefix(output, &alert.priority).to_owned(),
        (None, None) => alert.rule.to_string(),
    };
    // The same alert posted twice (Falco retrying a timeout, a relay replaying) has the same
    // time, rule, hostname and output; without `output`, the `output_fields` text stands in.
    let dedup_key = falconer_store::dedup_key(
        "falco",
        &[
            alert.time.as_bytes(),
            alert.rule.as_bytes(),
            alert.hostname.as_deref().unwrap_or("").as_bytes(),
            alert.output.as_deref().unwrap_or(fields.get()).as_bytes(),
        ],
    );
    let mut event = Event {
        id: Uuid::now_v7(),
        dedup_key: Some(dedup_key),
        time,
        received_at: ctx.received_at,
        source: "falco".into(),
        source_version: None,
        kind,
        severity,
        severity_raw: alert.priority.into_owned(),
        rule: alert.rule.into_owned(),
        message,
        tags: alert.tags.unwrap_or_default(),
        cluster,
        namespace,
        pod,
        container,
        image,
        node: alert.hostname.map(Cow::into_owned),
        workload,
        fields,
        raw: Some(raw.to_owned()),
        group: None,
        suppressed: None,
    };
    // JSON may escape NUL (`\u0000`); neither database stores it in text or jsonb. The raw
    // payload keeps it; normalized copies carry U+FFFD instead.
    if text.contains("\\u0000") {
        scrub_event(&mut event)?;
    }
    Ok(event)
}

/// Why an item is not a Falco alert, naming the field: checked one field at a time on a
/// generic parse, which the fast path does not do.
fn explain(text: &str, fast_path_error: serde_json::Error) -> String {
    let map: Map<String, Value> = match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(map) => map
            .into_iter()
            .map(|(key, value)| match falco_key(&key) {
                Some(name) => (name.to_owned(), value),
                None => (key, value),
            })
            .collect(),
        Err(_) => {
            return "expected a JSON object (a Falco alert with `rule`, `priority` and `time`)"
                .into();
        }
    };
    let checks = [
        required_str(&map, "rule").err(),
        required_str(&map, "priority").err(),
        required_str(&map, "time").err(),
        optional_str(&map, "source").err(),
        optional_str(&map, "hostname").err(),
        optional_str(&map, "output").err(),
        optional_str(&map, "message").err(),
        match map.get("tags") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => None,
            Some(Value::Array(_)) => Some("field `tags`: expected an array of strings".into()),
            Some(other) => Some(format!(
                "field `tags`: expected an array of strings, got {}",
                type_name(other)
            )),
        },
        match map.get("output_fields") {
            None | Some(Value::Null) | Some(Value::Object(_)) => None,
            Some(other) => Some(format!(
                "field `output_fields`: expected an object, got {}",
                type_name(other)
            )),
        },
    ];
    checks
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| format!("not a Falco alert: {fast_path_error}"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_str<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match optional_str(map, key)? {
        Some(value) if !value.trim().is_empty() => Ok(value),
        Some(_) => Err(format!("field `{key}` is empty")),
        None => Err(format!("field `{key}` is missing")),
    }
}

fn optional_str<'a>(map: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "field `{key}`: expected a string, got {}",
            type_name(other)
        )),
    }
}

/// Falco's `output` starts with `<time>: <Priority> `; the rest is the rule's message.
fn strip_output_prefix<'a>(output: &'a str, priority: &str) -> &'a str {
    output
        .split_once(": ")
        .and_then(|(_, rest)| {
            let (word, message) = rest.split_once(' ')?;
            word.eq_ignore_ascii_case(priority).then_some(message)
        })
        .unwrap_or(output)
}

fn scrub(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{fffd}");
    }
}

fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => scrub(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (mut key, mut item) in entries {
                scrub(&mut key);
                scrub_value(&mut item);
                map.insert(key, item);
            }
        }
        _ => {}
    }
}

/// Replaces NUL characters, which neither database stores in text, in every normalized field.
pub(crate) fn scrub_event(e: &mut Event) -> Result<(), String> {
    for text in [
        &mut e.rule,
        &mut e.message,
        &mut e.severity_raw,
        &mut e.cluster,
    ] {
        scrub(text);
    }
    e.tags.iter_mut().for_each(scrub);
    for text in [
        &mut e.namespace,
        &mut e.pod,
        &mut e.container,
        &mut e.image,
        &mut e.node,
    ]
    .into_iter()
    .flatten()
    {
        scrub(text);
    }
    if let Some(w) = &mut e.workload {
        scrub(&mut w.kind);
        scrub(&mut w.name);
    }
    let mut fields: Value = serde_json::from_str(e.fields.get()).map_err(|e| e.to_string())?;
    scrub_value(&mut fields);
    e.fields = serde_json::value::to_raw_value(&fields).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            cluster: None,
            default_cluster: "home",
            received_at: Utc::now(),
        }
    }

    fn fields(e: &Event) -> Value {
        serde_json::from_str(e.fields.get()).expect("fields are JSON")
    }

    fn parse_text(text: &str) -> Result<Event, String> {
        let raw = RawValue::from_string(text.to_owned()).expect("valid JSON");
        parse(&raw, &ctx())
    }

    fn fixture(name: &str) -> Event {
        let path = format!(
            "{}/../tests/fixtures/falco/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        parse_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn a_falco_0_36_alert_with_nanosecond_evt_time_is_normalized() {
        let e = fixture("0.36-terminal-shell.json");
        assert_eq!(e.source, "falco");
        assert_eq!(e.kind, Kind::RuntimeAlert);
        assert_eq!(e.severity, Severity::Notice);
        assert_eq!(e.severity_raw, "Notice");
        assert_eq!(e.rule, "Terminal shell in container");
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), Some("web-7d9f8-abcde"));
        assert_eq!(e.container.as_deref(), Some("web"));
        assert_eq!(e.image.as_deref(), Some("registry.example/shop/web:1.4.2"));
        assert_eq!(e.node.as_deref(), Some("node-a"));
        assert_eq!(e.cluster, "home");
        assert_eq!(
            e.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert!(e.message.starts_with("A shell was spawned in a container"));
        assert_eq!(e.time.to_rfc3339(), "2026-05-04T10:11:12.123456+00:00");
        assert_eq!(fields(&e)["evt.time"], 1777889472123456789u64);
        assert_eq!(e.tags, ["container", "mitre_execution", "shell", "T1059"]);
    }

    #[test]
    fn a_falco_0_39_alert_uses_its_message_property() {
        let e = fixture("0.39-message-property.json");
        assert_eq!(
            e.message,
            "Sensitive file opened for reading by non-trusted program (file=/etc/shadow)"
        );
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.container, None, "container `host` is the node itself");
    }

    #[test]
    fn a_falco_0_41_alert_reads_container_plugin_fields() {
        let e = fixture("0.41-container-plugin.json");
        assert_eq!(e.namespace.as_deref(), Some("payments"));
        assert_eq!(e.pod.as_deref(), Some("api-0"));
        assert_eq!(e.image.as_deref(), Some("ghcr.io/acme/api:2.0.1"));
        assert_eq!(e.container.as_deref(), Some("api"));
        assert_eq!(
            fields(&e)["evt.time.iso8601"],
            "2026-05-04T10:11:12.123456789+0000"
        );
    }

    #[test]
    fn a_falco_0_44_host_alert_with_null_fields_has_no_pod() {
        let e = fixture("0.44-host-null-fields.json");
        assert_eq!(e.severity, Severity::Critical);
        assert_eq!(e.pod, None);
        assert_eq!(e.namespace, None);
        assert_eq!(e.container, None);
        assert_eq!(e.image, None);
        assert_eq!(fields(&e)["k8s.pod.name"], Value::Null);
    }

    #[test]
    fn a_k8s_audit_alert_is_an_audit_event() {
        let e = fixture("k8saudit-exec.json");
        assert_eq!(e.kind, Kind::Audit);
        assert_eq!(e.severity, Severity::Notice);
        assert_eq!(fields(&e)["ka.user.name"], "alice@example.org");
    }

    #[test]
    fn a_falcosidekick_payload_with_uuid_and_custom_cluster_field_is_accepted() {
        let e = fixture("falcosidekick-webhook.json");
        assert_eq!(e.cluster, "prod-eu");
        assert_eq!(e.severity, Severity::Error);
        assert_ne!(e.id.to_string(), "6f1c3b0e-2a8e-4d4c-9d1f-3c2b1a0e9f8d");
    }

    #[test]
    fn top_level_keys_are_read_in_any_case_as_go_senders_write_them() {
        let e = fixture("talon-pascal-case.json");
        assert_eq!(e.rule, "Netcat Remote Code Execution in Container");
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.severity_raw, "Warning");
        assert_eq!(e.node.as_deref(), Some("node-d"));
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), Some("web-7d9f8-abcde"));
        assert_eq!(e.tags, ["network", "process", "mitre_execution", "T1059"]);
        assert!(
            e.message.starts_with("Netcat runs inside container"),
            "{}",
            e.message
        );
        assert_eq!(e.time.to_rfc3339(), "2026-05-04T10:11:12.123456+00:00");
        // Upper case and snake case too; the raw payload keeps the sender's spelling.
        let e = parse_text(
            r#"{"TIME":"2026-05-04T10:11:12Z","RULE":"r","PRIORITY":"debug","Output_Fields":{"k8s.pod.name":"p"}}"#,
        )
        .unwrap();
        assert_eq!(e.pod.as_deref(), Some("p"));
        assert!(e.raw.unwrap().get().contains("\"RULE\""));
        assert_eq!(falco_key("OutputFields"), Some("output_fields"));
        assert_eq!(falco_key("host_name"), Some("hostname"));
        assert_eq!(falco_key("rules"), None);
    }

    #[test]
    fn a_key_given_in_two_spellings_is_refused_naming_both() {
        let error = parse_text(
            r#"{"time":"2026-05-04T10:11:12Z","rule":"a","Rule":"b","priority":"debug"}"#,
        )
        .unwrap_err();
        assert!(
            error.contains("field `rule` is given twice (as `rule` and `Rule`)"),
            "{error}"
        );
        // A missing field is named in Falco's spelling, whatever the others' case.
        let error = parse_text(r#"{"Time":"2026-05-04T10:11:12Z","Rule":"a"}"#).unwrap_err();
        assert!(error.starts_with("field `priority` is missing"), "{error}");
        let error =
            parse_text(r#"{"Time":"2026-05-04T10:11:12Z","Rule":"a","Priority":7}"#).unwrap_err();
        assert!(
            error.starts_with("field `priority`: expected a string"),
            "{error}"
        );
    }

    #[test]
    fn the_request_cluster_wins_over_the_payload_cluster() {
        let raw = RawValue::from_string(
            r#"{"time":"2026-05-04T10:11:12Z","rule":"r","priority":"Debug","output_fields":{"cluster":"payload"}}"#.into(),
        )
        .unwrap();
        let context = Context {
            cluster: Some("header"),
            ..ctx()
        };
        assert_eq!(parse(&raw, &context).unwrap().cluster, "header");
        assert_eq!(parse(&raw, &ctx()).unwrap().cluster, "payload");
    }

    #[test]
    fn both_spellings_of_a_field_and_repeated_keys_are_accepted() {
        let e = parse_text(
            r#"{"time":"2026-05-04T10:11:12Z","rule":"r","priority":"info","output_fields":{"k8s_ns_name":"a","k8s.ns.name":"b","k8s.pod.name":"p","k8s.pod.name":"q","container.id":7}}"#,
        )
        .unwrap();
        assert_eq!(
            e.namespace.as_deref(),
            Some("b"),
            "the dotted Falco name wins"
        );
        assert_eq!(
            e.pod.as_deref(),
            Some("q"),
            "the last of repeated keys wins"
        );
    }

    #[test]
    fn old_na_placeholders_count_as_missing() {
        let e = parse_text(
            r#"{"time":"2026-05-04T10:11:12Z","rule":"r","priority":"info","output_fields":{"k8s.pod.name":"<NA>","container.image.repository":"<NA>"}}"#,
        )
        .unwrap();
        assert_eq!(e.pod, None);
        assert_eq!(e.image, None);
        assert_eq!(e.severity, Severity::Informational);
        assert_eq!(e.message, "r");
    }

    #[test]
    fn invalid_alerts_are_refused_with_the_field_and_reason() {
        let cases = [
            (r#"[1]"#, "expected a JSON object"),
            (
                r#"{"priority":"Notice","time":"2026-05-04T10:11:12Z"}"#,
                "field `rule` is missing",
            ),
            (
                r#"{"rule":"","priority":"Notice","time":"2026-05-04T10:11:12Z"}"#,
                "field `rule` is empty",
            ),
            (
                r#"{"rule":"r","time":"2026-05-04T10:11:12Z"}"#,
                "field `priority` is missing",
            ),
            (
                r#"{"rule":"r","priority":"Severe","time":"2026-05-04T10:11:12Z"}"#,
                "field `priority`: unknown severity `Severe`",
            ),
            (
                r#"{"rule":"r","priority":3,"time":"2026-05-04T10:11:12Z"}"#,
                "field `priority`: expected a string, got a number",
            ),
            (
                r#"{"rule":"r","priority":"Notice"}"#,
                "field `time` is missing",
            ),
            (
                r#"{"rule":"r","priority":"Notice","time":"yesterday"}"#,
                "field `time`: `yesterday` is not an RFC 3339 timestamp",
            ),
            (
                r#"{"rule":"r","priority":"Notice","time":"2026-05-04T10:11:12Z","tags":"a"}"#,
                "field `tags`: expected an array of strings, got a string",
            ),
            (
                r#"{"rule":"r","priority":"Notice","time":"2026-05-04T10:11:12Z","tags":[1]}"#,
                "field `tags`: expected an array of strings",
            ),
            (
                r#"{"rule":"r","priority":"Notice","time":"2026-05-04T10:11:12Z","output_fields":[]}"#,
                "field `output_fields`: expected an object, got an array",
            ),
            (
                r#"{"rule":"r","priority":"Notice","time":"2026-05-04T10:11:12Z","hostname":7}"#,
                "field `hostname`: expected a string, got a number",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_text(text).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_same_alert_twice_has_the_same_dedup_key_and_a_changed_output_does_not() {
        let a = r#"{"time":"2026-05-04T10:11:12.123456789Z","rule":"r","priority":"Notice","hostname":"h","output":"x"}"#;
        let b = r#"{"time":"2026-05-04T10:11:12.123456789Z","rule":"r","priority":"Notice","hostname":"h","output":"y"}"#;
        let key = |t| parse_text(t).unwrap().dedup_key.unwrap();
        assert_eq!(key(a), key(a));
        assert_ne!(key(a), key(b));
    }

    #[test]
    fn nul_characters_are_replaced_in_normalized_copies_but_kept_in_raw() {
        let text = r#"{"time":"2026-05-04T10:11:12Z","rule":"r\u0000x","priority":"Notice","output_fields":{"proc.cmdline":"a\u0000b"}}"#;
        let e = parse_text(text).unwrap();
        assert_eq!(e.rule, "r\u{fffd}x");
        assert_eq!(fields(&e)["proc.cmdline"], "a\u{fffd}b");
        assert_eq!(e.raw.unwrap().get(), text);
    }

    #[test]
    fn output_prefix_is_stripped_only_when_it_names_the_priority() {
        assert_eq!(
            strip_output_prefix("10:11:12.1: Notice A shell", "Notice"),
            "A shell"
        );
        assert_eq!(
            strip_output_prefix("no prefix here", "Notice"),
            "no prefix here"
        );
        assert_eq!(
            strip_output_prefix("x: Warning y", "Notice"),
            "x: Warning y"
        );
    }
}
