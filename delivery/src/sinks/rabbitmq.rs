//! `rabbitmq`: each event one persistent AMQP 0.9.1 message (`delivery_mode` 2,
//! `message_id` = the event id, `content_type`), published `mandatory` on a channel in
//! confirm mode; a batch is published at once and its confirms awaited in order. An ack
//! delivers; a nack, a lost connection or no confirm in time retries from that event; a
//! message returned unroutable (no queue bound to its routing key), refused as too large or
//! not authorized goes to the dead letters with the broker's reason.

use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::broker::{self, Topic};
use crate::sinks::format::{self, BodyFormat};
use crate::sinks::{Declared, FromConsumer};
use falconer_store::Event;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

pub struct RabbitmqSink {
    uri: lapin::uri::AMQPUri,
    tls: lapin::tcp::OwnedTLSConfig,
    name: String,
    link: Option<(Connection, lapin::Channel)>,
    exchange: String,
    routing_key: Topic,
    format: BodyFormat,
    /// Scheme and host, for messages.
    server: String,
}

impl FromConsumer for RabbitmqSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.rabbitmq.as_ref(), "rabbitmq")?;
        let url = broker::url(declared, "rabbitmq.url", &settings.url)?;
        broker::check_tls(declared, "rabbitmq", &settings.tls)?;
        let secure = url.starts_with("amqps://");
        if !secure && !url.starts_with("amqp://") {
            return Err(
                declared.config("rabbitmq.url: the scheme must be amqp:// or amqps://".into())
            );
        }
        let mut uri: lapin::uri::AMQPUri = url
            .parse()
            .map_err(|e| declared.config(format!("rabbitmq.url: not an AMQP URL ({e})")))?;
        let login = broker::login(declared)?;
        let in_url = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .is_some_and(|authority| authority.contains('@'));
        broker::check_plain(
            declared,
            "rabbitmq.url",
            &url,
            secure,
            login.is_some() || in_url,
        )?;
        if let Some((username, password)) = login {
            uri.authority.userinfo = lapin::uri::AMQPUserInfo { username, password };
        }
        let routing_key = Topic::parse(&settings.routing_key, "rabbitmq.routingKey")
            .map_err(|e| declared.config(e))?;
        let identity = match (
            declared.secrets.get("tls.crt"),
            declared.secrets.get("tls.key"),
        ) {
            (Some(cert), Some(key)) => Some(lapin::tcp::OwnedIdentity::PKCS8 {
                pem: cert.0.as_bytes().to_vec(),
                key: key.0.as_bytes().to_vec(),
            }),
            (None, None) => None,
            _ => {
                return Err(
                    declared.config("secret needs both tls.crt and tls.key, or neither".into())
                );
            }
        };
        Ok(RabbitmqSink {
            uri,
            tls: lapin::tcp::OwnedTLSConfig {
                identity,
                cert_chain: declared.secrets.get("ca.crt").map(|ca| ca.0.clone()),
            },
            name: format!("falconer-{}", declared.name),
            link: None,
            exchange: settings.exchange.clone(),
            routing_key,
            format: BodyFormat::new(settings.format, declared, "rabbitmq.format")?,
            server: broker::redact(&url),
        })
    }
}

/// The properties of one event's message.
pub fn properties(event: &Event, content: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(event.id.to_string().into())
        .with_content_type(content.into())
        .with_timestamp(event.received_at.timestamp().max(0) as u64)
        .with_app_id("falconer".into())
        .with_type(event.kind.as_str().into())
}

/// What a broker's error means for the event that met it.
fn classify(error: &lapin::Error, server: &str) -> ItemResult {
    if let lapin::ErrorKind::ProtocolError(e) = error.kind() {
        let permanent = matches!(
            e.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::CONTENTTOOLARGE
            )
        );
        if permanent {
            return ItemResult::Refused(format!("{server} refused the message: {e}"));
        }
    }
    ItemResult::Retry(format!("{server}: {error}"))
}

