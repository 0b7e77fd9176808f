//! A Grafana Loki push endpoint for tests (no Loki server runs on the build machine; see
//! shared/reference/toolchain.md).
//!
//! It implements `POST /loki/api/v1/push` with the JSON body of Loki's HTTP API
//! (`{"streams": [{"stream": {labels}, "values": [["<unix ns>", "<line>"], …]}]}`) the way
//! Loki answers it: `204 No Content` when every entry is taken; a stream without labels, an
//! invalid label name or an empty value, or a timestamp that is not a decimal integer fails
//! the whole request with `400` and Loki's message. Entries are kept per stream (the stream
//! is its sorted label set), the way an ingester with `unordered_writes: false` keeps them:
//!
//! - an entry older than the stream's newest is refused `entry out of order`;
//! - an entry older than [`Faults::max_age`] is refused `timestamp too old`, as the
//!   distributor's `reject_old_samples` does;
//! - an entry with the timestamp and line of one already kept is a duplicate: accepted,
//!   not kept twice (as Loki drops duplicates);
//! - the other entries of the request are kept, and the answer is `400` with one line per
//!   refused entry (`entry with timestamp <Go time> ignored, reason: '<why>',`) and a
//!   summary per stream (`user '<tenant>', total ignored: N out of M for stream: {…}`), or the
//!   distributor's `entry for stream '{…}' has timestamp too old: …` lines.
//!
//! Also: the tenant (`X-Scope-OrgID`) of each request is recorded, and required when
//! [`Options::require_tenant`] is set (`401 no org id`, as Loki with `auth_enabled`); basic or
//! bearer credentials are checked when configured (401); [`Faults`] inject a status for every
//! push (429 with `Retry-After`, 500, …) and slow answers.

use crate::lock;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the server authenticates pushes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Refuse a push without `X-Scope-OrgID` (`401 no org id`).
    pub require_tenant: bool,
    /// Require `Authorization: Basic` with this user and password.
    pub basic: Option<(String, String)>,
    /// Require `Authorization: Bearer` with this token.
    pub bearer: Option<String>,
    /// Failures injected from the first request on.
    pub faults: Faults,
}

/// Failures to inject; change them at any time through [`LokiServer::faults`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every push with this status (429, 500, 503, …) while set, taking nothing.
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with an injected status.
    pub retry_after: Option<u64>,
    /// Wait this long before answering a push.
    pub delay: Duration,
    /// Refuse entries older than this, measured from the server's clock.
    pub max_age: Option<Duration>,
    /// Answer 413 to bodies over this many bytes (a gateway's limit), taking nothing.
    pub max_body_bytes: Option<usize>,
}

/// One entry as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tenant: String,
    /// The stream's labels.
    pub labels: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub time: i64,
    pub line: String,
}

/// One push request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub status: u16,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub tenant: Option<String>,
    /// The body as sent.
    pub body: String,
}

#[derive(Default)]
struct Data {
    /// Entries in order of acceptance.
    entries: Vec<Entry>,
    /// (tenant, stream) → newest timestamp kept.
    newest: HashMap<(String, String), i64>,
    /// (tenant, stream, time, line) of every entry kept, for duplicates.
    kept: std::collections::HashSet<(String, String, i64, String)>,
    seen: Vec<Seen>,
}

struct State {
    data: Mutex<Data>,
    faults: Mutex<Faults>,
    options: Options,
}

/// A running server; stops when dropped (or with [`LokiServer::stop`]).
pub struct LokiServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

