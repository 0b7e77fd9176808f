//! What every HTTP sink shares: the client (TLS from the consumer's Secret), the one table
//! that turns an HTTP status into an action, and splitting a batch the target found too
//! large.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome};
use crate::sinks::Declared;
use falconer_model::crd::{Consumer, SinkTls};
use falconer_store::Event;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Longest wait for an answer before the send is retried.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP status says about the events a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Accepted.
    Deliver,
    /// May pass, or needs the operator (credentials, permissions, the URL): retried with
    /// backoff, in order, and nothing is lost meanwhile.
    Retry,
    /// The body is larger than the target accepts: send the batch in halves; one event too
    /// large on its own goes to the dead letters.
    Split,
    /// Refused for good (the target cannot take this content): to the dead letters with the
    /// reason, and delivery goes on.
    Refuse,
}

/// The one status → action table of every HTTP sink (docs/delivery.md).
pub fn action(status: u16) -> Action {
    match status {
        200..=299 => Action::Deliver,
        // Redirects are not followed (a redirect must not carry credentials or a signed body
        // elsewhere): the operator fixes the URL, nothing is lost meanwhile.
        300..=399 => Action::Retry,
        413 => Action::Split,
        // Timeouts, early data, rate limits and server trouble pass; 401/403/404 wait for
        // the operator to fix the credentials, permissions or URL.
        401 | 403 | 404 | 408 | 425 | 429 | 500..=599 => Action::Retry,
        _ => Action::Refuse,
    }
}

/// Longest `Retry-After` honoured: a target asking for more is retried after this (and
/// again until it answers).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP date (RFC 9110
/// §10.2.3) counted from `now`; at most [`MAX_RETRY_AFTER`]. `None` when absent or unreadable.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What a response other than 2xx says: the action of the status table and the reason
/// (`POST scheme://host:port: HTTP <status>: <answer>`, with the `Retry-After` when given).
/// `asked` becomes the wait this answer asks for (none when it asks for none), for the
/// sink's [`Sink::retry_after`](crate::sink::Sink::retry_after).
pub async fn failure(
    response: reqwest::Response,
    asked: &mut Option<Duration>,
) -> (Action, String) {
    let status = response.status();
    let action = action(status.as_u16());
    *asked = retry_after(response.headers(), chrono::Utc::now());
    let url = redact(response.url());
    let text = response.text().await.unwrap_or_default();
    let mut why = format!("POST {url}: HTTP {status}: {}", snippet(&text));
    if let Some(wait) = asked {
        why.push_str(&format!(" (Retry-After: {} s)", wait.as_secs()));
    }
    (action, why)
}

/// The pause before a retry: the backoff's, or longer when the target asked for longer.
pub fn retry_delay(backoff: Duration, asked: Option<Duration>) -> Duration {
    asked.map_or(backoff, |asked| asked.max(backoff))
}

/// One result per event of `n` sent, from any outcome.
pub fn per_item(outcome: Outcome, n: usize) -> Vec<ItemResult> {
    match outcome {
        Outcome::Delivered => vec![ItemResult::Delivered; n],
        Outcome::Retry(why) => vec![ItemResult::Retry(why); n],
        Outcome::Each(results) => results,
    }
}

/// Every event of a request refused for the same reason.
pub fn refuse_all(n: usize, why: &str) -> Outcome {
    Outcome::Each(vec![ItemResult::Refused(why.to_string()); n])
}

/// Why one event is refused after a 413 for a request of `bytes` carrying it alone.
pub fn too_large_alone(why: &str, bytes: usize) -> String {
    format!("{why}: this event alone ({bytes} bytes) is larger than the target accepts")
}

/// What one request of a batch came to.
pub enum Posted {
    Done(Outcome),
    /// HTTP 413 for a body of `bytes`.
    TooLarge {
        bytes: usize,
        why: String,
    },
}

/// A sink that sends a batch in one HTTP request and can send fewer events at a time.
pub trait BatchPost: Send {
    /// One request carrying `events`.
    fn post(&mut self, events: &[Event]) -> impl Future<Output = Posted> + Send;

    /// The batch size in force.
    fn batch(&self) -> usize;

    /// Sends at most `size` events per request from now on (after a 413).
    fn lower_batch(&mut self, size: usize);
}

/// Sends `events` in one request; after a 413 sends the halves in order (recursively) and
/// lowers the sink's batch size for what follows. An event too large on its own is refused
/// with the reason, instead of blocking delivery for good.
pub fn send_splitting<'a, S: BatchPost>(
    sink: &'a mut S,
    events: &'a [Event],
) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
    Box::pin(async move {
        let (bytes, why) = match sink.post(events).await {
            Posted::Done(outcome) => return outcome,
            Posted::TooLarge { bytes, why } => (bytes, why),
        };
        if events.len() <= 1 {
            return refuse_all(events.len(), &too_large_alone(&why, bytes));
        }
        let half = events.len() / 2;
        if half < sink.batch() {
            tracing::warn!(
                bytes,
                events = events.len(),
                batch_size = half,
                "The target refused a request as too large (413); sending halves from now on"
            );
            sink.lower_batch(half);
        }
        let first = send_splitting(sink, &events[..half]).await;
        if let Outcome::Retry(why) = first {
            return Outcome::Retry(why);
        }
        let second = send_splitting(sink, &events[half..]).await;
        let mut results = per_item(first, half);
        results.extend(per_item(second, events.len() - half));
        Outcome::Each(results)
    })
}

