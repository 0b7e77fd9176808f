//! Generic agent events: Falconer's own JSON schema, for in-house tools that post events
//! without a parser of their own. The schema is published at
//! `GET /api/v1/schemas/agent-event.json` (`AGENT_EVENT_SCHEMA`); a test keeps it and this
//! parser in step. Pure functions: no I/O.

use super::{Context, Obj, Source, check_long_name, check_name, cluster, finish};
use chrono::{DateTime, SubsecRound, Utc};
use falconer_store::{Event, Kind, Severity, Workload, dedup_key};
use serde_json::value::RawValue;
use uuid::Uuid;

/// The JSON Schema of an agent event.
pub const AGENT_EVENT_SCHEMA: &str = include_str!("agent-event.schema.json");

/// Every key of the schema; anything else is refused, so a misspelt key is not lost quietly.
pub const KEYS: &[&str] = &[
    "source",
    "kind",
    "severity",
    "rule",
    "time",
    "message",
    "id",
    "source_version",
    "severity_raw",
    "tags",
    "cluster",
    "namespace",
    "pod",
    "container",
    "image",
    "node",
    "workload",
    "fields",
];

/// Keys an event must have.
pub const REQUIRED: &[&str] = &["source", "kind", "severity", "rule", "time"];

/// The tool's name: lower-case letters, digits, `.`, `_`, `-`; not a source the hub parses
/// from its own format, so an agent event cannot pass for one.
fn check_source(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(format!(
            "field `source`: `{name}` must be 1–63 lower-case letters, digits, `.`, `_` or `-`"
        ));
    }
    if Source::named(name).is_some_and(|s| s != Source::Agent) {
        return Err(format!(
            "field `source`: `{name}` is parsed from its own format; post it with \
             ?source={name}, or name your tool differently"
        ));
    }
    Ok(())
}

