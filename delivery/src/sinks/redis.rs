//! `redis`: each event one `XADD` entry (fields `id` = the event id, `event` = the body) in a
//! stream, a batch in one pipeline; `MAXLEN ~` trims the stream when `maxLen` is set. A
//! connection error or timeout retries the batch; an entry the server refuses for good
//! (`WRONGTYPE`, `NOPERM`, a syntax error) goes to the dead letters with Redis' reason.

use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::broker::{self, Topic};
use crate::sinks::format::{self, BodyFormat};
use crate::sinks::{Declared, FromConsumer};
use falconer_store::Event;

pub struct RedisSink {
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
    stream: Topic,
    max_len: Option<u64>,
    format: BodyFormat,
    /// Scheme and host, for messages.
    server: String,
}

impl FromConsumer for RedisSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.redis.as_ref(), "redis")?;
        let url = broker::url(declared, "redis.url", &settings.url)?;
        broker::check_tls(declared, "redis", &settings.tls)?;
        let stream =
            Topic::parse(&settings.stream, "redis.stream").map_err(|e| declared.config(e))?;
        let secure = url.starts_with("rediss://");
        if !secure && !url.starts_with("redis://") {
            return Err(
                declared.config("redis.url: the scheme must be redis:// or rediss://".into())
            );
        }
        let login = broker::login(declared)?;
        broker::check_plain(declared, "redis.url", &url, secure, login.is_some())?;
        let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|e| declared.config(format!("redis.url: not a Redis URL ({:?})", e.kind())))?;
        if let Some((user, pass)) = login {
            let settings = info
                .redis_settings()
                .clone()
                .set_username(user)
                .set_password(pass);
            info = info.set_redis_settings(settings);
        }
        let client = if secure {
            let tls = redis::TlsCertificates {
                client_tls: match (
                    declared.secrets.get("tls.crt"),
                    declared.secrets.get("tls.key"),
                ) {
                    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                        client_cert: cert.0.as_bytes().to_vec(),
                        client_key: key.0.as_bytes().to_vec(),
                    }),
                    (None, None) => None,
                    _ => {
                        return Err(declared
                            .config("secret needs both tls.crt and tls.key, or neither".into()));
                    }
                },
                root_cert: declared
                    .secrets
                    .get("ca.crt")
                    .map(|ca| ca.0.as_bytes().to_vec()),
            };
            redis::Client::build_with_tls(info, tls)
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| declared.config(format!("redis.url: {:?}", e.kind())))?;
        Ok(RedisSink {
            client,
            connection: None,
            stream,
            max_len: settings.max_len,
            format: BodyFormat::new(settings.format, declared, "redis.format")?,
            server: broker::redact(&url),
        })
    }
}

/// The `XADD` arguments of one event, after the stream's key.
pub fn entry(event: &Event, max_len: Option<u64>, format: &BodyFormat) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(8);
    if let Some(n) = max_len {
        args.push(b"MAXLEN".to_vec());
        args.push(b"~".to_vec());
        args.push(n.to_string().into_bytes());
    }
    args.push(b"*".to_vec());
    args.push(b"id".to_vec());
    args.push(event.id.to_string().into_bytes());
    args.push(b"event".to_vec());
    args.push(format::body(format, event).bytes);
    args
}

/// Whether Redis' error code means the same command will never succeed.
fn permanent(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("WRONGTYPE" | "NOPERM" | "ERR" | "NOSCRIPT" | "EXECABORT")
    )
}

impl RedisSink {
    async fn connection(&mut self) -> Result<redis::aio::MultiplexedConnection, String> {
        if let Some(c) = &self.connection {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(broker::TIMEOUT))
            .set_response_timeout(Some(broker::TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.server))?;
        self.connection = Some(c.clone());
        Ok(c)
    }
}

