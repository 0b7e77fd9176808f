//! `mqtt`: each event published at QoS 1 (MQTT 3.1.1) on a session the broker keeps (clean
//! session off, client id `falconer-<consumer>` unless set); an event counts as delivered
//! when its PUBACK arrives. The client's event loop runs in its own task and reports what
//! was written and acknowledged; a batch without all its acks within the timeout is retried
//! from there (QoS 1 is at least once: a message whose PUBACK was lost arrives twice). A
//! message larger than the packet limit goes to the dead letters.

use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::broker::{self, Topic};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::MessageFormat;
use falconer_store::Event;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest message published; a larger one is refused for good.
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;

pub struct MqttSink {
    options: MqttOptions,
    link: Option<Link>,
    topic: Topic,
    retain: bool,
    format: MessageFormat,
    /// Scheme and host, for messages.
    server: String,
}

/// A running client: its handle, and what its event loop reports.
struct Link {
    client: AsyncClient,
    notes: mpsc::UnboundedReceiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the event loop saw.
#[derive(Debug)]
enum Note {
    /// A PUBLISH with this packet id was written.
    Sent(u16),
    /// Its PUBACK arrived.
    Acked(u16),
    /// The connection failed (the loop reconnects).
    Down(String),
}

/// The broker's address from an `mqtt://` or `mqtts://` URL.
pub fn address(url: &str) -> Result<(String, u16, bool), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let secure = match parsed.scheme() {
        "mqtts" => true,
        "mqtt" => false,
        _ => return Err("the scheme must be mqtt:// or mqtts://".into()),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials go in the Secret's username and password, not the URL".into());
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL has no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let port = parsed.port().unwrap_or(if secure { 8883 } else { 1883 });
    Ok((host, port, secure))
}

impl FromConsumer for MqttSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.mqtt.as_ref(), "mqtt")?;
        let url = broker::url(declared, "mqtt.url", &settings.url)?;
        broker::check_tls(declared, "mqtt", &settings.tls)?;
        let (host, port, secure) =
            address(&url).map_err(|why| declared.config(format!("mqtt.url: {why}")))?;
        let topic = Topic::parse(&settings.topic, "mqtt.topic").map_err(|e| declared.config(e))?;
        if settings.topic.contains(['+', '#']) || settings.topic.starts_with('$') {
            return Err(declared.config(
                "mqtt.topic: a topic to publish to has no wildcards (`+`, `#`) and does not \
                 start with `$`"
                    .into(),
            ));
        }
        let login = broker::login(declared)?;
        broker::check_plain(declared, "mqtt.url", &url, secure, login.is_some())?;
        let client_id = settings
            .client_id
            .clone()
            .unwrap_or_else(|| format!("falconer-{}", declared.name));
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_clean_session(false)
            .set_keep_alive(std::time::Duration::from_secs(30))
            .set_max_packet_size(MAX_MESSAGE + 64 * 1024, MAX_MESSAGE + 64 * 1024);
        if let Some((user, pass)) = login {
            options.set_credentials(user, pass);
        }
        if secure {
            let tls = broker::rustls_config(declared.name, declared.secrets)?;
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
            ));
        }
        Ok(MqttSink {
            options,
            link: None,
            topic,
            retain: settings.retain,
            format: settings.format,
            server: broker::redact(&url),
        })
    }
}

