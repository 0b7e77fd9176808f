//! `mqtt`: each event published at QoS 1 (MQTT 3.1.1) on a session the broker keeps (clean
//! session off, client id `falconer-<consumer>` unless set); an event counts as delivered
//! when its PUBACK arrives. The client's event loop runs in its own task and reports what
//! was written and acknowledged. A batch without all its acks within the timeout is retried,
//! but what the client still holds is not published again: the client retransmits it after
//! a reconnect, and the retry waits for its PUBACK. (QoS 1 is at least once: a message the
//! broker took whose PUBACK was lost with the connection arrives twice.) A message larger
//! than the packet limit goes to the dead letters.

use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::broker::{self, Topic};
use crate::sinks::format::{self, BodyFormat};
use crate::sinks::{Declared, FromConsumer};
use falconer_store::Event;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Largest message published; a larger one is refused for good.
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// Sends in a row without progress after which the client is made anew.
const STALLED_SENDS: u32 = 6;

pub struct MqttSink {
    options: MqttOptions,
    link: Option<Link>,
    flight: Flight,
    topic: Topic,
    retain: bool,
    format: BodyFormat,
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

/// The events handed to the client and not yet reported delivered. The client keeps its
/// session across reconnects (and retransmits what was not acknowledged), so a retried
/// batch waits for these instead of publishing them again.
#[derive(Default)]
struct Flight {
    /// Publish requests not yet written, in order: packet ids are assigned in this order.
    queued: VecDeque<Uuid>,
    /// Written, waiting for their PUBACK, by packet id.
    written: HashMap<u16, Uuid>,
    /// Acknowledged, not yet reported to the worker.
    acked: HashSet<Uuid>,
    last_error: Option<String>,
    /// Whether a note of progress (a write or an ack) arrived since the last send.
    progress: bool,
    /// Sends in a row that ended without any progress.
    stalled: u32,
}

impl Flight {
    fn holds(&self, id: &Uuid) -> bool {
        self.acked.contains(id)
            || self.queued.contains(id)
            || self.written.values().any(|w| w == id)
    }

    fn take(&mut self, note: Note) {
        match note {
            Note::Sent(pkid) => {
                self.progress = true;
                // A packet id still waiting is a retransmission after a reconnect.
                if !self.written.contains_key(&pkid)
                    && let Some(id) = self.queued.pop_front()
                {
                    self.written.insert(pkid, id);
                }
            }
            Note::Acked(pkid) => {
                self.progress = true;
                if let Some(id) = self.written.remove(&pkid) {
                    self.acked.insert(id);
                }
            }
            Note::Down(why) => self.last_error = Some(why),
        }
    }

    fn take_notes(&mut self, notes: &mut mpsc::UnboundedReceiver<Note>) {
        while let Ok(note) = notes.try_recv() {
            self.take(note);
        }
    }
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
            flight: Flight::default(),
            topic,
            retain: settings.retain,
            format: BodyFormat::new(settings.format, declared, "mqtt.format")?,
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
        let server = self.server.clone();
        self.link();
        let (Some(link), flight) = (self.link.as_mut(), &mut self.flight) else {
            return Outcome::Retry(format!("{server}: no client"));
        };
        flight.take_notes(&mut link.notes);
        let mut results: Vec<Option<ItemResult>> = vec![None; events.len()];
        for (i, event) in events.iter().enumerate() {
            if flight.holds(&event.id) {
                // Published by an earlier try and still in the client's session: it is
                // retransmitted there (or already acknowledged), not published twice.
                continue;
            }
            let body = format::body(&self.format, event).bytes;
            if body.len() > MAX_MESSAGE {
                results[i] = Some(ItemResult::Refused(format!(
                    "the message is {} bytes, over the {MAX_MESSAGE}-byte limit",
                    body.len()
                )));
                continue;
            }
            let topic = self.topic.render(event);
            let publish = link
                .client
                .publish(topic, QoS::AtLeastOnce, self.retain, body);
            match tokio::time::timeout_at(deadline, publish).await {
                Ok(Ok(())) => flight.queued.push_back(event.id),
                Ok(Err(e)) => {
                    flight.last_error = Some(e.to_string());
                    break;
                }
                Err(_) => break,
            }
        }
        let waiting = |flight: &Flight| {
            events
                .iter()
                .zip(&results)
                .any(|(e, r)| r.is_none() && flight.holds(&e.id) && !flight.acked.contains(&e.id))
        };
        while waiting(flight) {
            match tokio::time::timeout_at(deadline, link.notes.recv()).await {
                Ok(Some(note)) => flight.take(note),
                Ok(None) | Err(_) => break,
            }
        }
        let why = match &flight.last_error {
            Some(e) => format!("{server}: {e}"),
            None => format!("{server}: no PUBACK within {:?}", broker::TIMEOUT),
        };
        let results: Vec<ItemResult> = events
            .iter()
            .zip(results)
            .map(|(event, result)| match result {
                Some(result) => result,
                None if flight.acked.remove(&event.id) => ItemResult::Delivered,
                None => ItemResult::Retry(why.clone()),
            })
            .collect();
        flight.last_error = None;
        let delivered = results.iter().all(|r| *r == ItemResult::Delivered);
        flight.stalled = if delivered || flight.progress {
            0
        } else {
            flight.stalled + 1
        };
        flight.progress = false;
        if flight.stalled >= STALLED_SENDS {
            // Nothing written or acknowledged for a minute: a fresh client and session state,
            // and what it held is published again (it never reached the broker).
            self.link = None;
            self.flight = Flight::default();
        }
        if delivered {
            Outcome::Delivered
        } else if results.iter().all(|r| matches!(r, ItemResult::Retry(_))) {
            Outcome::Retry(why)
        } else {
            Outcome::Each(results)
        }
    }

    fn preview(&self, event: &Event) -> serde_json::Value {
        let body = format::body(&self.format, event);
        serde_json::json!({
            "topic": self.topic.render(event),
            "qos": 1,
            "retain": self.retain,
            "payload": broker::preview(&body),
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
