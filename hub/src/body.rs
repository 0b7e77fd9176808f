//! Request bodies of the ingest API: media type, size limits, gzip, and splitting into items
//! (one JSON value, a JSON array, or NDJSON).

use crate::error::HubError;
use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;
use serde_json::value::RawValue;
use std::io::Read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON value or array (concatenated values are read like NDJSON).
    Json,
    /// One JSON value per line; a bad line rejects only itself.
    Ndjson,
}

/// What the body is, from `Content-Type` (absent means JSON).
pub fn format_of(request: &HttpRequest) -> Result<Format, HubError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Err(HubError::UnsupportedMediaType(
            "Content-Type is missing; use application/json or application/x-ndjson".into(),
        ));
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or("").trim();
    match essence {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonlines"
        | "application/x-jsonlines" => Ok(Format::Ndjson),
        "text/plain" => Err(HubError::UnsupportedMediaType(
            "Content-Type text/plain is not accepted: Falco sends it when `json_output` is \
             false; set `json_output: true` (and `json_include_output_property: true`)"
                .into(),
        )),
        other => Err(HubError::UnsupportedMediaType(format!(
            "Content-Type `{other}` is not accepted; use application/json or application/x-ndjson"
        ))),
    }
}

/// The body bytes being received across all requests, bounded by
/// `ingest.max_inflight_bytes`.
pub struct InFlight {
    bytes: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight {
            bytes: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What one request holds of `InFlight`; given back when dropped.
struct Held<'a> {
    inflight: &'a InFlight,
    bytes: usize,
}

impl Held<'_> {
    fn add(&mut self, bytes: usize) -> Result<(), HubError> {
        use std::sync::atomic::Ordering;
        let before = self.inflight.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
        if before + bytes > self.inflight.max {
            return Err(HubError::Busy(format!(
                "the hub is receiving {} bytes of other requests' bodies \
                 (ingest.max_inflight_bytes); retry later",
                before
            )));
        }
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.inflight
            .bytes
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads the whole body, refusing more than `limit` bytes (the setting `key`) before and
/// after decompression, a body not received within `timeout` (408), and bytes past what
/// `inflight` allows across requests (429). Gzip is inflated off the async workers.
pub async fn read(
    request: &HttpRequest,
    payload: Payload,
    limit: usize,
    key: &str,
    timeout: std::time::Duration,
    inflight: &InFlight,
) -> Result<Bytes, HubError> {
    match tokio::time::timeout(timeout, read_within(request, payload, limit, key, inflight)).await {
        Ok(read) => read,
        Err(_) => Err(HubError::RequestTimeout(format!(
            "the body was not received within {} s (ingest.body_timeout_secs)",
            timeout.as_secs()
        ))),
    }
}

async fn read_within(
    request: &HttpRequest,
    mut payload: Payload,
    limit: usize,
    key: &str,
    inflight: &InFlight,
) -> Result<Bytes, HubError> {
    let too_large = |what: &str| {
        HubError::PayloadTooLarge(format!(
            "{what} exceeds {limit} bytes ({key}); split it into smaller requests"
        ))
    };
    let gzip = match request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            return Err(HubError::UnsupportedMediaType(format!(
                "Content-Encoding `{other}` is not accepted; use gzip or none"
            )));
        }
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large("the body"));
    }
    let mut held = Held { inflight, bytes: 0 };
    let mut body = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| HubError::bad("body", format!("could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large("the body"));
        }
        held.add(chunk.len())?;
        body.extend_from_slice(&chunk);
    }
    if !gzip {
        return Ok(body.freeze());
    }
    let body = body.freeze();
    let plain = tokio::task::spawn_blocking(move || {
        let mut plain = Vec::with_capacity((body.len() * 4).min(limit));
        flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut plain)
            .map(|_| plain)
    })
    .await
    .map_err(|e| HubError::Internal(format!("inflating gzip: {e}")))?
    .map_err(|e| HubError::bad("body", format!("is not valid gzip: {e}")))?;
    if plain.len() > limit {
        return Err(too_large("the decompressed body"));
    }
    Ok(Bytes::from(plain))
}

/// One item of a body: its raw JSON, or why it could not be read (NDJSON lines only).
pub type Item<'a> = Result<&'a RawValue, String>;