impl Sink for RedisSink {
    fn batch_size(&self) -> usize {
        broker::BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let mut connection = match self.connection().await {
            Ok(c) => c,
            Err(why) => return Outcome::Retry(why),
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for event in events {
            let cmd = pipe.cmd("XADD").arg(self.stream.render(event));
            for arg in entry(event, self.max_len, &self.format) {
                cmd.arg(arg);
            }
        }
        let answers: Vec<redis::Value> = match pipe.query_async(&mut connection).await {
            Ok(answers) => answers,
            Err(e) => {
                self.connection = None;
                return Outcome::Retry(format!("XADD to {}: {e}", self.server));
            }
        };
        if answers.len() != events.len() {
            return Outcome::Retry(format!(
                "XADD to {}: {} answers for {} entries",
                self.server,
                answers.len(),
                events.len()
            ));
        }
        let results = answers
            .into_iter()
            .map(|answer| match answer {
                redis::Value::ServerError(e) if permanent(Some(e.code())) => {
                    ItemResult::Refused(format!("XADD refused by {}: {e}", self.server))
                }
                redis::Value::ServerError(e) => {
                    ItemResult::Retry(format!("XADD to {}: {e}", self.server))
                }
                _ => ItemResult::Delivered,
            })
            .collect::<Vec<_>>();
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            Outcome::Delivered
        } else {
            Outcome::Each(results)
        }
    }

    fn preview(&self, event: &Event) -> serde_json::Value {
        let body = format::body(&self.format, event);
        serde_json::json!({
            "stream": self.stream.render(event),
            "maxLen": self.max_len,
            "fields": {
                "id": event.id.to_string(),
                "event": broker::preview(&body),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{declared, event, secrets};
    use serde_json::json;

    fn consumer(redis: serde_json::Value) -> falconer_model::crd::Consumer {
        serde_json::from_value(json!({"name": "bus", "type": "redis", "redis": redis})).unwrap()
    }

    #[test]
    fn an_entry_carries_the_event_id_and_trims_about_max_len() {
        let e = event("Terminal shell");
        let args = entry(&e, Some(10000), &BodyFormat::Falco);
        let text: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "MAXLEN",
                "~",
                "10000",
                "*",
                "id",
                &e.id.to_string(),
                "event",
                r#"{"rule":"Terminal shell"}"#
            ]
        );
        assert_eq!(entry(&e, None, &BodyFormat::Falco)[0], b"*");
    }

    #[test]
    fn a_password_over_plain_redis_to_another_host_is_refused_naming_the_url() {
        let c = consumer(json!({"url": "redis://redis.cache.svc:6379/0"}));
        let s = secrets(&[("username", "falconer"), ("password", "pw")]);
        let err = RedisSink::from_consumer(&declared(&c, &s)).err().unwrap();
        assert!(
            err.to_string()
                .contains("redis.url: redis://redis.cache.svc:6379 is a plain"),
            "{err}"
        );
        let c = consumer(json!({"url": "redis://127.0.0.1:6379/0"}));
        assert!(RedisSink::from_consumer(&declared(&c, &s)).is_ok());
    }

    #[test]
    fn a_wrong_scheme_or_placeholder_is_refused_naming_the_field() {
        let none = secrets(&[]);
        let c = consumer(json!({"url": "http://127.0.0.1:6379"}));
        let err = RedisSink::from_consumer(&declared(&c, &none))
            .err()
            .unwrap();
        assert!(err.to_string().contains("redis.url: the scheme"), "{err}");
        let c = consumer(json!({"url": "redis://127.0.0.1", "stream": "falconer:{rule}"}));
        let err = RedisSink::from_consumer(&declared(&c, &none))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("redis.stream: unknown placeholder {rule}"),
            "{err}"
        );
        let c = consumer(json!({"url": "redis://127.0.0.1"}));
        let s = secrets(&[("username", "falconer")]);
        let err = RedisSink::from_consumer(&declared(&c, &s)).err().unwrap();
        assert!(err.to_string().contains("secret key `password`"), "{err}");
    }

    #[test]
    fn only_errors_that_cannot_pass_go_to_the_dead_letters() {
        assert!(permanent(Some("WRONGTYPE")));
        assert!(permanent(Some("NOPERM")));
        assert!(!permanent(Some("OOM")));
        assert!(!permanent(Some("LOADING")));
        assert!(!permanent(Some("READONLY")));
        assert!(!permanent(None));
    }
}
