//! Bearer tokens: separate scopes for ingest and query.

use crate::helpers::{Backend, Reply, TestApp, TestDb, alert, hub_config};
use crate::on_both_stores;
use falconer_hub::config::TokenHash;

async fn tokens_guard_each_api_separately(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.ingest_token_sha256 = vec![TokenHash::of("ingest-secret")];
    config.auth.query_token_sha256 = vec![TokenHash::of("query-secret")];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let body = alert("auth", "2026-05-04T10:00:00Z", "x").to_string();
    let post = |token: Option<&str>, path: &str| {
        let mut request = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let missing = post(None, "/ingest").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert_eq!(post(Some("wrong"), "/ingest").await.status, 401);
    assert_eq!(post(Some("query-secret"), "/ingest").await.status, 403);
    assert_eq!(post(Some("ingest-secret"), "/ingest").await.status, 202);
    assert_eq!(post(Some("ingest-secret"), "/").await.status, 202);
    // Falco's http_output cannot send headers: the token may ride in the URL for ingest.
    assert_eq!(post(None, "/ingest?token=ingest-secret").await.status, 202);
    assert_eq!(post(None, "/ingest?token=nope").await.status, 401);

    let get = |token: &'static str| {
        let request = app.client.get(app.url("/api/v1/events")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(app.get("/api/v1/events").await.status, 401);
    assert_eq!(app.get("/api/v1/clusters").await.status, 401);
    assert_eq!(get("ingest-secret").await, 403);
    assert_eq!(get("query-secret").await, 200);
    // The accepted posts were one alert (later ones are duplicates); refused ones stored nothing.
    assert_eq!(db.count_events().await, 1);
    // Operations endpoints stay open for probes and scrapers.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/metrics").await.status, 200);
    app.stop().await;
}

on_both_stores!(tokens_guard_each_api_separately);