/// Splits a body into items. A malformed JSON body is an error for the whole request; a
/// malformed NDJSON line is an error for that item only. More than `max_items` items: 413,
/// found without collecting them all.
pub fn split(body: &[u8], format: Format, max_items: usize) -> Result<Vec<Item<'_>>, HubError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| HubError::bad("body", format!("is not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Err(HubError::bad("body", "is empty"));
    }
    let invalid = |e: serde_json::Error| HubError::bad("body", format!("is not valid JSON: {e}"));
    let items: Vec<Item<'_>> = match format {
        Format::Json if text.trim_start().starts_with('[') => {
            use serde::Deserializer as _;
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let items = deserializer
                .deserialize_seq(BoundedSeq(max_items))
                .map_err(|e| match e.to_string().starts_with(TOO_MANY) {
                    true => too_many(max_items),
                    false => invalid(e),
                })?;
            deserializer.end().map_err(invalid)?;
            items.into_iter().map(Ok).collect()
        }
        Format::Json => serde_json::Deserializer::from_str(text)
            .into_iter::<&RawValue>()
            .take(max_items.saturating_add(1))
            .map(|item| item.map(Ok).map_err(invalid))
            .collect::<Result<_, _>>()?,
        Format::Ndjson => text
            .split('\n')
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .take(max_items.saturating_add(1))
            .map(|line| {
                serde_json::from_str::<&RawValue>(line)
                    .map_err(|e| format!("line is not valid JSON: {e}"))
            })
            .collect(),
    };
    if items.len() > max_items {
        return Err(too_many(max_items));
    }
    Ok(items)
}

fn too_many(max_items: usize) -> HubError {
    HubError::PayloadTooLarge(format!(
        "more than {max_items} events in one request (ingest.max_events_per_request); split it"
    ))
}

const TOO_MANY: &str = "too many items";

/// A JSON array read element by element, stopping at the first element over the bound.
struct BoundedSeq(usize);

impl<'de> serde::de::Visitor<'de> for BoundedSeq {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&RawValue>()? {
            if items.len() == self.0 {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[Item<'_>]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Ok(raw) => raw.get().to_string(),
                Err(e) => format!("ERR {e}"),
            })
            .collect()
    }

    #[test]
    fn a_single_object_is_one_item() {
        let items = split(br#" {"a":1} "#, Format::Json, 100).unwrap();
        assert_eq!(texts(&items), [r#"{"a":1}"#]);
    }

    #[test]
    fn an_array_is_one_item_per_element() {
        let items = split(br#"[{"a":1}, {"b":2}]"#, Format::Json, 100).unwrap();
        assert_eq!(texts(&items), [r#"{"a":1}"#, r#"{"b":2}"#]);
    }

    #[test]
    fn concatenated_json_values_are_read_one_by_one() {
        let items = split(b"{\"a\":1}\n{\"b\":2}\n", Format::Json, 100).unwrap();
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn malformed_json_fails_the_whole_body() {
        for body in [&b"{\"a\":"[..], b"[{\"a\":1},", b"{\"a\":1} x", b"\xff\xfe"] {
            let error = split(body, Format::Json, 100).unwrap_err();
            assert!(matches!(error, HubError::BadRequest { ref field, .. } if field == "body"));
        }
    }

    #[test]
    fn a_bad_ndjson_line_fails_only_itself_and_blank_lines_are_skipped() {
        let items = split(b"{\"a\":1}\r\n\nnot json\n{\"b\":2}", Format::Ndjson, 100).unwrap();
        let texts = texts(&items);
        assert_eq!(texts.len(), 3);
        assert_eq!(texts[0], r#"{"a":1}"#);
        assert!(texts[1].starts_with("ERR line is not valid JSON"));
        assert_eq!(texts[2], r#"{"b":2}"#);
    }

    #[test]
    fn an_empty_body_is_refused() {
        assert!(split(b"  \n", Format::Json, 100).is_err());
        assert!(split(b"", Format::Ndjson, 100).is_err());
    }

    #[test]
    fn more_items_than_allowed_is_too_large_in_every_format() {
        let bodies: [(&[u8], Format); 3] = [
            (b"[1,2,3]", Format::Json),
            (b"1 2 3", Format::Json),
            (b"1\n2\n3", Format::Ndjson),
        ];
        for (body, format) in bodies {
            assert!(matches!(
                split(body, format, 2),
                Err(HubError::PayloadTooLarge(_))
            ));
            assert_eq!(split(body, format, 3).unwrap().len(), 3);
        }
    }
}
