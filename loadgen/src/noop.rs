//! The HTTP baseline: the same actix-web stack as the hub, answering 202 after reading and
//! parsing the JSON body, storing nothing. What the hub reaches relative to this is the
//! cost of everything beyond HTTP and JSON.

use actix_web::{App, HttpResponse, HttpServer, web};

async fn accept(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(items)) => {
            HttpResponse::Accepted().json(serde_json::json!({"accepted": items.len()}))
        }
        Ok(_) => HttpResponse::Accepted().json(serde_json::json!({"accepted": 1})),
        Err(e) => HttpResponse::BadRequest().json(serde_json::json!({"error": e.to_string()})),
    }
}

pub async fn serve(listen: std::net::SocketAddr) -> std::io::Result<()> {
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .default_service(web::post().to(accept))
    })
    .bind(listen)?
    .run()
    .await
}
