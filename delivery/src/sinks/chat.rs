//! What every notification sink that sends one POST per notice shares (`slack`, `discord`,
//! `teams`, `googlechat`, `mattermost`, `rocketchat`, `pagerduty`, `opsgenie`): one message
//! per event POSTed to one URL, in order, through the shared status table, with the
//! target's `Retry-After` handed to the worker. Each sink module only maps a notice to its
//! service's message ([`Format`]), and says what else its requests carry (a credential
//! header) and when a `2xx` answer is still a refusal.

use crate::error::DeliveryError;
use crate::notify::{Notice, Notifier, Summary};
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::http::{self, Action, chain};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::SinkTls;
use falconer_store::Event;
use serde_json::Value;
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

/// Where a format's messages go: the checked URL and the client (TLS from the Secret).
pub struct Target {
    pub client: reqwest::Client,
    pub url: reqwest::Url,
}

/// The target of a consumer whose section has `url` (empty: the Secret's `url` key) and
/// `tls`; errors name `<type>.url`.
pub fn target(declared: &Declared<'_>, url: &str, tls: &SinkTls) -> Result<Target, DeliveryError> {
    let field = format!("{}.url", declared.consumer.sink.as_str());
    Ok(Target {
        url: http::endpoint(declared, &field, url)?,
        client: http::client(declared.name, tls, declared.secrets)?,
    })
}

/// The target of a chat sink whose section is a plain [`ChatConfig`](falconer_model::crd::ChatConfig).
pub fn webhook(declared: &Declared<'_>, section: &str) -> Result<Target, DeliveryError> {
    let settings = declared.section(declared.consumer.chat(), section)?;
    target(declared, &settings.url, &settings.tls)
}

/// A service's message format, with the settings it keeps from the consumer.
pub trait Format: Sized + Send + Sync + 'static {
    /// The consumer type and section name, e.g. `slack`.
    const SECTION: &'static str;

    /// The format for a consumer (its settings checked, errors naming the field) and
    /// where it posts.
    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError>;

    /// The message for one notice: an event or a summary of its group, with a link to
    /// its dashboard page when the dashboard's URL is configured (pure: golden-tested).
    fn message(&self, notice: &Notice) -> Value;

    /// What `POST /api/v1/consumers/{name}/preview` shows for a notice: the message, with
    /// any credential it carries masked (read access must not reveal it).
    fn preview(&self, notice: &Notice) -> Value {
        self.message(notice)
    }

    /// What each request carries besides the JSON body (e.g. a credential header): by
    /// default nothing.
    fn request(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
    }

    /// Why a `2xx` answer with this body still refuses the message (a service that
    /// answers `200 {"success": false}`): by default it never does.
    fn refusal(&self, _answer: &str) -> Option<String> {
        None
    }
}

/// A notification sink of format `F`: one POST per notice.
pub struct Chat<F: Format> {
    client: reqwest::Client,
    url: reqwest::Url,
    asked: Option<Duration>,
    notifier: Notifier,
    format: F,
}

impl<F: Format> Chat<F> {
    pub fn new(format: F, target: Target, notifier: Notifier) -> Chat<F> {
        Chat {
            client: target.client,
            url: target.url,
            asked: None,
            notifier,
            format,
        }
    }

    async fn post(&mut self, notice: &Notice<'_>) -> Result<(), (Action, String)> {
        let request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .body(self.format.message(notice).to_string());
        let sent = self.format.request(request).send().await;
        let response = sent.map_err(|e| {
            let why = format!(
                "POST {}: {}",
                http::redact(&self.url),
                chain(&e.without_url())
            );
            (Action::Retry, why)
        })?;
        if http::action(response.status().as_u16()) == Action::Deliver {
            let status = response.status();
            let answer = response.text().await.unwrap_or_default();
            return match self.format.refusal(&answer) {
                None => Ok(()),
                Some(why) => Err((
                    Action::Refuse,
                    format!("POST {}: HTTP {status}: {why}", http::redact(&self.url)),
                )),
            };
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
        let (format, target) = F::build(declared)?;
        Ok(Chat::new(format, target, Notifier::new(declared)?))
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
        self.format.preview(&self.notifier.event(event))
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

/// A Slack-compatible attachment's field value: Mattermost and Rocket.Chat show about this
/// much in a short field.
const MAX_ATTACHMENT_VALUE: usize = 500;
/// The attachment's text: both services take far more; this keeps a message readable.
const MAX_ATTACHMENT_TEXT: usize = 3000;

/// The message of a service taking Slack's legacy attachments (`mattermost`,
/// `rocketchat`): a notification line, and one attachment coloured by severity with the
/// rule as title (linking to the event's dashboard page when `link` is given), the text,
/// the facts as short fields, and the event id and tags as footer. The notification line
/// cannot mention anyone: an `@` in it is followed by a zero-width space.
pub fn attachment_message(notice: &Notice) -> Value {
    let event = notice.event;
    let line = format!(
        "[{}] {} — {}",
        notice.severity.as_str(),
        event.rule,
        place(event)
    );
    let line = trimmed(&line, 300, |c, out| {
        out.push(c);
        if c == '@' {
            out.push('\u{200b}');
        }
    });
    let mut fields: Vec<Value> = facts(event)
        .into_iter()
        .map(|(title, value)| {
            serde_json::json!({"title": title, "value": cut(&value, MAX_ATTACHMENT_VALUE), "short": true})
        })
        .collect();
    fields.push(serde_json::json!({
        "title": "Time",
        "value": event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "short": true,
    }));
    let mut footer = format!("event {}", event.id);
    if !event.tags.is_empty() {
        footer.push_str(" · ");
        footer.push_str(&cut(&event.tags.join(", "), MAX_ATTACHMENT_VALUE));
    }
    let mut attachment = serde_json::json!({
        "fallback": line,
        "color": format!("#{:06x}", severity_rgb(notice.severity)),
        "title": cut(&event.rule, 250),
        "text": cut(&notice.text, MAX_ATTACHMENT_TEXT),
        "fields": fields,
        "footer": footer,
    });
    if let Some(link) = &notice.link {
        attachment["title_link"] = link.as_str().into();
    }
    serde_json::json!({"text": line, "attachments": [attachment]})
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
        fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
            Ok((Plain, webhook(declared, Self::SECTION)?))
        }
        fn message(&self, notice: &Notice) -> Value {
            serde_json::json!({"text": notice.text, "rule": notice.event.rule, "link": notice.link})
        }
    }

    /// A target posting to `url` with a plain client (tests).
    pub fn target_of(url: &str) -> Target {
        Target {
            client: reqwest::Client::new(),
            url: url.parse().unwrap(),
        }
    }

    fn sink(url: String) -> Chat<Plain> {
        Chat::new(
            Plain,
            target_of(&url),
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
        assert_eq!(received[0].body, Plain.message(&notice(&e, Some(&link))));
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
