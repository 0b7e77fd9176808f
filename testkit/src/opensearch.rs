//! A small OpenSearch-compatible HTTP server for tests and the delivery benchmark (no real
//! OpenSearch can run on the build machine; see shared/reference/toolchain.md).
//!
//! It implements what Falconer's `opensearch` sink and its tests use, with OpenSearch's wire
//! formats: `_bulk` (NDJSON in, per-item results out, `index`/`create`/`delete`), index and
//! index-template creation, data streams (`create` only, `@timestamp` required, backing index
//! `.ds-<name>-000001`), `_refresh` (documents become searchable only after one, or with
//! `?refresh=true|wait_for`), `_count`, a simple `_search` (`match_all`, `ids`, `term` on a
//! top-level field) and `_doc/{id}`.
//!
//! With [`Options::elasticsearch`] it answers as Elasticsearch 8 does instead: every answer
//! carries `X-Elastic-Product: Elasticsearch`, `GET /` describes an Elasticsearch node
//! (`You Know, for Search`), overload is `es_rejected_execution_exception`, and an index
//! template mapping a field as OpenSearch's `flat_object` is refused (`mapper_parsing_exception`,
//! as Elasticsearch has no such type) — as OpenSearch mode refuses Elasticsearch's `flattened`.
//! The `_bulk` item shapes (`version_conflict_engine_exception` 409 for a `create` of an id
//! already there, `mapper_parsing_exception` 400) are the same in both.
//!
//! Failures are injected through [`Faults`]: whole `_bulk` requests answered with a status
//! (429, 503, …), per-document statuses (429/5xx, or 400 `mapper_parsing_exception`) for
//! documents chosen by a field value, and slow answers. `GET /_test/stats` reports counters for
//! benchmarks; every request's method, path and headers are kept for assertions.

use crate::lock;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server keeps what it receives.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep document sources (for `_search` and `_doc`); off for benchmarks, where only ids,
    /// versions and write order are kept.
    pub keep_sources: bool,
    /// HTTP worker threads.
    pub workers: usize,
    /// Failures injected from the first request on.
    pub faults: Faults,
    /// Answer as Elasticsearch 8 (see the module's documentation).
    pub elasticsearch: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keep_sources: true,
            workers: 1,
            faults: Faults::default(),
            elasticsearch: false,
        }
    }
}

impl Options {
    /// An Elasticsearch 8 server.
    pub fn elasticsearch() -> Options {
        Options {
            elasticsearch: true,
            ..Options::default()
        }
    }
}

/// Failures to inject; change them at any time through [`OpenSearchServer::faults`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every `_bulk` request with this status (e.g. 429, 503) while set.
    pub bulk_status: Option<u16>,
    /// Per-document failures, first match wins.
    pub items: Vec<ItemFault>,
    /// Wait this long before answering a `_bulk` request.
    pub delay: Duration,
    /// OpenSearch's `http.max_content_length`: a larger request body is answered 413 with an
    /// empty body, as OpenSearch's HTTP layer does, before anything is indexed.
    pub max_content_length: Option<usize>,
}

/// Fails documents whose top-level `field` is the string `value` (`_id` matches the id).
#[derive(Debug, Clone)]
pub struct ItemFault {
    pub field: String,
    pub value: String,
    /// 400 answers `mapper_parsing_exception`, 429 `rejected_execution_exception`, 5xx
    /// `unavailable_shards_exception`.
    pub status: u16,
    /// Fail each matching document's first this many attempts (`u32::MAX`: until removed).
    pub attempts: u32,
}

