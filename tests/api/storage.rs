//! Durability: restarts, store outages, overload.

use crate::helpers::{Backend, Reply, TestApp, TestDb, alert, hub_config};
use crate::on_both_stores;
use serde_json::json;

async fn a_restart_keeps_every_acknowledged_event(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let body: Vec<_> = (0..20)
        .map(|i| alert("persist", "2026-05-04T10:00:00Z", &format!("e{i}")))
        .collect();
    let ids = app.ingest(json!(body).to_string()).await.ids();
    app.stop().await;

    let app = TestApp::spawn(&db).await;
    let page = app.get("/api/v1/events?limit=100").await.json();
    let mut listed: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected = ids.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    // A retry after the restart is still recognised as a duplicate.
    let again = app.ingest(json!([body[3]]).to_string()).await.ids();
    assert_eq!(again, [ids[3].clone()]);
    app.stop().await;
}

async fn a_store_outage_answers_503_with_retry_after_and_writes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    assert_eq!(
        app.ingest(alert("before", "2026-05-04T10:00:00Z", "ok").to_string())
            .await
            .status,
        202
    );

    let outage = db.break_store().await;
    let batch: Vec<_> = (0..5)
        .map(|i| alert("during", "2026-05-04T10:00:00Z", &format!("lost? {i}")))
        .collect();
    let reply = app.ingest(json!(batch).to_string()).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("store unavailable")
    );
    if backend == Backend::Postgres {
        // Nothing can connect to the store, so the hub is not ready; the probe says so
        // without the store's error text (host names, users).
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, 503);
        assert_eq!(
            ready.json()["error"],
            "the store cannot be reached; see the hub's log"
        );
    }
    outage.restore().await;

    // Nothing of the failed request was written; the retry succeeds and stores all of it.
    assert_eq!(db.count_events().await, 1);
    let retry = app.ingest(json!(batch).to_string()).await;
    assert_eq!(retry.status, 202, "{}", retry.text);
    assert_eq!(db.count_events().await, 6);
    assert_eq!(app.get("/readyz").await.status, 200);
    app.stop().await;
}

async fn an_overloaded_hub_answers_429_and_loses_nothing_it_acknowledged(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut store = db.store_config();
    store.queue_max_events = 2;
    store.sqlite_busy_timeout_ms = 30_000;
    // As start-up requires of a queue this small: no request may carry more than it holds.
    let mut hub = hub_config();
    hub.ingest.max_events_per_request = 2;
    hub.ingest.max_report_findings = 2;
    let app = TestApp::spawn_with(&db, hub, store).await;

    // Hold the events table so the writer blocks on its first batch.
    let mut side = db.side_connection().await;
    match backend {
        Backend::Postgres => {
            side.execute("BEGIN").await;
            side.execute("LOCK TABLE events IN EXCLUSIVE MODE").await;
        }
        Backend::Sqlite => side.execute("BEGIN IMMEDIATE").await,
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let client = app.client.clone();
        let url = app.url("/ingest");
        let body = alert("load", "2026-05-04T10:00:00Z", &format!("n{i}")).to_string();
        tasks.spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            Reply::read(response).await
        });
    }
    // With two events waiting for the blocked writer(s), the rest are shed at once.
    let mut replies = Vec::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        let shed = reply.status == 429;
        replies.push(reply);
        if shed {
            break;
        }
    }
    // Still full: a request is refused before its body is read (this one is not even JSON).
    let unread = app.ingest("{not json".to_string()).await;
    assert_eq!(unread.status, 429, "{}", unread.text);
    side.execute(match backend {
        Backend::Postgres => "COMMIT",
        Backend::Sqlite => "ROLLBACK",
    })
    .await;
    replies.extend(tasks.join_all().await);

    let shed: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    let accepted: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 202)
        .flat_map(|r| r.ids())
        .collect();
    assert!(!shed.is_empty(), "nothing was shed: {replies:?}");
    assert_eq!(shed[0].header("retry-after"), Some("1"));
    assert_eq!(shed.len() + accepted.len(), 12, "{replies:?}");
    assert!(!accepted.is_empty());
    assert_eq!(db.count_events().await, accepted.len() as i64);
    for id in accepted {
        assert_eq!(app.get(&format!("/api/v1/events/{id}")).await.status, 200);
    }
    app.stop().await;
}

/// Polls the hub's metrics until `line` shows up (no timing assertion: the test only waits).
async fn wait_for_metric(app: &TestApp, line: &str) {
    for _ in 0..500 {
        if app.get("/metrics").await.text.contains(line) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("metric `{line}` never appeared");
}

async fn a_failed_batch_fails_every_request_in_it_with_503_and_writes_none_of_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut store = db.store_config();
    store.sqlite_busy_timeout_ms = 1_000;
    let app = TestApp::spawn_with(&db, hub_config(), store).await;

    // Block the writers, then queue eight requests behind them.
    let mut side = db.side_connection().await;
    match backend {
        Backend::Postgres => {
            side.execute("BEGIN").await;
            side.execute("LOCK TABLE events IN EXCLUSIVE MODE").await;
        }
        Backend::Sqlite => side.execute("BEGIN IMMEDIATE").await,
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let client = app.client.clone();
        let url = app.url("/ingest");
        let body = json!([
            alert("batch", "2026-05-04T10:00:00Z", &format!("a{i}")),
            alert("batch", "2026-05-04T10:00:00Z", &format!("b{i}")),
        ])
        .to_string();
        tasks.spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            Reply::read(response).await
        });
    }
    wait_for_metric(&app, "falconer_store_pending_events 16").await;
    // Now the store fails: PostgreSQL kills the writers' connections and refuses new ones;
    // SQLite keeps its lock until the writer's busy timeout has passed, twice.
    let outage = match backend {
        Backend::Postgres => Some(db.break_store().await),
        Backend::Sqlite => None,
    };
    let replies = tasks.join_all().await;
    match outage {
        Some(outage) => outage.restore().await,
        None => side.execute("ROLLBACK").await,
    }
    for reply in &replies {
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.header("retry-after"), Some("5"));
    }
    assert_eq!(db.count_events().await, 0, "a failed batch wrote something");
    let metrics = app.get("/metrics").await.text;
    let single = metric_value(
        &metrics,
        "falconer_store_commit_batch_requests_bucket{le=\"1.0\"}",
    );
    let all = metric_value(&metrics, "falconer_store_commit_batch_requests_count");
    assert!(all > single, "no batch held several requests:\n{metrics}");
    assert!(metrics.contains("falconer_store_commits_total{result=\"unavailable\"}"));
    app.stop().await;
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

on_both_stores!(
    a_restart_keeps_every_acknowledged_event,
    a_store_outage_answers_503_with_retry_after_and_writes_nothing,
    an_overloaded_hub_answers_429_and_loses_nothing_it_acknowledged,
    a_failed_batch_fails_every_request_in_it_with_503_and_writes_none_of_it,
);
