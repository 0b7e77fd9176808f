//! A scripted Kubernetes API server on kube-rs's mock service (there is no cluster on the
//! build machine; see shared/reference/toolchain.md): [`ApiServer::start`] gives a real
//! `kube::Client` whose requests go to the test instead of a cluster. It works on HTTP
//! requests and JSON values, not on Falconer's types, so the crates whose tests use it need
//! not be its dependencies.
//!
//! - [`ApiServer::run`] plays a script: each request must be the next expected one (method,
//!   path, query, body), like controller-rs's `ApiServerVerifier`, and gets the step's answer
//!   (a JSON body, or the request body echoed, changed or not, as the API server returns an
//!   applied object). A request that never comes fails the test after a few seconds instead
//!   of hanging it; a request after the script ended fails the client call, because the mock
//!   service is gone.
//! - [`ApiServer::route`] answers by path from per-path queues and keeps requests beyond the
//!   queue open without an answer, which is what an idle watch looks like. For code that
//!   polls several watches at once, whose request order is not fixed.
//! - [`status`] is the API server's error body, [`watch_lines`] its watch stream, and
//!   [`schema_errors`] checks a JSON object against a CRD's structural schema.
//! - [`POLICY_REPORT_CRD`] and [`CLUSTER_POLICY_REPORT_CRD`] are the official wgpolicyk8s.io
//!   CRDs (`testkit/crds/`, source and commit in each file), for the `policyreport` sink.

use ::kube::Client;
use ::kube::client::Body;
use http::{Method, Request, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Check = Box<dyn FnOnce(&Value) + Send>;

/// How long one expected request may take to arrive before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ApiServer {
    handle: Handle,
}

/// One expected request and its answer.
pub struct Step {
    method: Method,
    path: String,
    query: Vec<String>,
    headers: Vec<(String, String)>,
    check: Option<Check>,
    reply: Reply,
}

enum Reply {
    Json(u16, Value),
    /// The request body, as the API server returns a created or applied object.
    Echo(u16),
    /// The request body, changed by a function (e.g. adding a status or a resourceVersion).
    EchoWith(u16, Box<dyn FnOnce(Value) -> Value + Send>),
}

pub fn expect(method: Method, path: &str) -> Step {
    Step {
        method,
        path: path.into(),
        query: Vec::new(),
        headers: Vec::new(),
        check: None,
        reply: Reply::Json(200, json!({})),
    }
}

impl Step {
    /// The query string must contain this `key=value` (percent-encoded as sent).
    pub fn query(mut self, part: &str) -> Step {
        self.query.push(part.into());
        self
    }

    /// The request must carry this header with this value (e.g. `content-type`).
    pub fn header(mut self, name: &str, value: &str) -> Step {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The JSON body must be exactly this.
    pub fn body(self, expected: Value) -> Step {
        self.check(move |body| assert_eq!(body, &expected, "request body"))
    }

    /// Runs assertions on the JSON body.
    pub fn check(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Step {
        self.check = Some(Box::new(check));
        self
    }

    pub fn reply(mut self, status: u16, body: Value) -> Step {
        self.reply = Reply::Json(status, body);
        self
    }

    /// Answers with the request body, as the API server returns a created or applied object.
    pub fn echo(mut self, status: u16) -> Step {
        self.reply = Reply::Echo(status);
        self
    }

    /// Answers with the request body changed by `change`, e.g. with the status or
    /// `resourceVersion` the API server would add.
    pub fn echo_with(
        mut self,
        status: u16,
        change: impl FnOnce(Value) -> Value + Send + 'static,
    ) -> Step {
        self.reply = Reply::EchoWith(status, Box::new(change));
        self
    }
}

/// The running script; `done` waits for every step to have happened.
pub struct Script(JoinHandle<()>);

impl Script {
    pub async fn done(self) {
        tokio::time::timeout(STEP_TIMEOUT * 4, self.0)
            .await
            .expect("the scripted API server did not finish")
            .expect("the scripted API server failed (see the panic above)");
    }
}

async fn json_body(request: Request<Body>) -> Value {
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("request body is JSON")
    }
}

fn response(status: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("response")
}

/// A path's scripted answers for `ApiServer::route`: a status and a raw body (a JSON object,
/// or watch events as JSON lines).
pub type Route = VecDeque<(u16, Vec<u8>)>;

/// Watch events as the API server streams them, one JSON object per line.
pub fn watch_lines(events: &[(&str, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, object) in events {
        body.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON"));
        body.push(b'\n');
    }
    body
}

impl ApiServer {
    pub fn start() -> (Client, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), ApiServer { handle })
    }

