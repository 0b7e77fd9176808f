//! `pagerduty`: one PagerDuty Events API v2 `trigger` per notice, its `dedup_key` the
//! notice's alert group, so one problem is one PagerDuty alert (and incident): the group's
//! repeats and its summary re-trigger the same alert instead of paging again. The routing
//! key is the Secret's `routingKey`.
//!
//! PagerDuty answers `202` (accepted: delivered); `400` (invalid event: dead letters with
//! PagerDuty's message); `429` (retried, no sooner than a `Retry-After` when given); `5xx`
//! (retried). Sending is the shared [`chat`](super::chat) sink's.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::chat::{self, Format, Target};
use crate::sinks::{Declared, http};
use falconer_model::event::Severity;
use serde_json::{Map, Value, json};

/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY: usize = 1024;
/// What a long fact is cut to in `custom_details`.
const MAX_VALUE: usize = 1000;

pub struct PagerDuty {
    routing_key: String,
}

/// PagerDuty's four severities from Falco's eight levels.
pub fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency | Severity::Alert | Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice | Severity::Informational | Severity::Debug => "info",
    }
}

impl Format for PagerDuty {
    const SECTION: &'static str = "pagerduty";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        let settings = declared.section(declared.consumer.pagerduty.as_ref(), Self::SECTION)?;
        let hint = "type pagerduty (the integration's routing key)";
        let routing_key = http::require(declared.name, declared.secrets, "routingKey", hint)?
            .trim()
            .to_string();
        if routing_key.is_empty() {
            return Err(declared.config("secret key routingKey: empty".into()));
        }
        let target = chat::target(declared, &settings.url, &settings.tls)?;
        Ok((PagerDuty { routing_key }, target))
    }

    fn message(&self, notice: &Notice) -> Value {
        let event = notice.event;
        let summary = if notice.summary {
            notice.text.clone()
        } else {
            format!("{}: {}", event.rule, notice.text)
        };
        let mut details = Map::new();
        for (name, value) in chat::facts(event) {
            details.insert(name.into(), chat::cut(&value, MAX_VALUE).into());
        }
        details.insert("Tags".into(), event.tags.join(", ").into());
        details.insert("Event".into(), event.id.to_string().into());
        details.insert("Count".into(), notice.count.into());
        details.insert(
            "Fields".into(),
            serde_json::from_str(event.fields.get()).unwrap_or(Value::Null),
        );
        let mut payload = json!({
            "summary": chat::cut(&summary, MAX_SUMMARY - 1),
            "source": chat::place(event),
            "severity": severity(notice.severity),
            "timestamp": event.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "group": event.namespace.as_deref().unwrap_or(&event.cluster),
            "class": event.rule,
            "custom_details": details,
        });
        let component = match (&event.workload, &event.pod) {
            (Some(w), _) => Some(format!("{} {}", w.kind, w.name)),
            (None, Some(pod)) => Some(pod.clone()),
            (None, None) => None,
        };
        if let Some(component) = component {
            payload["component"] = component.into();
        }
        let mut message = json!({
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": notice.group,
            "client": "Falconer",
            "payload": payload,
        });
        if let Some(link) = &notice.link {
            message["client_url"] = link.as_str().into();
            message["links"] = json!([{"href": link, "text": "Open in Falconer"}]);
        }
        message
    }

    fn preview(&self, notice: &Notice) -> Value {
        let mut message = self.message(notice);
        message["routing_key"] = MASKED.into();
        message
    }
}

