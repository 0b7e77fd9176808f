//! The endpoints of `falconer analyst` for the kubelet and Prometheus: `/healthz` (the
//! process answers), `/readyz` (the store answers) and `/metrics`.

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use falconer_store::Store;
use prometheus_client::registry::Registry;
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

struct State {
    store: Store,
    registry: Registry,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<Arc<State>>) -> HttpResponse {
    let store = state.store.database();
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready", "store": store})),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "store": store, "error": e.to_string()})),
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable", "store": store, "error": "the store did not answer within 2 s"
        })),
    }
}

async fn metrics(state: web::Data<Arc<State>>) -> HttpResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(error) => HttpResponse::InternalServerError()
            .json(json!({"error": format!("encoding metrics: {error}")})),
    }
}

/// Binds `listen` and returns the server (to be awaited or spawned) and the bound address.
pub fn start(
    listen: SocketAddr,
    store: Store,
    registry: Registry,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let state = web::Data::new(Arc::new(State { store, registry }));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .listen(listener)?
    .run();
    Ok((server, addr))
}
