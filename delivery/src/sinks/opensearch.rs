//! `opensearch`: indexes events with `_bulk` through the `opensearch` crate.
//!
//! - `_id` = event id, so a replayed event overwrites itself instead of doubling: `index`
//!   operations into dated indices (`<index>-YYYY.MM.DD` from the event's time, or the
//!   `strftime` pattern given as `index` when it contains `%`), or `create` operations into a
//!   data stream (where a replayed event answers 409, which counts as delivered).
//! - Documents are the event as the query API shows it (normalized fields, `fields`, the raw
//!   payload) plus `@timestamp` = the event's time.
//! - A `_bulk` answer is read per item: HTTP 200 with `errors: true` is not success. Items
//!   answered 429/5xx are retried (only those); other 4xx items (mapping and parse errors) are
//!   refused for good and go to dead letters with OpenSearch's reason. A whole request failing
//!   with a connection error, a timeout, 429 or 5xx is retried.
//! - Falconer's index template (keyword fields, `fields` as `flat_object`, `raw` stored but not
//!   indexed) is installed before the first send unless `template: false`.
//! - `flavor: elasticsearch` speaks the same `_bulk` to Elasticsearch 7.14+ and 8 (typeless
//!   actions, `create` into data streams, `ApiKey` auth as for OpenSearch): the template maps
//!   `fields` as `flattened`, and every 2xx answer must carry `X-Elastic-Product:
//!   Elasticsearch`, the product check of Elastic's own clients — an answer without it is
//!   not taken as delivered (retried, the reason saying why), so a wrong flavor or URL shows
//!   in `test` and `last_error` instead of indexing into something else.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::http::{self, Action, BatchPost, Posted, chain, require};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::{self, OpenSearchAuth, SearchFlavor};
use falconer_store::Event;
use opensearch::auth::{ClientCertificate, Credentials};
use opensearch::cert::{Certificate, CertificateValidation};
use opensearch::http::headers::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::indices::IndicesPutIndexTemplateParts;
use opensearch::{BulkParts, OpenSearch};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Longest wait for one `_bulk` (or template) answer before the send is retried.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Longest error reason kept per event, in dead letters and `last_error`.
const REASON_MAX: usize = 500;
/// The header Elasticsearch 7.14+ puts on its answers, and the value it carries.
pub const PRODUCT_HEADER: &str = "x-elastic-product";
pub const PRODUCT: &str = "Elasticsearch";

pub struct OpenSearchSink {
    client: OpenSearch,
    target: Target,
    flavor: SearchFlavor,
    batch: usize,
    /// The template still to install before the next send.
    template: Option<(String, Value)>,
    /// The index name of the last event's second: most events of a batch share it.
    cached: Option<(i64, String)>,
    /// The base URL as it may appear in the client library's errors (with and without its
    /// `user:password@`), and as errors name it (`scheme://host:port`): its path or user
    /// part may be a credential.
    url: (Vec<String>, String),
}

/// Where documents go.
enum Target {
    /// A `strftime` pattern formatted with the event's time; `index` operations.
    Dated(String),
    /// A data stream; `create` operations.
    Stream(String),
}