impl ItemFault {
    pub fn new(field: &str, value: &str, status: u16, attempts: u32) -> ItemFault {
        ItemFault {
            field: field.into(),
            value: value.into(),
            status,
            attempts,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
}

/// Counters for benchmarks, as `GET /_test/stats` shows them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub bulk_requests: u64,
    /// Bulk requests answered with an injected whole-request error.
    pub bulk_refused: u64,
    /// Successful `index`/`create` operations.
    pub writes: u64,
    /// Writes of an id that already existed (replays).
    pub rewrites: u64,
    /// Items answered with an error.
    pub item_errors: u64,
    /// Seconds from the first `_bulk` request's arrival to the end of the latest write.
    pub seconds: f64,
    /// `writes / seconds`.
    pub writes_per_second: f64,
}

struct Doc {
    source: Option<Box<RawValue>>,
    version: u64,
    seq_no: u64,
    /// What `_search` and `_count` see: the state at the last refresh.
    visible: Option<(Option<Box<RawValue>>, u64)>,
}

#[derive(Default)]
struct Index {
    docs: HashMap<String, Doc>,
    /// Ids in order of their first write (search results come in this order).
    order: Vec<String>,
    /// Ids written since the last refresh.
    dirty: Vec<String>,
    template: Option<String>,
    data_stream: Option<String>,
}

impl Index {
    fn refresh(&mut self) {
        for id in self.dirty.drain(..) {
            if let Some(doc) = self.docs.get_mut(&id) {
                doc.visible = Some((doc.source.clone(), doc.version));
            }
        }
        // Deleted documents leave `order`.
        let docs = &self.docs;
        self.order.retain(|id| docs.contains_key(id));
    }
}

#[derive(Default)]
struct Data {
    indices: BTreeMap<String, Index>,
    templates: BTreeMap<String, Value>,
    /// Data stream name → backing index.
    streams: BTreeMap<String, String>,
    /// Attempts per id of documents that matched an item fault.
    attempts: HashMap<String, u32>,
    seq_no: u64,
    generated_ids: u64,
    stats: Stats,
    first_bulk: Option<Instant>,
}

pub struct State {
    data: Mutex<Data>,
    faults: Mutex<Faults>,
    seen: Mutex<Vec<Seen>>,
    options: Options,
}

/// Most requests kept for [`OpenSearchServer::requests`].
const SEEN_MAX: usize = 10_000;

/// A running server; stops when dropped (or with [`OpenSearchServer::stop`]).
pub struct OpenSearchServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

impl OpenSearchServer {
    /// Serves on 127.0.0.1 with a free port, on the current Tokio runtime.
    pub fn start() -> std::io::Result<OpenSearchServer> {
        OpenSearchServer::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            Options::default(),
        )
    }

