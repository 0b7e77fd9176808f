//! `nats`: each event published to JetStream with the header `Nats-Msg-Id` = the event id
//! and acknowledged by the stream that captures its subject; a batch is published at once
//! and its acks awaited in order. A re-sent event (after a timeout, a hub restart) is
//! dropped by the stream's duplicate window, so delivery is effectively once within it.
//! No ack in time, no stream for the subject, a lost connection: the batch is retried from
//! its first unconfirmed event. A message over the server's `max_payload`, or a subject the
//! credentials may not publish to, goes to the dead letters with the reason.

use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::broker::{self, Topic};
use crate::sinks::format::{self, BodyFormat};
use crate::sinks::{Declared, FromConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use falconer_store::Event;
use std::sync::{Arc, Mutex};

pub struct NatsSink {
    url: String,
    options: Options,
    connection: Option<async_nats::jetstream::Context>,
    subject: Topic,
    stream: Option<String>,
    format: BodyFormat,
    /// The last "Permissions Violation" the server reported on this connection.
    violation: Arc<Mutex<Option<String>>>,
    /// Scheme and host, for messages.
    server: String,
}

/// What a connection is made with.
struct Options {
    creds: Option<String>,
    nkey: Option<String>,
    token: Option<String>,
    login: Option<(String, String)>,
    tls: Option<rustls::ClientConfig>,
}

impl FromConsumer for NatsSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.nats.as_ref(), "nats")?;
        let url = broker::url(declared, "nats.url", &settings.url)?;
        broker::check_tls(declared, "nats", &settings.tls)?;
        let secure = url.starts_with("tls://");
        if !secure && !url.starts_with("nats://") {
            return Err(declared.config("nats.url: the scheme must be nats:// or tls://".into()));
        }
        let subject =
            Topic::parse(&settings.subject, "nats.subject").map_err(|e| declared.config(e))?;
        if settings.subject.contains(['*', '>', ' ']) || settings.subject.starts_with('.') {
            return Err(declared.config(
                "nats.subject: a subject to publish to has no wildcards (`*`, `>`), spaces or \
                 leading `.`"
                    .into(),
            ));
        }
        let secret = |key: &str| declared.secrets.get(key).map(|v| v.0.clone());
        let options = Options {
            creds: secret("creds"),
            nkey: secret("nkey"),
            token: secret("token"),
            login: broker::login(declared)?,
            tls: if secure || declared.secrets.get("ca.crt").is_some() {
                Some(broker::rustls_config(declared.name, declared.secrets)?)
            } else {
                None
            },
        };
        let methods = [
            options.creds.is_some(),
            options.nkey.is_some(),
            options.token.is_some(),
            options.login.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(declared
                .config("secretRef: give one of creds, nkey, token or username/password".into()));
        }
        if let Some(creds) = &options.creds {
            // Parsed now so a broken file is refused at once, not at the first send.
            async_nats::ConnectOptions::with_credentials(creds)
                .map_err(|e| declared.config(format!("secret key creds: {e}")))?;
        }
        broker::check_plain(declared, "nats.url", &url, secure, methods.contains(&true))?;
        Ok(NatsSink {
            server: broker::redact(&url),
            url,
            options,
            connection: None,
            subject,
            stream: settings.stream.clone(),
            format: BodyFormat::new(settings.format, declared, "nats.format")?,
            violation: Arc::default(),
        })
    }
}

impl NatsSink {
    async fn connect(&mut self) -> Result<async_nats::jetstream::Context, String> {
        if let Some(c) = &self.connection {
            return Ok(c.clone());
        }
        let violation = self.violation.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name("falconer")
            .connection_timeout(broker::TIMEOUT)
            .request_timeout(Some(broker::TIMEOUT))
            .event_callback(move |event| {
                let violation = violation.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = &event {
                        let text = e.to_string();
                        if text.to_ascii_lowercase().contains("permissions violation")
                            && let Ok(mut v) = violation.lock()
                        {
                            *v = Some(text);
                        }
                    }
                }
            });
        let o = &self.options;
        if let Some(creds) = &o.creds {
            options = options
                .credentials(creds)
                .map_err(|e| format!("secret key creds: {e}"))?;
        } else if let Some(seed) = &o.nkey {
            options = options.nkey(seed.clone());
        } else if let Some(token) = &o.token {
            options = options.token(token.clone());
        } else if let Some((user, pass)) = &o.login {
            options = options.user_and_password(user.clone(), pass.clone());
        }
        if let Some(tls) = &o.tls {
            options = options.tls_client_config(tls.clone());
        }
        if self.url.starts_with("tls://") {
            options = options.require_tls(true);
        }
        let client = tokio::time::timeout(broker::TIMEOUT, options.connect(self.url.as_str()))
            .await
            .map_err(|_| format!("connecting to {}: timed out", self.server))?
            .map_err(|e| format!("connecting to {}: {e}", self.server))?;
        let context = async_nats::jetstream::ContextBuilder::new()
            .timeout(broker::TIMEOUT)
            .build(client);
        if let Some(stream) = &self.stream {
            check_stream(&context, stream, &self.subject).await?;
        }
        self.connection = Some(context.clone());
        Ok(context)
    }
}