pub fn parse(raw: &RawValue, ctx: &Context<'_>) -> Result<Event, String> {
    let item = Obj::read(raw, "")?;
    let mut unknown: Vec<&str> = item.keys().filter(|k| !KEYS.contains(k)).collect();
    unknown.sort_unstable();
    if let Some(key) = unknown.first() {
        return Err(format!(
            "field `{key}` is not part of the agent event schema (see /api/v1/schemas/agent-event.json)"
        ));
    }
    for key in REQUIRED {
        item.required(key)?;
    }
    let source = item.required("source")?.into_owned();
    check_source(&source)?;
    let kind: Kind = item
        .required("kind")?
        .parse()
        .map_err(|e| format!("field `kind`: {e}"))?;
    let severity_text = item.required("severity")?;
    let severity: Severity = severity_text
        .parse()
        .map_err(|e| format!("field `severity`: {e}"))?;
    let rule = item.required("rule")?.into_owned();
    check_long_name("rule", &rule)?;
    let time_text = item.required("time")?;
    let time = DateTime::parse_from_rfc3339(&time_text)
        .map_err(|_| format!("field `time`: `{time_text}` is not an RFC 3339 timestamp"))?
        .with_timezone(&Utc)
        .trunc_subsecs(6);
    let name = |key: &str| -> Result<Option<String>, String> {
        let value = item.string(key)?;
        if let Some(v) = &value {
            check_name(key, v)?;
        }
        Ok(value)
    };
    let workload = match item.obj("workload")? {
        Some(w) => {
            let kind = w.required("kind")?.into_owned();
            let name = w.required("name")?.into_owned();
            check_name("workload.kind", &kind)?;
            check_name("workload.name", &name)?;
            Some(Workload { kind, name })
        }
        None => None,
    };
    let fields = match item.raw("fields") {
        Some(fields) if fields.get().starts_with('{') => fields.to_owned(),
        Some(other) => {
            return Err(format!(
                "field `fields`: expected an object, got {}",
                super::type_name(other.get())
            ));
        }
        None => super::to_fields(&serde_json::json!({}))?,
    };
    let image = item.string("image")?;
    if let Some(image) = &image {
        check_long_name("image", image)?;
    }
    let source_version = item.string("source_version")?;
    if let Some(version) = &source_version {
        check_name("source_version", version)?;
    }
    // The tool's own id identifies a retry; without one, the item's exact text does.
    let id = item.text("id")?;
    let dedup = match &id {
        Some(id) => dedup_key("agent", &[source.as_bytes(), id.as_bytes()]),
        None => dedup_key("agent", &[source.as_bytes(), raw.get().as_bytes()]),
    };
    let cluster_name = item.string("cluster")?;
    let event = Event {
        id: Uuid::now_v7(),
        dedup_key: Some(dedup),
        time,
        received_at: ctx.received_at,
        source_version,
        kind,
        severity,
        severity_raw: item
            .string("severity_raw")?
            .unwrap_or_else(|| severity_text.into_owned()),
        message: item.string("message")?.unwrap_or_else(|| rule.clone()),
        rule,
        tags: item.strings("tags")?,
        cluster: cluster(ctx, cluster_name.as_deref(), "cluster")?,
        namespace: name("namespace")?,
        pod: name("pod")?,
        container: name("container")?,
        image,
        node: name("node")?,
        workload,
        fields,
        raw: Some(raw.to_owned()),
        source,
        group: None,
        suppressed: None,
    };
    finish(event, raw.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn parse_text(text: &str) -> Result<Event, String> {
        let ctx = Context {
            cluster: None,
            default_cluster: "home",
            received_at: Utc::now(),
        };
        parse(&RawValue::from_string(text.to_owned()).unwrap(), &ctx)
    }

    #[test]
    fn the_published_schema_lists_exactly_the_keys_the_parser_reads() {
        let schema: Value = serde_json::from_str(AGENT_EVENT_SCHEMA).unwrap();
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(properties, KEYS.iter().copied().collect());
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, REQUIRED.iter().copied().collect());
        assert_eq!(schema["additionalProperties"], false);
        let kinds: BTreeSet<&str> = schema["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(kinds, Kind::ALL.iter().map(|k| k.as_str()).collect());
    }

    #[test]
    fn a_full_agent_event_is_taken_as_written() {
        let path = format!(
            "{}/../tests/fixtures/agent/full.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let e = parse_text(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(e.source, "acme-scanner");
        assert_eq!(e.source_version.as_deref(), Some("2.1.0"));
        assert_eq!(e.kind, Kind::Misconfiguration);
        assert_eq!(e.severity, Severity::Error);
        assert_eq!(e.severity_raw, "P2");
        assert_eq!(e.rule, "public-bucket");
        assert_eq!(e.cluster, "prod-eu");
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), Some("web-1"));
        assert_eq!(
            e.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(e.tags, ["storage", "日本語"]);
        let fields: Value = serde_json::from_str(e.fields.get()).unwrap();
        assert_eq!(fields["bucket"], "shop-assets");
    }

    #[test]
    fn a_minimal_event_gets_defaults_and_its_text_as_dedup_key() {
        let text = r#"{"source":"tool","kind":"other","severity":"info","rule":"r","time":"2026-05-04T10:11:12Z"}"#;
        let e = parse_text(text).unwrap();
        assert_eq!(e.message, "r");
        assert_eq!(e.severity, Severity::Informational);
        assert_eq!(e.severity_raw, "info");
        assert_eq!(e.cluster, "home");
        assert_eq!(e.fields.get(), "{}");
        assert_eq!(parse_text(text).unwrap().dedup_key, e.dedup_key);
        let with_id = |id: &str, rule: &str| {
            parse_text(&format!(
                r#"{{"source":"tool","kind":"other","severity":"info","rule":"{rule}","time":"2026-05-04T10:11:12Z","id":"{id}"}}"#
            ))
            .unwrap()
            .dedup_key
        };
        assert_eq!(
            with_id("7", "a"),
            with_id("7", "b"),
            "the tool's id decides"
        );
    }

    #[test]
    fn malformed_events_are_refused_naming_the_field() {
        let base = r#""kind":"other","severity":"info","rule":"r","time":"2026-05-04T10:11:12Z""#;
        let cases = [
            (format!(r#"{{{base}}}"#), "field `source` is missing"),
            (
                format!(r#"{{"source":"Tool X",{base}}}"#),
                "field `source`: `Tool X` must be",
            ),
            (
                format!(r#"{{"source":"falco",{base}}}"#),
                "field `source`: `falco` is parsed from its own format",
            ),
            (
                format!(r#"{{"source":"t",{base},"namepsace":"x"}}"#),
                "field `namepsace` is not part of the agent event schema",
            ),
            (
                r#"{"source":"t","kind":"alert","severity":"info","rule":"r","time":"2026-05-04T10:11:12Z"}"#.into(),
                "field `kind`: unknown kind `alert`",
            ),
            (
                r#"{"source":"t","kind":"other","severity":"5","rule":"r","time":"2026-05-04T10:11:12Z"}"#.into(),
                "field `severity`: unknown severity `5`",
            ),
            (
                format!(r#"{{"source":"t",{base},"fields":[1]}}"#),
                "field `fields`: expected an object, got an array",
            ),
            (
                format!(r#"{{"source":"t",{base},"workload":{{"kind":"Deployment"}}}}"#),
                "field `workload.name` is missing",
            ),
            (
                format!(r#"{{"source":"t",{base},"tags":[1]}}"#),
                "field `tags`: expected an array of strings",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_text(&text).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }
}
