//! A scripted Kubernetes API server for tests (the `ApiServerVerifier` of kube-rs's
//! controller-rs): a `kube::Client` whose requests go to a task that checks each one against
//! the next expected step (method, path, query, body) and answers it. A request that never
//! comes fails the test after a few seconds instead of hanging it; a request nobody
//! expected fails the client call, because the script has ended.

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
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
    check: Option<Check>,
    reply: Reply,
}

enum Reply {
    Json(u16, Value),
    /// The request body, as the API server would return an applied object.
    Echo(u16),
    /// The request body, changed by a function (e.g. adding a status).
    EchoWith(u16, Box<dyn FnOnce(Value) -> Value + Send>),
}

pub fn expect(method: Method, path: &str) -> Step {
    Step {
        method,
        path: path.into(),
        query: Vec::new(),
        check: None,
        reply: Reply::Json(200, json!({})),
    }
}

impl Step {
    /// The query string must contain this `key=value` (as sent, percent-encoded).
    pub fn query(mut self, part: &str) -> Step {
        self.query.push(part.into());
        self
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

    pub fn reply_with_body(mut self, status: u16) -> Step {
        self.reply = Reply::Echo(status);
        self
    }

    pub fn reply_with(
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
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .expect("request body");
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("request body is JSON")
                };
                if let Some(check) = step.check {
                    check(&body);
                }
                let (status, reply) = match step.reply {
                    Reply::Json(status, value) => (status, value),
                    Reply::Echo(status) => (status, body),
                    Reply::EchoWith(status, change) => (status, change(body)),
                };
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).expect("JSON")))
                    .expect("response");
                send.send_response(response);
            }
        }))
    }
}

/// A `meta/v1 Status` error body, as the API server sends with 4xx/5xx.
pub fn status(code: u16, reason: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": format!("{reason} (scripted)"),
        "reason": reason,
        "code": code,
    })
}