impl LokiServer {
    /// Serves on 127.0.0.1 with a free port, on the current Tokio runtime.
    pub fn start() -> std::io::Result<LokiServer> {
        LokiServer::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            Options::default(),
        )
    }

    pub fn with(options: Options) -> std::io::Result<LokiServer> {
        LokiServer::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            options,
        )
    }

    pub fn bind(listen: SocketAddr, options: Options) -> std::io::Result<LokiServer> {
        let state = Arc::new(State {
            data: Mutex::new(Data::default()),
            faults: Mutex::new(options.faults.clone()),
            options,
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .bind(listen)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(LokiServer {
            addr,
            state,
            handle,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the injected failures.
    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut lock(&self.state.faults));
    }

    /// Every entry kept, in order of acceptance.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.state.data).entries.clone()
    }

    /// Every push request so far, answered or not.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state.data).seen.clone()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn text(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn handle(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    if request.path() != "/loki/api/v1/push" {
        return text(404, "404 page not found\n".into());
    }
    if request.method() != actix_web::http::Method::POST {
        return text(405, "method not allowed\n".into());
    }
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let tenant = headers.get("x-scope-orgid").cloned();
    let faults = lock(&state.faults).clone();
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    let (status, answer, retry_after) = push(&state, &faults, &headers, tenant.as_deref(), &body);
    lock(&state.data).seen.push(Seen {
        status,
        headers,
        tenant,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut response = text(status, answer);
    if let Some(seconds) = retry_after
        && let Ok(value) = actix_web::http::header::HeaderValue::from_str(&seconds.to_string())
    {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
    }
    response
}

#[derive(Deserialize)]
struct PushRequest {
    streams: Vec<StreamIn>,
}

#[derive(Deserialize)]
struct StreamIn {
    stream: BTreeMap<String, String>,
    values: Vec<Vec<String>>,
}

/// The answer to one push: status, body, `Retry-After`.
fn push(
    state: &State,
    faults: &Faults,
    headers: &BTreeMap<String, String>,
    tenant: Option<&str>,
    body: &[u8],
) -> (u16, String, Option<u64>) {
    let options = &state.options;
    if let Some((user, password)) = &options.basic
        && headers.get("authorization").map(String::as_str)
            != basic_header(user, password).as_deref()
    {
        return (401, "Unauthorized\n".into(), None);
    }
    if let Some(token) = &options.bearer
        && headers.get("authorization") != Some(&format!("Bearer {token}"))
    {
        return (401, "Unauthorized\n".into(), None);
    }
    if options.require_tenant && tenant.is_none() {
        return (401, "no org id\n".into(), None);
    }
    if faults.max_body_bytes.is_some_and(|max| body.len() > max) {
        return (413, "request body too large\n".into(), None);
    }
    if let Some(status) = faults.status {
        let why = match status {
            429 => "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while \
                    attempting to ingest '10' lines totaling '1000' bytes, reduce log volume or \
                    contact your Loki administrator to see if the limit can be increased"
                .to_string(),
            _ => "rpc error: code = Unavailable desc = at least 2 live replicas required, could \
                  only find 0"
                .to_string(),
        };
        return (status, format!("{why}\n"), faults.retry_after);
    }
    if headers
        .get("content-type")
        .is_some_and(|t| !t.starts_with("application/json"))
    {
        return (
            415,
            "the test server takes application/json only\n".into(),
            None,
        );
    }
    let request: PushRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return (400, format!("error parsing push request: {e}\n"), None),
    };
    let tenant = tenant.unwrap_or("fake").to_string();
    // Validation first, as the distributor does: a bad stream fails the whole request.
    let mut streams = Vec::with_capacity(request.streams.len());
    for stream in request.streams {
        if stream.stream.is_empty() {
            return (
                400,
                "error at least one label pair is required per stream\n".into(),
                None,
            );
        }
        for (name, value) in &stream.stream {
            if !valid_label_name(name) {
                return (
                    400,
                    format!("error parsing labels: invalid label name `{name}`\n"),
                    None,
                );
            }
            if value.is_empty() {
                return (
                    400,
                    format!("error parsing labels: empty value for label `{name}`\n"),
                    None,
                );
            }
        }
        let mut values = Vec::with_capacity(stream.values.len());
        for value in stream.values {
            let [time, line] = value.as_slice() else {
                return (
                    400,
                    "loghttp.PushRequest.Streams: each value is [\"<unix ns>\", \"<line>\"]\n"
                        .into(),
                    None,
                );
            };
            let Ok(ns) = time.parse::<i64>() else {
                return (
                    400,
                    format!("loghttp.PushRequest.Streams: invalid timestamp `{time}`\n"),
                    None,
                );
            };
            values.push((ns, line.clone()));
        }
        streams.push((labels_string(&stream.stream), stream.stream, values));
    }
    let oldest = faults.max_age.map(|age| now_ns() - age.as_nanos() as i64);
    let mut data = lock(&state.data);
    let mut answer = String::new();
    for (key, labels, values) in streams {
        let total = values.len();
        let mut ignored = 0;
        let mut lines = String::new();
        for (ns, line) in values {
            if let Some(oldest) = oldest
                && ns < oldest
            {
                answer.push_str(&format!(
                    "entry for stream '{key}' has timestamp too old: {}, oldest acceptable \
                     timestamp is: {}\n",
                    go_time(ns),
                    go_time(oldest)
                ));
                continue;
            }
            let id = (tenant.clone(), key.clone(), ns, line.clone());
            if data.kept.contains(&id) {
                continue;
            }
            let newest = data.newest.get(&(tenant.clone(), key.clone())).copied();
            if newest.is_some_and(|newest| ns < newest) {
                ignored += 1;
                lines.push_str(&format!(
                    "entry with timestamp {} ignored, reason: 'entry out of order',\n",
                    go_time(ns)
                ));
                continue;
            }
            data.newest.insert((tenant.clone(), key.clone()), ns);
            data.kept.insert(id);
            data.entries.push(Entry {
                tenant: tenant.clone(),
                labels: labels.clone(),
                time: ns,
                line,
            });
        }
        if ignored > 0 {
            answer.push_str(&lines);
            answer.push_str(&format!(
                "user '{tenant}', total ignored: {ignored} out of {total} for stream: {key}\n"
            ));
        }
    }
    if answer.is_empty() {
        (204, String::new(), None)
    } else {
        (400, answer, None)
    }
}

/// `{a="x", b="y"}`, as Loki prints a stream.
fn labels_string(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// A Unix-nanosecond time as Go's `time.Time.String()` prints it in UTC
/// (`2006-01-02 15:04:05.999999999 +0000 UTC`, trailing zeros of the fraction dropped).
pub fn go_time(ns: i64) -> String {
    let seconds = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `Authorization: Basic …` as a client sends it (reqwest encodes it).
fn basic_header(user: &str, password: &str) -> Option<String> {
    let request = reqwest::Client::new()
        .get("http://fake.invalid/")
        .basic_auth(user, Some(password))
        .build()
        .ok()?;
    let value = request.headers().get(reqwest::header::AUTHORIZATION)?;
    value.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_prints_like_go() {
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time(1_777_889_472_123_456_000),
            "2026-05-04 10:11:12.123456 +0000 UTC"
        );
        assert_eq!(
            go_time(1_709_208_000_000_000_001),
            "2024-02-29 12:00:00.000000001 +0000 UTC"
        );
    }
}
