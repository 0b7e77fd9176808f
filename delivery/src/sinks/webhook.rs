//! `webhook`: POSTs events as JSON, one per request or a batch as an array, with custom
//! headers, an `Idempotency-Key` (the event id, or a digest of the batch's ids) so a retried
//! request can be recognised, and an optional HMAC-SHA256 signature of the body.

use crate::consumers::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::event_json;
use falconer_model::crd::{SinkTls, WebhookSink};
use falconer_store::Event;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Longest wait for a webhook's answer before the send is retried.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Header carrying `sha256=<hex HMAC of the body>` when signing is on.
pub const SIGNATURE_HEADER: &str = "x-falconer-signature";
const BATCH: usize = 100;

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    batch: bool,
    headers: HeaderMap,
    hmac_key: Option<Vec<u8>>,
}

/// What one HTTP exchange says about the events it carried.
enum Answer {
    Delivered,
    Retry(String),
    Refused(String),
}

impl Webhook {
    pub fn build(
        consumer: &str,
        settings: &WebhookSink,
        secrets: &Secrets,
    ) -> Result<Webhook, DeliveryError> {
        let config = |message: String| DeliveryError::Config {
            consumer: consumer.to_string(),
            message,
        };
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| config(format!("webhook.url `{}`: {e}", settings.url)))?;
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
            client: http_client(consumer, &settings.tls, secrets)?,
            url,
            batch: settings.batch,
            headers,
            hmac_key,
        })
    }

    async fn post(&self, body: Vec<u8>, idempotency_key: String) -> Answer {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key);
        if let Some(key) = &self.hmac_key {
            request = request.header(
                SIGNATURE_HEADER,
                format!("sha256={}", hex(&hmac_sha256(key, &body))),
            );
        }
        match request.body(body).send().await {
            Err(e) => Answer::Retry(format!("POST {}: {}", self.url, chain(&e))),
            Ok(response) => answer(response).await,
        }
    }
}

impl Sink for Webhook {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        if self.batch {
            let mut body = Vec::with_capacity(events.len() * 2048);
            body.push(b'[');
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&event_json(event));
            }
            body.push(b']');
            let mut digest = Sha256::new();
            for event in events {
                digest.update(event.id.as_bytes());
            }
            let key = hex(&digest.finalize()[..16]);
            return match self.post(body, key).await {
                Answer::Delivered => Outcome::Delivered,
                Answer::Retry(why) => Outcome::Retry(why),
                Answer::Refused(why) => Outcome::Each(
                    events
                        .iter()
                        .map(|_| ItemResult::Refused(why.clone()))
                        .collect(),
                ),
            };
        }
        // One request per event, in order: after a failure that may pass, the rest waits.
        let mut results = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            match self.post(event_json(event), event.id.to_string()).await {
                Answer::Delivered => results.push(ItemResult::Delivered),
                Answer::Refused(why) => results.push(ItemResult::Refused(why)),
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

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    if status.is_success() {
        return Answer::Delivered;
    }
    let url = response.url().clone();
    let text = response.text().await.unwrap_or_default();
    let snippet: String = text.chars().take(300).collect();
    let why = format!("POST {url}: HTTP {status}: {snippet}");
    match status.as_u16() {
        // Timeouts, rate limits and server trouble pass; auth problems need the operator,
        // and nothing may be lost meanwhile.
        408 | 425 | 429 | 401 | 403 | 404 | 500..=599 => Answer::Retry(why),
        _ => Answer::Refused(why),
    }
}

/// The secret's key, or an error naming it.
pub(crate) fn require(
    consumer: &str,
    secrets: &Secrets,
    key: &str,
    hint: &str,
) -> Result<String, DeliveryError> {
    secrets
        .get(key)
        .map(|v| v.0.clone())
        .ok_or_else(|| DeliveryError::MissingSecret {
            consumer: consumer.to_string(),
            key: key.to_string(),
            hint: format!("needed by {hint}"),
        })
}

/// An HTTP client for a sink: the secret's `ca.crt` trusted besides the system roots,
/// `tls.crt` + `tls.key` as client certificate when present.
pub(crate) fn http_client(
    consumer: &str,
    tls: &SinkTls,
    secrets: &Secrets,
) -> Result<reqwest::Client, DeliveryError> {
    let config = |message: String| DeliveryError::Config {
        consumer: consumer.to_string(),
        message,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("falconer/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = secrets.get("ca.crt") {
        for cert in reqwest::Certificate::from_pem_bundle(ca.0.as_bytes())
            .map_err(|e| config(format!("secret key ca.crt: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (secrets.get("tls.crt"), secrets.get("tls.key")) {
        (Some(cert), Some(key)) => {
            let pem = format!("{}\n{}", cert.0, key.0);
            let identity = reqwest::Identity::from_pem(pem.as_bytes())
                .map_err(|e| config(format!("secret keys tls.crt/tls.key: {e}")))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(config(
                "secret needs both tls.crt and tls.key, or neither".into(),
            ));
        }
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| config(format!("HTTP client: {}", chain(&e))))
}

/// An error with its causes, e.g. "error sending request: connection refused".
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
