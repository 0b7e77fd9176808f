//! What the broker sinks (`nats`, `rabbitmq`, `mqtt`, `redis`) share: the message body, the
//! subject/topic template over bounded fields, the broker's URL and credentials, TLS from the
//! consumer's Secret, and the time a broker has to answer.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sinks::{Declared, http::require};
use falconer_model::crd::SinkTls;
use falconer_store::Event;
use std::time::Duration;

/// How long a broker has to confirm a batch (or to accept a connection) before the batch
/// is retried.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Messages per `send`: published together, confirmed together.
pub const BATCH: usize = 200;

/// A body as a preview shows it: its JSON, or its text (a `template` body).
pub fn preview(body: &crate::sinks::format::Body) -> serde_json::Value {
    serde_json::from_slice(&body.bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body.bytes).into()))
}

/// The fields a subject, topic, routing key or stream name may be built from: each has few
/// values, so the broker does not end up with a destination per event.
pub const PLACEHOLDERS: [&str; 5] = ["cluster", "source", "severity", "kind", "namespace"];

/// A subject/topic template: literal text and placeholders, parsed once.
/// A placeholder's value keeps only what [`token`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(&'static str),
}

impl Topic {
    /// Parses `text` (`falconer.{cluster}.{severity}`); `field` names the setting in errors.
    pub fn parse(text: &str, field: &str) -> Result<Topic, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{field}: `{{` without a closing `}}`"))?;
            let name = &rest[open + 1..open + close];
            let known = PLACEHOLDERS.iter().find(|p| **p == name).ok_or_else(|| {
                format!(
                    "{field}: unknown placeholder {{{name}}}; use one of {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                )
            })?;
            parts.push(Part::Field(known));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{field}: `}}` without an opening `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if parts.is_empty() {
            return Err(format!("{field}: must not be empty"));
        }
        Ok(Topic { parts })
    }

    /// The destination of `event`: placeholders replaced by its cleaned values (`_` when the
    /// event has none, e.g. a host event's namespace).
    pub fn render(&self, event: &Event) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => {
                    let value = match *name {
                        "cluster" => event.cluster.as_str(),
                        "source" => event.source.as_str(),
                        "severity" => event.severity.as_str(),
                        "kind" => event.kind.as_str(),
                        _ => event.namespace.as_deref().unwrap_or(""),
                    };
                    let cleaned = token(value);
                    if cleaned.is_empty() {
                        out.push('_');
                    } else {
                        out.push_str(&cleaned);
                    }
                }
            }
        }
        out
    }

    /// The literal text of a template without placeholders.
    pub fn render_fixed(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(text) => text.as_str(),
                Part::Field(_) => "",
            })
            .collect()
    }

    /// Whether the template has no placeholder (one destination for every event).
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}

/// Keeps ASCII letters, digits, `-` and `_`; anything else becomes `_`. Safe in a NATS
/// subject token, an AMQP topic-exchange word, an MQTT topic level and a Redis key.
pub fn token(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The broker URL: the section's `url`, or the Secret's `url` key when that is empty. Errors
/// name the field and never echo the URL (it may hold a password).
pub fn url(
    declared: &Declared<'_>,
    field: &str,
    configured: &str,
) -> Result<String, DeliveryError> {
    if configured.is_empty() {
        let key = falconer_model::crd::URL_SECRET_KEY;
        let hint = format!("{field} (empty, so the URL comes from the Secret)");
        return Ok(require(declared.name, declared.secrets, key, &hint)?
            .trim()
            .to_string());
    }
    Ok(configured.trim().to_string())
}

/// The scheme and host of a broker URL, for logs and errors.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}")
        }
        None => "(not a URL)".into(),
    }
}

/// Refuses credentials sent over a plain connection to a host other than loopback, unless
/// the consumer sets `allowInsecureHttp` (which covers plain broker connections too).
pub fn check_plain(
    declared: &Declared<'_>,
    field: &str,
    url: &str,
    secure: bool,
    sends_credentials: bool,
) -> Result<(), DeliveryError> {
    if secure || !sends_credentials || declared.consumer.allow_insecure_http {
        return Ok(());
    }
    let host = redact(url);
    let host = host.split_once("://").map(|(_, h)| h).unwrap_or_default();
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(declared.config(format!(
        "{field}: {} is a plain connection although this consumer sends credentials; use \
         the TLS scheme or set allowInsecureHttp: true",
        redact(url)
    )))
}

/// Refuses `tls.insecureSkipVerify` on a broker sink: put the broker's CA in the Secret's
/// `ca.crt` instead.
pub fn check_tls(
    declared: &Declared<'_>,
    section: &str,
    tls: &SinkTls,
) -> Result<(), DeliveryError> {
    if tls.insecure_skip_verify {
        return Err(declared.config(format!(
            "{section}.tls.insecureSkipVerify: not supported by broker sinks; put the broker's \
             CA certificate in the Secret's ca.crt"
        )));
    }
    Ok(())
}

/// A rustls client configuration from the Secret: `ca.crt` trusted besides the system
/// roots, `tls.crt` + `tls.key` as client certificate when present.
pub fn rustls_config(
    consumer: &str,
    secrets: &Secrets,
) -> Result<rustls::ClientConfig, DeliveryError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let config = |message: String| DeliveryError::Config {
        consumer: consumer.to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as the platform would.
        let _ = roots.add(cert);
    }
    if let Some(ca) = secrets.get("ca.crt") {
        for cert in CertificateDer::pem_slice_iter(ca.0.as_bytes()) {
            let cert = cert.map_err(|e| config(format!("secret key ca.crt: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| config(format!("secret key ca.crt: {e}")))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    match (secrets.get("tls.crt"), secrets.get("tls.key")) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.0.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| config(format!("secret key tls.crt: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key.0.as_bytes())
                .map_err(|e| config(format!("secret key tls.key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config(format!("secret keys tls.crt/tls.key: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(config(
            "secret needs both tls.crt and tls.key, or neither".into(),
        )),
    }
}

/// The Secret's `username` and `password`, both or neither.
pub fn login(declared: &Declared<'_>) -> Result<Option<(String, String)>, DeliveryError> {
    match (
        declared.secrets.get("username"),
        declared.secrets.get("password"),
    ) {
        (Some(user), Some(pass)) => Ok(Some((user.0.clone(), pass.0.clone()))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(DeliveryError::MissingSecret {
            consumer: declared.name.to_string(),
            key: "password".into(),
            hint: "needed with the Secret's username".into(),
        }),
        (None, Some(_)) => Err(DeliveryError::MissingSecret {
            consumer: declared.name.to_string(),
            key: "username".into(),
            hint: "needed with the Secret's password".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    #[test]
    fn a_topic_replaces_its_placeholders_with_cleaned_values() {
        let topic =
            Topic::parse("falconer.{cluster}.{severity}.{namespace}", "nats.subject").unwrap();
        let mut e = event("Terminal shell");
        e.cluster = "prod.eu west".into();
        assert_eq!(topic.render(&e), "falconer.prod_eu_west.warning.shop");
        e.namespace = None;
        assert_eq!(topic.render(&e), "falconer.prod_eu_west.warning._");
        assert!(!topic.is_fixed());
        assert!(Topic::parse("events", "f").unwrap().is_fixed());
    }

    #[test]
    fn a_topic_with_an_unbounded_or_broken_placeholder_is_refused_naming_the_field() {
        let err = Topic::parse("falconer.{pod}", "nats.subject").unwrap_err();
        assert!(
            err.starts_with("nats.subject: unknown placeholder {pod}"),
            "{err}"
        );
        let err = Topic::parse("falconer.{cluster", "mqtt.topic").unwrap_err();
        assert_eq!(err, "mqtt.topic: `{` without a closing `}`");
        let err = Topic::parse("falconer.cluster}", "mqtt.topic").unwrap_err();
        assert_eq!(err, "mqtt.topic: `}` without an opening `{`");
    }

    #[test]
    fn redact_keeps_scheme_and_host_but_not_credentials_or_path() {
        assert_eq!(
            redact("amqp://user:pw@rabbit:5672/%2f"),
            "amqp://rabbit:5672"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("oops"), "(not a URL)");
    }
}