    pub fn bind(listen: SocketAddr, options: Options) -> std::io::Result<OpenSearchServer> {
        let state = Arc::new(State {
            data: Mutex::new(Data::default()),
            faults: Mutex::new(options.faults.clone()),
            seen: Mutex::new(Vec::new()),
            options: options.clone(),
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(100 << 20))
                .default_service(web::to(handle))
        })
        .workers(options.workers.max(1))
        .bind(listen)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("bound to no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(OpenSearchServer {
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

    /// Every request so far (the latest 10,000).
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state.seen).clone()
    }

    pub fn stats(&self) -> Stats {
        stats(&lock(&self.state.data))
    }

    /// Ids of the documents in `index` (a name, data stream, pattern or list), in order of
    /// their first write, refreshed or not, with their versions.
    pub fn ids(&self, index: &str) -> Vec<(String, u64)> {
        let data = lock(&self.state.data);
        let mut out = Vec::new();
        for name in resolve(&data, index) {
            if let Some(i) = data.indices.get(&name) {
                out.extend(
                    i.order
                        .iter()
                        .filter_map(|id| i.docs.get(id).map(|d| (d.seq_no, id.clone(), d.version))),
                );
            }
        }
        out.sort();
        out.into_iter().map(|(_, id, v)| (id, v)).collect()
    }

    /// Names of the indices that exist.
    pub fn indices(&self) -> Vec<String> {
        lock(&self.state.data).indices.keys().cloned().collect()
    }

    /// The index template of that name, as installed.
    pub fn template(&self, name: &str) -> Option<Value> {
        lock(&self.state.data).templates.get(name).cloned()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn stats(data: &Data) -> Stats {
    let mut stats = data.stats.clone();
    stats.writes_per_second = if stats.seconds > 0.0 {
        stats.writes as f64 / stats.seconds
    } else {
        0.0
    };
    stats
}

/// `name` as OpenSearch resolves it: a comma-separated list of names, data streams and
/// `*` patterns; `_all` and `*` are every index.
fn resolve(data: &Data, target: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in target.split(',').filter(|p| !p.is_empty()) {
        if part == "_all" || part.contains('*') {
            let pattern = if part == "_all" { "*" } else { part };
            for name in data.indices.keys() {
                if glob(pattern, name) && !name.starts_with('.') {
                    out.push(name.clone());
                }
            }
            for (stream, backing) in &data.streams {
                if glob(pattern, stream) {
                    out.push(backing.clone());
                }
            }
        } else if let Some(backing) = data.streams.get(part) {
            out.push(backing.clone());
        } else if data.indices.contains_key(part) {
            out.push(part.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

fn error_body(status: u16, kind: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason,
        },
        "status": status,
    })
}

fn reply(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json; charset=UTF-8")
        .body(body.to_string())
}

fn not_found(index: &str) -> HttpResponse {
    reply(
        404,
        &error_body(
            404,
            "index_not_found_exception",
            &format!("no such index [{index}]"),
        ),
    )
}

async fn handle(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let elasticsearch = state.options.elasticsearch;
    let mut response = route(request, body, state).await;
    if elasticsearch {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-elastic-product"),
            actix_web::http::header::HeaderValue::from_static("Elasticsearch"),
        );
    }
    response
}

async fn route(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    {
        let mut seen = lock(&state.seen);
        if seen.len() < SEEN_MAX {
            seen.push(Seen {
                method: request.method().to_string(),
                uri: request.uri().to_string(),
                headers: request
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
            });
        }
    }
    let method = request.method().as_str().to_string();
    let query: HashMap<String, String> =
        web::Query::<HashMap<String, String>>::from_query(request.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let segments: Vec<String> = request
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET" | "HEAD", []) if state.options.elasticsearch => reply(
            200,
            &json!({
                "name": "falconer-test-node",
                "cluster_name": "falconer-test",
                "version": {"number": "8.15.0", "build_flavor": "default",
                            "minimum_wire_compatibility_version": "7.17.0"},
                "tagline": "You Know, for Search",
            }),
        ),
        ("GET" | "HEAD", []) => reply(
            200,
            &json!({
                "name": "falconer-test-node",
                "cluster_name": "falconer-test",
                "version": {"distribution": "opensearch", "number": "2.19.0"},
                "tagline": "The OpenSearch Project: https://opensearch.org/",
            }),
        ),
        ("GET", ["_test", "stats"]) => reply(200, &json!(stats(&lock(&state.data)))),
        ("POST" | "PUT", ["_bulk"]) => bulk(&state, None, &body, &query).await,
        ("POST" | "PUT", [index, "_bulk"]) => bulk(&state, Some(index), &body, &query).await,
        ("PUT" | "POST", ["_index_template", name]) => {
            put_template(&state, name, &body, state.options.elasticsearch)
        }
        ("GET", ["_index_template", name]) => match lock(&state.data).templates.get(*name) {
            Some(t) => reply(
                200,
                &json!({"index_templates": [{"name": name, "index_template": t}]}),
            ),
            None => reply(
                404,
                &error_body(
                    404,
                    "resource_not_found_exception",
                    &format!("index template matching [{name}] not found"),
                ),
            ),
        },
        ("POST" | "GET", ["_refresh"]) => refresh(&state, "_all"),
        ("POST" | "GET", [index, "_refresh"]) => refresh(&state, index),
        ("GET" | "POST", [index, "_count"]) => count(&state, index, &body),
        ("GET" | "POST", ["_count"]) => count(&state, "_all", &body),
        ("GET" | "POST", [index, "_search"]) => search(&state, index, &body, &query),
        ("GET" | "POST", ["_search"]) => search(&state, "_all", &body, &query),
        ("GET", [index, "_doc", id]) => get_doc(&state, index, id),
        ("PUT", [index]) if !index.starts_with('_') => create_index(&state, index),
        ("GET" | "HEAD", [index]) if !index.starts_with('_') => {
            let data = lock(&state.data);
            let names = resolve(&data, index);
            if names.is_empty() {
                return not_found(index);
            }
            let out: serde_json::Map<String, Value> = names
                .into_iter()
                .map(|n| {
                    let index = data.indices.get(&n);
                    let template = index.and_then(|i| i.template.clone());
                    let stream = index.and_then(|i| i.data_stream.clone());
                    (
                        n,
                        json!({"data_stream": stream, "settings": {"index": {"template": template}}}),
                    )
                })
                .collect();
            reply(200, &Value::Object(out))
        }
        _ => reply(
            400,
            &error_body(
                400,
                "illegal_argument_exception",
                &format!(
                    "the test server does not implement {} {}",
                    method,
                    request.path()
                ),
            ),
        ),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first field of `properties` (recursively) whose `type` is `kind`.
fn field_of_type(properties: &Value, kind: &str) -> Option<String> {
    let properties = properties.as_object()?;
    for (name, mapping) in properties {
        if mapping["type"] == kind {
            return Some(name.clone());
        }
        if let Some(inner) = field_of_type(&mapping["properties"], kind) {
            return Some(format!("{name}.{inner}"));
        }
    }
    None
}

fn put_template(state: &State, name: &str, body: &[u8], elasticsearch: bool) -> HttpResponse {
    let template: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(t)) => Value::Object(t),
        _ => {
            return reply(
                400,
                &error_body(
                    400,
                    "parse_exception",
                    "request body is required and must be an object",
                ),
            );
        }
    };
    let patterns_ok = template["index_patterns"]
        .as_array()
        .is_some_and(|p| !p.is_empty() && p.iter().all(Value::is_string))
        || template["index_patterns"].is_string();
    if !patterns_ok {
        return reply(
            400,
            &error_body(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index patterns are missing;",
            ),
        );
    }
    // Each product's own flat type, unknown to the other.
    let foreign = if elasticsearch {
        "flat_object"
    } else {
        "flattened"
    };
    if let Some(field) = field_of_type(&template["template"]["mappings"]["properties"], foreign) {
        return reply(
            400,
            &error_body(
                400,
                "mapper_parsing_exception",
                &format!(
                    "Failed to parse mapping: No handler for type [{foreign}] declared on field [{field}]"
                ),
            ),
        );
    }
    lock(&state.data)
        .templates
        .insert(name.to_string(), template);
    reply(200, &json!({"acknowledged": true}))
}

