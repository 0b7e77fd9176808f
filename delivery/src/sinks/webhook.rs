//! `webhook`: POSTs (or PUTs) events, one per request or a batch in one body, with custom
//! headers, an `Idempotency-Key` (the event id, or a digest of the batch's ids) so a retried
//! request can be recognised, and an optional HMAC-SHA256 signature of the body. The body is
//! the consumer's `format` (`sinks::format`): the Falconer event, the Falco alert as sent
//! (falcosidekick, falco-talon), a CloudEvent, or the rendered template.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::format::{self, Body, BodyFormat};
use crate::sinks::http::{self, Action, BatchPost, Posted, chain, require};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::{WebhookConfig, WebhookMethod};
use falconer_store::Event;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

/// Header carrying `sha256=<hex HMAC of the body>` when signing is on.
pub const SIGNATURE_HEADER: &str = "x-falconer-signature";
const BATCH: usize = 100;

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    method: reqwest::Method,
    format: BodyFormat,
    batch: bool,
    /// Events per request in batch mode; halved after a 413.
    batch_size: usize,
    headers: HeaderMap,
    hmac_key: Option<Vec<u8>>,
    /// What the last 429/503 asked for (`Retry-After`).
    asked: Option<std::time::Duration>,
}

/// What one HTTP exchange says about the events it carried.
enum Answer {
    Delivered,
    Retry(String),
    Refused(String),
    TooLarge(String),
}

impl Webhook {
    pub fn build(
        consumer: &str,
        url: reqwest::Url,
        settings: &WebhookConfig,
        secrets: &Secrets,
        format: BodyFormat,
    ) -> Result<Webhook, DeliveryError> {
        let config = |message: String| DeliveryError::Config {
            consumer: consumer.to_string(),
            message,
        };
        if settings.batch && !format.batches() {
            return Err(config(format!(
                "webhook.batch: format {} sends one event per request (falcosidekick and \
                 falco-talon take one alert per request, a template renders one message); \
                 set batch: false",
                format.kind().as_str()
            )));
        }
        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: &str, what: &str| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config(format!("{what}: `{name}` is not a header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                config(format!(
                    "{what}: the value of `{name}` is not a header value"
                ))
            })?;
            headers.insert(name, value);
            Ok::<_, DeliveryError>(())
        };
        for (name, value) in &settings.headers {
            add(name, value, "webhook.headers")?;
        }
        for (name, key) in &settings.secret_headers {
            let value = require(consumer, secrets, key, "webhook.secretHeaders")?;
            add(name, &value, "webhook.secretHeaders")?;
        }
        let hmac_key = settings
            .sign
            .then(|| require(consumer, secrets, "hmacKey", "webhook.sign").map(String::into_bytes))
            .transpose()?;
        Ok(Webhook {
            client: http::client(consumer, &settings.tls, secrets)?,
            url,
            method: match settings.method {
                WebhookMethod::Post => reqwest::Method::POST,
                WebhookMethod::Put => reqwest::Method::PUT,
            },
            format,
            batch: settings.batch,
            batch_size: BATCH,
            headers,
            hmac_key,
            asked: None,
        })
    }

    async fn request(&mut self, body: Body, idempotency_key: String) -> Answer {
        let Body {
            content_type,
            bytes: body,
        } = body;
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .header("content-type", content_type)
            .header("idempotency-key", idempotency_key);
        if let Some(key) = &self.hmac_key {
            request = request.header(
                SIGNATURE_HEADER,
                format!("sha256={}", hex(&hmac_sha256(key, &body))),
            );
        }
        match request.body(body).send().await {
            Err(e) => Answer::Retry(format!(
                "{} {}: {}",
                self.method,
                http::redact(&self.url),
                chain(&e.without_url())
            )),
            Ok(response) => answer(response, &self.method, &mut self.asked).await,
        }
    }
}

impl FromConsumer for Webhook {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.webhook.as_ref(), "webhook")?;
        let url = http::endpoint(declared, "webhook.url", &settings.url)?;
        let format = BodyFormat::new(settings.format, declared, "webhook.format")?;
        Webhook::build(declared.name, url, settings, declared.secrets, format)
    }
}

impl Sink for Webhook {
    fn batch_size(&self) -> usize {
        if self.batch { self.batch_size } else { BATCH }
    }

    fn retry_after(&mut self) -> Option<std::time::Duration> {
        self.asked.take()
    }

