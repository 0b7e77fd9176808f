//! `opsgenie`: one Opsgenie Alert API "create alert" per notice, its `alias` the notice's
//! alert group, so one problem is one Opsgenie alert: Opsgenie counts the group's repeats
//! and its summary on the open alert instead of opening new ones. The API key is the
//! Secret's `apiKey`, sent as `Authorization: GenieKey <apiKey>`.
//!
//! Opsgenie answers `202` with a `requestId` (processed asynchronously: delivered);
//! `400`/`422` (invalid alert: dead letters with Opsgenie's message); `401`/`403` (retried
//! until the key is fixed); `429` and `5xx` (retried, no sooner than a `Retry-After` when
//! given). Sending is the shared [`chat`](super::chat) sink's.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::chat::{self, Format, Target};
use crate::sinks::{Declared, http};
use falconer_model::crd::{OpsgenieResponder, OpsgenieResponderType};
use falconer_model::event::Severity;
use serde_json::{Map, Value, json};

/// Opsgenie's limits: message 130 characters, description 15000, a tag 50, 20 tags, a
/// detail's key 8000 and value 8000 (kept far smaller here).
const MAX_MESSAGE: usize = 129;
const MAX_DESCRIPTION: usize = 14_000;
const MAX_TAG: usize = 50;
const MAX_TAGS: usize = 20;
const MAX_DETAIL: usize = 1000;

pub struct Opsgenie {
    authorization: String,
    tags: Vec<String>,
    responders: Vec<Value>,
}

/// Opsgenie's priorities P1–P5 from Falco's eight levels.
pub fn priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency | Severity::Alert => "P1",
        Severity::Critical => "P2",
        Severity::Error => "P3",
        Severity::Warning => "P4",
        Severity::Notice | Severity::Informational | Severity::Debug => "P5",
    }
}

/// A responder as the Alert API takes it: a user by `username`, the others by `name`.
fn responder(r: &OpsgenieResponder) -> Value {
    match r.kind {
        OpsgenieResponderType::User => json!({"type": "user", "username": r.name}),
        other => json!({"type": other.as_str(), "name": r.name}),
    }
}