/// `scheme://host:port` of a URL, for every error, status, log line and dead-letter reason:
/// a path (Slack-style webhook URLs are credentials), a query or `user:password@` never
/// leaves the consumer's config.
pub fn redact(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}://", url.scheme()),
    }
}

/// The URL a sink sends to: the consumer's `field` (`configured`), or its Secret's `url` key
/// when that is empty. A plain `http://` URL to a host other than loopback is refused when
/// the consumer sends credentials or signs, unless it sets `allowInsecureHttp`. Errors name
/// the field and never echo the URL: it may itself be the credential.
pub fn endpoint(
    declared: &Declared<'_>,
    field: &str,
    configured: &str,
) -> Result<reqwest::Url, DeliveryError> {
    let (text, origin) = if configured.is_empty() {
        let key = falconer_model::crd::URL_SECRET_KEY;
        let hint = format!("{field} (empty, so the URL comes from the Secret)");
        (
            require(declared.name, declared.secrets, key, &hint)?,
            format!("the `{key}` key of secretRef"),
        )
    } else {
        (configured.to_owned(), field.to_owned())
    };
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| declared.config(format!("{origin}: not a URL ({e})")))?;
    check_endpoint(&url, declared.consumer)
        .map_err(|why| declared.config(format!("{origin}: {why}")))?;
    Ok(url)
}

/// Why a sink may not send to `url`, if it may not.
pub fn check_endpoint(url: &reqwest::Url, consumer: &Consumer) -> Result<(), String> {
    if consumer.sink.is_broker() {
        // Checked by the broker's sink: its schemes and its credentials from the Secret.
        return Ok(());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if consumer.allow_insecure_http || !consumer.sends_credentials() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{} is plain http:// although this consumer sends credentials or signs; use \
             https:// or set allowInsecureHttp: true",
            redact(url)
        )),
        other => Err(format!("scheme `{other}` is not http or https")),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The first 300 characters of an answer, for error messages.
