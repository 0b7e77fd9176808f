//! `slack`: one message per event to a Slack incoming webhook, as Block Kit inside an
//! attachment coloured by severity, with a plain-text fallback for notifications.
//!
//! Slack answers `200 ok`; `400 invalid_payload`/`no_text` (refused for good: dead letters),
//! `403 action_prohibited`, `404 channel_not_found` (retried: the operator fixes the app or
//! URL), `410 channel_is_archived` (refused), `429` with `Retry-After` (retried no sooner).
//! Incoming webhooks take about one message per second; the worker sends one at a time.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::http::{self, Action, chain};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::SlackConfig;
use falconer_model::event::Severity;
use falconer_store::Event;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest text of a section block Slack accepts is 3000 characters; the message keeps
/// room for the rule line.
const MAX_MESSAGE: usize = 2800;
/// Longest field text (Slack: 2000).
const MAX_FIELD: usize = 1900;
/// Events handed to one `send`; each is its own request.
const BATCH: usize = 20;

pub struct Slack {
    client: reqwest::Client,
    url: reqwest::Url,
    asked: Option<Duration>,
}

impl Slack {
    pub fn build(
        consumer: &str,
        url: reqwest::Url,
        settings: &SlackConfig,
        secrets: &Secrets,
    ) -> Result<Slack, DeliveryError> {
        Ok(Slack {
            client: http::client(consumer, &settings.tls, secrets)?,
            url,
            asked: None,
        })
    }

    async fn post(&mut self, event: &Event) -> Result<(), (Action, String)> {
        let body = message(event).to_string();
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| {
            let why = format!(
                "POST {}: {}",
                http::redact(&self.url),
                chain(&e.without_url())
            );
            (Action::Retry, why)
        })?;
        let status = response.status();
        let action = http::action(status.as_u16());
        if action == Action::Deliver {
            return Ok(());
        }
        let wait = http::retry_after(response.headers(), chrono::Utc::now());
        self.asked = wait.or(self.asked);
        let text = response.text().await.unwrap_or_default();
        let mut why = format!(
            "POST {}: HTTP {status}: {}",
            http::redact(&self.url),
            http::snippet(&text)
        );
        if let Some(wait) = wait {
            why.push_str(&format!(" (Retry-After: {} s)", wait.as_secs()));
        }
        // One message is never too large for Slack once trimmed: a 413 is a refusal.
        Err((
            if action == Action::Split {
                Action::Refuse
            } else {
                action
            },
            why,
        ))
    }
}

impl FromConsumer for Slack {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.slack.as_ref(), "slack")?;
        let url = http::endpoint(declared, "slack.url", &settings.url)?;
        Slack::build(declared.name, url, settings, declared.secrets)
    }
}

impl Sink for Slack {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        // In order: after a failure that may pass, the rest waits behind it.
        let mut results = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            match self.post(event).await {
                Ok(()) => results.push(ItemResult::Delivered),
                Err((Action::Retry, why)) => {
                    if i == 0 {
                        return Outcome::Retry(why);
                    }
                    results.extend(events[i..].iter().map(|_| ItemResult::Retry(why.clone())));
                    break;
                }
                Err((_, why)) => results.push(ItemResult::Refused(why)),
            }
        }
        Outcome::Each(results)
    }

    fn retry_after(&mut self) -> Option<Duration> {
        self.asked.take()
    }
}

/// The attachment colour of a severity: red for critical and worse, orange for errors and
/// warnings, yellow for notices, grey below.
pub fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency | Severity::Alert | Severity::Critical => "#b71c1c",
        Severity::Error => "#e65100",
        Severity::Warning => "#fb8c00",
        Severity::Notice => "#fdd835",
        Severity::Informational | Severity::Debug => "#9e9e9e",
    }
}

