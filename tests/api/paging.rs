//! Paging and chat consumers of one POST per notice (`pagerduty`, `opsgenie`, …) end to end: through a
//! real hub, its worker, noise control and store, to the testkit's webhook receiver.

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::webhook::WebhookServer;
use serde_json::{Value, json};

/// A hub on `backend` with one consumer `spec` (its `url` pointed at a receiver), and its
/// Secret's keys.
async fn hub(
    backend: Backend,
    mut spec: Value,
    secrets: &[(&str, &str)],
) -> (TestDb, WebhookServer, TestApp) {
    let db = TestDb::new(backend).await;
    let receiver = WebhookServer::start();
    let kind = spec["type"].as_str().unwrap().to_string();
    spec[&kind]["url"] = receiver.url().into();
    spec["name"] = "paging".into();
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, secrets)],
    )
    .await;
    (db, receiver, app)
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

async fn a_burst_pages_pagerduty_once_and_its_summary_re_triggers_the_same_alert(backend: Backend) {
    let (_db, receiver, app) = hub(
        backend,
        json!({"type": "pagerduty", "pagerduty": {}, "secretRef": {"name": "pd"},
               "aggregate": {"window": "2s"}}),
        &[("routingKey", "R0UT1NGKEY")],
    )
    .await;
    post(&app, burst("Terminal shell in container", 5)).await;
    wait_until("the summary arrives", || async {
        receiver.requests().len() >= 2
    })
    .await;
    let sent: Vec<Value> = receiver.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for body in &sent {
        assert_eq!(body["routing_key"], "R0UT1NGKEY");
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(
            body["dedup_key"], sent[0]["dedup_key"],
            "one group, one alert"
        );
    }
    assert!(
        sent[0]["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Terminal shell in container: "),
        "{}",
        sent[0]["payload"]
    );
    assert_eq!(sent[0]["payload"]["severity"], "warning");
    assert!(
        sent[1]["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("4 more of Terminal shell in container on shop/web-1"),
        "{}",
        sent[1]["payload"]
    );
    assert_eq!(sent[1]["payload"]["custom_details"]["Count"], 4);

    let preview = app
        .post("/api/v1/consumers/paging/preview", "application/json", "")
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(preview.json()["type"], "pagerduty");
    assert_eq!(preview.json()["body"]["client"], "Falconer");
    assert!(
        !preview.text.contains("R0UT1NGKEY"),
        "a preview never shows the key: {}",
        preview.text
    );
    let metrics = app.get("/metrics").await.text;
    let line = "falconer_delivery_events_total{consumer=\"paging\",sink=\"pagerduty\",result=\"summary\"} 1";
    assert!(metrics.contains(line), "{line} in\n{metrics}");
    app.stop().await;
    receiver.stop().await;
}

async fn an_opsgenie_alert_carries_the_secrets_key_and_the_groups_alias(backend: Backend) {
    let (_db, receiver, app) = hub(
        backend,
        json!({"type": "opsgenie", "opsgenie": {"tags": ["falconer"]},
               "secretRef": {"name": "og"}}),
        &[("apiKey", "G3N13K3Y")],
    )
    .await;
    post(&app, burst("Write below etc", 1)).await;
    wait_until("the alert arrives", || async {
        !receiver.requests().is_empty()
    })
    .await;
    let sent = &receiver.requests()[0];
    assert_eq!(sent.headers["authorization"], "GenieKey G3N13K3Y");
    assert_eq!(sent.body["alias"].as_str().unwrap().len(), 32);
    assert_eq!(sent.body["priority"], "P4");
    assert_eq!(sent.body["tags"], json!(["test", "falconer"]));
    assert_eq!(sent.body["source"], "Falconer");
    app.stop().await;
    receiver.stop().await;
}

async fn a_rocketchat_success_false_answer_is_a_dead_letter_and_delivery_goes_on(backend: Backend) {
    let (_db, receiver, app) = hub(
        backend,
        json!({"type": "rocketchat", "rocketchat": {}, "allowInsecureHttp": true}),
        &[],
    )
    .await;
    *receiver.state.answer.lock().unwrap() = Some((
        200,
        r#"{"success":false,"error":"error-invalid-channel"}"#.into(),
    ));
    post(&app, burst("refused", 1)).await;
    wait_until("the refused message is a dead letter", || async {
        app.get("/api/v1/consumers/paging/dead-letters")
            .await
            .json()["dead_letters"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    })
    .await;
    let letters = app
        .get("/api/v1/consumers/paging/dead-letters")
        .await
        .json();
    let reason = letters["dead_letters"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("error-invalid-channel"), "{reason}");
    *receiver.state.answer.lock().unwrap() = None;
    post(&app, burst("delivered", 1)).await;
    wait_until("the next message is delivered", || async {
        receiver
            .requests()
            .iter()
            .any(|r| r.body.to_string().contains("delivered 0"))
    })
    .await;
    app.stop().await;
    receiver.stop().await;
}

on_both_stores!(
    a_burst_pages_pagerduty_once_and_its_summary_re_triggers_the_same_alert,
    an_opsgenie_alert_carries_the_secrets_key_and_the_groups_alias,
    a_rocketchat_success_false_answer_is_a_dead_letter_and_delivery_goes_on,
);