pub fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The secret's key, or an error naming it.
pub fn require(
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
pub fn client(
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
        .user_agent(concat!("falconer/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
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
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    /// A target that refuses bodies of more than `limit` events with 413, records each
    /// request's size, and answers per event otherwise.
    struct Limited {
        limit: usize,
        batch: usize,
        requests: Vec<usize>,
    }

    impl BatchPost for Limited {
        async fn post(&mut self, events: &[Event]) -> Posted {
            self.requests.push(events.len());
            if events.len() > self.limit {
                return Posted::TooLarge {
                    bytes: events.len() * 1000,
                    why: "POST /x: HTTP 413".into(),
                };
            }
            Posted::Done(Outcome::Delivered)
        }

        fn batch(&self) -> usize {
            self.batch
        }

        fn lower_batch(&mut self, size: usize) {
            self.batch = size;
        }
    }

    fn consumer(value: serde_json::Value) -> Consumer {
        serde_json::from_value(value).unwrap()
    }

    fn endpoint_of(consumer: &Consumer, secrets: &Secrets) -> Result<reqwest::Url, String> {
        let declared = crate::fixtures::declared(consumer, secrets);
        let url = consumer.configured_url().unwrap_or_default();
        endpoint(&declared, "webhook.url", url).map_err(|e| e.to_string())
    }

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), crate::declared::SecretValue(v.to_string())))
            .collect()
    }

    #[test]
    fn plain_http_is_refused_to_a_consumer_that_sends_credentials_unless_allowed() {
        let signed = consumer(serde_json::json!({
            "name": "hook", "type": "webhook", "secretRef": {"name": "s"},
            "webhook": {"url": "http://siem.example:8080/in?k=v", "sign": true},
        }));
        let keys = secrets(&[("hmacKey", "k")]);
        let error = endpoint_of(&signed, &keys).unwrap_err();
        assert!(error.contains("webhook.url"), "{error}");
        assert!(error.contains("allowInsecureHttp"), "{error}");
        assert!(!error.contains("/in") && !error.contains("k=v"), "{error}");

        let mut allowed = signed.clone();
        allowed.allow_insecure_http = true;
        assert!(endpoint_of(&allowed, &keys).is_ok());

        let plain = consumer(serde_json::json!({
            "name": "hook", "type": "webhook", "webhook": {"url": "http://siem.example:8080/in"},
        }));
        assert!(
            endpoint_of(&plain, &Secrets::new()).is_ok(),
            "no credentials, nothing to leak"
        );

        for local in [
            "http://127.0.0.1:9/x",
            "http://localhost:9/x",
            "http://[::1]:9/x",
        ] {
            let mut local_hook = signed.clone();
            local_hook.webhook.as_mut().unwrap().url = local.into();
            assert!(endpoint_of(&local_hook, &keys).is_ok(), "{local}");
        }
        let mut odd = plain.clone();
        odd.webhook.as_mut().unwrap().url = "ftp://siem.example/x".into();
        assert!(
            endpoint_of(&odd, &Secrets::new())
                .unwrap_err()
                .contains("scheme `ftp`")
        );
    }

    #[test]
    fn an_empty_url_comes_from_the_secret_and_never_appears_in_errors() {
        let hook = consumer(serde_json::json!({
            "name": "chat", "type": "webhook", "secretRef": {"name": "chat"}, "webhook": {},
        }));
        assert_eq!(hook.required_secret_keys(), ["url"]);
        assert!(
            hook.sends_credentials(),
            "a URL from a Secret is a credential"
        );

        let secret = "https://hooks.example/services/T000/B000/XXXXSECRET";
        let url = endpoint_of(&hook, &secrets(&[("url", secret)])).unwrap();
        assert_eq!(url.as_str(), secret);

        let missing = endpoint_of(&hook, &Secrets::new()).unwrap_err();
        assert!(
            missing.contains("url") && missing.contains("webhook.url"),
            "{missing}"
        );

        let insecure = "http://hooks.example/services/T000/B000/XXXXSECRET";
        let error = endpoint_of(&hook, &secrets(&[("url", insecure)])).unwrap_err();
        assert!(error.contains("`url` key of secretRef"), "{error}");
        assert!(!error.contains("XXXXSECRET"), "{error}");
        let garbage = endpoint_of(&hook, &secrets(&[("url", "not a url XXXXSECRET")])).unwrap_err();
        assert!(!garbage.contains("XXXXSECRET"), "{garbage}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(of("30"), Some(Duration::from_secs(30)));
        assert_eq!(
            of("Mon, 07 Dec 2026 10:02:00 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            of("Mon, 07 Dec 2026 09:00:00 GMT"),
            Some(Duration::ZERO),
            "past: now"
        );
        assert_eq!(of("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(of("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);

        let backoff = Duration::from_secs(2);
        assert_eq!(retry_delay(backoff, None), backoff);
        assert_eq!(
            retry_delay(backoff, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_delay(backoff, Some(Duration::from_secs(1))),
            backoff,
            "never sooner"
        );
    }

    #[test]
    fn urls_in_errors_keep_only_scheme_host_and_port() {
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        assert_eq!(
            redact(&url(
                "https://user:pw@hooks.example/services/T0/B0/SECRET?token=x"
            )),
            "https://hooks.example:443"
        );
        assert_eq!(
            redact(&url("http://10.0.0.1:9000/x")),
            "http://10.0.0.1:9000"
        );
    }

    #[tokio::test]
    async fn a_413_sends_halves_in_order_and_lowers_the_batch_size() {
        let events: Vec<Event> = (0..10).map(|i| event(&format!("r{i}"))).collect();
        let mut target = Limited {
            limit: 3,
            batch: 10,
            requests: Vec::new(),
        };
        let outcome = send_splitting(&mut target, &events).await;
        assert_eq!(per_item(outcome, 10), vec![ItemResult::Delivered; 10]);
        // 10 → 5 + 5 → (2 + 3) + (2 + 3)
        assert_eq!(target.requests, [10, 5, 2, 3, 5, 2, 3]);
        assert_eq!(target.batch, 2, "lowered to the size that went through");
    }

    #[tokio::test]
    async fn an_event_too_large_alone_is_refused_and_the_rest_delivered() {
        let events: Vec<Event> = (0..2).map(|i| event(&format!("r{i}"))).collect();
        let mut target = Limited {
            limit: 0,
            batch: 2,
            requests: Vec::new(),
        };
        let results = per_item(send_splitting(&mut target, &events).await, 2);
        for result in results {
            match result {
                ItemResult::Refused(why) => assert!(
                    why.contains("HTTP 413") && why.contains("this event alone (1000 bytes)"),
                    "{why}"
                ),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        assert_eq!(target.batch, 1);
    }

    #[test]
    fn statuses_map_to_one_action_for_every_http_sink() {
        for (status, expected) in [
            (200, Action::Deliver),
            (301, Action::Retry),
            (307, Action::Retry),
            (201, Action::Deliver),
            (202, Action::Deliver),
            (204, Action::Deliver),
            (400, Action::Refuse),
            (401, Action::Retry),
            (403, Action::Retry),
            (404, Action::Retry),
            (405, Action::Refuse),
            (408, Action::Retry),
            (409, Action::Refuse),
            (413, Action::Split),
            (415, Action::Refuse),
            (422, Action::Refuse),
            (425, Action::Retry),
            (429, Action::Retry),
            (500, Action::Retry),
            (502, Action::Retry),
            (503, Action::Retry),
            (599, Action::Retry),
        ] {
            assert_eq!(action(status), expected, "HTTP {status}");
        }
    }
}