/// Checks that `stream` exists and, for a subject without placeholders, that it captures it.
async fn check_stream(
    context: &async_nats::jetstream::Context,
    stream: &str,
    subject: &Topic,
) -> Result<(), String> {
    let mut found = context
        .get_stream(stream)
        .await
        .map_err(|e| format!("nats.stream {stream}: {e}"))?;
    let info = found
        .info()
        .await
        .map_err(|e| format!("nats.stream {stream}: {e}"))?;
    if subject.is_fixed() {
        let fixed = subject.render_fixed();
        if !info
            .config
            .subjects
            .iter()
            .any(|s| subject_matches(s, &fixed))
        {
            return Err(format!(
                "nats.stream {stream} does not capture the subject {fixed} (its subjects: {})",
                info.config.subjects.join(", ")
            ));
        }
    }
    Ok(())
}

/// Whether the NATS subject filter `filter` (with `*` and `>`) matches `subject`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The headers of one event's message.
pub fn headers(event: &Event, content_type: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        event.id.to_string().as_str(),
    );
    headers.insert("Content-Type", content_type);
    headers
}

impl Sink for NatsSink {
    fn batch_size(&self) -> usize {
        broker::BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let context = match self.connect().await {
            Ok(c) => c,
            Err(why) => return Outcome::Retry(why),
        };
        if let Ok(mut v) = self.violation.lock() {
            *v = None;
        }
        // While the client is disconnected a publish waits for room in its buffer, and an
        // ack for the server: both are bounded by the batch's deadline.
        let deadline = tokio::time::Instant::now() + broker::TIMEOUT;
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let subject = self.subject.render(event);
            let body = format::body(&self.format, event);
            let publish = context.publish_with_headers(
                subject.clone(),
                headers(event, body.content_type),
                body.bytes.into(),
            );
            match tokio::time::timeout_at(deadline, publish).await {
                Ok(sent) => pending.push((subject, sent)),
                Err(_) => break,
            }
        }
        if pending.is_empty() {
            return Outcome::Retry(format!(
                "{}: not connected, nothing published within {:?}",
                self.server,
                broker::TIMEOUT
            ));
        }
        let timed_out = format!("{}: no ack within {:?}", self.server, broker::TIMEOUT);
        let mut results = Vec::with_capacity(events.len());
        let mut retry: Option<String> = None;
        for (subject, sent) in pending {
            let answer = match sent {
                Ok(ack) => match self.ack_or_violation(&subject, deadline, ack).await {
                    Acked::Answer(answer) => answer,
                    Acked::Denied(why) => {
                        if let Some(why) = &retry {
                            results.push(ItemResult::Retry(why.clone()));
                        } else {
                            results.push(ItemResult::Refused(format!("{}: {why}", self.server)));
                        }
                        continue;
                    }
                    Acked::TimedOut => {
                        results.push(ItemResult::Retry(timed_out.clone()));
                        retry.get_or_insert(timed_out.clone());
                        continue;
                    }
                },
                Err(e) => Err(e),
            };
            let result = match answer {
                Ok(_) => ItemResult::Delivered,
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    ItemResult::Refused(format!(
                        "{}: the message is larger than the server's max_payload",
                        self.server
                    ))
                }
                Err(e) => match self.violation_for(&subject) {
                    Some(why) => ItemResult::Refused(format!("{}: {why}", self.server)),
                    None => {
                        ItemResult::Retry(format!("publish to {subject} on {}: {e}", self.server))
                    }
                },
            };
            // After the first event that must be re-sent, the rest is re-sent too, so the
            // stream keeps the events' order; those already stored are dropped as duplicates.
            if let Some(why) = &retry {
                results.push(ItemResult::Retry(why.clone()));
                continue;
            }
            // The client reconnects by itself (without limit): the connection is kept.
            if let ItemResult::Retry(why) = &result {
                retry = Some(why.clone());
            }
            results.push(result);
        }
        let why = retry.unwrap_or_else(|| timed_out.clone());
        results.resize(events.len(), ItemResult::Retry(why));
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            Outcome::Delivered
        } else if results.iter().all(|r| matches!(r, ItemResult::Retry(_))) {
            match results.into_iter().next() {
                Some(ItemResult::Retry(why)) => Outcome::Retry(why),
                _ => Outcome::Retry("no result".into()),
            }
        } else {
            Outcome::Each(results)
        }
    }

    fn preview(&self, event: &Event) -> serde_json::Value {
        let body = format::body(&self.format, event);
        serde_json::json!({
            "subject": self.subject.render(event),
            "headers": {"Nats-Msg-Id": event.id.to_string()},
            "body": broker::preview(&body),
        })
    }
}