impl Format for Opsgenie {
    const SECTION: &'static str = "opsgenie";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        let settings = declared.section(declared.consumer.opsgenie.as_ref(), Self::SECTION)?;
        let hint = "type opsgenie (the API integration's key)";
        let key = http::require(declared.name, declared.secrets, "apiKey", hint)?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(declared.config(
                "secret key apiKey: empty or not printable ASCII (an Opsgenie API key is)".into(),
            ));
        }
        if let Some(tag) = settings
            .tags
            .iter()
            .find(|t| t.trim().is_empty() || t.chars().count() > MAX_TAG)
        {
            return Err(declared.config(format!(
                "opsgenie.tags: `{tag}` is not a tag of 1 to {MAX_TAG} characters"
            )));
        }
        let target = chat::target(declared, &settings.url, &settings.tls)?;
        Ok((
            Opsgenie {
                authorization: format!("GenieKey {key}"),
                tags: settings.tags.clone(),
                responders: settings.responders.iter().map(responder).collect(),
            },
            target,
        ))
    }

    fn message(&self, notice: &Notice) -> Value {
        let event = notice.event;
        let title = if notice.summary {
            notice.text.clone()
        } else {
            format!("{}: {}", event.rule, notice.text)
        };
        let mut description = chat::cut(&notice.text, MAX_DESCRIPTION);
        description.push_str(&format!("\n\n{}", chat::place(event)));
        if let Some(link) = &notice.link {
            description.push_str(&format!("\nOpen in Falconer: {link}"));
        }
        let mut details = Map::new();
        for (name, value) in chat::facts(event) {
            details.insert(name.into(), chat::cut(&value, MAX_DETAIL).into());
        }
        details.insert(
            "Time".into(),
            event
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into(),
        );
        details.insert("Event".into(), event.id.to_string().into());
        details.insert("Count".into(), notice.count.to_string().into());
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(event.fields.get()) {
            for (key, value) in fields {
                let text = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                details
                    .entry(key)
                    .or_insert_with(|| chat::cut(&text, MAX_DETAIL).into());
            }
        }
        let mut tags: Vec<String> = Vec::new();
        for tag in event.tags.iter().chain(&self.tags) {
            let tag = chat::cut(tag, MAX_TAG - 1);
            if !tags.contains(&tag) && tags.len() < MAX_TAGS {
                tags.push(tag);
            }
        }
        let mut message = json!({
            "message": chat::cut(&title, MAX_MESSAGE),
            "alias": notice.group,
            "description": description,
            "details": details,
            "tags": tags,
            "priority": priority(notice.severity),
            "entity": chat::place(event),
            "source": "Falconer",
        });
        if !self.responders.is_empty() {
            message["responders"] = self.responders.clone().into();
        }
        message
    }

    fn request(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.header(reqwest::header::AUTHORIZATION, &self.authorization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Notifier, Summary};
    use crate::sink::{ItemResult, Outcome, Sink};
    use crate::sinks::chat::Chat;
    use crate::sinks::chat::tests::{golden_event, notice, target_of};
    use falconer_testkit::webhook::WebhookServer;
    use std::time::Duration;

    fn format() -> Opsgenie {
        Opsgenie {
            authorization: "GenieKey G3N13K3Y".into(),
            tags: vec!["falconer".into(), "shell".into()],
            responders: vec![json!({"type": "team", "name": "security"})],
        }
    }

    #[test]
    fn an_event_creates_the_alert_of_its_group_with_its_facts_tags_and_priority() {
        let e = golden_event();
        let n = notice(&e, Some("https://falconer.example/ui/#/events/x"));
        let golden = json!({
            "message": "Terminal shell in container: A shell was spawned in a container <bash> & more",
            "alias": n.group,
            "description": "A shell was spawned in a container <bash> & more\n\nprod / shop / web-1\nOpen in Falconer: https://falconer.example/ui/#/events/x",
            "details": {
                "Severity": "Critical",
                "Source": "falco",
                "Cluster": "prod",
                "Namespace": "shop",
                "Workload": "Deployment web",
                "Pod": "web-1",
                "Container": "web",
                "Time": "2026-05-04T10:11:12Z",
                "Event": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e",
                "Count": "1",
                "proc.name": "bash",
            },
            "tags": ["container", "shell", "falconer"],
            "priority": "P2",
            "entity": "prod / shop / web-1",
            "source": "Falconer",
            "responders": [{"type": "team", "name": "security"}],
        });
        assert_eq!(format().message(&n), golden);
    }

    #[test]
    fn falcos_eight_levels_map_onto_opsgenies_five_priorities_and_users_go_by_username() {
        let mapped: Vec<&str> = Severity::ALL.iter().map(|s| priority(*s)).collect();
        assert_eq!(mapped, ["P1", "P1", "P2", "P3", "P4", "P5", "P5", "P5"]);
        let user = OpsgenieResponder {
            kind: OpsgenieResponderType::User,
            name: "ann@example.com".into(),
        };
        assert_eq!(
            responder(&user),
            json!({"type": "user", "username": "ann@example.com"})
        );
    }

    #[test]
    fn long_texts_and_many_tags_stay_within_opsgenies_limits() {
        let mut e = golden_event();
        e.message = "x".repeat(20_000);
        e.tags = (0..30).map(|i| format!("{i}{}", "t".repeat(80))).collect();
        let m = format().message(&notice(&e, None));
        assert!(m["message"].as_str().unwrap().chars().count() <= 130);
        assert!(m["description"].as_str().unwrap().chars().count() <= 15_000);
        let tags = m["tags"].as_array().unwrap();
        assert_eq!(tags.len(), 20);
        assert!(
            tags.iter()
                .all(|t| t.as_str().unwrap().chars().count() <= 50)
        );
    }

    fn sink(url: String) -> Chat<Opsgenie> {
        Chat::new(format(), target_of(&url), Notifier::plain())
    }

    #[tokio::test]
    async fn the_key_goes_in_the_genie_key_header_and_a_refused_alert_to_the_dead_letters() {
        let receiver = WebhookServer::start();
        let mut og = sink(receiver.url());
        let e = golden_event();
        assert_eq!(
            og.send(std::slice::from_ref(&e)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        let sent = &receiver.requests()[0];
        assert_eq!(sent.headers["authorization"], "GenieKey G3N13K3Y");
        assert_eq!(sent.body, format().message(&notice(&e, None)));

        *receiver.state.answer.lock().unwrap() = Some((
            422,
            r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.0,"requestId":"r1"}"#.into(),
        ));
        let Outcome::Each(results) = og.send(std::slice::from_ref(&e)).await else {
            panic!("a 422 is answered per alert");
        };
        let [ItemResult::Refused(why)] = results.as_slice() else {
            panic!("refused for good: {results:?}");
        };
        assert!(
            why.contains("422") && why.contains("not processable"),
            "{why}"
        );
        assert!(!why.contains("G3N13K3Y"), "{why}");
        receiver.stop().await;
    }

    #[tokio::test]
    async fn a_throttled_or_failing_opsgenie_is_retried_and_a_summary_counts_on_the_same_alias() {
        let receiver = WebhookServer::start();
        let mut og = sink(receiver.url());
        let e = golden_event();
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 5));
        assert!(matches!(
            og.send(std::slice::from_ref(&e)).await,
            Outcome::Retry(_)
        ));
        assert_eq!(og.retry_after(), Some(Duration::from_secs(5)));
        *receiver.state.answer.lock().unwrap() = Some((503, "unavailable".into()));
        assert!(matches!(
            og.send(std::slice::from_ref(&e)).await,
            Outcome::Retry(_)
        ));
        *receiver.state.answer.lock().unwrap() = None;
        let group = Notifier::plain().event(&e).group;
        let summary = Summary {
            group: group.clone(),
            sample: e.clone(),
            folded: 12,
            first_sent: true,
            severity: Severity::Critical,
            first_seen: e.received_at,
            last_seen: e.received_at + chrono::TimeDelta::minutes(5),
        };
        assert_eq!(og.send_summary(&summary).await, Outcome::Delivered);
        let body = &receiver.requests()[0].body;
        assert_eq!(body["alias"], group);
        assert_eq!(
            body["message"],
            "12 more of Terminal shell in container on shop/web in the last 5m"
        );
        assert_eq!(body["details"]["Count"], "12");
        receiver.stop().await;
    }

    fn build(spec: Value, secrets: &[(&str, &str)]) -> Result<String, String> {
        let consumer: falconer_model::crd::Consumer = serde_json::from_value(spec).unwrap();
        let secrets = crate::fixtures::secrets(secrets);
        let declared = crate::fixtures::declared(&consumer, &secrets);
        Opsgenie::build(&declared)
            .map(|(format, target)| format!("{} {}", target.url, format.authorization))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_api_key_is_required_from_the_secret_and_bad_tags_are_named() {
        let spec = json!({"name": "og", "type": "opsgenie", "opsgenie": {},
                          "secretRef": {"name": "og"}});
        assert_eq!(
            build(spec.clone(), &[("apiKey", "k-1\n")]).unwrap(),
            "https://api.opsgenie.com/v2/alerts GenieKey k-1"
        );
        let missing = build(spec.clone(), &[]).unwrap_err();
        assert!(missing.contains("apiKey"), "{missing}");
        let broken = build(spec, &[("apiKey", "a b")]).unwrap_err();
        assert!(
            broken.contains("apiKey") && !broken.contains("a b"),
            "{broken}"
        );
        let tags = build(
            json!({"name": "og", "type": "opsgenie", "secretRef": {"name": "og"},
                   "opsgenie": {"tags": ["ok", " "]}}),
            &[("apiKey", "k")],
        )
        .unwrap_err();
        assert!(tags.contains("opsgenie.tags"), "{tags}");
    }
}