    /// The body this consumer's format gives `event`: its JSON, or the text as a string.
    fn preview(&self, event: &Event) -> serde_json::Value {
        let body = format::body(&self.format, event);
        serde_json::from_slice(&body.bytes)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body.bytes).into_owned().into())
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        if self.batch {
            return http::send_splitting(self, events).await;
        }
        // One request per event, in order: after a failure that may pass, the rest waits.
        let mut results = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let body = format::body(&self.format, event);
            let bytes = body.bytes.len();
            match self.request(body, event.id.to_string()).await {
                Answer::Delivered => results.push(ItemResult::Delivered),
                Answer::Refused(why) => results.push(ItemResult::Refused(why)),
                Answer::TooLarge(why) => {
                    results.push(ItemResult::Refused(http::too_large_alone(&why, bytes)))
                }
                Answer::Retry(why) => {
                    if i == 0 {
                        return Outcome::Retry(why);
                    }
                    results.extend(events[i..].iter().map(|_| ItemResult::Retry(why.clone())));
                    break;
                }
            }
        }
        Outcome::Each(results)
    }
}

/// Batch mode: the events in one body (a JSON array), keyed by a digest of their ids.
impl BatchPost for Webhook {
    async fn post(&mut self, events: &[Event]) -> Posted {
        let Some(body) = format::batch(&self.format, events) else {
            // `build` refuses `batch` for such a format.
            let why = format!("format {} has no batch body", self.format.kind().as_str());
            return Posted::Done(http::refuse_all(events.len(), &why));
        };
        let bytes = body.bytes.len();
        let mut digest = Sha256::new();
        for event in events {
            digest.update(event.id.as_bytes());
        }
        let key = hex(&digest.finalize()[..16]);
        Posted::Done(match self.request(body, key).await {
            Answer::Delivered => Outcome::Delivered,
            Answer::Retry(why) => Outcome::Retry(why),
            Answer::Refused(why) => http::refuse_all(events.len(), &why),
            Answer::TooLarge(why) => return Posted::TooLarge { bytes, why },
        })
    }

    fn batch(&self) -> usize {
        self.batch_size
    }

    fn lower_batch(&mut self, size: usize) {
        self.batch_size = size.max(1);
    }
}

