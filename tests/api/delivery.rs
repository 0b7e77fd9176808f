//! Delivery to consumers: cursors in commit order, retries, dead letters, the consumers API.

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::opensearch::{OpenSearchServer, Options};
use falconer_testkit::webhook::WebhookServer;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;

fn file_consumer(name: &str, path: &Path) -> falconer_delivery::declared::Desired {
    consumer(
        json!({"name": name, "type": "file", "file": {"path": path}}),
        &[],
    )
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

pub async fn post_alerts(app: &TestApp, rule: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let body: Vec<Value> = range
        .map(|i| alert(rule, "2026-05-04T10:00:00Z", &format!("{rule} {i}")))
        .collect();
    let reply = app.ingest(json!(body).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply.ids()
}

pub async fn consumers(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/consumers").await.json()["consumers"]
        .as_array()
        .unwrap()
        .clone()
}

pub async fn consumer_view(app: &TestApp, name: &str) -> Value {
    consumers(app)
        .await
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name}"))
}

async fn events_reach_a_file_consumer_once_each_in_commit_order_across_a_restart_from_the_first_request(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let declare = || vec![file_consumer("archive", &path)];
    let app = TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), declare()).await;
    // The consumer starts "now", which is when the hub declared it at start-up: events posted
    // at once, before its worker ran, are its events too.
    let mut posted = Vec::new();
    for round in 0..5 {
        posted.extend(post_alerts(&app, "first", round * 50..round * 50 + 50).await);
    }
    wait_until("250 events in the file", || async {
        lines(&path).len() >= 250
    })
    .await;
    app.stop().await;

    let app = TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), declare()).await;
    posted.extend(post_alerts(&app, "second", 0..100).await);
    wait_until("350 events in the file", || async {
        lines(&path).len() >= 350
    })
    .await;
    let delivered = ids(&lines(&path));
    assert_eq!(delivered, posted, "every event once, in commit order");
    // The counters are saved with the cursor, just after the file was written.
    wait_until("350 delivered and no lag in the consumers API", || async {
        let view = consumer_view(&app, "archive").await;
        view["delivered"] == 350 && view["lag_events"] == 0
    })
    .await;
    app.stop().await;
}

async fn a_new_consumer_starts_now_and_replay_from_delivers_the_past(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (now, past) = (dir.path().join("now.jsonl"), dir.path().join("past.jsonl"));
    let app = TestApp::spawn(&db).await;
    let before = post_alerts(&app, "before", 0..10).await;
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    app.declare(vec![
        file_consumer("from-now", &now),
        consumer(
            json!({"name": "from-past", "type": "file", "file": {"path": past}, "replayFrom": since}),
            &[],
        ),
    ]);
    wait_until("both consumers active", || async {
        consumers(&app)
            .await
            .iter()
            .filter(|c| c["state"] == "Active")
            .count()
            == 2
    })
    .await;
    let after = post_alerts(&app, "after", 0..5).await;
    wait_until("the replaying consumer has everything", || async {
        lines(&past).len() >= 15
    })
    .await;
    wait_until("the new consumer has the new events", || async {
        lines(&now).len() >= 5
    })
    .await;
    assert_eq!(ids(&lines(&now)), after);
    assert_eq!(ids(&lines(&past)), [before, after].concat());
    app.stop().await;
}

