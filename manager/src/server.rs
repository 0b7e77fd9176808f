//! The manager's HTTP endpoints for the kubelet and Prometheus: `/healthz` (the process is
//! alive, leader or not) and `/metrics`.

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus_client::registry::Registry;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn metrics(registry: web::Data<Arc<Registry>>) -> HttpResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(error) => {
            HttpResponse::InternalServerError().body(format!("encoding metrics: {error}"))
        }
    }
}

/// Binds `listen` and returns the server (to be awaited or spawned) and the bound address.
pub fn start(listen: SocketAddr, registry: Registry) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let registry = web::Data::new(Arc::new(registry));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(registry.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    // The manager handles SIGTERM itself (leader lease release, controller shutdown).
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, addr))
}
