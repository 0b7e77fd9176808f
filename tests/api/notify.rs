//! Notification consumers end to end: noise control (`aggregate`, `rateLimit`) through a
//! real worker and store, across a restart; templates checked at start; an `alertmanager`
//! consumer kept firing by its summaries in a real Alertmanager.

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::webhook::WebhookServer;
use serde_json::{Value, json};

fn slack(receiver: &WebhookServer, noise: Value) -> falconer_delivery::declared::Desired {
    let mut spec = json!({"name": "chat", "type": "slack", "slack": {"url": receiver.url()}});
    for (key, value) in noise.as_object().unwrap() {
        spec[key] = value.clone();
    }
    consumer(spec, &[])
}

/// A hub on `backend` with one Slack consumer (`noise`: its extra settings) posting to a
/// receiver.
async fn chat_hub(backend: Backend, noise: Value) -> (TestDb, WebhookServer, TestApp) {
    let db = TestDb::new(backend).await;
    let receiver = WebhookServer::start();
    let chat = slack(&receiver, noise);
    let app = TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![chat]).await;
    (db, receiver, app)
}

/// The text of each Slack message received, in order.
fn texts(receiver: &WebhookServer) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .map(|r| {
            r.body["attachments"][0]["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn post(app: &TestApp, alerts: Vec<Value>) {
    let reply = app.ingest(json!(alerts).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}

fn burst(rule: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| alert(rule, "2026-05-04T10:00:00Z", &format!("{rule} {i}")))
        .collect()
}

async fn a_burst_of_fifty_one_alerts_reaches_slack_as_three_messages_one_counting_the_folded_ones(
    backend: Backend,
) {
    let (_db, receiver, app) = chat_hub(backend, json!({"aggregate": {"window": "2s"}})).await;
    // 50 of one rule on one pod, and one other.
    let mut alerts = burst("Terminal shell in container", 50);
    alerts.extend(burst("Write below etc", 1));
    post(&app, alerts).await;
    wait_until("the summary arrives", || async {
        texts(&receiver).iter().any(|t| t.contains("49 more of"))
    })
    .await;
    let texts = texts(&receiver);
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[0].starts_with("*Terminal shell in container*"),
        "{}",
        texts[0]
    );
    assert!(texts[1].starts_with("*Write below etc*"), "{}", texts[1]);
    assert!(
        texts[2].contains("49 more of Terminal shell in container on shop/web-1 in the last"),
        "{}",
        texts[2]
    );
    let metrics = app.get("/metrics").await.text;
    for line in [
        "falconer_delivery_events_total{consumer=\"chat\",sink=\"slack\",result=\"folded\"} 49",
        "falconer_delivery_events_total{consumer=\"chat\",sink=\"slack\",result=\"summary\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    app.stop().await;
    receiver.stop().await;
}

async fn folded_alerts_survive_a_restart_and_are_summarized_after_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let receiver = WebhookServer::start();
    let noise = json!({"aggregate": {"window": "4s"}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![slack(&receiver, noise.clone())],
    )
    .await;
    post(&app, burst("Terminal shell in container", 10)).await;
    wait_until("the first message arrives", || async {
        !texts(&receiver).is_empty()
    })
    .await;
    // The folded events are saved with the cursor: stop before the window closes.
    wait_until("the cursor moved past the burst", || async {
        app.get("/api/v1/consumers").await.json()["consumers"][0]["skipped"].as_i64() == Some(9)
    })
    .await;
    app.stop().await;
    assert_eq!(texts(&receiver).len(), 1, "no summary yet");

    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![slack(&receiver, noise)],
    )
    .await;
    wait_until("the summary arrives after the restart", || async {
        texts(&receiver).len() >= 2
    })
    .await;
    let texts = texts(&receiver);
    assert_eq!(
        texts.len(),
        2,
        "the first event is not sent again: {texts:#?}"
    );
    assert!(
        texts[1].contains("9 more of Terminal shell in container"),
        "{}",
        texts[1]
    );
    app.stop().await;
    receiver.stop().await;
}

async fn past_the_rate_limit_alerts_are_held_back_and_counted_in_a_summary(backend: Backend) {
    let (_db, receiver, app) =
        chat_hub(backend, json!({"rateLimit": {"messages": 2, "per": "2s"}})).await;
    post(&app, burst("Noisy rule", 6)).await;
    wait_until("the summary arrives", || async {
        texts(&receiver).iter().any(|t| t.contains("held back"))
    })
    .await;
    let texts = texts(&receiver);
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[2].contains("4 of Noisy rule on shop/web-1 in the last")
            && texts[2].contains("(held back by the rate limit)"),
        "{}",
        texts[2]
    );
    app.stop().await;
    receiver.stop().await;
}

async fn a_template_renders_each_message_and_a_summary_says_what_it_stands_for(backend: Backend) {
    let (_db, receiver, app) = chat_hub(
        backend,
        json!({"template": "{{ fields['proc.name'] }} in {{ namespace }}/{{ pod }}",
               "aggregate": {"window": "2s"}}),
    )
    .await;
    post(&app, burst("Terminal shell in container", 3)).await;
    wait_until("the summary arrives", || async {
        texts(&receiver).len() >= 2
    })
    .await;
    let texts = texts(&receiver);
    assert_eq!(texts[0], "*Terminal shell in container*\nsh in shop/web-1");
    assert!(
        texts[1].contains("2 more of Terminal shell in container")
            && texts[1].ends_with("sh in shop/web-1"),
        "{}",
        texts[1]
    );
    app.stop().await;
    receiver.stop().await;
}

