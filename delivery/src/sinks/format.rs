//! What the body of a message is, for the sinks that send events as they are (`webhook`,
//! and any sink whose section has a `format`): one pure mapping from an event (or a batch)
//! to bytes and a content type, golden-tested, so every sink writes the same body for the
//! same format.
//!
//! | format | one event | a batch |
//! |---|---|---|
//! | `falconer` | the event as the query API shows it (`application/json`) | a JSON array of them |
//! | `falco` | the alert exactly as the source sent it (`raw`, unchanged bytes); an event of another source (or without `raw`) as a Falco-shaped alert built from its fields | none: falcosidekick and falco-talon take one alert per request |
//! | `cloudevents` | a CloudEvents 1.0 event, structured JSON (`application/cloudevents+json`), the Falconer event as `data` | a JSON array (`application/cloudevents-batch+json`) |
//! | `template` | the consumer's `template` rendered: `application/json` when the text is a JSON object or array, else `text/plain; charset=utf-8` | none: a template renders one message |

use crate::error::DeliveryError;
use crate::notify::Notifier;
use crate::sinks::{Declared, event_json};
use falconer_model::crd::MessageFormat;
use falconer_model::event::Severity;
use falconer_store::Event;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub const JSON: &str = "application/json";
pub const CLOUDEVENTS: &str = "application/cloudevents+json";
pub const CLOUDEVENTS_BATCH: &str = "application/cloudevents-batch+json";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The CloudEvents `type` prefix; the event's kind follows (`io.falconer.event.runtime_alert`).
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "io.falconer.event.";

/// A message body and its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// A consumer's message format, ready to write bodies (for `template`, with the compiled
/// template and the dashboard link).
#[derive(Debug, Clone)]
pub enum BodyFormat {
    Falconer,
    Falco,
    CloudEvents,
    Template(Box<Notifier>),
}

impl BodyFormat {
    /// The format `format` of the consumer `declared`; `field` (e.g. `webhook.format`)
    /// names it in errors. `template` needs the consumer's `template`, which must compile.
    pub fn new(
        format: MessageFormat,
        declared: &Declared<'_>,
        field: &str,
    ) -> Result<BodyFormat, DeliveryError> {
        Ok(match format {
            MessageFormat::Falconer => BodyFormat::Falconer,
            MessageFormat::Falco => BodyFormat::Falco,
            MessageFormat::Cloudevents => BodyFormat::CloudEvents,
            MessageFormat::Template => {
                if declared.consumer.template.is_none() {
                    return Err(declared
                        .config(format!("{field}: template needs the consumer's `template`")));
                }
                BodyFormat::Template(Box::new(Notifier::new(declared)?))
            }
        })
    }

    pub fn kind(&self) -> MessageFormat {
        match self {
            BodyFormat::Falconer => MessageFormat::Falconer,
            BodyFormat::Falco => MessageFormat::Falco,
            BodyFormat::CloudEvents => MessageFormat::Cloudevents,
            BodyFormat::Template(_) => MessageFormat::Template,
        }
    }

    /// Whether several events fit one body ([`batch`] writes it).
    pub fn batches(&self) -> bool {
        matches!(self, BodyFormat::Falconer | BodyFormat::CloudEvents)
    }
}

/// The body of one event.
pub fn body(format: &BodyFormat, event: &Event) -> Body {
    match format {
        BodyFormat::Falconer => Body {
            content_type: JSON,
            bytes: event_json(event),
        },
        BodyFormat::Falco => Body {
            content_type: JSON,
            bytes: falco_alert(event),
        },
        BodyFormat::CloudEvents => Body {
            content_type: CLOUDEVENTS,
            bytes: cloudevent(event),
        },
        BodyFormat::Template(notifier) => {
            let text = notifier.event(event).text;
            Body {
                content_type: if is_json_document(&text) { JSON } else { TEXT },
                bytes: text.into_bytes(),
            }
        }
    }
}

/// The body of several events, or `None` for a format that sends one event per message.
pub fn batch(format: &BodyFormat, events: &[Event]) -> Option<Body> {
    let (content_type, one): (_, fn(&Event) -> Vec<u8>) = match format {
        BodyFormat::Falconer => (JSON, event_json),
        BodyFormat::CloudEvents => (CLOUDEVENTS_BATCH, cloudevent),
        BodyFormat::Falco | BodyFormat::Template(_) => return None,
    };
    let mut bytes = Vec::with_capacity(events.len() * 2048);
    bytes.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(&one(event));
    }
    bytes.push(b']');
    Some(Body {
        content_type,
        bytes,
    })
}

/// Whether `text` is a JSON object or array (a template rendering JSON).
fn is_json_document(text: &str) -> bool {
    let trimmed = text.trim();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok()
}

/// Falco's name of a priority, as Falco writes it in `priority`.
pub fn falco_priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency => "Emergency",
        Severity::Alert => "Alert",
        Severity::Critical => "Critical",
        Severity::Error => "Error",
        Severity::Warning => "Warning",
        Severity::Notice => "Notice",
        Severity::Informational => "Informational",
        Severity::Debug => "Debug",
    }
}

