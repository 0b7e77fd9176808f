//! `GET /api/v1/events`, `/api/v1/events/{id}`, `/api/v1/clusters`.

use crate::helpers::{Backend, TestApp, TestDb, alert};
use crate::on_both_stores;
use serde_json::{Value, json};
use std::collections::HashSet;

fn ids_of(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {page}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

async fn pagination_never_skips_or_repeats_even_among_equal_times(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    // 120 events over only 4 distinct times, so pages cut through runs of equal times.
    let mut posted = HashSet::new();
    for chunk in 0..4 {
        let body: Vec<_> = (0..30)
            .map(|i| {
                alert(
                    "page",
                    &format!("2026-05-04T10:00:0{}Z", (chunk + i) % 4),
                    &format!("c{chunk} i{i}"),
                )
            })
            .collect();
        posted.extend(app.ingest(json!(body).to_string()).await.ids());
    }
    assert_eq!(posted.len(), 120);

    let mut seen = Vec::new();
    let mut times = Vec::new();
    let mut path = "/api/v1/events?limit=7".to_string();
    loop {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let page = reply.json();
        seen.extend(ids_of(&page));
        times.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["time"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/events?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 120, "repeated events");
    assert_eq!(unique, posted, "skipped events");
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    app.stop().await;
}

async fn every_filter_narrows_the_listing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let mut critical = alert(
        "Shell in pod",
        "2026-05-04T10:00:00Z",
        "A Shell Was Spawned 100%",
    );
    critical["priority"] = json!("Critical");
    critical["output_fields"]["k8s.pod.name"] = json!("db-0");
    critical["output_fields"]["k8s.ns.name"] = json!("data");
    let notice = alert("Read file", "2026-05-04T11:00:00Z", "file opened");
    let mut debug = alert("Noise", "2026-05-04T12:00:00Z", "nothing");
    debug["priority"] = json!("Debug");
    let mut audit = alert("Attach/Exec Pod", "2026-05-04T13:00:00Z", "exec");
    audit["source"] = json!("k8s_audit");
    app.ingest(json!([critical, notice, debug]).to_string())
        .await;
    let reply = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("x-falconer-cluster", "edge")
        .body(audit.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 202);

    let rules = |query: &str| {
        let app = &app;
        let query = query.to_string();
        async move {
            let reply = app.get(&format!("/api/v1/events?{query}")).await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
            reply.json()["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["rule"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        rules("").await,
        ["Attach/Exec Pod", "Noise", "Read file", "Shell in pod"]
    );
    assert_eq!(
        rules("min_severity=warning").await,
        ["Attach/Exec Pod", "Read file", "Shell in pod"]
    );
    assert_eq!(rules("min_severity=CRITICAL").await, ["Shell in pod"]);
    assert_eq!(rules("namespace=data").await, ["Shell in pod"]);
    assert_eq!(
        rules("namespace=shop&pod=web-1").await,
        ["Attach/Exec Pod", "Noise", "Read file"]
    );
    assert_eq!(rules("rule=Noise").await, ["Noise"]);
    assert_eq!(rules("kind=audit").await, ["Attach/Exec Pod"]);
    assert_eq!(rules("cluster=edge").await, ["Attach/Exec Pod"]);
    assert_eq!(
        rules("cluster=home&source=falco").await,
        ["Noise", "Read file", "Shell in pod"]
    );
    assert_eq!(rules("source=trivy").await, Vec::<String>::new());
    assert_eq!(
        rules("since=2026-05-04T11:00:00Z&until=2026-05-04T12:00:00Z").await,
        ["Read file"]
    );
    assert_eq!(
        rules("since=2026-05-04T11:00:00%2B01:00").await,
        ["Attach/Exec Pod", "Noise", "Read file", "Shell in pod"]
    );
    assert_eq!(rules("text=shell%20was").await, ["Shell in pod"]);
    assert_eq!(rules("text=100%25").await, ["Shell in pod"]);
    assert_eq!(rules("text=1_0").await, Vec::<String>::new());
    app.stop().await;
}

async fn bad_query_parameters_are_a_400_naming_the_parameter(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let cases = [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-05-04T11:00:00Z&until=2026-05-04T10:00:00Z",
            "until",
        ),
        ("min_severity=loud", "min_severity"),
        ("kind=alarm", "kind"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("namespace=", "namespace"),
        ("namepsace=shop", "namepsace"),
        ("pod=a&pod=b", "pod"),
    ];
    for (query, field) in cases {
        let reply = app.get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["field"], field, "{query}: {body}");
        assert!(!body["reason"].as_str().unwrap().is_empty());
    }
    app.stop().await;
}

async fn one_event_is_found_by_id_with_its_raw_payload(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let id = app
        .ingest(alert("r", "2026-05-04T10:00:00Z", "x").to_string())
        .await
        .ids()[0]
        .clone();
    let event = app.get(&format!("/api/v1/events/{id}")).await.json();
    assert_eq!(event["raw"]["rule"], "r");
    // Listings leave the raw payload out.
    let list = app.get("/api/v1/events").await.json();
    assert!(list["events"][0].get("raw").is_none());
    let missing = app
        .get(&format!("/api/v1/events/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(missing.status, 404);
    let bad = app.get("/api/v1/events/not-a-uuid").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "id");
    app.stop().await;
}

async fn clusters_record_first_and_last_seen_and_their_event_count(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    app.ingest(alert("a", "2026-05-04T10:00:00Z", "1").to_string())
        .await;
    let first = app.get("/api/v1/clusters").await.json()["clusters"][0].clone();
    app.ingest(alert("a", "2026-05-04T10:00:01Z", "2").to_string())
        .await;
    app.ingest(alert("a", "2026-05-04T10:00:01Z", "2").to_string())
        .await; // duplicate
    let second = app.get("/api/v1/clusters").await.json()["clusters"][0].clone();
    assert_eq!(second["name"], "home");
    assert_eq!(second["events"], 2, "duplicates are not counted");
    assert_eq!(second["first_seen"], first["first_seen"]);
    assert!(second["last_seen"].as_str() >= first["last_seen"].as_str());
    app.stop().await;
}

on_both_stores!(
    pagination_never_skips_or_repeats_even_among_equal_times,
    every_filter_narrows_the_listing,
    bad_query_parameters_are_a_400_naming_the_parameter,
    one_event_is_found_by_id_with_its_raw_payload,
    clusters_record_first_and_last_seen_and_their_event_count,
);