async fn answer(
    response: reqwest::Response,
    method: &reqwest::Method,
    asked: &mut Option<std::time::Duration>,
) -> Answer {
    if http::action(response.status().as_u16()) == Action::Deliver {
        return Answer::Delivered;
    }
    let (action, why) = http::failure(response, asked).await;
    // The shared reason names the method POST, which every other HTTP sink uses.
    let why = match *method {
        reqwest::Method::POST => why,
        _ => why.replacen("POST ", &format!("{method} "), 1),
    };
    match action {
        Action::Deliver => Answer::Delivered,
        Action::Retry => Answer::Retry(why),
        Action::Split => Answer::TooLarge(why),
        Action::Refuse => Answer::Refused(why),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_429_is_retried_and_its_retry_after_handed_to_the_worker_once() {
        let receiver = falconer_testkit::webhook::WebhookServer::start();
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 7));
        let settings: WebhookConfig =
            serde_json::from_value(serde_json::json!({"url": receiver.url()})).unwrap();
        let url = settings.url.parse().unwrap();
        let mut sink = Webhook::build(
            "hook",
            url,
            &settings,
            &Secrets::new(),
            BodyFormat::Falconer,
        )
        .unwrap();
        let event = crate::fixtures::event("Terminal shell");

        let Outcome::Retry(why) = sink.send(std::slice::from_ref(&event)).await else {
            panic!("a 429 is retried");
        };
        assert!(
            why.contains("429") && why.contains("Retry-After: 7 s"),
            "{why}"
        );
        assert_eq!(sink.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert_eq!(sink.retry_after(), None, "taken once");

        assert_eq!(
            sink.send(std::slice::from_ref(&event)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        assert_eq!(receiver.ids(), [event.id.to_string()]);
        receiver.stop().await;
    }

    fn consumer(webhook: serde_json::Value) -> falconer_model::crd::Consumer {
        let mut consumer =
            falconer_model::crd::Consumer::new("hook", falconer_model::crd::SinkType::Webhook);
        consumer.webhook = Some(serde_json::from_value(webhook).unwrap());
        consumer
    }

    fn sink(consumer: &falconer_model::crd::Consumer) -> Result<Webhook, DeliveryError> {
        let secrets = Secrets::new();
        Webhook::from_consumer(&crate::fixtures::declared(consumer, &secrets))
    }

    #[tokio::test]
    async fn format_falco_with_put_sends_the_alert_as_falco_sent_it() {
        let receiver = falconer_testkit::webhook::WebhookServer::start();
        let mut hook = sink(&consumer(serde_json::json!({
            "url": receiver.url(), "format": "falco", "method": "PUT"
        })))
        .unwrap();
        let mut event = crate::fixtures::event("Terminal shell");
        let raw = r#"{"rule":"Terminal shell", "priority":"Notice","time":"2026-05-04T10:11:12.1Z","output_fields":{"k8s.ns.name":"shop"}}"#;
        event.raw = Some(serde_json::value::RawValue::from_string(raw.into()).unwrap());
        assert_eq!(
            hook.send(std::slice::from_ref(&event)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "PUT");
        assert_eq!(requests[0].raw, raw, "the raw bytes, unchanged");
        assert_eq!(requests[0].headers["content-type"], "application/json");
        assert_eq!(requests[0].headers["idempotency-key"], event.id.to_string());
        receiver.stop().await;
    }

    #[tokio::test]
    async fn a_refused_put_names_put_in_its_reason() {
        let receiver = falconer_testkit::webhook::WebhookServer::start();
        *receiver.state.answer.lock().unwrap() = Some((400, "no".into()));
        let mut hook = sink(&consumer(serde_json::json!({
            "url": receiver.url(), "method": "PUT"
        })))
        .unwrap();
        let Outcome::Each(results) = hook.send(&[crate::fixtures::event("r")]).await else {
            panic!("per event");
        };
        let ItemResult::Refused(why) = &results[0] else {
            panic!("{results:?}");
        };
        assert!(why.starts_with("PUT http://127.0.0.1:"), "{why}");
        receiver.stop().await;
    }

    #[tokio::test]
    async fn format_cloudevents_in_batch_mode_posts_a_cloudevents_batch() {
        let receiver = falconer_testkit::webhook::WebhookServer::start();
        let mut hook = sink(&consumer(serde_json::json!({
            "url": receiver.url(), "format": "cloudevents", "batch": true
        })))
        .unwrap();
        let events = [crate::fixtures::event("a"), crate::fixtures::event("b")];
        assert_eq!(hook.send(&events).await, Outcome::Delivered);
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].method, "POST");
        assert_eq!(
            requests[0].headers["content-type"],
            "application/cloudevents-batch+json"
        );
        assert_eq!(receiver.events().len(), 2);
        assert_eq!(receiver.events()[0]["id"], events[0].id.to_string());
        assert_eq!(receiver.events()[1]["data"]["rule"], "b");
        receiver.stop().await;
    }

    #[tokio::test]
    async fn format_template_posts_the_rendered_text_and_previews_it() {
        let receiver = falconer_testkit::webhook::WebhookServer::start();
        let mut declared = consumer(serde_json::json!({
            "url": receiver.url(), "format": "template"
        }));
        declared.template = Some("{{ severity | upper }}: {{ rule }}".into());
        crate::notify::check(&declared).unwrap();
        let mut hook = sink(&declared).unwrap();
        let event = crate::fixtures::event("Terminal shell");
        assert_eq!(hook.preview(&event), "WARNING: Terminal shell");
        assert_eq!(
            hook.send(std::slice::from_ref(&event)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        let requests = receiver.requests();
        assert_eq!(requests[0].raw, "WARNING: Terminal shell");
        assert_eq!(
            requests[0].headers["content-type"],
            "text/plain; charset=utf-8"
        );
        receiver.stop().await;
    }

    #[test]
    fn formats_without_a_batch_body_refuse_batch_naming_the_field() {
        for format in ["falco", "template"] {
            let mut declared = consumer(serde_json::json!({
                "url": "https://hooks.example/x", "format": format, "batch": true
            }));
            declared.template = Some("{{ rule }}".into());
            let error = sink(&declared).err().unwrap().to_string();
            assert!(
                error.contains("webhook.batch: format") && error.contains("batch: false"),
                "{format}: {error}"
            );
        }
    }

    #[test]
    fn a_template_is_refused_unless_the_format_is_template_and_needed_when_it_is() {
        let mut declared = consumer(serde_json::json!({"url": "https://hooks.example/x"}));
        declared.template = Some("{{ rule }}".into());
        let (field, why) = crate::notify::check(&declared).unwrap_err();
        assert_eq!(field, "template");
        assert!(why.contains("format falconer"), "{why}");

        let declared = consumer(serde_json::json!({
            "url": "https://hooks.example/x", "format": "template"
        }));
        let (field, why) = crate::notify::check(&declared).unwrap_err();
        assert_eq!(field, "template");
        assert!(why.contains("needs the consumer's `template`"), "{why}");
        let error = sink(&declared).err().unwrap().to_string();
        assert!(error.contains("webhook.format: template needs"), "{error}");
    }

    #[test]
    fn hmac_matches_the_rfc_4231_test_vectors() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (RFC 4231 test case 6).
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
