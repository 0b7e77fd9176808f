//! What every chat sink (`slack`, `discord`, `teams`) shares: one message per event POSTed
//! to a webhook bound to one channel, in order, through the shared status table, with the
//! target's `Retry-After` handed to the worker. Each sink module only maps an event to its
//! service's message ([`Format`]).

use crate::error::DeliveryError;
use crate::notify::{Notice, Notifier, Summary};
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::http::{self, Action, chain};
use crate::sinks::{Declared, FromConsumer};
use falconer_store::Event;
use serde_json::Value;
use std::marker::PhantomData;
use std::time::Duration;

/// Events handed to one `send`; each is its own request (chat webhooks take about one
/// message per second).
const BATCH: usize = 20;

/// The severity colour every chat message uses (RGB): red for critical and worse, dark
/// orange for errors, orange for warnings, yellow for notices, grey below.
pub fn severity_rgb(severity: falconer_model::event::Severity) -> u32 {
    use falconer_model::event::Severity;
    match severity {
        Severity::Emergency | Severity::Alert | Severity::Critical => 0xb71c1c,
        Severity::Error => 0xe65100,
        Severity::Warning => 0xfb8c00,
        Severity::Notice => 0xfdd835,
        Severity::Informational | Severity::Debug => 0x9e9e9e,
    }
}

/// A chat service's message format.
pub trait Format: Send + 'static {
    /// The consumer type and section name, e.g. `slack`.
    const SECTION: &'static str;
    /// The message for one notice: an event or a summary of its group, with a link to
    /// its dashboard page when the dashboard's URL is configured (pure: golden-tested).
    fn message(notice: &Notice) -> Value;
}

/// A chat sink of format `F`.
pub struct Chat<F: Format> {
    client: reqwest::Client,
    url: reqwest::Url,
    asked: Option<Duration>,
    notifier: Notifier,
    format: PhantomData<F>,
}

impl<F: Format> Chat<F> {
    pub fn new(client: reqwest::Client, url: reqwest::Url, notifier: Notifier) -> Chat<F> {
        Chat {
            client,
            url,
            asked: None,
            notifier,
            format: PhantomData,
        }
    }

    async fn post(&mut self, notice: &Notice<'_>) -> Result<(), (Action, String)> {
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .body(F::message(notice).to_string())
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
        if http::action(response.status().as_u16()) == Action::Deliver {
            return Ok(());
        }
        let (action, why) = http::failure(response, &mut self.asked).await;
        // One message is within the service's limits once trimmed: a 413 is a refusal.
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

impl<F: Format> FromConsumer for Chat<F> {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.chat(), F::SECTION)?;
        let field = format!("{}.url", F::SECTION);
        let url = http::endpoint(declared, &field, &settings.url)?;
        let client = http::client(declared.name, &settings.tls, declared.secrets)?;
        Ok(Chat::new(client, url, Notifier::new(declared)?))
    }
}

impl<F: Format> Sink for Chat<F> {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        // In order: after a failure that may pass, the rest waits behind it.
        let mut results = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let notice = self.notifier.event(event);
            match self.post(&notice).await {
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

    fn preview(&self, event: &Event) -> Value {
        F::message(&self.notifier.event(event))
    }

    async fn send_summary(&mut self, summary: &Summary) -> Outcome {
        let notice = self.notifier.summary(summary);
        match self.post(&notice).await {
            Ok(()) => Outcome::Delivered,
            Err((Action::Retry, why)) => Outcome::Retry(why),
            Err((_, why)) => Outcome::Each(vec![ItemResult::Refused(why)]),
        }
    }
}

/// `value` cut to `max` characters (an ellipsis marks the cut), with `escape` applied to
/// each character kept.
pub fn trimmed(value: &str, max: usize, escape: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    for (n, c) in value.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        escape(c, &mut out);
    }
    out
}

/// `value` cut to `max` characters, unescaped.
pub fn cut(value: &str, max: usize) -> String {
    trimmed(value, max, |c, out| out.push(c))
}

/// Where the event happened, most specific last: `cluster / namespace / pod` (or node).
pub fn place(event: &Event) -> String {
    let mut parts = vec![event.cluster.as_str()];
    parts.extend(event.namespace.as_deref());
    match (&event.pod, &event.node) {
        (Some(pod), _) => parts.push(pod),
        (None, Some(node)) => parts.push(node),
        (None, None) => {}
    }
    parts.join(" / ")
}

/// The event's labelled facts every chat message shows, those it has, in this order.
pub fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Severity", event.severity_raw.clone()),
        ("Source", event.source.clone()),
        ("Cluster", event.cluster.clone()),
    ];
    let optional = [
        ("Namespace", event.namespace.clone()),
        (
            "Workload",
            event
                .workload
                .as_ref()
                .map(|w| format!("{} {}", w.kind, w.name)),
        ),
        ("Pod", event.pod.clone()),
        ("Container", event.container.clone()),
        ("Node", event.node.clone()),
        ("Image", event.image.clone()),
    ];
    facts.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    facts
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::fixtures::event;
    use falconer_model::event::Severity;
    use falconer_testkit::webhook::WebhookServer;

    /// The event every chat format's golden test maps.
    pub fn golden_event() -> Event {
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

    /// The notice of `event` without a template, linking to `link` when given.
    pub fn notice<'a>(event: &'a Event, link: Option<&str>) -> Notice<'a> {
        let mut notice = Notifier::plain().event(event);
        notice.link = link.map(String::from);
        notice
    }

    struct Plain;
    impl Format for Plain {
        const SECTION: &'static str = "slack";
        fn message(notice: &Notice) -> Value {
            serde_json::json!({"text": notice.text, "rule": notice.event.rule, "link": notice.link})
        }
    }

    fn sink(url: String) -> Chat<Plain> {
        Chat::new(
            reqwest::Client::new(),
            url.parse().unwrap(),
            Notifier::plain().with_dashboard("https://falconer.example/"),
        )
    }

    #[tokio::test]
    async fn a_rate_limited_webhook_hands_its_retry_after_to_the_worker_and_is_then_delivered() {
        let receiver = WebhookServer::start();
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 3));
        let mut chat = sink(receiver.url());
        let e = golden_event();
        let Outcome::Retry(why) = chat.send(std::slice::from_ref(&e)).await else {
            panic!("429 is retried");
        };
        assert!(why.contains("Retry-After: 3 s"), "{why}");
        assert_eq!(chat.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            chat.send(std::slice::from_ref(&e)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        let received = receiver.requests();
        assert_eq!(received.len(), 1);
        let link = format!("https://falconer.example/ui/#/events/{}", e.id);
        assert_eq!(received[0].body, Plain::message(&notice(&e, Some(&link))));
        receiver.stop().await;
    }

    #[tokio::test]
    async fn an_invalid_payload_goes_to_the_dead_letters_and_an_outage_is_retried() {
        let receiver = WebhookServer::start();
        let mut chat = sink(format!("{}/T0/B0/SECRET", receiver.url()));
        let events = [golden_event(), golden_event()];
        *receiver.state.answer.lock().unwrap() = Some((400, "invalid_payload".into()));
        let Outcome::Each(results) = chat.send(&events).await else {
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
            assert!(!why.contains("SECRET"), "{why}");
        }
        *receiver.state.answer.lock().unwrap() = Some((503, "down".into()));
        assert!(matches!(chat.send(&events).await, Outcome::Retry(_)));
        *receiver.state.answer.lock().unwrap() = None;
        assert_eq!(
            chat.send(&events).await,
            Outcome::Each(vec![ItemResult::Delivered, ItemResult::Delivered])
        );
        receiver.stop().await;
    }
}