/// The template whose patterns match `index`, highest priority first.
fn matching_template(data: &Data, index: &str) -> Option<(String, bool)> {
    let mut best: Option<(i64, String, bool)> = None;
    for (name, t) in &data.templates {
        let patterns: Vec<&str> = match &t["index_patterns"] {
            Value::String(p) => vec![p.as_str()],
            Value::Array(ps) => ps.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if patterns.iter().any(|p| glob(p, index)) {
            let priority = t["priority"].as_i64().unwrap_or(0);
            if best.as_ref().is_none_or(|(p, _, _)| priority > *p) {
                best = Some((priority, name.clone(), t.get("data_stream").is_some()));
            }
        }
    }
    best.map(|(_, name, stream)| (name, stream))
}

fn create_index(state: &State, index: &str) -> HttpResponse {
    let mut data = lock(&state.data);
    if data.indices.contains_key(index) || data.streams.contains_key(index) {
        return reply(
            400,
            &error_body(
                400,
                "resource_already_exists_exception",
                &format!("index [{index}] already exists"),
            ),
        );
    }
    let template = matching_template(&data, index).map(|(name, _)| name);
    data.indices.insert(
        index.to_string(),
        Index {
            template,
            ..Index::default()
        },
    );
    reply(
        200,
        &json!({"acknowledged": true, "shards_acknowledged": true, "index": index}),
    )
}

fn refresh(state: &State, target: &str) -> HttpResponse {
    let mut data = lock(&state.data);
    let names = resolve(&data, target);
    if names.is_empty() && !(target == "_all" || target.contains('*')) {
        return not_found(target);
    }
    for name in &names {
        if let Some(index) = data.indices.get_mut(name) {
            index.refresh();
        }
    }
    let n = names.len();
    reply(
        200,
        &json!({"_shards": {"total": n * 2, "successful": n, "failed": 0}}),
    )
}

/// What a query selects: everything, some ids, or a top-level field's value.
enum Query {
    All,
    Ids(Vec<String>),
    Term(String, Value),
}

fn parse_query(body: &[u8]) -> Result<Query, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Query::All);
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let query = &body["query"];
    if query.is_null() || query.get("match_all").is_some() {
        return Ok(Query::All);
    }
    if let Some(values) = query["ids"]["values"].as_array() {
        return Ok(Query::Ids(
            values
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        ));
    }
    if let Some(term) = query["term"].as_object()
        && let Some((field, value)) = term.iter().next()
    {
        let value = value.get("value").unwrap_or(value).clone();
        return Ok(Query::Term(field.clone(), value));
    }
    Err("the test server understands match_all, ids and term queries only".into())
}