impl OpenSearchSink {
    pub fn build(
        consumer: &str,
        url: opensearch::http::Url,
        settings: &crd::OpenSearchConfig,
        secrets: &Secrets,
    ) -> Result<OpenSearchSink, DeliveryError> {
        let config = |message: String| DeliveryError::Config {
            consumer: consumer.to_string(),
            message,
        };
        let target = match &settings.data_stream {
            Some(stream) => {
                check_index_name(stream)
                    .map_err(|e| config(format!("opensearch.dataStream: {e}")))?;
                Target::Stream(stream.clone())
            }
            None => {
                let pattern = index_pattern(&settings.index);
                let sample =
                    format_index(&pattern, chrono::DateTime::UNIX_EPOCH).ok_or_else(|| {
                        config(format!(
                            "opensearch.index `{}`: not a valid date pattern",
                            settings.index
                        ))
                    })?;
                check_index_name(&sample)
                    .map_err(|e| config(format!("opensearch.index `{}`: {e}", settings.index)))?;
                Target::Dated(pattern)
            }
        };

        let mut bare = url.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let mut forms: Vec<String> = [url.as_str(), bare.as_str()]
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        // Longest first, so a prefix never leaves the rest of a longer form behind.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        let shown = (forms, http::redact(&url));
        let mut builder =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(TIMEOUT);
        let authorization = match settings.auth {
            OpenSearchAuth::None => None,
            OpenSearchAuth::Basic => {
                let user = require(consumer, secrets, "username", "opensearch.auth basic")?;
                let password = require(consumer, secrets, "password", "opensearch.auth basic")?;
                Some(format!(
                    "Basic {}",
                    base64(format!("{user}:{password}").as_bytes())
                ))
            }
            OpenSearchAuth::ApiKey => {
                let key = require(consumer, secrets, "apiKey", "opensearch.auth apiKey")?;
                // `id:key` as OpenSearch hands them out, or already encoded.
                Some(match key.contains(':') {
                    true => format!("ApiKey {}", base64(key.as_bytes())),
                    false => format!("ApiKey {key}"),
                })
            }
        };
        if let Some(value) = authorization {
            // A header rather than `Credentials`, so it can go along with a client certificate.
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| config("the credentials are not valid in an HTTP header".into()))?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        match (secrets.get("tls.crt"), secrets.get("tls.key")) {
            (Some(cert), Some(key)) => {
                let pem = format!("{}\n{}", cert.0, key.0).into_bytes();
                builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(pem)));
            }
            (None, None) => {}
            _ => {
                return Err(config(
                    "secret needs both tls.crt and tls.key, or neither".into(),
                ));
            }
        }
        if settings.tls.insecure_skip_verify {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(ca) = secrets.get("ca.crt") {
            let bundle = Certificate::from_pem(ca.0.as_bytes())
                .map_err(|e| config(format!("secret key ca.crt: {}", chain(&e))))?;
            builder = builder.cert_validation(CertificateValidation::Full(bundle));
        }
        let transport = builder
            .build()
            .map_err(|e| config(format!("OpenSearch client: {}", chain(&e))))?;

        let template = settings.template.then(|| {
            let (patterns, stream) = match &target {
                Target::Dated(pattern) => (
                    format!("{}*", pattern.split('%').next().unwrap_or_default()),
                    false,
                ),
                Target::Stream(stream) => (stream.clone(), true),
            };
            (
                format!("falconer-{consumer}"),
                template(&patterns, stream, settings.flavor),
            )
        });
        Ok(OpenSearchSink {
            client: OpenSearch::new(transport),
            target,
            flavor: settings.flavor,
            batch: settings.batch_size.max(1) as usize,
            template,
            cached: None,
            url: shown,
        })
    }

    /// `text` with the configured URL replaced by `scheme://host:port`.
    fn scrub(&self, text: String) -> String {
        let (forms, shown) = &self.url;
        forms
            .iter()
            .filter(|f| !f.is_empty())
            .fold(text, |text, form| text.replace(form.as_str(), shown))
    }

    /// Installs the index template; `Some(reason)` when it must be tried again.
    async fn install_template(&mut self) -> Option<String> {
        let (name, body) = self.template.as_ref()?;
        let what = format!("installing index template {name}");
        let sent = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(name))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Err(e) => Some(self.scrub(format!("{what}: {}", chain(&e)))),
            Ok(response) if response.status_code().is_success() => {
                if let Some(why) = product_check(self.flavor, response.headers()) {
                    return Some(format!("{what}: {why}"));
                }
                tracing::info!(template = %name, "Index template installed");
                self.template = None;
                None
            }
            // Whatever the status: nothing is sent without the template, and nothing is lost
            // while the operator fixes what the cluster complains about.
            Ok(response) => {
                let status = response.status_code().as_u16();
                let hint = flavor_hint(self.flavor, response.headers());
                let text = response.text().await.unwrap_or_default();
                Some(format!("{what}: HTTP {status}: {}{hint}", snippet(&text)))
            }
        }
    }

    fn index_for(&mut self, time: chrono::DateTime<chrono::Utc>) -> &str {
        let second = time.timestamp();
        let fresh = !matches!(&self.cached, Some((s, _)) if *s == second);
        if fresh {
            let name = match &self.target {
                Target::Dated(pattern) => format_index(pattern, time).unwrap_or_default(),
                Target::Stream(stream) => stream.clone(),
            };
            self.cached = Some((second, name));
        }
        self.cached.as_ref().map_or("", |(_, name)| name.as_str())
    }

    /// The `_bulk` body: an action line and a document line per event.
    fn body(&mut self, events: &[Event]) -> Vec<u8> {
        let action = match self.target {
            Target::Dated(_) => "index",
            Target::Stream(_) => "create",
        };
        let mut body = Vec::with_capacity(events.len() * 2048);
        for event in events {
            let index = self.index_for(event.time).to_string();
            // Index names are checked to need no JSON escaping; ids are UUIDs.
            let _ = writeln!(
                Bytes(&mut body),
                r#"{{"{action}":{{"_index":"{index}","_id":"{}"}}}}"#,
                event.id
            );
            document(event, &mut body);
            body.push(b'\n');
        }
        body
    }
}

