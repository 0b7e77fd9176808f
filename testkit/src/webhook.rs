//! A webhook receiver for delivery tests: records what it receives and can be told to fail.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a body that is not JSON (a rendered text template) as a string.
    pub body: serde_json::Value,
    /// The body's bytes, as text.
    pub raw: String,
}

#[derive(Default)]
pub struct State {
    pub received: Mutex<Vec<Received>>,
    /// Answer 503 to everything while set.
    pub down: AtomicBool,
    /// Answer 400 to events whose rule is this while set.
    pub refuse_rule: Mutex<Option<String>>,
    /// Ids of every event received, in order (kept even when bodies are not).
    pub ids: Mutex<Vec<String>>,
    /// Big runs keep only ids.
    pub ids_only: AtomicBool,
    /// Answer `307 Temporary Redirect` to this URL while set.
    pub redirect_to: Mutex<Option<String>>,
    /// Answer this many requests with `429 Too Many Requests` and `Retry-After` (seconds),
    /// as Slack and most chat and paging APIs do.
    pub rate_limited: Mutex<Option<(u32, u64)>>,
    /// Answer every request with this status and body while set (e.g. Slack's
    /// `400 invalid_payload`).
    pub answer: Mutex<Option<(u16, String)>>,
}

pub struct WebhookServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().body("down for maintenance");
    }
    {
        let mut limited = state.rate_limited.lock().unwrap();
        if let Some((left, seconds)) = limited.as_mut()
            && *left > 0
        {
            *left -= 1;
            return HttpResponse::TooManyRequests()
                .insert_header(("retry-after", seconds.to_string()))
                .body("rate_limited");
        }
    }
    if let Some((status, text)) = state.answer.lock().unwrap().clone() {
        let status = actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        return HttpResponse::build(status).body(text);
    }
    if let Some(location) = state.redirect_to.lock().unwrap().clone() {
        return HttpResponse::TemporaryRedirect()
            .insert_header(("location", location))
            .body("moved");
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_slice::<serde_json::Value>(&body)
        .unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
    let refuse = state.refuse_rule.lock().unwrap().clone();
    if let Some(rule) = refuse {
        let rules: Vec<&serde_json::Value> = match &body {
            serde_json::Value::Array(items) => items.iter().map(|e| &e["rule"]).collect(),
            one => vec![&one["rule"]],
        };
        if rules.iter().any(|r| r.as_str() == Some(rule.as_str())) {
            return HttpResponse::BadRequest().body(format!("rule {rule} is not welcome"));
        }
    }
    {
        let mut ids = state.ids.lock().unwrap();
        match &body {
            serde_json::Value::Array(items) => ids.extend(
                items
                    .iter()
                    .map(|e| e["id"].as_str().unwrap_or("").to_string()),
            ),
            one => ids.push(one["id"].as_str().unwrap_or("").to_string()),
        }
    }
    if state.ids_only.load(Ordering::SeqCst) {
        return HttpResponse::Ok().finish();
    }
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    state.received.lock().unwrap().push(Received {
        method: request.method().to_string(),
        headers,
        body,
        raw,
    });
    HttpResponse::Ok().finish()
}

impl WebhookServer {
    pub fn start() -> WebhookServer {
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(
                    web::route()
                        .guard(
                            actix_web::guard::Any(actix_web::guard::Post())
                                .or(actix_web::guard::Put()),
                        )
                        .to(receive),
                )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind webhook server");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        WebhookServer {
            addr,
            state,
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every event received so far, in order (batches flattened).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.state
            .received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| match &r.body {
                serde_json::Value::Array(items) => items.clone(),
                one => vec![one.clone()],
            })
            .collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.state.ids.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}