/// Slack's `mrkdwn` control characters escaped (`&`, `<`, `>`), cut to `max` characters.
fn text(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    for (n, c) in value.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Where the event happened, most specific last: `cluster / namespace / pod` (or node).
fn place(event: &Event) -> String {
    let mut parts = vec![event.cluster.as_str()];
    parts.extend(event.namespace.as_deref());
    match (&event.pod, &event.node) {
        (Some(pod), _) => parts.push(pod),
        (None, Some(node)) => parts.push(node),
        (None, None) => {}
    }
    parts.join(" / ")
}

/// The message for one event (pure: golden-tested).
pub fn message(event: &Event) -> Value {
    let severity = event.severity.as_str();
    let mut fields = vec![
        ("Severity", event.severity_raw.clone()),
        ("Source", event.source.clone()),
        ("Cluster", event.cluster.clone()),
    ];
    if let Some(namespace) = &event.namespace {
        fields.push(("Namespace", namespace.clone()));
    }
    if let Some(workload) = &event.workload {
        fields.push(("Workload", format!("{} {}", workload.kind, workload.name)));
    }
    if let Some(pod) = &event.pod {
        fields.push(("Pod", pod.clone()));
    }
    if let Some(container) = &event.container {
        fields.push(("Container", container.clone()));
    }
    if let Some(node) = &event.node {
        fields.push(("Node", node.clone()));
    }
    if let Some(image) = &event.image {
        fields.push(("Image", image.clone()));
    }
    // Slack shows at most 10 fields; the time has its own line.
    fields.truncate(9);
    let time = event
        .time
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(name, value)| {
            json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", text(&value, MAX_FIELD))})
        })
        .chain([json!({"type": "mrkdwn", "text": format!("*Time*\n{time}")})])
        .collect();
    let mut context = format!("event `{}`", event.id);
    if !event.tags.is_empty() {
        context.push_str(" · ");
        context.push_str(&text(&event.tags.join(", "), MAX_FIELD));
    }
    json!({
        "text": text(
            &format!("[{severity}] {} — {}", event.rule, place(event)),
            MAX_FIELD
        ),
        "attachments": [{
            "color": colour(event.severity),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                    "*{}*\n{}",
                    text(&event.rule, 150),
                    text(&event.message, MAX_MESSAGE)
                )}},
                {"type": "section", "fields": fields},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;
    use falconer_testkit::webhook::WebhookServer;

    fn golden_event() -> Event {
        let mut e = event("Terminal shell in container");
        e.id = "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e".parse().unwrap();
        e.severity = Severity::Critical;
        e.severity_raw = "Critical".into();
        e.message = "A shell was spawned in a container <bash> & more".into();
        e.container = Some("web".into());
        e.workload = Some(falconer_model::event::Workload {
            kind: "Deployment".into(),
            name: "web".into(),
        });
        e
    }

    #[test]
    fn the_message_is_block_kit_in_a_severity_coloured_attachment_with_a_text_fallback() {
        let golden = json!({
            "text": "[critical] Terminal shell in container — prod / shop / web-1",
            "attachments": [{
                "color": "#b71c1c",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text":
                        "*Terminal shell in container*\nA shell was spawned in a container &lt;bash&gt; &amp; more"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Severity*\nCritical"},
                        {"type": "mrkdwn", "text": "*Source*\nfalco"},
                        {"type": "mrkdwn", "text": "*Cluster*\nprod"},
                        {"type": "mrkdwn", "text": "*Namespace*\nshop"},
                        {"type": "mrkdwn", "text": "*Workload*\nDeployment web"},
                        {"type": "mrkdwn", "text": "*Pod*\nweb-1"},
                        {"type": "mrkdwn", "text": "*Container*\nweb"},
                        {"type": "mrkdwn", "text": "*Time*\n2026-05-04T10:11:12Z"},
                    ]},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text":
                        "event `0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e` · container, shell"}]},
                ],
            }],
        });
        assert_eq!(message(&golden_event()), golden);
    }

    #[test]
    fn long_texts_are_cut_within_slacks_limits_and_fields_stay_at_most_ten() {
        let mut e = golden_event();
        e.message = "x".repeat(10_000);
        e.node = Some("node-1".into());
        e.image = Some("registry.example/web:1".into());
        let m = message(&e);
        let blocks = &m["attachments"][0]["blocks"];
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        assert!(blocks[1]["fields"].as_array().unwrap().len() <= 10);
    }

    fn sink(url: String) -> Slack {
        let settings = SlackConfig::default();
        Slack::build("chat", url.parse().unwrap(), &settings, &Secrets::new()).unwrap()
    }

    #[tokio::test]
    async fn a_rate_limited_webhook_hands_its_retry_after_to_the_worker_and_is_then_delivered() {
        let receiver = WebhookServer::start();
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 3));
        let mut slack = sink(receiver.url());
        let e = golden_event();
        let Outcome::Retry(why) = slack.send(std::slice::from_ref(&e)).await else {
            panic!("429 is retried");
        };
        assert!(why.contains("Retry-After: 3 s"), "{why}");
        assert_eq!(slack.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            slack.send(std::slice::from_ref(&e)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        let received = receiver.requests();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].body, message(&e));
        receiver.stop().await;
    }

    #[tokio::test]
    async fn an_invalid_payload_goes_to_the_dead_letters_and_an_outage_is_retried() {
        let receiver = WebhookServer::start();
        let mut slack = sink(receiver.url());
        let events = [golden_event(), golden_event()];
        *receiver.state.answer.lock().unwrap() = Some((400, "invalid_payload".into()));
        let Outcome::Each(results) = slack.send(&events).await else {
            panic!("a 400 is answered per message");
        };
        assert_eq!(results.len(), 2);
        for result in results {
            let ItemResult::Refused(why) = result else {
                panic!("refused for good: {result:?}");
            };
            assert!(
                why.contains("400") && why.contains("invalid_payload"),
                "{why}"
            );
            assert!(!why.contains("/services/"), "{why}");
        }
        *receiver.state.answer.lock().unwrap() = Some((503, "down".into()));
        assert!(matches!(slack.send(&events).await, Outcome::Retry(_)));
        *receiver.state.answer.lock().unwrap() = None;
        assert_eq!(
            slack.send(&events).await,
            Outcome::Each(vec![ItemResult::Delivered, ItemResult::Delivered])
        );
        receiver.stop().await;
    }
}