impl FromConsumer for OpenSearchSink {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.opensearch.as_ref(), "opensearch")?;
        let url = http::endpoint(declared, "opensearch.url", &settings.url)?;
        OpenSearchSink::build(declared.name, url, settings, declared.secrets)
    }
}

impl Sink for OpenSearchSink {
    fn batch_size(&self) -> usize {
        self.batch
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        if let Some(reason) = self.install_template().await {
            return Outcome::Retry(reason);
        }
        // A 413 (the body is over the cluster's `http.max_content_length`) splits the batch.
        http::send_splitting(self, events).await
    }
}

/// One `_bulk` request.
impl BatchPost for OpenSearchSink {
    async fn post(&mut self, events: &[Event]) -> Posted {
        let body = self.body(events);
        let bytes = body.len();
        let create = matches!(self.target, Target::Stream(_));
        let response = match self
            .client
            .bulk(BulkParts::None)
            // The client would say application/json; OpenSearch documents NDJSON.
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )
            .body(vec![body])
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                let why = self.scrub(format!("POST /_bulk: {}", chain(&e)));
                return Posted::Done(Outcome::Retry(why));
            }
        };
        let status = response.status_code().as_u16();
        let not_the_product = (200..300)
            .contains(&status)
            .then(|| product_check(self.flavor, response.headers()))
            .flatten();
        if let Some(why) = not_the_product {
            return Posted::Done(Outcome::Retry(format!("POST /_bulk: {why}")));
        }
        let text = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return Posted::Done(Outcome::Retry(
                    self.scrub(format!("POST /_bulk: reading the answer: {}", chain(&e))),
                ));
            }
        };
        let why = || {
            format!(
                "POST /_bulk: HTTP {status}: {}",
                snippet(&String::from_utf8_lossy(&text))
            )
        };
        Posted::Done(match http::action(status) {
            Action::Deliver if status == 200 => item_results(&text, events.len(), create),
            // Another 2xx is not a `_bulk` answer: nothing can be said per document.
            Action::Deliver | Action::Retry => Outcome::Retry(why()),
            Action::Split => {
                return Posted::TooLarge {
                    bytes,
                    why: "POST /_bulk: HTTP 413 (over the cluster's http.max_content_length)"
                        .into(),
                };
            }
            Action::Refuse => http::refuse_all(events.len(), &why()),
        })
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn lower_batch(&mut self, size: usize) {
        self.batch = size.max(1);
    }
}

#[derive(Deserialize)]
struct Summary {
    errors: bool,
}