async fn a_preview_renders_a_stored_or_posted_event_with_the_template_and_sends_nothing(
    backend: Backend,
) {
    let (_db, receiver, app) = chat_hub(backend, json!({"template": "{{ rule }} by {{ fields['proc.name'] }}", "filter": {"rules": ["nothing matches"]}})).await;
    let reply = app
        .ingest(alert("Shell", "2026-05-04T10:00:00Z", "x").to_string())
        .await;
    let id = reply.ids()[0].clone();
    let text = |reply: &crate::helpers::Reply| {
        reply.json()["body"]["attachments"][0]["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let stored = app
        .post(
            "/api/v1/consumers/chat/preview",
            "application/json",
            json!({"event_id": id}).to_string(),
        )
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.json()["type"], "slack");
    assert_eq!(text(&stored), "*Shell*\nShell by sh");

    let mut event = app.get(&format!("/api/v1/events/{id}")).await.json();
    event["rule"] = "Edited".into();
    let posted = app
        .post(
            "/api/v1/consumers/chat/preview",
            "application/json",
            json!({"event": event}).to_string(),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text);
    assert_eq!(text(&posted), "*Edited*\nEdited by sh");

    for (body, status, field) in [
        (json!({"event_id": "nope"}), 400, "event_id"),
        (json!({"event": {"rule": "x"}}), 400, "event"),
        (json!({"evnt": {}}), 400, "evnt"),
        (json!({"event_id": uuid::Uuid::now_v7()}), 404, ""),
    ] {
        let reply = app
            .post(
                "/api/v1/consumers/chat/preview",
                "application/json",
                body.to_string(),
            )
            .await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        if !field.is_empty() {
            assert_eq!(reply.json()["field"], field, "{}", reply.text);
        }
    }
    let unknown = app
        .post("/api/v1/consumers/nobody/preview", "application/json", "")
        .await;
    assert_eq!(unknown.status, 404);
    assert!(receiver.requests().is_empty(), "a preview sends nothing");
    app.stop().await;
    receiver.stop().await;
}

/// The one alert Alertmanager fires, once it has one with `check` true.
async fn firing(
    am: &falconer_testkit::alertmanager::Alertmanager,
    what: &str,
    check: fn(&Value) -> bool,
) -> Value {
    wait_until(what, || async { am.alerts().await.iter().any(check) }).await;
    let alerts = am.alerts().await;
    assert_eq!(alerts.len(), 1, "one group, one alert: {alerts:#?}");
    alerts[0].clone()
}

async fn a_burst_is_one_alertmanager_alert_that_its_summary_keeps_firing_longer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let am = falconer_testkit::alertmanager::Alertmanager::start().await;
    let spec = json!({
        "name": "am", "type": "alertmanager",
        "alertmanager": {"url": am.url(), "extraLabels": {"team": "security"}},
        "aggregate": {"window": "2s"},
    });
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    post(&app, burst("Terminal shell in container", 5)).await;
    let first = firing(&am, "the first event's alert", |_| true).await;
    let labels = &first["labels"];
    assert_eq!(labels["alertname"], "Terminal shell in container");
    assert_eq!(labels["severity"], "warning");
    assert_eq!(labels["namespace"], "shop");
    assert_eq!(labels["team"], "security");
    assert!(
        labels["falconer_group"]
            .as_str()
            .is_some_and(|g| g.len() == 32),
        "{labels}"
    );
    assert!(
        labels.get("pod").is_none(),
        "unbounded, not asked for: {labels}"
    );

    let summary = firing(&am, "the summary's re-send", |a| {
        a["annotations"]["falconer_folded"] == "4"
    })
    .await;
    assert_eq!(summary["labels"], first["labels"], "the same alert");
    assert_eq!(summary["startsAt"], first["startsAt"]);
    let end =
        |a: &Value| chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap()).unwrap();
    assert!(
        end(&summary) > end(&first),
        "{} then {}",
        first["endsAt"],
        summary["endsAt"]
    );
    assert!(
        summary["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("4 more of Terminal shell in container on shop/web-1"),
        "{summary}"
    );

    let id = app
        .ingest(alert("Shell", "2026-05-04T10:00:00Z", "x").to_string())
        .await
        .ids()[0]
        .clone();
    let preview = app
        .post(
            "/api/v1/consumers/am/preview",
            "application/json",
            json!({"event_id": id}).to_string(),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(preview.json()["type"], "alertmanager");
    assert_eq!(preview.json()["body"][0]["labels"]["alertname"], "Shell");
    app.stop().await;
}

on_both_stores!(
    a_burst_is_one_alertmanager_alert_that_its_summary_keeps_firing_longer,
    a_preview_renders_a_stored_or_posted_event_with_the_template_and_sends_nothing,
    a_burst_of_fifty_one_alerts_reaches_slack_as_three_messages_one_counting_the_folded_ones,
    folded_alerts_survive_a_restart_and_are_summarized_after_it,
    past_the_rate_limit_alerts_are_held_back_and_counted_in_a_summary,
    a_template_renders_each_message_and_a_summary_says_what_it_stands_for,
);
