//! What the dashboard needs: `GET /api/v1/stats/events`, `/api/v1/stats/findings`, its files
//! at `/ui/`, and its buttons' endpoints.

use crate::helpers::{
    Backend, Reply, TestApp, TestDb, alert, consumer, hub_config, source_fixture,
};
use crate::on_both_stores;
use falconer_hub::config::TokenHash;
use serde_json::{Value, json};

fn with(priority: &str, rule: &str, time: &str) -> Value {
    let mut a = alert(rule, time, &format!("{rule} at {time}"));
    a["priority"] = json!(priority);
    a
}

async fn post_to_cluster(app: &TestApp, cluster: &str, body: Value) {
    let response = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("x-falconer-cluster", cluster)
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let reply = Reply::read(response).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}

async fn events_are_counted_per_bucket_and_severity_by_source_and_by_rule(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let body = json!([
        with("Critical", "Shell", "2026-05-04T10:05:00Z"),
        with("Critical", "Shell", "2026-05-04T10:59:59.999999Z"),
        with("Warning", "Read file", "2026-05-04T10:30:00Z"),
        with("Warning", "Read file", "2026-05-04T12:00:00Z"),
        with("Warning", "Read file", "2026-05-04T12:10:00Z"),
        with("Notice", "Noise", "2026-05-04T12:20:00Z"),
        // Outside the window: before `from`, and exactly at `to` (exclusive).
        with("Critical", "Shell", "2026-05-04T09:59:59Z"),
        with("Critical", "Shell", "2026-05-04T13:00:00Z"),
    ]);
    assert_eq!(app.ingest(body.to_string()).await.status, 202);
    post_to_cluster(
        &app,
        "edge",
        json!([with("Error", "Edge rule", "2026-05-04T11:00:00Z")]),
    )
    .await;

    let reply = app
        .get("/api/v1/stats/events?from=2026-05-04T10:00:00Z&to=2026-05-04T13:00:00Z&bucket=1h")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stats = reply.json();
    assert_eq!(stats["bucket_seconds"], 3600);
    assert_eq!(stats["total"], 7);
    assert_eq!(
        stats["by_severity"],
        json!({"critical": 2, "error": 1, "warning": 3, "notice": 1})
    );
    assert_eq!(
        stats["buckets"],
        json!([
            {"start": "2026-05-04T10:00:00Z", "total": 3, "counts": {"critical": 2, "warning": 1}},
            {"start": "2026-05-04T11:00:00Z", "total": 1, "counts": {"error": 1}},
            {"start": "2026-05-04T12:00:00Z", "total": 3, "counts": {"warning": 2, "notice": 1}},
        ])
    );
    assert_eq!(
        stats["by_rule"],
        json!([
            {"rule": "Read file", "count": 3},
            {"rule": "Shell", "count": 2},
            {"rule": "Edge rule", "count": 1},
            {"rule": "Noise", "count": 1},
        ])
    );
    assert_eq!(
        stats["by_source"],
        json!([{"source": "falco", "count": 7, "last": "2026-05-04T12:20:00Z"}])
    );

    // One cluster, the top rule only, buckets starting at `from` (not at a round hour).
    let reply = app
        .get(
            "/api/v1/stats/events?from=2026-05-04T10:30:00Z&to=2026-05-04T12:30:00Z\
             &bucket=90m&cluster=home&top=1",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stats = reply.json();
    assert_eq!(stats["total"], 5);
    let totals: Vec<&Value> = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["total"])
        .collect();
    assert_eq!(totals, [&json!(2), &json!(3)]);
    assert_eq!(stats["buckets"][1]["start"], "2026-05-04T12:00:00Z");
    assert_eq!(stats["by_rule"], json!([{"rule": "Read file", "count": 3}]));

    // A kind no event has: zeros everywhere, every bucket still listed.
    let reply = app
        .get("/api/v1/stats/events?from=2026-05-04T10:00:00Z&to=2026-05-04T13:00:00Z&kind=audit")
        .await;
    let stats = reply.json();
    assert_eq!(stats["total"], 0);
    assert_eq!(stats["bucket_seconds"], 300, "3 hours in 5-minute buckets");
    assert_eq!(stats["buckets"].as_array().unwrap().len(), 36);
    assert_eq!(stats["by_rule"], json!([]));
    app.stop().await;
}