#[derive(Deserialize)]
struct Items {
    items: Vec<HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Reads a `_bulk` answer (HTTP 200) into one result per event sent.
pub(crate) fn item_results(body: &[u8], sent: usize, create: bool) -> Outcome {
    let unreadable = |e: serde_json::Error| {
        Outcome::Retry(format!(
            "POST /_bulk: unreadable answer ({e}): {}",
            snippet(&String::from_utf8_lossy(body))
        ))
    };
    match serde_json::from_slice::<Summary>(body) {
        Err(e) => return unreadable(e),
        Ok(summary) if !summary.errors => return Outcome::Delivered,
        Ok(_) => {}
    }
    let items = match serde_json::from_slice::<Items>(body) {
        Ok(items) => items.items,
        Err(e) => return unreadable(e),
    };
    if items.len() != sent {
        return Outcome::Retry(format!(
            "POST /_bulk: {} results for {sent} documents",
            items.len()
        ));
    }
    Outcome::Each(
        items
            .into_iter()
            .map(|item| match item.into_values().next() {
                Some(item) => item_result(item, create),
                None => ItemResult::Retry("POST /_bulk: an empty item in the answer".into()),
            })
            .collect(),
    )
}

fn item_result(item: Item, create: bool) -> ItemResult {
    let why = || {
        let mut why = format!("HTTP {}", item.status);
        if let Some(error) = &item.error {
            let _ = write!(
                why,
                " {}: {}",
                error.kind,
                error.reason.as_deref().unwrap_or("")
            );
        }
        snippet(&why)
    };
    match item.status {
        200..=299 => ItemResult::Delivered,
        // `create` of an id already there: a replay of a delivered event.
        409 if create => ItemResult::Delivered,
        // Overload and shard trouble pass; auth and missing indices wait for the operator.
        _ => match http::action(item.status) {
            Action::Deliver => ItemResult::Delivered,
            Action::Retry => ItemResult::Retry(why()),
            Action::Split | Action::Refuse => ItemResult::Refused(why()),
        },
    }
}

/// Why a 2xx answer is not taken as the configured product's, if it is not: Elasticsearch
/// (7.14 and later) marks every answer `X-Elastic-Product: Elasticsearch`, and Elastic's
/// clients refuse a server that does not. OpenSearch is not checked (it has no such mark).
pub fn product_check(
    flavor: SearchFlavor,
    headers: &opensearch::http::headers::HeaderMap,
) -> Option<String> {
    if flavor != SearchFlavor::Elasticsearch {
        return None;
    }
    let product = headers.get(PRODUCT_HEADER).and_then(|v| v.to_str().ok());
    if product == Some(PRODUCT) {
        return None;
    }
    tracing::warn!(
        product = product.unwrap_or(""),
        "A server answered without X-Elastic-Product: Elasticsearch; not taken as delivered"
    );
    Some(format!(
        "the server answered without `X-Elastic-Product: Elasticsearch`{}: it is not \
         Elasticsearch 7.14 or later (OpenSearch? set opensearch.flavor: opensearch; a proxy \
         dropping the header? let it through); nothing is taken as delivered until it is",
        product
            .map(|p| format!(" (it says `{p}`)"))
            .unwrap_or_default()
    ))
}

/// A hint for an error answer whose sender is not the configured flavor.
fn flavor_hint(
    flavor: SearchFlavor,
    headers: &opensearch::http::headers::HeaderMap,
) -> &'static str {
    let elastic = headers.get(PRODUCT_HEADER).and_then(|v| v.to_str().ok()) == Some(PRODUCT);
    match (flavor, elastic) {
        (SearchFlavor::Opensearch, true) => {
            " (the server is Elasticsearch: set opensearch.flavor: elasticsearch)"
        }
        (SearchFlavor::Elasticsearch, false) => {
            " (the answer is not marked X-Elastic-Product: Elasticsearch: if the server is \
             OpenSearch, set opensearch.flavor: opensearch)"
        }
        _ => "",
    }
}

/// The document of an event: the event as the query API shows it, plus `@timestamp`.
/// Serialized straight into the request body (no copy per event).
fn document(event: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    // Serializing a struct of strings, numbers and raw JSON into memory cannot fail.
    if serde_json::to_writer(&mut *out, event).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
    }
    // Reopen the object for one more field.
    out.pop();
    if out.len() > start + 1 {
        out.push(b',');
    }
    out.extend_from_slice(br#""@timestamp":""#);
    out.extend_from_slice(
        event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .as_bytes(),
    );
    out.extend_from_slice(b"\"}");
}

/// The configured `index` as a `strftime` pattern: kept when it has `%`, else the daily
/// suffix is appended.
fn index_pattern(index: &str) -> String {
    if index.contains('%') {
        index.to_string()
    } else {
        format!("{index}-%Y.%m.%d")
    }
}