/// How waiting for one publish's ack ended.
enum Acked<T> {
    Answer(T),
    /// The server reported a permissions violation for the subject: no ack will come.
    Denied(String),
    TimedOut,
}

/// How often a wait for an ack looks for a permissions violation of its subject.
const VIOLATION_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl NatsSink {
    /// Waits for `ack` until `deadline`, or until the server has said the subject may not
    /// be published to (it then never acks, so waiting out the deadline would only delay
    /// the dead letter).
    async fn ack_or_violation<F: std::future::IntoFuture>(
        &self,
        subject: &str,
        deadline: tokio::time::Instant,
        ack: F,
    ) -> Acked<F::Output> {
        let ack = tokio::time::timeout_at(deadline, ack.into_future());
        tokio::pin!(ack);
        loop {
            tokio::select! {
                answer = &mut ack => {
                    return match answer {
                        Ok(answer) => Acked::Answer(answer),
                        Err(_) => Acked::TimedOut,
                    };
                }
                () = tokio::time::sleep(VIOLATION_POLL) => {
                    if let Some(why) = self.violation_for(subject) {
                        return Acked::Denied(why);
                    }
                }
            }
        }
    }

    fn violation_for(&self, subject: &str) -> Option<String> {
        let v = self.violation.lock().ok()?;
        v.as_ref()
            .filter(|text| text.contains(subject))
            .map(|text| format!("not authorized: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{declared, event, secrets};
    use serde_json::json;

    fn consumer(nats: serde_json::Value) -> falconer_model::crd::Consumer {
        serde_json::from_value(json!({"name": "bus", "type": "nats", "nats": nats})).unwrap()
    }

    #[test]
    fn a_message_carries_the_event_id_as_nats_msg_id() {
        let e = event("Terminal shell");
        let h = headers(&e, format::JSON);
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some(e.id.to_string().as_str())
        );
    }

    #[test]
    fn stream_subject_filters_match_as_nats_does() {
        assert!(subject_matches("falconer.>", "falconer.prod.warning"));
        assert!(subject_matches(
            "falconer.*.warning",
            "falconer.prod.warning"
        ));
        assert!(!subject_matches("falconer.*", "falconer.prod.warning"));
        assert!(!subject_matches("falconer.>", "falconer"));
        assert!(subject_matches("events", "events"));
    }

    #[test]
    fn a_wildcard_subject_or_two_credentials_are_refused_naming_the_field() {
        let none = secrets(&[]);
        let c = consumer(json!({"url": "nats://127.0.0.1:4222", "subject": "falconer.>"}));
        let err = NatsSink::from_consumer(&declared(&c, &none)).err().unwrap();
        assert!(
            err.to_string()
                .contains("nats.subject: a subject to publish to"),
            "{err}"
        );
        let c = consumer(json!({"url": "nats://127.0.0.1:4222"}));
        let two = secrets(&[("token", "t"), ("nkey", "SU")]);
        let err = NatsSink::from_consumer(&declared(&c, &two)).err().unwrap();
        assert!(err.to_string().contains("secretRef: give one of"), "{err}");
        let c = consumer(json!({"url": "http://127.0.0.1:4222"}));
        let err = NatsSink::from_consumer(&declared(&c, &none)).err().unwrap();
        assert!(err.to_string().contains("nats.url: the scheme"), "{err}");
    }

    #[test]
    fn a_token_over_plain_nats_to_another_host_is_refused() {
        let c = consumer(json!({"url": "nats://nats.bus.svc:4222"}));
        let s = secrets(&[("token", "t")]);
        let err = NatsSink::from_consumer(&declared(&c, &s)).err().unwrap();
        assert!(
            err.to_string()
                .contains("nats.url: nats://nats.bus.svc:4222 is a plain"),
            "{err}"
        );
        let mut c = c;
        c.allow_insecure_http = true;
        assert!(NatsSink::from_consumer(&declared(&c, &s)).is_ok());
    }
}