async fn stats_parameters_are_checked_and_named(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("from=2026-05-04T10:00:00Z&to=2026-05-04T10:00:00Z", "to"),
        ("bucket=0", "bucket"),
        ("bucket=5w", "bucket"),
        ("bucket=1s", "bucket"),
        ("top=0", "top"),
        ("top=101", "top"),
        ("kind=alerts", "kind"),
        ("cluster=", "cluster"),
        ("severity=critical", "severity"),
    ] {
        let reply = app.get(&format!("/api/v1/stats/events?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(reply.json()["field"], field, "{query}: {}", reply.text);
    }
    for (query, field) in [("top=501", "top"), ("state=open", "state")] {
        let reply = app.get(&format!("/api/v1/stats/findings?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(reply.json()["field"], field, "{query}: {}", reply.text);
    }
    // Seven days in one-minute buckets is over the limit; in hours it is fine.
    let week = "from=2026-05-01T00:00:00Z&to=2026-05-08T00:00:00Z";
    let reply = app
        .get(&format!("/api/v1/stats/events?{week}&bucket=1m"))
        .await;
    assert_eq!(reply.json()["field"], "bucket", "{}", reply.text);
    let reply = app
        .get(&format!("/api/v1/stats/events?{week}&bucket=1h"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["buckets"].as_array().unwrap().len(), 168);
    app.stop().await;
}

async fn findings_are_counted_per_image_and_node_open_and_fixed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let empty = app.get("/api/v1/stats/findings").await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(
        empty.json(),
        json!({"open": 0, "fixed": 0, "open_by_severity": {}, "total_targets": 0, "targets": []})
    );

    let first = source_fixture("trivy/image-schema2.json");
    assert_eq!(app.ingest(first.clone()).await.status, 202);
    let mut next: Value = serde_json::from_str(&first).unwrap();
    next["CreatedAt"] = json!("2026-05-05T10:00:00Z");
    next["Results"][0]["Vulnerabilities"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    assert_eq!(app.ingest(next.to_string()).await.status, 202);
    let bench = app
        .post(
            "/ingest?node=node-a",
            "application/json",
            source_fixture("kube-bench/controls-totals.json"),
        )
        .await;
    assert_eq!(bench.status, 202, "{}", bench.text);

    let stats = app.get("/api/v1/stats/findings").await.json();
    assert_eq!(stats["open"], 6, "{stats}");
    assert_eq!(stats["fixed"], 1, "{stats}");
    assert_eq!(stats["total_targets"], 2);
    let image = &stats["targets"][0];
    assert_eq!(image["kind"], "image", "critical findings first: {stats}");
    assert_eq!(image["target"], "registry.example/shop/web:1.4.2");
    assert_eq!(image["open"], 3);
    assert_eq!(image["fixed"], 1);
    assert_eq!(image["open_by_severity"]["critical"], 2);
    let node = &stats["targets"][1];
    assert_eq!(node["kind"], "node");
    assert_eq!(node["target"], "node-a");
    assert_eq!(node["open"], 3);
    let sum: i64 = stats["open_by_severity"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(sum, 6);

    let only = app
        .get("/api/v1/stats/findings?kind=misconfiguration&top=1")
        .await
        .json();
    assert_eq!(only["open"], 3);
    assert_eq!(only["fixed"], 0);
    assert_eq!(only["targets"].as_array().unwrap().len(), 1);
    let other = app
        .get("/api/v1/stats/findings?cluster=elsewhere")
        .await
        .json();
    assert_eq!(other["total_targets"], 0);
    app.stop().await;
}

async fn stats_need_a_query_token_when_tokens_are_configured(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.query_token_sha256 = vec![TokenHash::of("query-secret")];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    for path in ["/api/v1/stats/events", "/api/v1/stats/findings"] {
        assert_eq!(app.get(path).await.status, 401, "{path}");
        let status = app
            .client
            .get(app.url(path))
            .bearer_auth("query-secret")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
    // The dashboard's own files hold no data: they load without a token, and ask for one.
    assert_eq!(app.get("/ui/").await.status, 200);
    app.stop().await;
}

async fn a_test_send_through_a_file_consumer_is_written_and_answered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.jsonl");
    let archive = consumer(
        json!({"name": "archive", "type": "file", "file": {"path": path}}),
        &[],
    );
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![archive]).await;
    // The HTTP workers run current-thread runtimes: the file sink must not block_in_place there.
    let reply = app
        .post("/api/v1/consumers/archive/test", "application/json", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"delivered": true, "detail": "delivered"})
    );
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    app.stop().await;
}

on_both_stores!(
    a_test_send_through_a_file_consumer_is_written_and_answered,
    events_are_counted_per_bucket_and_severity_by_source_and_by_rule,
    stats_parameters_are_checked_and_named,
    findings_are_counted_per_image_and_node_open_and_fixed,
    stats_need_a_query_token_when_tokens_are_configured,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = TestApp::spawn(&db).await;
    let page = app.get("/ui/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.text
            .contains(r#"<script type="module" src="app.js"></script>"#)
    );
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));

    let script = app.get("/ui/app.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let etag = script.header("etag").expect("ETag").to_string();
    let again = app
        .client
        .get(app.url("/ui/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(app.get("/ui/uPlot.esm.js").await.text.contains("uPlot"));

    let missing = app.get("/ui/nothing.js").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());
    let wrong = app.post("/ui/", "text/plain", "x").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET"));

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, status) in [("/ui", 308), ("/", 302)] {
        let response = no_redirects.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(response.headers()["location"], "/ui/", "{path}");
    }
    app.stop().await;
}