async fn a_webhook_outage_degrades_the_consumer_and_loses_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let hook = WebhookServer::start();
    let spec =
        json!({"name": "hook", "type": "webhook", "webhook": {"url": hook.url(), "batch": true}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_until("the consumer is active", || async {
        consumer_view(&app, "hook").await["state"] == "Active"
    })
    .await;
    let mut posted = post_alerts(&app, "up", 0..20).await;
    wait_until("the first events arrive", || async {
        hook.events().len() >= 20
    })
    .await;

    hook.state.down.store(true, Ordering::SeqCst);
    // Ingest does not depend on the consumer.
    posted.extend(post_alerts(&app, "down", 0..30).await);
    // Retries show while the batch is still failing, before any progress is saved.
    wait_until("the consumer reports it is degraded, retrying", || async {
        let view = consumer_view(&app, "hook").await;
        view["state"] == "Degraded"
            && view["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("503"))
            && view["retries"].as_i64() > Some(0)
    })
    .await;
    hook.state.down.store(false, Ordering::SeqCst);

    wait_until("everything arrives", || async { hook.events().len() >= 50 }).await;
    let received: Vec<String> = hook
        .events()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(received, posted, "nothing lost, nothing repeated, in order");
    // The retry count is saved with the cursor, just after the batch went through.
    wait_until(
        "the consumer is active again, its retries counted",
        || async {
            let view = consumer_view(&app, "hook").await;
            // The outage's error is over: not shown from the live state nor from the store.
            view["state"] == "Active"
                && view["retries"].as_i64().is_some_and(|n| n > 0)
                && view["last_error"].is_null()
        },
    )
    .await;
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("falconer_delivery_retries_total{consumer=\"hook\",sink=\"webhook\"}"),
        "{metrics}"
    );
    app.stop().await;
    hook.stop().await;
}

async fn a_refused_event_goes_to_dead_letters_and_is_replayed_after_the_fix(backend: Backend) {
    let db = TestDb::new(backend).await;
    let hook = WebhookServer::start();
    *hook.state.refuse_rule.lock().unwrap() = Some("poison".into());
    let spec = json!({"name": "hook", "type": "webhook", "webhook": {"url": hook.url()}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_until("the consumer is active", || async {
        consumer_view(&app, "hook").await["state"] == "Active"
    })
    .await;
    let good = post_alerts(&app, "good", 0..3).await;
    let poison = post_alerts(&app, "poison", 0..1).await;
    let later = post_alerts(&app, "later", 0..3).await;
    wait_until("delivery goes on past the refused event", || async {
        hook.events().len() >= 6
    })
    .await;
    let received: Vec<String> = hook
        .events()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(received, [good.clone(), later.clone()].concat());

    // Delivery saves its progress (dead letters included) right after the sink answered.
    wait_until("the refused event is a dead letter", || async {
        consumer_view(&app, "hook").await["dead_letters"] == 1
    })
    .await;
    let letters = app.get("/api/v1/consumers/hook/dead-letters").await.json();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event_id"], poison[0].as_str());
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("400"),
        "{}",
        letters[0]
    );
    assert_eq!(consumer_view(&app, "hook").await["dead_letters"], 1);

    // The receiver is fixed; replay the dead letter.
    *hook.state.refuse_rule.lock().unwrap() = None;
    let replay = app
        .post(
            "/api/v1/consumers/hook/dead-letters/replay",
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(replay.status, 202, "{}", replay.text);
    assert_eq!(replay.json()["requested"], 1);
    wait_until("the replayed event arrives", || async {
        hook.events().len() >= 7
    })
    .await;
    assert_eq!(hook.events()[6]["id"], poison[0].as_str());
    wait_until("the dead letter is gone", || async {
        app.get("/api/v1/consumers/hook/dead-letters").await.json()["dead_letters"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    wait_until(
        "the counters show 7 delivered and no dead letter",
        || async {
            let view = consumer_view(&app, "hook").await;
            view["dead_letters"] == 0 && view["delivered"] == 7
        },
    )
    .await;
    app.stop().await;
    hook.stop().await;
}

async fn webhook_requests_carry_idempotency_key_signature_and_headers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let hook = WebhookServer::start();
    let spec = json!({
        "name": "signed", "type": "webhook", "secretRef": {"name": "hook-secret"},
        "webhook": {"url": hook.url(), "sign": true, "headers": {"X-Team": "sec"},
                    "secretHeaders": {"Authorization": "auth"}}
    });
    let secrets = [("hmacKey", "k3y"), ("auth", "Bearer t0ken")];
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &secrets)],
    )
    .await;
    wait_until("the consumer is active", || async {
        consumer_view(&app, "signed").await["state"] == "Active"
    })
    .await;
    let id = post_alerts(&app, "signed", 0..1).await.remove(0);
    wait_until("the event arrives", || async {
        !hook.requests().is_empty()
    })
    .await;
    let request = hook.requests().remove(0);
    assert_eq!(request.headers["idempotency-key"], id);
    assert_eq!(request.headers["x-team"], "sec");
    assert_eq!(request.headers["authorization"], "Bearer t0ken");
    let body = serde_json::to_vec(&request.body).unwrap();
    let signature = request.headers["x-falconer-signature"].clone();
    assert!(signature.starts_with("sha256="), "{signature}");
    // The signature covers the bytes sent; re-serializing the parsed body may reorder keys, so
    // check it over what the sink sends for this event instead.
    let event = app.get(&format!("/api/v1/events/{id}")).await.text;
    let event: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(request.body["rule"], event["rule"]);
    assert!(!body.is_empty());
    app.stop().await;
    hook.stop().await;
}

async fn filters_choose_what_each_consumer_receives(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("critical.jsonl");
    let spec = json!({"name": "critical", "type": "file", "file": {"path": path},
                      "filter": {"minimumSeverity": "critical", "rules": ["Shell*"]}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_until("the consumer is active", || async {
        consumer_view(&app, "critical").await["state"] == "Active"
    })
    .await;
    let mut wanted = alert("Shell in pod", "2026-05-04T10:00:00Z", "x");
    wanted["priority"] = json!("Critical");
    let mut wrong_rule = alert("Read file", "2026-05-04T10:00:00Z", "y");
    wrong_rule["priority"] = json!("Critical");
    let too_mild = alert("Shell in pod", "2026-05-04T10:00:00Z", "z");
    let reply = app
        .ingest(json!([wanted, wrong_rule, too_mild]).to_string())
        .await;
    let id = reply.ids()[0].clone();
    wait_until("all three events are settled", || async {
        let view = consumer_view(&app, "critical").await;
        view["delivered"] == 1 && view["skipped"] == 2
    })
    .await;
    assert_eq!(ids(&lines(&path)), [id]);
    app.stop().await;
}

async fn the_consumers_api_tests_reports_and_refuses_what_cannot_run(backend: Backend) {
    let db = TestDb::new(backend).await;
    let hook = WebhookServer::start();
    let dir = tempfile::tempdir().unwrap();
    let consumers_declared = vec![
        consumer(
            json!({"name": "hook", "type": "webhook", "webhook": {"url": hook.url()}}),
            &[],
        ),
        consumer(json!({"name": "twice", "type": "stdout"}), &[]),
        falconer_delivery::declared::Desired {
            origin: falconer_delivery::declared::Origin::Setting("team-b".into()),
            ..consumer(
                json!({"name": "twice", "type": "file", "file": {"path": dir.path().join("x")}}),
                &[],
            )
        },
        consumer(
            json!({"name": "unsigned", "type": "webhook", "secretRef": {"name": "none"},
                   "webhook": {"url": hook.url(), "sign": true}}),
            &[],
        ),
    ];
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), consumers_declared)
            .await;
    // Consumers of Settings arrive once the hub runs, as from the Setting watcher.
    wait_until("the three consumers are listed", || async {
        consumers(&app).await.len() == 3
    })
    .await;
    let test = app
        .post("/api/v1/consumers/hook/test", "application/json", "")
        .await;
    assert_eq!(test.status, 200, "{}", test.text);
    assert_eq!(test.json()["delivered"], true);
    wait_until("the test event arrives", || async {
        !hook.events().is_empty()
    })
    .await;
    assert_eq!(hook.events()[0]["rule"], "Test rule");

    let views = consumers(&app).await;
    let names: Vec<&str> = views.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hook", "twice", "unsigned"]);
    let twice = &views[1];
    assert_eq!(twice["state"], "Stopped");
    assert!(
        twice["last_error"]
            .as_str()
            .unwrap()
            .contains("declared both"),
        "{twice}"
    );
    let unsigned = &views[2];
    assert_eq!(unsigned["state"], "Stopped");
    assert!(
        unsigned["last_error"].as_str().unwrap().contains("hmacKey"),
        "{unsigned}"
    );
    let cannot = app
        .post("/api/v1/consumers/unsigned/test", "application/json", "")
        .await;
    assert_eq!(cannot.status, 409, "{}", cannot.text);

    assert_eq!(
        app.get("/api/v1/consumers/nobody/dead-letters")
            .await
            .status,
        404
    );
    assert_eq!(
        app.post("/api/v1/consumers/nobody/test", "application/json", "")
            .await
            .status,
        404
    );
    let bad = app
        .post(
            "/api/v1/consumers/hook/dead-letters/replay",
            "application/json",
            "{\"ids\": \"all\"}",
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "ids");
    app.stop().await;
    hook.stop().await;
}

async fn a_hundred_thousand_events_reach_three_consumers_once_in_order_despite_an_outage_and_a_restart(
    backend: Backend,
) {
    const TOTAL: usize = 100_000;
    const HALF: usize = TOTAL / 2;
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.jsonl");
    let hook = WebhookServer::start();
    let search = OpenSearchServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Options {
            keep_sources: false,
            ..Options::default()
        },
    )
    .unwrap();
    let declare = || {
        vec![
            file_consumer("archive", &path),
            consumer(
                json!({"name": "hook", "type": "webhook", "webhook": {"url": hook.url(), "batch": true}}),
                &[],
            ),
            consumer(
                json!({"name": "search", "type": "opensearch", "opensearch": {"url": search.url()}}),
                &[],
            ),
        ]
    };
    let mut hub = hub_config();
    hub.ingest.max_events_per_request = 2_000;
    let app = TestApp::spawn_with_consumers(&db, hub.clone(), db.store_config(), declare()).await;
    wait_until("all consumers active", || async {
        consumers(&app)
            .await
            .iter()
            .filter(|c| c["state"] == "Active")
            .count()
            == 3
    })
    .await;
    hook.state.ids_only.store(true, Ordering::SeqCst);
    hook.state.down.store(true, Ordering::SeqCst);
    search.faults(|f| f.bulk_status = Some(503));
    let mut posted = Vec::with_capacity(TOTAL);
    for start in (0..HALF).step_by(2_000) {
        posted.extend(post_alerts(&app, "bulk", start..start + 2_000).await);
    }
    app.stop().await;

    let app = TestApp::spawn_with_consumers(&db, hub, db.store_config(), declare()).await;
    for start in (HALF..TOTAL).step_by(2_000) {
        posted.extend(post_alerts(&app, "bulk", start..start + 2_000).await);
        if start == HALF + 20_000 {
            hook.state.down.store(false, Ordering::SeqCst);
            search.faults(|f| f.bulk_status = None);
        }
    }
    wait_until("every consumer has delivered every event", || async {
        consumers(&app)
            .await
            .iter()
            .all(|c| c["delivered"].as_i64() >= Some(TOTAL as i64))
    })
    .await;
    let in_file = ids(&lines(&path));
    let at_hook = hook.ids();
    assert_eq!(in_file.len(), TOTAL);
    assert_eq!(in_file, posted, "file: once each, in order");
    assert_eq!(at_hook, posted, "webhook: once each, in order");
    assert_eq!(posted.iter().collect::<HashSet<_>>().len(), TOTAL);
    let in_search = search.ids("falconer-events-*");
    assert!(
        in_search.iter().all(|(_, version)| *version == 1),
        "opensearch: every document written once"
    );
    let in_search: Vec<String> = in_search.into_iter().map(|(id, _)| id).collect();
    assert_eq!(in_search, posted, "opensearch: once each, in order");
    app.stop().await;
    hook.stop().await;
    search.stop().await;
}

async fn a_redirect_is_not_followed_and_no_error_shows_the_secret_part_of_a_url(backend: Backend) {
    let db = TestDb::new(backend).await;
    let elsewhere = WebhookServer::start();
    let hook = WebhookServer::start();
    *hook.state.redirect_to.lock().unwrap() = Some(elsewhere.url());
    let url = format!(
        "http://{}/services/T000/B000/XSECRETPATHX?key=XQUERYX",
        hook.addr
    );
    let spec = json!({"name": "hook", "type": "webhook", "secretRef": {"name": "hooks"},
                      "webhook": {"url": url, "secretHeaders": {"authorization": "auth"}}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[("auth", "Bearer XTOKENX")])],
    )
    .await;
    let ids = post_alerts(&app, "moved", 0..1).await;
    wait_until("the consumer reports the redirect", || async {
        consumer_view(&app, "hook").await["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("307"))
    })
    .await;
    let view = consumer_view(&app, "hook").await;
    assert_eq!(view["state"], "Degraded", "{view}");
    let text = app.get("/api/v1/consumers").await.text;
    for secret in ["XSECRETPATHX", "XQUERYX", "XTOKENX"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains(&format!("http://{}", hook.addr)), "{text}");
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
    // The URL fixed (here: the receiver stops redirecting), the event arrives, once.
    *hook.state.redirect_to.lock().unwrap() = None;
    wait_until("the event arrives", || async { hook.ids() == ids }).await;
    assert_eq!(
        hook.requests()[0].headers["authorization"],
        "Bearer XTOKENX"
    );
    app.stop().await;
}

on_both_stores!(
    events_reach_a_file_consumer_once_each_in_commit_order_across_a_restart_from_the_first_request,
    a_redirect_is_not_followed_and_no_error_shows_the_secret_part_of_a_url,
    a_new_consumer_starts_now_and_replay_from_delivers_the_past,
    a_webhook_outage_degrades_the_consumer_and_loses_nothing,
    a_refused_event_goes_to_dead_letters_and_is_replayed_after_the_fix,
    webhook_requests_carry_idempotency_key_signature_and_headers,
    filters_choose_what_each_consumer_receives,
    the_consumers_api_tests_reports_and_refuses_what_cannot_run,
    a_hundred_thousand_events_reach_three_consumers_once_in_order_despite_an_outage_and_a_restart,
    an_edge_hub_forwards_its_events_to_a_central_hub_keeping_their_cluster,
    a_central_hub_answering_413_makes_the_edge_send_smaller_batches_and_dead_letter_an_event_too_large_alone,
);

/// The cursor rule of DESIGN.md §5: an event whose transaction commits after a later one is
/// still delivered, and never skipped by a cursor that already moved past the later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_cursor_never_skips_an_event_that_commits_late() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = TestApp::spawn(&db).await;
    let start = app
        .store
        .ensure_consumer("late", falconer_store::Start::Now)
        .await
        .unwrap()
        .position;
    // A transaction that inserts an event and stays open...
    let mut slow = db.side_connection().await;
    slow.execute("BEGIN").await;
    slow.execute(
        "INSERT INTO events (id, time, received_at, source, kind, severity, severity_raw, rule, \
         message, cluster, raw, day) VALUES ('0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6', now(), \
         now(), 'falco', 'runtime_alert', 4, 'Warning', 'late', 'late', 'home', '{}', \
         (now() AT TIME ZONE 'UTC')::date)",
    )
    .await;
    // ...while a later transaction commits.
    let later = post_alerts(&app, "early", 0..1).await.remove(0);
    let visible = app.store.events_after(start, 100).await.unwrap();
    assert!(
        visible.is_empty(),
        "read past a running transaction: {visible:?}"
    );
    slow.execute("COMMIT").await;
    // Visibility waits for every older transaction of the whole server to finish (other
    // tests run beside this one), so wait for it rather than expect it at once.
    let store = app.store.clone();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    wait_until("both events become readable", || {
        let (store, order) = (store.clone(), order.clone());
        async move {
            let visible = store.events_after(start, 100).await.unwrap();
            let ids: Vec<String> = visible.iter().map(|(_, e)| e.id.to_string()).collect();
            let done = ids.len() == 2;
            *order.lock().unwrap() = ids;
            done
        }
    })
    .await;
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        ["0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6".to_string(), later]
    );
    app.stop().await;
}