impl RabbitmqSink {
    async fn channel(&mut self) -> Result<lapin::Channel, String> {
        if let Some((connection, channel)) = &self.link
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        self.link = None;
        let server = &self.server;
        let runtime = lapin::runtime::default_runtime().map_err(|e| format!("{server}: {e}"))?;
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.clone().into());
        let connect = Connection::connect_uri_with_config(
            self.uri.clone(),
            properties,
            self.tls.clone(),
            runtime,
        );
        let connection = tokio::time::timeout(broker::TIMEOUT, connect)
            .await
            .map_err(|_| format!("connecting to {server}: timed out"))?
            .map_err(|e| format!("connecting to {server}: {e}"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("{server}: opening a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("{server}: turning on publisher confirms: {e}"))?;
        self.link = Some((connection, channel.clone()));
        Ok(channel)
    }
}

impl Sink for RabbitmqSink {
    fn batch_size(&self) -> usize {
        broker::BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(why) => return Outcome::Retry(why),
        };
        let server = self.server.clone();
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let key = self.routing_key.render(event);
            let body = format::body(&self.format, event);
            let published = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    key.as_str().into(),
                    options,
                    &body.bytes,
                    properties(event, body.content_type),
                )
                .await;
            let failed = published.is_err();
            pending.push((key, published));
            if failed {
                break;
            }
        }
        let wait =
            async {
                let mut results = Vec::with_capacity(events.len());
                for (key, published) in pending {
                    let confirmed = match published {
                        Ok(confirm) => confirm.await,
                        Err(e) => Err(e),
                    };
                    results.push(match confirmed {
                        Ok(Confirmation::Ack(None)) => ItemResult::Delivered,
                        Ok(
                            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)),
                        ) if returned.reply_code == 312 => ItemResult::Refused(format!(
                            "{server}: unroutable, no queue is bound to routing key {key} on \
                             exchange {}",
                            if self.exchange.is_empty() {
                                "(default)"
                            } else {
                                &self.exchange
                            }
                        )),
                        Ok(Confirmation::Ack(Some(returned))) => ItemResult::Refused(format!(
                            "{server}: returned {} {}",
                            returned.reply_code, returned.reply_text
                        )),
                        Ok(Confirmation::Nack(_)) => ItemResult::Retry(format!(
                            "{server}: the broker could not take the message (nack)"
                        )),
                        Ok(Confirmation::NotRequested) => {
                            ItemResult::Retry(format!("{server}: no publisher confirm"))
                        }
                        Err(e) => classify(&e, &server),
                    });
                }
                results
            };
        let mut results = match tokio::time::timeout(broker::TIMEOUT, wait).await {
            Ok(results) => results,
            Err(_) => {
                self.link = None;
                return Outcome::Retry(format!(
                    "{server}: no confirm within {:?}",
                    broker::TIMEOUT
                ));
            }
        };
        // After the first failure the channel is closed: the rest is retried on a new one.
        if let Some(first) = results
            .iter()
            .position(|r| !matches!(r, ItemResult::Delivered | ItemResult::Refused(_)))
            .or_else(|| (results.len() < events.len()).then_some(results.len()))
        {
            let why = match results.get(first) {
                Some(ItemResult::Retry(why)) => why.clone(),
                _ => format!("{server}: the channel closed"),
            };
            results.truncate(first);
            results.resize(events.len(), ItemResult::Retry(why));
            self.link = None;
        }
        if results.iter().any(|r| matches!(r, ItemResult::Refused(_))) {
            // A refusal closes the channel (a returned message does not).
            if !channel.status().connected() {
                self.link = None;
            }
        }
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            Outcome::Delivered
        } else if results.iter().all(|r| matches!(r, ItemResult::Retry(_))) {
            match results.into_iter().next() {
                Some(ItemResult::Retry(why)) => Outcome::Retry(why),
                _ => Outcome::Retry(format!("{server}: no result")),
            }
        } else {
            Outcome::Each(results)
        }
    }

    fn preview(&self, event: &Event) -> serde_json::Value {
        let body = format::body(&self.format, event);
        serde_json::json!({
            "exchange": self.exchange,
            "routingKey": self.routing_key.render(event),
            "properties": {
                "deliveryMode": 2,
                "messageId": event.id.to_string(),
                "type": event.kind.as_str(),
            },
            "body": broker::preview(&body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{declared, event, secrets};
    use serde_json::json;

    fn consumer(rabbitmq: serde_json::Value) -> falconer_model::crd::Consumer {
        serde_json::from_value(json!({"name": "bus", "type": "rabbitmq", "rabbitmq": rabbitmq}))
            .unwrap()
    }

    #[test]
    fn a_message_is_persistent_and_carries_the_event_id() {
        let e = event("Terminal shell");
        let p = properties(&e, format::JSON);
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(
            p.message_id().as_ref().map(|m| m.to_string()),
            Some(e.id.to_string())
        );
        assert_eq!(
            p.content_type().as_ref().map(|m| m.to_string()),
            Some("application/json".to_string())
        );
    }

    #[test]
    fn credentials_over_plain_amqp_to_another_host_are_refused_naming_the_url() {
        let c = consumer(json!({"url": "amqp://rabbit.bus.svc:5672/%2f"}));
        let s = secrets(&[("username", "u"), ("password", "p")]);
        let err = RabbitmqSink::from_consumer(&declared(&c, &s))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("rabbitmq.url: amqp://rabbit.bus.svc:5672 is a plain"),
            "{err}"
        );
        let c = consumer(json!({"url": "amqp://u:p@rabbit.bus.svc:5672/%2f"}));
        let err = RabbitmqSink::from_consumer(&declared(&c, &secrets(&[])))
            .err()
            .unwrap();
        assert!(err.to_string().contains("is a plain"), "{err}");
        let c = consumer(json!({"url": "amqp://127.0.0.1:5672/%2f"}));
        assert!(RabbitmqSink::from_consumer(&declared(&c, &s)).is_ok());
    }

    #[test]
    fn a_bad_url_or_routing_key_is_refused_naming_the_field() {
        let none = secrets(&[]);
        let c = consumer(json!({"url": "amqp://127.0.0.1:5672/%2f", "routingKey": "x.{pod}"}));
        let err = RabbitmqSink::from_consumer(&declared(&c, &none))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("rabbitmq.routingKey: unknown placeholder {pod}"),
            "{err}"
        );
        let c = consumer(json!({"url": "nats://127.0.0.1"}));
        let err = RabbitmqSink::from_consumer(&declared(&c, &none))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("rabbitmq.url: the scheme"),
            "{err}"
        );
    }
}