/// The alert as Falco sent it: the raw payload of a Falco event, byte for byte. Any other
/// event (KubeArmor, Tetragon, a scanner, …) becomes a Falco-shaped alert, so that
/// falcosidekick's checks (`priority`, `rule`, `time`, non-empty `output_fields`) and
/// falco-talon's matching (`k8s.ns.name`, `k8s.pod.name`) work on it: the event's fields,
/// completed with the Falco keys of what the event knows.
pub fn falco_alert(event: &Event) -> Vec<u8> {
    if event.source == "falco"
        && let Some(raw) = &event.raw
    {
        return raw.get().as_bytes().to_vec();
    }
    let mut fields: Map<String, Value> =
        serde_json::from_str(event.fields.get()).unwrap_or_default();
    let known = [
        ("k8s.ns.name", event.namespace.as_deref()),
        ("k8s.pod.name", event.pod.as_deref()),
        ("container.name", event.container.as_deref()),
        ("container.image.repository", event.image.as_deref()),
        ("falconer.cluster", Some(event.cluster.as_str())),
    ];
    for (key, value) in known {
        if let Some(value) = value
            && !fields.contains_key(key)
        {
            fields.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
    #[derive(Serialize)]
    struct Alert<'a> {
        time: String,
        rule: &'a str,
        priority: &'static str,
        source: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<&'a str>,
        output: &'a str,
        tags: &'a [String],
        output_fields: Map<String, Value>,
    }
    let alert = Alert {
        time: event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        rule: &event.rule,
        priority: falco_priority(event.severity),
        source: &event.source,
        hostname: event.node.as_deref(),
        output: &event.message,
        tags: &event.tags,
        output_fields: fields,
    };
    // Strings, a map of JSON values: serializing cannot fail.
    serde_json::to_vec(&alert).unwrap_or_default()
}

/// The event's CloudEvents `source`: `falconer://<cluster>/<source>`.
pub fn cloudevents_source(event: &Event) -> String {
    format!("falconer://{}/{}", event.cluster, event.source)
}

/// The event as a CloudEvents 1.0 event in the JSON format (structured content mode):
/// `id` = the event id, `source` = [`cloudevents_source`], `type` =
/// `io.falconer.event.<kind>`, `subject` = the rule, `time` = when it happened,
/// `datacontenttype` `application/json`, `data` = the Falconer event, and the extension
/// attribute `falconerseverity`.
pub fn cloudevent(event: &Event) -> Vec<u8> {
    #[derive(Serialize)]
    struct CloudEvent<'a> {
        specversion: &'static str,
        id: String,
        source: String,
        #[serde(rename = "type")]
        kind: String,
        subject: &'a str,
        time: String,
        datacontenttype: &'static str,
        falconerseverity: &'static str,
        data: &'a RawValue,
    }
    let data = event_json(event);
    let Ok(data) = serde_json::from_slice::<&RawValue>(&data) else {
        return Vec::new();
    };
    let envelope = CloudEvent {
        specversion: "1.0",
        id: event.id.to_string(),
        source: cloudevents_source(event),
        kind: format!("{CLOUDEVENTS_TYPE_PREFIX}{}", event.kind.as_str()),
        subject: &event.rule,
        time: event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        datacontenttype: JSON,
        falconerseverity: event.severity.as_str(),
        data,
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use falconer_model::crd::{Consumer, SinkType};

    /// A KubeArmor alert with a fixed id, for golden bodies.
    fn kubearmor() -> Event {
        serde_json::from_value(serde_json::json!({
            "id": "0193f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6",
            "time": "2026-05-04T10:11:12.345678Z",
            "received_at": "2026-05-04T10:11:13Z",
            "source": "kubearmor",
            "kind": "runtime_alert",
            "severity": "warning",
            "severity_raw": "5",
            "rule": "block-pkg-mgr",
            "message": "package manager run in container",
            "tags": ["NIST"],
            "cluster": "prod-eu",
            "namespace": "shop",
            "pod": "web-1",
            "node": "node-a",
            "fields": {"Operation": "Process"},
            "raw": {"Type": "MatchedPolicy", "Severity": "5"}
        }))
        .unwrap()
    }

    /// A Falco alert as Falco sent it: odd spacing and key order that a re-serialization
    /// would lose.
    const FALCO_RAW: &str = r#"{"time":"2026-05-04T10:11:12.123456789Z", "rule":"Terminal shell in container","priority":"Notice","output":"10:11:12.123456789: Notice A shell","output_fields":{"k8s.ns.name":"shop","evt.time":1777889472123456789},"source":"syscall","tags":["shell"],"hostname":"node-a"}"#;

    fn falco() -> Event {
        let mut e = kubearmor();
        e.source = "falco".into();
        e.raw = Some(RawValue::from_string(FALCO_RAW.into()).unwrap());
        e
    }

    fn text(body: &Body) -> &str {
        std::str::from_utf8(&body.bytes).unwrap()
    }

    #[test]
    fn falconer_is_the_event_json_and_its_batch_an_array() {
        let e = kubearmor();
        let one = body(&BodyFormat::Falconer, &e);
        assert_eq!(one.content_type, "application/json");
        assert_eq!(one.bytes, event_json(&e));
        let two = batch(&BodyFormat::Falconer, &[e.clone(), e.clone()]).unwrap();
        let parsed: Vec<Value> = serde_json::from_slice(&two.bytes).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0]["id"], e.id.to_string());
    }

    #[test]
    fn falco_sends_a_falco_alerts_raw_bytes_unchanged() {
        let one = body(&BodyFormat::Falco, &falco());
        assert_eq!(one.content_type, "application/json");
        assert_eq!(text(&one), FALCO_RAW);
        assert!(
            batch(&BodyFormat::Falco, &[falco()]).is_none(),
            "one alert per request"
        );
    }

    #[test]
    fn falco_builds_a_falco_shaped_alert_for_another_source() {
        let one = body(&BodyFormat::Falco, &kubearmor());
        assert_eq!(
            text(&one),
            concat!(
                r#"{"time":"2026-05-04T10:11:12.345678000Z","rule":"block-pkg-mgr","#,
                r#""priority":"Warning","source":"kubearmor","hostname":"node-a","#,
                r#""output":"package manager run in container","tags":["NIST"],"#,
                r#""output_fields":{"Operation":"Process","falconer.cluster":"prod-eu","#,
                r#""k8s.ns.name":"shop","k8s.pod.name":"web-1"}}"#
            )
        );
        // A Falco event without its raw payload is built the same way.
        let mut bare = falco();
        bare.raw = None;
        let alert: Value = serde_json::from_slice(&body(&BodyFormat::Falco, &bare).bytes).unwrap();
        assert_eq!(alert["priority"], "Warning");
        assert_eq!(alert["output_fields"]["k8s.pod.name"], "web-1");
    }

    #[test]
    fn a_field_the_event_has_is_not_overwritten_by_the_falco_keys() {
        let mut e = kubearmor();
        e.fields = RawValue::from_string(r#"{"k8s.ns.name":"from-fields"}"#.into()).unwrap();
        let alert: Value = serde_json::from_slice(&falco_alert(&e)).unwrap();
        assert_eq!(alert["output_fields"]["k8s.ns.name"], "from-fields");
    }

    #[test]
    fn cloudevents_is_a_structured_cloudevent_with_the_event_as_data() {
        let e = kubearmor();
        let one = body(&BodyFormat::CloudEvents, &e);
        assert_eq!(one.content_type, "application/cloudevents+json");
        let data = String::from_utf8(event_json(&e)).unwrap();
        assert_eq!(
            text(&one),
            format!(
                concat!(
                    r#"{{"specversion":"1.0","id":"0193f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6","#,
                    r#""source":"falconer://prod-eu/kubearmor","#,
                    r#""type":"io.falconer.event.runtime_alert","subject":"block-pkg-mgr","#,
                    r#""time":"2026-05-04T10:11:12.345678Z","datacontenttype":"application/json","#,
                    r#""falconerseverity":"warning","data":{}}}"#
                ),
                data
            )
        );
        let two = batch(&BodyFormat::CloudEvents, &[e.clone(), falco()]).unwrap();
        assert_eq!(two.content_type, "application/cloudevents-batch+json");
        let parsed: Vec<Value> = serde_json::from_slice(&two.bytes).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1]["specversion"], "1.0");
        assert_eq!(parsed[1]["data"]["source"], "falco");
    }

    fn template(source: &str) -> BodyFormat {
        let mut consumer = Consumer::new("hook", SinkType::Webhook);
        consumer.template = Some(source.into());
        let secrets = crate::declared::Secrets::new();
        BodyFormat::new(
            MessageFormat::Template,
            &crate::fixtures::declared(&consumer, &secrets),
            "webhook.format",
        )
        .unwrap()
    }

    #[test]
    fn template_renders_text_or_json_and_says_which() {
        let plain = body(&template("{{ rule }} in {{ namespace }}"), &kubearmor());
        assert_eq!(plain.content_type, "text/plain; charset=utf-8");
        assert_eq!(text(&plain), "block-pkg-mgr in shop");
        let json = body(
            &template(r#"{"alert": {{ rule | tojson }}, "n": {{ tags | length }}}"#),
            &kubearmor(),
        );
        assert_eq!(json.content_type, "application/json");
        assert_eq!(text(&json), r#"{"alert": "block-pkg-mgr", "n": 1}"#);
        // Braces that are not JSON stay text.
        let braces = body(&template("{ {{ rule }} }"), &kubearmor());
        assert_eq!(braces.content_type, "text/plain; charset=utf-8");
        assert!(batch(&template("x"), &[kubearmor()]).is_none());
    }

    #[test]
    fn template_without_a_template_is_refused_naming_the_field() {
        let consumer = Consumer::new("hook", SinkType::Webhook);
        let secrets = crate::declared::Secrets::new();
        let error = BodyFormat::new(
            MessageFormat::Template,
            &crate::fixtures::declared(&consumer, &secrets),
            "webhook.format",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("webhook.format: template needs"), "{error}");
    }
}