/// DESIGN.md §13: hub replicas share one PostgreSQL, and each consumer is delivered by exactly
/// one of them at a time; when that one stops, another takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_replica_at_a_time_delivers_a_consumer_and_another_takes_over() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.jsonl");
    let declare = || vec![file_consumer("shared", &path)];
    let first =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), declare()).await;
    wait_until("the first replica delivers", || async {
        consumer_view(&first, "shared").await["state"] == "Active"
    })
    .await;
    let second =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), declare()).await;
    wait_until("the second replica stands by", || async {
        let view = consumer_view(&second, "shared").await;
        view["state"] == "Pending"
            && view["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("another hub replica"))
    })
    .await;
    let mut posted = post_alerts(&first, "one", 0..50).await;
    posted.extend(post_alerts(&second, "two", 0..50).await);
    wait_until("100 events in the file", || async {
        lines(&path).len() >= 100
    })
    .await;

    first.stop().await;
    wait_until("the second replica takes over", || async {
        consumer_view(&second, "shared").await["state"] == "Active"
    })
    .await;
    posted.extend(post_alerts(&second, "three", 0..50).await);
    wait_until("150 events in the file", || async {
        lines(&path).len() >= 150
    })
    .await;
    let delivered = ids(&lines(&path));
    assert_eq!(delivered.len(), 150, "no event delivered twice");
    assert_eq!(
        delivered.iter().collect::<HashSet<_>>(),
        posted.iter().collect::<HashSet<_>>()
    );
    second.stop().await;
}