fn format_index(pattern: &str, time: chrono::DateTime<chrono::Utc>) -> Option<String> {
    chrono::format::StrftimeItems::new(pattern).parse().ok()?;
    let mut name = String::new();
    write!(name, "{}", time.format(pattern)).ok()?;
    Some(name)
}

/// OpenSearch's rules for index and data stream names.
fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("an index name has 1 to 255 bytes".into());
    }
    if name != name.to_lowercase() {
        return Err(format!("`{name}` must be lower case"));
    }
    if name.starts_with(['_', '-', '+']) || name == "." || name == ".." {
        return Err(format!("`{name}` must not start with `_`, `-` or `+`"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| r#"\/*?"<>| ,#:"#.contains(*c) || c.is_control())
    {
        return Err(format!(
            "`{name}` must not contain `{}`",
            c.escape_default()
        ));
    }
    Ok(())
}

/// Falconer's index template: the normalized fields as keywords and dates, the message as
/// text, `fields` as one field of keywords — OpenSearch's `flat_object`, Elasticsearch's
/// `flattened` (Falco's `output_fields` keys contain dots and brackets that would collide as
/// objects) — and `raw` kept in `_source` but not indexed.
fn template(pattern: &str, data_stream: bool, flavor: SearchFlavor) -> Value {
    // Elasticsearch ships templates of priority 100 for `logs-*-*` and `metrics-*-*`; two
    // templates of one priority matching the same name are refused, so ours goes above.
    let (flat, priority) = match flavor {
        SearchFlavor::Opensearch => ("flat_object", 100),
        SearchFlavor::Elasticsearch => ("flattened", 200),
    };
    let keyword = json!({"type": "keyword"});
    let date = json!({"type": "date"});
    let mut template = json!({
        "index_patterns": [pattern],
        "priority": priority,
        "_meta": {"managed_by": "falconer"},
        "template": {
            "mappings": {
                "properties": {
                    "@timestamp": date, "time": date, "received_at": date,
                    "id": keyword, "dedup_key": keyword, "source": keyword,
                    "source_version": keyword, "kind": keyword, "severity": keyword,
                    "severity_raw": keyword, "rule": keyword, "message": {"type": "text"},
                    "tags": keyword, "cluster": keyword, "namespace": keyword, "pod": keyword,
                    "container": keyword, "image": keyword, "node": keyword,
                    "workload": {"properties": {"kind": keyword, "name": keyword}},
                    "fields": {"type": flat},
                    "raw": {"type": "object", "enabled": false},
                }
            }
        }
    });
    if data_stream {
        template["data_stream"] = json!({});
    }
    template
}

fn snippet(text: &str) -> String {
    text.chars().take(REASON_MAX).collect()
}

/// `fmt::Write` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Standard base64 with padding (RFC 4648), for the `Authorization` header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn a_plain_index_gets_a_daily_suffix_and_a_pattern_is_kept() {
        let time = "2026-05-04T10:11:12Z".parse().unwrap();
        assert_eq!(
            format_index(&index_pattern("falconer-events"), time).unwrap(),
            "falconer-events-2026.05.04"
        );
        assert_eq!(
            format_index(&index_pattern("sec-%Y.%m"), time).unwrap(),
            "sec-2026.05"
        );
        assert_eq!(format_index("bad-%Q", time), None);
    }

    #[test]
    fn index_names_follow_opensearch_rules() {
        assert!(check_index_name("falconer-events-2026.05.04").is_ok());
        for bad in ["Upper", "_hidden", "-x", "a b", "a\"b", "a/b", "a,b", ""] {
            assert!(check_index_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bulk_bodies_carry_the_event_id_the_daily_index_and_the_raw_payload() {
        let settings: crd::OpenSearchConfig =
            serde_json::from_value(json!({"url": "http://127.0.0.1:9"})).unwrap();
        let mut sink = OpenSearchSink::build(
            "search",
            settings.url.parse().unwrap(),
            &settings,
            &Secrets::new(),
        )
        .unwrap();
        let e = event("Terminal shell");
        let body = String::from_utf8(sink.body(std::slice::from_ref(&e))).unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(body.ends_with('\n'));
        assert_eq!(
            lines[0],
            json!({"index": {"_index": "falconer-events-2026.05.04", "_id": e.id.to_string()}})
        );
        assert_eq!(lines[1]["@timestamp"], "2026-05-04T10:11:12Z");
        assert_eq!(lines[1]["id"], e.id.to_string());
        assert_eq!(lines[1]["rule"], "Terminal shell");
        assert_eq!(lines[1]["fields"]["proc.name"], "bash");
        assert_eq!(lines[1]["raw"]["rule"], "Terminal shell");
    }

    #[test]
    fn a_data_stream_gets_create_operations_and_a_data_stream_template() {
        let settings: crd::OpenSearchConfig = serde_json::from_value(
            json!({"url": "http://127.0.0.1:9", "dataStream": "falconer-stream"}),
        )
        .unwrap();
        let mut sink = OpenSearchSink::build(
            "s",
            settings.url.parse().unwrap(),
            &settings,
            &Secrets::new(),
        )
        .unwrap();
        let e = event("x");
        let body = String::from_utf8(sink.body(std::slice::from_ref(&e))).unwrap();
        let action: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "falconer-stream");
        let (name, template) = sink.template.clone().unwrap();
        assert_eq!(name, "falconer-s");
        assert_eq!(template["index_patterns"], json!(["falconer-stream"]));
        assert_eq!(template["data_stream"], json!({}));
    }

    #[test]
    fn item_statuses_decide_delivered_retry_or_dead_letter() {
        let body = json!({"took": 3, "errors": true, "items": [
            {"index": {"_index": "i", "_id": "1", "status": 201, "result": "created"}},
            {"index": {"_index": "i", "_id": "2", "status": 429,
                       "error": {"type": "rejected_execution_exception", "reason": "queue full"}}},
            {"index": {"_index": "i", "_id": "3", "status": 400,
                       "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]"}}},
            {"index": {"_index": "i", "_id": "4", "status": 503,
                       "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}},
            {"create": {"_index": "i", "_id": "5", "status": 409,
                       "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
        ]})
        .to_string();
        let Outcome::Each(results) = item_results(body.as_bytes(), 5, true) else {
            panic!("per-item results expected");
        };
        assert_eq!(results[0], ItemResult::Delivered);
        assert_eq!(
            results[1],
            ItemResult::Retry("HTTP 429 rejected_execution_exception: queue full".into())
        );
        assert_eq!(
            results[2],
            ItemResult::Refused(
                "HTTP 400 mapper_parsing_exception: failed to parse field [x]".into()
            )
        );
        assert!(matches!(results[3], ItemResult::Retry(_)));
        assert_eq!(
            results[4],
            ItemResult::Delivered,
            "409 on create is a replay"
        );
        // An `index` operation never answers 409 for an existing id; if it does, it failed.
        let Outcome::Each(results) = item_results(body.as_bytes(), 5, false) else {
            panic!("per-item results expected");
        };
        assert!(matches!(results[4], ItemResult::Refused(_)));
    }

    #[test]
    fn an_answer_without_errors_is_delivered_and_a_short_one_is_retried() {
        let ok = json!({"took": 1, "errors": false, "items": [{"index": {"status": 201}}]});
        assert_eq!(
            item_results(ok.to_string().as_bytes(), 1, false),
            Outcome::Delivered
        );
        let short = json!({"took": 1, "errors": true, "items": [{"index": {"status": 429}}]});
        assert!(matches!(
            item_results(short.to_string().as_bytes(), 2, false),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            item_results(b"<html>", 1, false),
            Outcome::Retry(_)
        ));
    }

    /// Against a real cluster, when there is one: `OPENSEARCH_URL` (and optionally
    /// `OPENSEARCH_USERNAME` / `OPENSEARCH_PASSWORD`, `OPENSEARCH_INSECURE=1` for a
    /// self-signed certificate). Passes without doing anything otherwise.
    #[tokio::test]
    async fn a_real_opensearch_indexes_an_event_when_opensearch_url_is_set() {
        let Ok(url) = std::env::var("OPENSEARCH_URL") else {
            return;
        };
        let env = |key: &str| std::env::var(key).ok();
        let mut secrets = Secrets::new();
        let basic = match (env("OPENSEARCH_USERNAME"), env("OPENSEARCH_PASSWORD")) {
            (Some(user), Some(password)) => {
                secrets.insert("username".into(), crate::declared::SecretValue(user));
                secrets.insert("password".into(), crate::declared::SecretValue(password));
                true
            }
            _ => false,
        };
        let settings: crd::OpenSearchConfig = serde_json::from_value(json!({
            "url": url,
            "index": "falconer-test",
            "auth": if basic { "basic" } else { "none" },
            "tls": {"insecureSkipVerify": env("OPENSEARCH_INSECURE").as_deref() == Some("1")},
        }))
        .unwrap();
        let mut sink =
            OpenSearchSink::build("real", settings.url.parse().unwrap(), &settings, &secrets)
                .unwrap();
        let events = [event("Real OpenSearch"), event("Real OpenSearch")];
        assert_eq!(sink.send(&events).await, Outcome::Delivered);
        // The same ids again: overwritten, not doubled.
        assert_eq!(sink.send(&events).await, Outcome::Delivered);
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_named_without_the_credentials_of_its_url() {
        let settings: crd::OpenSearchConfig = serde_json::from_value(
            json!({"url": "http://admin:hunter2@127.0.0.1:9/secret-path", "template": false}),
        )
        .unwrap();
        let url = settings.url.parse().unwrap();
        let mut sink = OpenSearchSink::build("s", url, &settings, &Secrets::new()).unwrap();
        let Outcome::Retry(why) = sink.send(&[event("x")]).await else {
            panic!("an unreachable cluster is retried");
        };
        assert!(why.contains("http://127.0.0.1:9"), "{why}");
        assert!(
            !why.contains("hunter2") && !why.contains("secret-path"),
            "{why}"
        );
    }

    fn elastic(url: &str, extra: Value) -> OpenSearchSink {
        let mut settings = json!({"url": url, "flavor": "elasticsearch"});
        if let Value::Object(extra) = extra {
            for (key, value) in extra {
                settings[key] = value;
            }
        }
        let settings: crd::OpenSearchConfig = serde_json::from_value(settings).unwrap();
        OpenSearchSink::build(
            "es",
            settings.url.parse().unwrap(),
            &settings,
            &Secrets::new(),
        )
        .unwrap()
    }

    #[test]
    fn the_elasticsearch_template_maps_fields_as_flattened() {
        let sink = elastic("http://127.0.0.1:9", json!({}));
        let (_, template) = sink.template.clone().unwrap();
        let properties = &template["template"]["mappings"]["properties"];
        assert_eq!(properties["fields"]["type"], "flattened");
        assert_eq!(
            template["priority"], 200,
            "above Elasticsearch's own logs-*-*"
        );
        assert_eq!(
            properties["raw"],
            json!({"type": "object", "enabled": false})
        );
        let opensearch = template_of_flavor(SearchFlavor::Opensearch);
        assert_eq!(
            opensearch["template"]["mappings"]["properties"]["fields"]["type"],
            "flat_object"
        );
    }

    fn template_of_flavor(flavor: SearchFlavor) -> Value {
        template("falconer-events-*", false, flavor)
    }

    #[test]
    fn only_an_answer_marked_elasticsearch_passes_the_product_check() {
        use opensearch::http::headers::HeaderMap;
        let mut marked = HeaderMap::new();
        marked.insert(PRODUCT_HEADER, HeaderValue::from_static("Elasticsearch"));
        assert_eq!(product_check(SearchFlavor::Elasticsearch, &marked), None);
        let why = product_check(SearchFlavor::Elasticsearch, &HeaderMap::new()).unwrap();
        assert!(
            why.contains("X-Elastic-Product") && why.contains("flavor: opensearch"),
            "{why}"
        );
        let mut other = HeaderMap::new();
        other.insert(PRODUCT_HEADER, HeaderValue::from_static("Something"));
        let why = product_check(SearchFlavor::Elasticsearch, &other).unwrap();
        assert!(why.contains("it says `Something`"), "{why}");
        assert_eq!(
            product_check(SearchFlavor::Opensearch, &HeaderMap::new()),
            None
        );
    }

    #[tokio::test]
    async fn elasticsearch_8_takes_a_data_stream_and_a_replay_is_delivered() {
        use falconer_testkit::opensearch::{ItemFault, OpenSearchServer, Options};
        let server =
            OpenSearchServer::bind("127.0.0.1:0".parse().unwrap(), Options::elasticsearch())
                .unwrap();
        let mut sink = elastic(&server.url(), json!({"dataStream": "falconer-es"}));
        let events = [event("a"), event("b")];
        assert_eq!(sink.send(&events).await, Outcome::Delivered);
        assert_eq!(
            http::per_item(sink.send(&events).await, 2),
            vec![ItemResult::Delivered; 2],
            "409 = already there"
        );
        assert_eq!(server.ids("falconer-es").len(), 2);
        let template = server.template("falconer-es").unwrap();
        assert_eq!(
            template["template"]["mappings"]["properties"]["fields"]["type"],
            "flattened"
        );

        server.faults(|f| {
            f.items.push(ItemFault::new("rule", "busy", 429, 1));
            f.items.push(ItemFault::new("rule", "bad", 400, u32::MAX));
        });
        let Outcome::Each(results) = sink.send(&[event("busy"), event("bad")]).await else {
            panic!("per-item results expected");
        };
        let ItemResult::Retry(why) = &results[0] else {
            panic!("{results:?}");
        };
        assert!(
            why.contains("HTTP 429 es_rejected_execution_exception"),
            "{why}"
        );
        let ItemResult::Refused(why) = &results[1] else {
            panic!("{results:?}");
        };
        assert!(why.contains("HTTP 400 mapper_parsing_exception"), "{why}");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_server_that_is_not_elasticsearch_is_never_taken_as_delivered() {
        use falconer_testkit::opensearch::OpenSearchServer;
        let opensearch = OpenSearchServer::start().unwrap();
        let mut sink = elastic(&opensearch.url(), json!({"template": false}));
        let Outcome::Retry(why) = sink.send(&[event("x")]).await else {
            panic!("no product header: retried");
        };
        assert!(
            why.starts_with("POST /_bulk: the server answered without `X-Elastic-Product"),
            "{why}"
        );
        let mut with_template = elastic(&opensearch.url(), json!({}));
        let Outcome::Retry(why) = with_template.send(&[event("x")]).await else {
            panic!("retried");
        };
        assert!(
            why.contains("installing index template")
                && why.contains("No handler for type [flattened]")
                && why.contains("set opensearch.flavor: opensearch"),
            "{why}"
        );
        opensearch.stop().await;
    }

    #[tokio::test]
    async fn the_opensearch_flavor_against_elasticsearch_says_which_flavor_to_set() {
        use falconer_testkit::opensearch::{OpenSearchServer, Options};
        let server =
            OpenSearchServer::bind("127.0.0.1:0".parse().unwrap(), Options::elasticsearch())
                .unwrap();
        let settings: crd::OpenSearchConfig =
            serde_json::from_value(json!({"url": server.url()})).unwrap();
        let mut sink = OpenSearchSink::build(
            "s",
            settings.url.parse().unwrap(),
            &settings,
            &Secrets::new(),
        )
        .unwrap();
        let Outcome::Retry(why) = sink.send(&[event("x")]).await else {
            panic!("the template is refused: retried");
        };
        assert!(why.contains("No handler for type [flat_object]"), "{why}");
        assert!(
            why.contains("set opensearch.flavor: elasticsearch"),
            "{why}"
        );
        server.stop().await;
    }

    #[test]
    fn missing_credentials_and_bad_patterns_keep_the_consumer_from_starting() {
        let basic: crd::OpenSearchConfig =
            serde_json::from_value(json!({"url": "http://x:9200", "auth": "basic"})).unwrap();
        let err = OpenSearchSink::build("s", basic.url.parse().unwrap(), &basic, &Secrets::new())
            .err()
            .unwrap();
        assert!(err.to_string().contains("username"), "{err}");
        let bad: crd::OpenSearchConfig =
            serde_json::from_value(json!({"url": "http://x:9200", "index": "Events"})).unwrap();
        let err = OpenSearchSink::build("s", bad.url.parse().unwrap(), &bad, &Secrets::new())
            .err()
            .unwrap();
        assert!(err.to_string().contains("lower case"), "{err}");
    }
}