fn matches(query: &Query, id: &str, source: Option<&RawValue>) -> bool {
    match query {
        Query::All => true,
        Query::Ids(ids) => ids.iter().any(|i| i == id),
        Query::Term(field, value) => source
            .and_then(|s| serde_json::from_str::<Value>(s.get()).ok())
            .is_some_and(|s| &s[field.as_str()] == value),
    }
}

fn count(state: &State, target: &str, body: &[u8]) -> HttpResponse {
    let query = match parse_query(body) {
        Ok(q) => q,
        Err(e) => return reply(400, &error_body(400, "parsing_exception", &e)),
    };
    let data = lock(&state.data);
    let names = resolve(&data, target);
    if names.is_empty() && !(target == "_all" || target.contains('*')) {
        return not_found(target);
    }
    let mut n = 0u64;
    for name in &names {
        if let Some(index) = data.indices.get(name) {
            n += index
                .docs
                .iter()
                .filter(|(id, d)| {
                    d.visible
                        .as_ref()
                        .is_some_and(|(s, _)| matches(&query, id, s.as_deref()))
                })
                .count() as u64;
        }
    }
    reply(
        200,
        &json!({"count": n, "_shards": {"total": names.len(), "successful": names.len(), "skipped": 0, "failed": 0}}),
    )
}

fn search(
    state: &State,
    target: &str,
    body: &[u8],
    params: &HashMap<String, String>,
) -> HttpResponse {
    let query = match parse_query(body) {
        Ok(q) => q,
        Err(e) => return reply(400, &error_body(400, "parsing_exception", &e)),
    };
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let size = params
        .get("size")
        .and_then(|s| s.parse().ok())
        .or_else(|| parsed["size"].as_u64())
        .unwrap_or(10) as usize;
    let from = params
        .get("from")
        .and_then(|s| s.parse().ok())
        .or_else(|| parsed["from"].as_u64())
        .unwrap_or(0) as usize;
    let data = lock(&state.data);
    let names = resolve(&data, target);
    if names.is_empty() && !(target == "_all" || target.contains('*')) {
        return not_found(target);
    }
    let mut hits = Vec::new();
    for name in &names {
        if let Some(index) = data.indices.get(name) {
            for id in &index.order {
                if let Some(doc) = index.docs.get(id)
                    && let Some((source, version)) = &doc.visible
                    && matches(&query, id, source.as_deref())
                {
                    hits.push((doc.seq_no, name, id, *version, source.as_deref()));
                }
            }
        }
    }
    hits.sort_by_key(|h| h.0);
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(from)
        .take(size)
        .map(|(_, index, id, version, source)| {
            let source = source
                .and_then(|s| serde_json::from_str::<Value>(s.get()).ok())
                .unwrap_or(Value::Null);
            json!({"_index": index, "_id": id, "_version": version, "_score": 1.0, "_source": source})
        })
        .collect();
    reply(
        200,
        &json!({
            "took": 1,
            "timed_out": false,
            "_shards": {"total": names.len(), "successful": names.len(), "skipped": 0, "failed": 0},
            "hits": {"total": {"value": total, "relation": "eq"}, "max_score": 1.0, "hits": page},
        }),
    )
}