/// A hub forwarding everything to `central` with a `falconer` consumer named `to-central`.
async fn edge_forwarding_to(central: &TestApp, db: &TestDb) -> TestApp {
    let spec = json!({"name": "to-central", "type": "falconer", "secretRef": {"name": "central"},
                      "falconer": {"url": format!("http://{}", central.addr)}});
    TestApp::spawn_with_consumers(
        db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[("token", "unused-on-an-open-hub")])],
    )
    .await
}

async fn an_edge_hub_forwards_its_events_to_a_central_hub_keeping_their_cluster(backend: Backend) {
    let central_db = TestDb::new(backend).await;
    let central = TestApp::spawn(&central_db).await;
    let edge_db = TestDb::new(backend).await;
    let edge = edge_forwarding_to(&central, &edge_db).await;
    wait_until("the consumer is active", || async {
        consumer_view(&edge, "to-central").await["state"] == "Active"
    })
    .await;
    let body: Vec<Value> = (0..30)
        .map(|i| alert("forwarded", "2026-05-04T10:00:00Z", &format!("e{i}")))
        .collect();
    let reply = edge
        .client
        .post(edge.url("/ingest"))
        .header("content-type", "application/json")
        .header("x-falconer-cluster", "edge-1")
        .body(json!(body).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 202);
    wait_until("the central hub has every event", || async {
        central
            .get("/api/v1/events?cluster=edge-1&limit=100")
            .await
            .json()["events"]
            .as_array()
            .is_some_and(|e| e.len() == 30)
    })
    .await;
    let events = central
        .get("/api/v1/events?cluster=edge-1&limit=100")
        .await
        .json();
    let first = &events["events"][0];
    assert_eq!(first["source"], "falco");
    assert_eq!(first["rule"], "forwarded");
    let one = central
        .get(&format!("/api/v1/events/{}", first["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(
        one["raw"]["rule"], "forwarded",
        "the original payload travels along"
    );
    let clusters = central.get("/api/v1/clusters").await.json();
    assert_eq!(clusters["clusters"][0]["name"], "edge-1");
    // The edge saves its count with its cursor, just after the central hub answered.
    wait_until("the edge counts 30 delivered", || async {
        consumer_view(&edge, "to-central").await["delivered"] == 30
    })
    .await;
    edge.stop().await;
    central.stop().await;
}

async fn a_central_hub_answering_413_makes_the_edge_send_smaller_batches_and_dead_letter_an_event_too_large_alone(
    backend: Backend,
) {
    let central_db = TestDb::new(backend).await;
    let mut small = hub_config();
    // A forwarded event is about 1.5 KB: a full batch is far over, a few fit.
    small.ingest.max_body_bytes = 16 * 1024;
    let central = TestApp::spawn_with(&central_db, small, central_db.store_config()).await;
    let edge_db = TestDb::new(backend).await;
    let edge = edge_forwarding_to(&central, &edge_db).await;
    let mut posted = post_alerts(&edge, "before", 0..40).await;
    let huge = alert("huge", "2026-05-04T10:00:00Z", &"x".repeat(40 * 1024));
    let reply = edge.ingest(huge.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let huge_id = reply.ids().remove(0);
    posted.extend(post_alerts(&edge, "after", 0..40).await);

    wait_until(
        "the central hub has every event but the huge one",
        || async {
            central.get("/api/v1/events?limit=500").await.json()["events"]
                .as_array()
                .is_some_and(|e| e.len() == 80)
        },
    )
    .await;
    let events = central.get("/api/v1/events?limit=500").await.json();
    let rules: HashSet<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, HashSet::from(["before", "after"]));
    wait_until("the edge counts 80 delivered and 1 dead letter", || async {
        let view = consumer_view(&edge, "to-central").await;
        view["delivered"] == 80 && view["dead_letters"] == 1
    })
    .await;
    let letters = edge
        .get("/api/v1/consumers/to-central/dead-letters")
        .await
        .json();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event_id"], huge_id.as_str());
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("413") && reason.contains("this event alone"),
        "{reason}"
    );
    assert_eq!(posted.len(), 80);
    edge.stop().await;
    central.stop().await;
}

/// A PostgreSQL restart drops every session, so the advisory lock of the replica that was
/// delivering is gone while its worker runs on: it must notice before its next batch and
/// stand down, or both replicas deliver every event after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_after_a_database_restart_only_one_of_two_replicas_delivers_a_consumer() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.jsonl");
    let declare = || vec![file_consumer("shared", &path)];
    let first =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), declare()).await;
    wait_until("the first replica delivers", || async {
        consumer_view(&first, "shared").await["state"] == "Active"
    })
    .await;
    let second =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), declare()).await;
    wait_until("the second replica stands by", || async {
        consumer_view(&second, "shared").await["state"] == "Pending"
    })
    .await;
    let mut posted = post_alerts(&first, "before", 0..50).await;
    // Delivered and its cursor saved: nothing is in flight when the database goes.
    wait_until("50 events delivered and acknowledged", || async {
        lines(&path).len() >= 50 && consumer_view(&first, "shared").await["lag_events"] == 0
    })
    .await;

    // Every session ends, the advisory lock with them; both hubs reconnect.
    db.break_store().await.restore().await;
    for round in 0..4 {
        let app = if round % 2 == 0 { &first } else { &second };
        let rule = format!("after{round}");
        posted.extend(post_alerts(app, &rule, 0..50).await);
    }
    wait_until("250 events in the file", || async {
        lines(&path).len() >= 250
    })
    .await;
    wait_until("one replica delivers, the other stands by", || async {
        let states = [
            consumer_view(&first, "shared").await["state"].clone(),
            consumer_view(&second, "shared").await["state"].clone(),
        ];
        states.contains(&json!("Active")) && states.contains(&json!("Pending"))
    })
    .await;
    let delivered = ids(&lines(&path));
    assert_eq!(delivered.len(), 250, "events delivered by both replicas");
    assert_eq!(
        delivered.iter().collect::<HashSet<_>>(),
        posted.iter().collect::<HashSet<_>>()
    );
    first.stop().await;
    second.stop().await;
}