    pub fn run(mut self, steps: Vec<Step>) -> Script {
        Script(tokio::spawn(async move {
            for (n, step) in steps.into_iter().enumerate() {
                let what = format!("step {}: {} {}", n + 1, step.method, step.path);
                let (request, send) =
                    tokio::time::timeout(STEP_TIMEOUT, self.handle.next_request())
                        .await
                        .unwrap_or_else(|_| panic!("{what}: no request came"))
                        .unwrap_or_else(|| panic!("{what}: the client went away"));
                assert_eq!(request.method(), step.method, "{what}: method");
                assert_eq!(request.uri().path(), step.path, "{what}: path");
                let query = request.uri().query().unwrap_or_default().to_owned();
                for part in &step.query {
                    assert!(
                        query.contains(part.as_str()),
                        "{what}: query `{query}` lacks `{part}`"
                    );
                }
                for (name, value) in &step.headers {
                    let sent = request
                        .headers()
                        .get(name.as_str())
                        .map(|v| v.to_str().unwrap_or("?"));
                    assert_eq!(sent, Some(value.as_str()), "{what}: header {name}");
                }
                let body = json_body(request).await;
                if let Some(check) = step.check {
                    check(&body);
                }
                let (status, reply) = match step.reply {
                    Reply::Json(status, value) => (status, value),
                    Reply::Echo(status) => (status, body),
                    Reply::EchoWith(status, change) => (status, change(body)),
                };
                let reply = serde_json::to_vec(&reply).expect("JSON");
                send.send_response(response(status, reply));
            }
        }))
    }

    /// Answers each request from the queue of its key: the path, plus ` watch` for watch
    /// requests. Requests with an empty queue stay open, unanswered, until the test ends.
    /// Every request's path and query is logged in `Routed::seen`.
    pub fn route(mut self, mut routes: BTreeMap<String, Route>) -> Routed {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Some((request, send)) = self.handle.next_request().await {
                if let Ok(mut log) = log.lock() {
                    log.push(request.uri().to_string());
                }
                let watch = request
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
                let key = format!(
                    "{}{}",
                    request.uri().path(),
                    if watch { " watch" } else { "" }
                );
                match routes.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some((status, body)) => send.send_response(response(status, body)),
                    None => open.push(send),
                }
            }
        });
        Routed { task, seen }
    }
}

/// A running `ApiServer::route`.
pub struct Routed {
    pub task: JoinHandle<()>,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Routed {
    /// The requests so far, as path and query.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `meta/v1 Status` error body, as the API server sends with 4xx/5xx.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// The structural-schema checks that matter here: types, enums, required keys, int32 ranges,
/// the values of maps (`additionalProperties`), and no key the schema does not declare (the
/// API server would prune it silently). Objects whose schema lists no properties
/// (`metadata`, `status`) are not looked into.
pub fn schema_errors(value: &Value, schema: &Value, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.is_null() && schema["nullable"] == true {
        return errors;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let kind = schema["type"].as_str().unwrap_or_default();
    let type_ok = match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path}: not a {kind}"));
        return errors;
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                errors.push(format!("{path}.{key}: required"));
            }
        }
        for (key, child) in object {
            match properties.get(key) {
                Some(child_schema) => {
                    errors.extend(schema_errors(child, child_schema, &format!("{path}.{key}")))
                }
                None => errors.push(format!("{path}.{key}: unknown field, would be pruned")),
            }
        }
    }
    if let (Some(object), Some(values)) = (value.as_object(), schema.get("additionalProperties"))
        && values.is_object()
        && schema.get("properties").is_none()
    {
        for (key, child) in object {
            errors.extend(schema_errors(child, values, &format!("{path}.{key}")));
        }
    }
    if kind == "integer"
        && schema["format"] == "int32"
        && value.as_i64().is_none_or(|n| i32::try_from(n).is_err())
    {
        errors.push(format!("{path}: {value} is not an int32"));
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (n, item) in items.iter().enumerate() {
            errors.extend(schema_errors(item, item_schema, &format!("{path}[{n}]")));
        }
    }
    errors
}

/// The `wgpolicyk8s.io` PolicyReport CRD (kubernetes-sigs/wg-policy-prototypes, served
/// versions v1alpha1, v1alpha2, v1beta1), as the `policyreport` sink's objects must match it.
pub const POLICY_REPORT_CRD: &str = include_str!("../crds/wgpolicyk8s.io_policyreports.yaml");
/// The `wgpolicyk8s.io` ClusterPolicyReport CRD, from the same commit.
pub const CLUSTER_POLICY_REPORT_CRD: &str =
    include_str!("../crds/wgpolicyk8s.io_clusterpolicyreports.yaml");
