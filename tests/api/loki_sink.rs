//! The `loki` sink against the Loki push API fake of `falconer-testkit` (no Loki server runs
//! on the build machine).

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::loki::{Faults, LokiServer, Options};
use serde_json::{Value, json};

async fn post(app: &TestApp, rule: &str, time: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let body: Vec<Value> = range
        .map(|i| alert(rule, time, &format!("{rule} {i}")))
        .collect();
    let reply = app.ingest(json!(body).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply.ids()
}

async fn view(app: &TestApp, name: &str) -> Value {
    app.get("/api/v1/consumers").await.json()["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name}"))
        .clone()
}

async fn wait_delivered(app: &TestApp, name: &str, n: i64) {
    wait_until(&format!("consumer {name} delivered {n}"), || async {
        view(app, name).await["delivered"].as_i64() >= Some(n)
    })
    .await;
}

/// The event ids of the entries Loki kept, in order.
fn ids(server: &LokiServer) -> Vec<String> {
    server
        .entries()
        .iter()
        .map(|e| {
            let line: Value = serde_json::from_str(&e.line).unwrap();
            line["id"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn events_reach_loki_once_each_with_bounded_labels_and_the_tenant(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = LokiServer::with(Options {
        require_tenant: true,
        basic: Some(("falconer".into(), "s3cret".into())),
        ..Options::default()
    })
    .unwrap();
    let spec = json!({"name": "logs", "type": "loki", "secretRef": {"name": "loki"},
                      "loki": {"url": server.url(), "tenant": "team-a", "auth": "basic"}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(
            spec,
            &[("username", "falconer"), ("password", "s3cret")],
        )],
    )
    .await;
    let first = post(&app, "Terminal shell", "2026-05-04T10:00:00Z", 0..30).await;
    let second = post(&app, "Read sensitive file", "2026-05-04T10:00:01Z", 0..20).await;
    wait_delivered(&app, "logs", 50).await;

    assert_eq!(
        ids(&server),
        [first, second].concat(),
        "once each, in order"
    );
    let entries = server.entries();
    assert!(entries.iter().all(|e| e.tenant == "team-a"));
    let labels: Value = json!(entries[0].labels);
    assert_eq!(
        labels,
        json!({"cluster": "home", "namespace": "shop", "severity": "warning", "source": "falco"}),
        "the default labels, all bounded"
    );
    assert!(
        entries.iter().all(|e| e.labels == entries[0].labels),
        "one stream"
    );
    assert_eq!(
        entries[0].time, 1_777_888_800_000_000_000,
        "the event's time, in ns"
    );
    let line: Value = serde_json::from_str(&entries[0].line).unwrap();
    assert_eq!(line["rule"], "Terminal shell");
    assert_eq!(
        line["fields"]["k8s.pod.name"], "web-1",
        "the pod stays in the line"
    );
    let request = &server.requests()[0];
    assert_eq!(request.tenant.as_deref(), Some("team-a"));
    assert!(request.headers["authorization"].starts_with("Basic "));
    let view = view(&app, "logs").await;
    assert_eq!(view["dead_letters"], 0, "{view}");

    let test = app
        .post("/api/v1/consumers/logs/test", "application/json", "")
        .await;
    assert_eq!(test.status, 200, "{}", test.text);
    let last: Value = serde_json::from_str(&server.entries().last().unwrap().line).unwrap();
    assert_eq!(last["rule"], "Test rule");
    app.stop().await;
    server.stop().await;
}

async fn an_outage_loses_nothing_and_delivers_everything_in_order_after(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = LokiServer::with(Options {
        faults: Faults {
            status: Some(500),
            ..Faults::default()
        },
        ..Options::default()
    })
    .unwrap();
    let spec =
        json!({"name": "logs", "type": "loki", "loki": {"url": server.url(), "batchSize": 7}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let posted = post(&app, "outage", "2026-05-04T10:00:00Z", 0..20).await;
    let degraded_with = |needle: &'static str| {
        let app = &app;
        async move {
            wait_until(&format!("degraded with {needle}"), || async {
                let view = view(app, "logs").await;
                view["state"] == "Degraded"
                    && view["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains(needle))
            })
            .await;
        }
    };
    degraded_with("HTTP 500").await;
    server.faults(|f| {
        f.status = Some(429);
        f.retry_after = Some(1);
    });
    degraded_with("HTTP 429").await;
    assert!(server.entries().is_empty());
    let more = post(&app, "outage", "2026-05-04T10:00:01Z", 0..5).await;
    server.faults(|f| f.status = None);
    wait_delivered(&app, "logs", 25).await;
    assert_eq!(ids(&server), [posted, more].concat(), "once each, in order");
    let view = view(&app, "logs").await;
    assert!(view["retries"].as_i64().unwrap() >= 2, "{view}");
    assert_eq!(view["dead_letters"], 0, "{view}");
    app.stop().await;
    server.stop().await;
}

async fn an_out_of_order_entry_goes_to_dead_letters_with_lokis_reason(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = LokiServer::start().unwrap();
    let spec = json!({"name": "logs", "type": "loki", "loki": {"url": server.url()}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let before = post(&app, "in order", "2026-05-04T10:00:00Z", 0..3).await;
    wait_delivered(&app, "logs", 3).await;
    // An hour older than what the stream already has: Loki can never take it.
    let late = post(&app, "late", "2026-05-04T09:00:00Z", 0..1).await;
    let after = post(&app, "in order", "2026-05-04T10:00:05Z", 0..3).await;
    wait_until(
        "the late event is a dead letter and the rest delivered",
        || async {
            let view = view(&app, "logs").await;
            view["dead_letters"] == 1 && view["delivered"] == 6
        },
    )
    .await;
    assert_eq!(
        ids(&server),
        [before, after].concat(),
        "the rest once each, in order"
    );
    let letters = app.get("/api/v1/consumers/logs/dead-letters").await.json();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event_id"], late[0].as_str());
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 400") && reason.contains("entry out of order"),
        "{reason}"
    );
    app.stop().await;
    server.stop().await;
}

async fn an_unbounded_label_keeps_the_consumer_from_starting_naming_the_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = LokiServer::start().unwrap();
    let spec = json!({"name": "logs", "type": "loki",
                      "loki": {"url": server.url(), "labels": ["cluster", "pod"]}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let view = view(&app, "logs").await;
    assert_eq!(view["state"], "Stopped", "{view}");
    let error = view["last_error"].as_str().unwrap();
    assert!(
        error.contains("loki.labels[1]") && error.contains("`pod` is unbounded"),
        "{error}"
    );
    post(&app, "x", "2026-05-04T10:00:00Z", 0..1).await;
    let test = app
        .post("/api/v1/consumers/logs/test", "application/json", "")
        .await;
    assert_eq!(test.status, 409, "{}", test.text);
    assert!(server.requests().is_empty(), "nothing was sent");
    app.stop().await;
    server.stop().await;
}

on_both_stores!(
    events_reach_loki_once_each_with_bounded_labels_and_the_tenant,
    an_outage_loses_nothing_and_delivers_everything_in_order_after,
    an_out_of_order_entry_goes_to_dead_letters_with_lokis_reason,
    an_unbounded_label_keeps_the_consumer_from_starting_naming_the_field,
);
