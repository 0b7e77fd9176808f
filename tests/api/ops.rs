//! Health, readiness, metrics, the OpenAPI document and the route table.

use crate::helpers::{Backend, TestApp, TestDb, alert};
use crate::on_both_stores;
use falconer_hub::routes::ROUTES;

async fn health_and_readiness_answer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    assert_eq!(app.get("/healthz").await.json()["status"], "ok");
    let ready = app.get("/readyz").await.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["store"],
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    );
    app.stop().await;
}

async fn metrics_count_received_accepted_rejected_and_commits(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let good = alert("m", "2026-05-04T10:00:00Z", "x");
    let body = serde_json::json!([good, good, {"rule": "bad"}]);
    assert_eq!(app.ingest(body.to_string()).await.status, 202);
    let text = app.get("/metrics").await.text;
    for line in [
        "falconer_ingest_events_received_total{source=\"falco\"} 3",
        "falconer_ingest_events_accepted_total{source=\"falco\"} 2",
        "falconer_ingest_events_duplicate_total{source=\"falco\"} 1",
        "falconer_ingest_events_rejected_total{source=\"falco\",reason=\"invalid\"} 1",
        "falconer_ingest_requests_total{status=\"202\"} 1",
        "falconer_store_commits_total{result=\"ok\"} 1",
        "falconer_store_commit_batch_events_count 1",
        "falconer_store_commit_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    app.stop().await;
}

async fn every_route_of_the_table_is_served_and_others_are_404_or_405(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    for (method, template, _) in ROUTES {
        let path = template.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let method: reqwest::Method = method.parse().unwrap();
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            status != 404 || template.contains('{'),
            "{method} {path}: 404"
        );
        assert_ne!(status, 405, "{method} {path}");
        // No route takes PATCH (`/` takes GET, POST and PUT, so none of them is "other").
        let other = reqwest::Method::PATCH;
        let response = app
            .client
            .request(other.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{other} {path}");
        assert!(response.headers().contains_key("allow"));
    }
    let missing = app.get("/nowhere").await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("/nowhere")
    );
    app.stop().await;
}

on_both_stores!(
    health_and_readiness_answer,
    metrics_count_received_accepted_rejected_and_commits,
    every_route_of_the_table_is_served_and_others_are_404_or_405,
);

#[tokio::test]
async fn with_metrics_listen_the_metrics_are_served_there_only_and_the_api_not_at_all() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut hub = crate::helpers::hub_config();
    hub.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = TestApp::spawn_with(&db, hub, db.store_config()).await;
    let metrics = app.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics, app.addr);

    let on_api = app.get("/metrics").await;
    assert_eq!(on_api.status, 404, "{}", on_api.text);
    assert!(
        on_api.text.contains("server.metrics_listen"),
        "{}",
        on_api.text
    );
    assert_eq!(app.get("/healthz").await.status, 200);

    let get = |path: &str| {
        let url = format!("http://{metrics}{path}");
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let scraped = get("/metrics").await;
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("# TYPE falconer_ingest_request_duration_seconds histogram")
    );
    for path in ["/api/v1/events", "/healthz", "/ui/"] {
        assert_eq!(get(path).await.status(), 404, "{path} on the metrics port");
    }
    app.stop().await;
}