fn get_doc(state: &State, target: &str, id: &str) -> HttpResponse {
    let data = lock(&state.data);
    let names = resolve(&data, target);
    if names.is_empty() {
        return not_found(target);
    }
    // A realtime get: the latest write, refreshed or not.
    for name in &names {
        if let Some(doc) = data.indices.get(name).and_then(|i| i.docs.get(id)) {
            let source = doc
                .source
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s.get()).ok())
                .unwrap_or(Value::Null);
            return reply(
                200,
                &json!({"_index": name, "_id": id, "_version": doc.version, "_seq_no": doc.seq_no,
                        "_primary_term": 1, "found": true, "_source": source}),
            );
        }
    }
    reply(
        404,
        &json!({"_index": names.first(), "_id": id, "found": false}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionLine {
    index: Option<Meta>,
    create: Option<Meta>,
    delete: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<String>,
}

/// Just enough of a source to check that it is JSON and has `@timestamp`.
#[derive(Deserialize)]
struct SourceCheck {
    #[serde(rename = "@timestamp")]
    timestamp: Option<IgnoredAny>,
}

/// One `_bulk` item's answer.
struct ItemReply {
    action: &'static str,
    index: String,
    id: String,
    status: u16,
    outcome: Result<(&'static str, u64, u64), (String, String)>,
}

impl ItemReply {
    /// Appends `{"<action>":{...}}`; written by hand, as the JSON of thousands of items per
    /// request would otherwise cost the benchmark more than the hub's own work.
    fn write_json(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, s: &str| {
            let _ = serde_json::to_writer(&mut *out, s);
        };
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.action.as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        string(out, &self.index);
        out.extend_from_slice(b",\"_id\":");
        string(out, &self.id);
        match &self.outcome {
            Ok((result, version, seq_no)) => {
                let _ = write!(
                    out,
                    ",\"_version\":{version},\"result\":\"{result}\",\"_shards\":{{\"total\":2,\
                     \"successful\":1,\"failed\":0}},\"_seq_no\":{seq_no},\"_primary_term\":1"
                );
            }
            Err((kind, reason)) => {
                out.extend_from_slice(b",\"error\":{\"type\":");
                string(out, kind);
                out.extend_from_slice(b",\"reason\":");
                string(out, reason);
                out.extend_from_slice(b",\"index\":");
                string(out, &self.index);
                out.extend_from_slice(b",\"shard\":\"0\",\"index_uuid\":\"falconer-test\"}");
            }
        }
        let _ = write!(out, ",\"status\":{}}}}}", self.status);
    }
}

fn fault_error(
    status: u16,
    index: &str,
    id: &str,
    field: &str,
    elasticsearch: bool,
) -> (String, String) {
    match status {
        400 => (
            "mapper_parsing_exception".into(),
            format!(
                "failed to parse field [{field}] of type [long] in document with id '{id}'. \
                 Preview of field's value: 'not a number'"
            ),
        ),
        429 => (
            if elasticsearch {
                "es_rejected_execution_exception"
            } else {
                "rejected_execution_exception"
            }
            .into(),
            format!(
                "rejected execution of primary operation on [{index}][0]: write thread pool \
                 queue is full"
            ),
        ),
        409 => (
            "version_conflict_engine_exception".into(),
            format!("[{id}]: version conflict, document already exists (current version [1])"),
        ),
        s if s >= 500 => (
            "unavailable_shards_exception".into(),
            format!("[{index}][0] primary shard is not active Timeout: [1m]"),
        ),
        _ => (
            "illegal_argument_exception".into(),
            format!("injected failure for document [{id}]"),
        ),
    }
}

async fn bulk(
    state: &State,
    path_index: Option<&str>,
    body: &[u8],
    params: &HashMap<String, String>,
) -> HttpResponse {
    let started = Instant::now();
    let faults = lock(&state.faults).clone();
    {
        let mut data = lock(&state.data);
        data.stats.bulk_requests += 1;
        data.first_bulk.get_or_insert(started);
    }
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if faults
        .max_content_length
        .is_some_and(|max| body.len() > max)
    {
        lock(&state.data).stats.bulk_refused += 1;
        return HttpResponse::build(StatusCode::PAYLOAD_TOO_LARGE).finish();
    }
    if let Some(status) = faults.bulk_status {
        lock(&state.data).stats.bulk_refused += 1;
        let (kind, reason) = match status {
            429 if state.options.elasticsearch => (
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, \
                 replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, \
                 max_coordinating_and_primary_bytes=0]",
            ),
            429 => (
                "rejected_execution_exception",
                "rejected execution of coordinating operation: write thread pool queue is full",
            ),
            _ => (
                "cluster_block_exception",
                "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
            ),
        };
        return reply(status, &error_body(status, kind, reason));
    }
    if body.is_empty() {
        return reply(
            400,
            &error_body(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;",
            ),
        );
    }
    if body.last() != Some(&b'\n') {
        return reply(
            400,
            &error_body(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            ),
        );
    }
    // Parse every line first: a malformed action line fails the whole request.
    let mut lines = body[..body.len() - 1].split(|b| *b == b'\n').enumerate();
    let mut ops: Vec<(&'static str, Meta, Option<&[u8]>)> = Vec::new();
    while let Some((n, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (action, meta) = match serde_json::from_slice::<ActionLine>(line) {
            Ok(ActionLine {
                index: Some(meta),
                create: None,
                delete: None,
            }) => ("index", meta),
            Ok(ActionLine {
                index: None,
                create: Some(meta),
                delete: None,
            }) => ("create", meta),
            Ok(ActionLine {
                index: None,
                create: None,
                delete: Some(meta),
            }) => ("delete", meta),
            Ok(_) => {
                return reply(
                    400,
                    &error_body(
                        400,
                        "illegal_argument_exception",
                        &format!(
                            "Malformed action/metadata line [{}], expected exactly one action",
                            n + 1
                        ),
                    ),
                );
            }
            Err(e) => {
                return reply(
                    400,
                    &error_body(
                        400,
                        "illegal_argument_exception",
                        &format!(
                            "Malformed action/metadata line [{}] (actions: create, delete, \
                             index; the test server has no update): {e}",
                            n + 1
                        ),
                    ),
                );
            }
        };
        let source = if action == "delete" {
            None
        } else {
            match lines.next() {
                Some((_, source)) => Some(source),
                None => {
                    return reply(
                        400,
                        &error_body(
                            400,
                            "illegal_argument_exception",
                            "The bulk request must be terminated by a newline [\\n]",
                        ),
                    );
                }
            }
        };
        ops.push((action, meta, source));
    }
    let refresh = matches!(
        params.get("refresh").map(String::as_str),
        Some("" | "true" | "wait_for")
    );
    let mut data = lock(&state.data);
    let mut items = Vec::with_capacity(ops.len() * 200);
    let mut errors = false;
    let mut touched = Vec::new();
    for (action, meta, source) in ops {
        let item = write(
            &mut data,
            &faults,
            &state.options,
            action,
            meta,
            source,
            path_index,
        );
        if item.outcome.is_err() {
            errors = true;
            data.stats.item_errors += 1;
        } else {
            touched.push(item.index.clone());
        }
        if !items.is_empty() {
            items.push(b',');
        }
        item.write_json(&mut items);
    }
    if refresh {
        touched.sort();
        touched.dedup();
        for name in touched {
            if let Some(index) = data.indices.get_mut(&name) {
                index.refresh();
            }
        }
    }
    if let Some(first) = data.first_bulk {
        data.stats.seconds = first.elapsed().as_secs_f64();
    }
    drop(data);
    let mut body = Vec::with_capacity(items.len() + 64);
    let _ = write!(
        body,
        "{{\"took\":{},\"errors\":{errors},\"items\":[",
        started.elapsed().as_millis()
    );
    body.extend_from_slice(&items);
    body.extend_from_slice(b"]}");
    HttpResponse::Ok()
        .content_type("application/json; charset=UTF-8")
        .body(body)
}

fn write(
    data: &mut Data,
    faults: &Faults,
    options: &Options,
    action: &'static str,
    meta: Meta,
    source: Option<&[u8]>,
    path_index: Option<&str>,
) -> ItemReply {
    let target = meta
        .index
        .or_else(|| path_index.map(String::from))
        .unwrap_or_default();
    let id = meta.id.unwrap_or_else(|| {
        data.generated_ids += 1;
        format!("gen-{:016x}", data.generated_ids)
    });
    let fail = |index: &str, id: &str, status: u16, kind: &str, reason: String| ItemReply {
        action,
        index: index.to_string(),
        id: id.to_string(),
        status,
        outcome: Err((kind.to_string(), reason)),
    };
    if target.is_empty() {
        return fail(
            "",
            &id,
            400,
            "action_request_validation_exception",
            "index is missing".into(),
        );
    }
    if target.bytes().any(|b| b.is_ascii_uppercase()) || target.starts_with(['_', '-', '+']) {
        return fail(
            &target,
            &id,
            400,
            "invalid_index_name_exception",
            format!(
                "Invalid index name [{target}], must be lowercase and not start with '_', '-', '+'"
            ),
        );
    }
    // Injected per-document failures.
    if !faults.items.is_empty() {
        let parsed: Value = source
            .and_then(|s| serde_json::from_slice(s).ok())
            .unwrap_or(Value::Null);
        for fault in &faults.items {
            let hit = if fault.field == "_id" {
                id == fault.value
            } else {
                parsed[fault.field.as_str()].as_str() == Some(fault.value.as_str())
            };
            if hit {
                let attempts = data.attempts.entry(id.clone()).or_insert(0);
                *attempts = attempts.saturating_add(1);
                if *attempts <= fault.attempts {
                    let (kind, reason) = fault_error(
                        fault.status,
                        &target,
                        &id,
                        &fault.field,
                        options.elasticsearch,
                    );
                    return fail(&target, &id, fault.status, &kind, reason);
                }
                break;
            }
        }
    }
    // Data streams: created on first write when a template with `data_stream` matches.
    let stream_template = if data.streams.contains_key(&target) {
        Some(true)
    } else if data.indices.contains_key(&target) {
        None
    } else {
        matching_template(data, &target).map(|(_, stream)| stream)
    };
    let is_stream = stream_template == Some(true);
    if is_stream && action != "create" {
        return fail(
            &target,
            &id,
            400,
            "illegal_argument_exception",
            format!(
                "only write ops with an op_type of create are allowed in data streams [{target}]"
            ),
        );
    }
    let source = match source {
        Some(s) => match serde_json::from_slice::<SourceCheck>(s) {
            Ok(check) => {
                if is_stream && check.timestamp.is_none() {
                    return fail(
                        &target,
                        &id,
                        400,
                        "mapper_parsing_exception",
                        "data stream timestamp field [@timestamp] is missing".into(),
                    );
                }
                Some(s)
            }
            Err(e) => {
                return fail(
                    &target,
                    &id,
                    400,
                    "mapper_parsing_exception",
                    format!("failed to parse: {e}"),
                );
            }
        },
        None => None,
    };
    let index_name = if is_stream {
        data.streams
            .entry(target.clone())
            .or_insert_with(|| format!(".ds-{target}-000001"))
            .clone()
    } else {
        target.clone()
    };
    if !data.indices.contains_key(&index_name) {
        let template = matching_template(data, &target).map(|(name, _)| name);
        data.indices.insert(
            index_name.clone(),
            Index {
                template,
                data_stream: is_stream.then(|| target.clone()),
                ..Index::default()
            },
        );
    }
    data.seq_no += 1;
    let seq_no = data.seq_no;
    let Some(index) = data.indices.get_mut(&index_name) else {
        return fail(
            &target,
            &id,
            500,
            "internal_server_error",
            "index vanished".into(),
        );
    };
    let reply = |status: u16, result: &'static str, version: u64| ItemReply {
        action,
        index: index_name.clone(),
        id: id.clone(),
        status,
        outcome: Ok((result, version, seq_no)),
    };
    if action == "delete" {
        return match index.docs.remove(&id) {
            Some(doc) => {
                index.dirty.push(id.clone());
                reply(200, "deleted", doc.version + 1)
            }
            None => ItemReply {
                action,
                index: index_name.clone(),
                id: id.clone(),
                status: 404,
                outcome: Ok(("not_found", 1, seq_no)),
            },
        };
    }
    let kept = if options.keep_sources {
        source
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| RawValue::from_string(s.to_string()).ok())
    } else {
        None
    };
    let existing = index.docs.get_mut(&id);
    let result = match existing {
        Some(_) if action == "create" => {
            let (kind, reason) = fault_error(409, &index_name, &id, "", options.elasticsearch);
            return fail(&index_name, &id, 409, &kind, reason);
        }
        Some(doc) => {
            doc.version += 1;
            doc.seq_no = seq_no;
            doc.source = kept;
            index.dirty.push(id.clone());
            reply(200, "updated", doc.version)
        }
        None => {
            index.docs.insert(
                id.clone(),
                Doc {
                    source: kept,
                    version: 1,
                    seq_no,
                    visible: None,
                },
            );
            index.order.push(id.clone());
            index.dirty.push(id.clone());
            reply(201, "created", 1)
        }
    };
    data.stats.writes += 1;
    if result.status == 200 {
        data.stats.rewrites += 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_like_index_patterns() {
        assert!(glob("falconer-events-*", "falconer-events-2026.05.04"));
        assert!(glob("*", "x"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("falconer-*", "other"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