/// Runs the client's event loop, reporting writes, acks and failures until the sink goes.
async fn drive(mut events: rumqttc::EventLoop, notes: mpsc::UnboundedSender<Note>) {
    loop {
        let note = match events.poll().await {
            Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => Some(Note::Sent(pkid)),
            Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => Some(Note::Acked(ack.pkid)),
            Ok(_) => None,
            Err(e) => Some(Note::Down(e.to_string())),
        };
        let down = matches!(note, Some(Note::Down(_)));
        if let Some(note) = note
            && notes.send(note).is_err()
        {
            return;
        }
        if down {
            // The next poll reconnects; pace it.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

impl MqttSink {
    fn link(&mut self) -> &mut Link {
        self.link.get_or_insert_with(|| {
            let (client, events) = AsyncClient::new(self.options.clone(), broker::BATCH * 2);
            let (tx, notes) = mpsc::unbounded_channel();
            let task = tokio::spawn(drive(events, tx));
            Link {
                client,
                notes,
                task,
            }
        })
    }
}

impl Sink for MqttSink {
    fn batch_size(&self) -> usize {
        broker::BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let deadline = tokio::time::Instant::now() + broker::TIMEOUT;
        let (topic, retain, format, server) =
            (&self.topic, self.retain, self.format, self.server.clone());
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let body = broker::body(event, format);
            messages.push((topic.render(event), body));
        }
        let link = self.link();
        // Notes of an earlier batch that timed out are stale.
        while link.notes.try_recv().is_ok() {}
        let mut published = Vec::new();
        let mut results: Vec<Option<ItemResult>> = vec![None; events.len()];
        for (i, (topic, body)) in messages.into_iter().enumerate() {
            if body.len() > MAX_MESSAGE {
                results[i] = Some(ItemResult::Refused(format!(
                    "the message is {} bytes, over the {MAX_MESSAGE}-byte limit",
                    body.len()
                )));
                continue;
            }
            let publish = link.client.publish(topic, QoS::AtLeastOnce, retain, body);
            match tokio::time::timeout_at(deadline, publish).await {
                Ok(Ok(())) => published.push(i),
                Ok(Err(e)) => return Outcome::Retry(format!("publish to {server}: {e}")),
                Err(_) => break,
            }
        }
        // Packet ids are assigned in the order of the requests: the n-th write is the n-th
        // published event. An id is reused once acknowledged; a write of an id still
        // waiting for its ack is a retransmission after a reconnect.
        let mut acks: Vec<bool> = Vec::with_capacity(published.len());
        let mut waiting: HashMap<u16, usize> = HashMap::new();
        let mut last_error = None;
        while acks.len() < published.len() || !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, link.notes.recv()).await {
                Ok(Some(Note::Sent(pkid))) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = waiting.entry(pkid) {
                        slot.insert(acks.len());
                        acks.push(false);
                    }
                }
                Ok(Some(Note::Acked(pkid))) => {
                    if let Some(n) = waiting.remove(&pkid) {
                        acks[n] = true;
                    }
                }
                Ok(Some(Note::Down(why))) => last_error = Some(why),
                Ok(None) | Err(_) => break,
            }
        }
        let why = match &last_error {
            Some(e) => format!("{server}: {e}"),
            None => format!("{server}: no PUBACK within {:?}", broker::TIMEOUT),
        };
        let mut all_acked = true;
        for (n, i) in published.iter().enumerate() {
            let ok = acks.get(n).copied().unwrap_or(false);
            all_acked &= ok;
            results[*i] = Some(if ok {
                ItemResult::Delivered
            } else {
                ItemResult::Retry(why.clone())
            });
        }
        if !all_acked || published.len() < events.len() {
            // A fresh client for the retry: no stale packet ids, no message queued twice.
            self.link = None;
        }
        let results: Vec<ItemResult> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| ItemResult::Retry(why.clone())))
            .collect();
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            Outcome::Delivered
        } else if results.iter().all(|r| matches!(r, ItemResult::Retry(_))) {
            Outcome::Retry(why)
        } else {
            Outcome::Each(results)
        }
    }

    fn preview(&self, event: &Event) -> serde_json::Value {
        let body = broker::body(event, self.format);
        serde_json::json!({
            "topic": self.topic.render(event),
            "qos": 1,
            "retain": self.retain,
            "payload": serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{declared, secrets};
    use serde_json::json;

    fn consumer(mqtt: serde_json::Value) -> falconer_model::crd::Consumer {
        serde_json::from_value(json!({"name": "bus", "type": "mqtt", "mqtt": mqtt})).unwrap()
    }

    #[test]
    fn the_address_comes_from_the_url_with_the_default_ports() {
        assert_eq!(
            address("mqtt://broker").unwrap(),
            ("broker".into(), 1883, false)
        );
        assert_eq!(
            address("mqtts://broker").unwrap(),
            ("broker".into(), 8883, true)
        );
        assert_eq!(
            address("mqtt://[::1]:1884").unwrap(),
            ("::1".into(), 1884, false)
        );
        assert!(address("tcp://broker").unwrap_err().contains("mqtt://"));
        assert!(address("mqtt://u:p@broker").unwrap_err().contains("Secret"));
    }

    #[test]
    fn a_wildcard_topic_is_refused_naming_the_field() {
        let c = consumer(json!({"url": "mqtt://127.0.0.1", "topic": "falconer/#"}));
        let err = MqttSink::from_consumer(&declared(&c, &secrets(&[])))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("mqtt.topic: a topic to publish to"),
            "{err}"
        );
        let c = consumer(json!({"url": "mqtt://mqtt.iot.svc"}));
        let s = secrets(&[("username", "u"), ("password", "p")]);
        let err = MqttSink::from_consumer(&declared(&c, &s)).err().unwrap();
        assert!(
            err.to_string()
                .contains("mqtt.url: mqtt://mqtt.iot.svc is a plain"),
            "{err}"
        );
    }
}