/// The routing key as a preview shows it.
const MASKED: &str = "(the Secret's routingKey)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Notifier, Summary};
    use crate::sink::{ItemResult, Outcome, Sink};
    use crate::sinks::chat::Chat;
    use crate::sinks::chat::tests::{golden_event, notice, target_of};
    use falconer_testkit::webhook::WebhookServer;
    use std::time::Duration;

    fn format() -> PagerDuty {
        PagerDuty {
            routing_key: "R0UT1NGKEY".into(),
        }
    }

    #[test]
    fn an_event_triggers_the_alert_of_its_group_with_its_facts_and_mapped_severity() {
        let e = golden_event();
        let n = notice(&e, Some("https://falconer.example/ui/#/events/x"));
        let golden = json!({
            "routing_key": "R0UT1NGKEY",
            "event_action": "trigger",
            "dedup_key": n.group,
            "client": "Falconer",
            "client_url": "https://falconer.example/ui/#/events/x",
            "links": [{"href": "https://falconer.example/ui/#/events/x", "text": "Open in Falconer"}],
            "payload": {
                "summary": "Terminal shell in container: A shell was spawned in a container <bash> & more",
                "source": "prod / shop / web-1",
                "severity": "critical",
                "timestamp": "2026-05-04T10:11:12Z",
                "component": "Deployment web",
                "group": "shop",
                "class": "Terminal shell in container",
                "custom_details": {
                    "Severity": "Critical",
                    "Source": "falco",
                    "Cluster": "prod",
                    "Namespace": "shop",
                    "Workload": "Deployment web",
                    "Pod": "web-1",
                    "Container": "web",
                    "Tags": "container, shell",
                    "Event": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e",
                    "Count": 1,
                    "Fields": {"proc.name": "bash"},
                },
            },
        });
        assert_eq!(format().message(&n), golden);
        assert_eq!(format().preview(&n)["routing_key"], MASKED);
        let unlinked = format().message(&notice(&e, None));
        assert!(unlinked.get("links").is_none() && unlinked.get("client_url").is_none());
    }

    #[test]
    fn falcos_eight_levels_map_onto_pagerdutys_four_severities() {
        let mapped: Vec<&str> = Severity::ALL.iter().map(|s| severity(*s)).collect();
        assert_eq!(
            mapped,
            [
                "critical", "critical", "critical", "error", "warning", "info", "info", "info"
            ]
        );
    }

    #[test]
    fn a_summary_re_triggers_the_same_alert_with_its_line_and_count() {
        let e = golden_event();
        let summary = Summary {
            group: Notifier::plain().event(&e).group,
            sample: e.clone(),
            folded: 37,
            first_sent: true,
            severity: Severity::Critical,
            first_seen: e.received_at,
            last_seen: e.received_at + chrono::TimeDelta::minutes(10),
        };
        let m = format().message(&Notifier::plain().summary(&summary));
        assert_eq!(m["dedup_key"], summary.group);
        assert_eq!(
            m["dedup_key"],
            format().message(&notice(&e, None))["dedup_key"]
        );
        assert_eq!(
            m["payload"]["summary"],
            "37 more of Terminal shell in container on shop/web in the last 10m"
        );
        assert_eq!(m["payload"]["custom_details"]["Count"], 37);
    }

    #[test]
    fn a_long_message_is_cut_within_pagerdutys_summary_limit() {
        let mut e = golden_event();
        e.message = "x".repeat(5000);
        let m = format().message(&notice(&e, None));
        let summary = m["payload"]["summary"].as_str().unwrap();
        assert!(summary.chars().count() <= MAX_SUMMARY, "{}", summary.len());
    }

    /// The routing key the sink of `spec` would send, or why it cannot run.
    fn build(spec: Value, secrets: &[(&str, &str)]) -> Result<String, String> {
        let consumer: falconer_model::crd::Consumer = serde_json::from_value(spec).unwrap();
        let secrets = crate::fixtures::secrets(secrets);
        let declared = crate::fixtures::declared(&consumer, &secrets);
        PagerDuty::build(&declared)
            .map(|(format, target)| {
                assert_eq!(
                    target.url.as_str(),
                    "https://events.pagerduty.com/v2/enqueue"
                );
                format.routing_key
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_routing_key_comes_from_the_secret_and_the_url_defaults_to_pagerdutys() {
        let spec = json!({"name": "pager", "type": "pagerduty", "pagerduty": {},
                          "secretRef": {"name": "pd"}});
        let key = build(spec.clone(), &[("routingKey", " R0UT1NGKEY\n")]).unwrap();
        assert_eq!(key, "R0UT1NGKEY");
        let missing = build(spec.clone(), &[]).unwrap_err();
        assert!(missing.contains("routingKey"), "{missing}");
        let empty = build(spec, &[("routingKey", " ")]).unwrap_err();
        assert!(empty.contains("routingKey"), "{empty}");
        let plain = build(
            json!({"name": "pager", "type": "pagerduty", "secretRef": {"name": "pd"},
                   "pagerduty": {"url": "http://pd.example/v2/enqueue"}}),
            &[("routingKey", "k")],
        )
        .unwrap_err();
        assert!(
            plain.contains("pagerduty.url") && plain.contains("allowInsecureHttp"),
            "{plain}"
        );
    }

    fn sink(url: String) -> Chat<PagerDuty> {
        Chat::new(format(), target_of(&url), Notifier::plain())
    }

    #[tokio::test]
    async fn an_invalid_event_goes_to_the_dead_letters_with_pagerdutys_message_not_the_key() {
        let receiver = WebhookServer::start();
        let mut pd = sink(receiver.url());
        let e = golden_event();
        assert_eq!(
            pd.send(std::slice::from_ref(&e)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        let sent = &receiver.requests()[0];
        assert_eq!(sent.body, format().message(&notice(&e, None)));
        assert_eq!(sent.headers["content-type"], "application/json");

        *receiver.state.answer.lock().unwrap() = Some((
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.severity' is missing"]}"#.into(),
        ));
        let Outcome::Each(results) = pd.send(std::slice::from_ref(&e)).await else {
            panic!("a 400 is answered per event");
        };
        let [ItemResult::Refused(why)] = results.as_slice() else {
            panic!("refused for good: {results:?}");
        };
        assert!(
            why.contains("400") && why.contains("Event object is invalid"),
            "{why}"
        );
        assert!(!why.contains("R0UT1NGKEY"), "{why}");
        receiver.stop().await;
    }

    #[tokio::test]
    async fn a_throttled_or_failing_pagerduty_is_retried_honouring_retry_after() {
        let receiver = WebhookServer::start();
        let mut pd = sink(receiver.url());
        let e = golden_event();
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 7));
        let Outcome::Retry(why) = pd.send(std::slice::from_ref(&e)).await else {
            panic!("429 is retried");
        };
        assert!(why.contains("429"), "{why}");
        assert_eq!(pd.retry_after(), Some(Duration::from_secs(7)));
        *receiver.state.answer.lock().unwrap() = Some((502, "bad gateway".into()));
        assert!(matches!(
            pd.send(std::slice::from_ref(&e)).await,
            Outcome::Retry(_)
        ));
        assert_eq!(pd.retry_after(), None);
        *receiver.state.answer.lock().unwrap() = None;
        assert_eq!(
            pd.send_summary(&Summary {
                group: "g".into(),
                sample: e.clone(),
                folded: 3,
                first_sent: true,
                severity: Severity::Warning,
                first_seen: e.received_at,
                last_seen: e.received_at,
            })
            .await,
            Outcome::Delivered
        );
        let body = &receiver.requests()[0].body;
        assert_eq!(body["dedup_key"], "g");
        assert_eq!(body["payload"]["severity"], "warning");
        receiver.stop().await;
    }
}
