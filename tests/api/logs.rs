//! Log and interop outputs end to end, through a real hub, its worker and store: a `syslog`
//! consumer to a real rsyslog, and a `webhook` in `format: falco` with `PUT` to another
//! hub's `PUT /` (the route falcosidekick's `webhook.method: PUT` uses).

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, fixture, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::syslog::{Listen, Rsyslog};
use serde_json::{Value, json};

async fn falco_alerts_reach_rsyslog_in_order_through_a_syslog_consumer(backend: Backend) {
    let db = TestDb::new(backend).await;
    let daemon = Rsyslog::start(Listen::Tcp).await;
    let spec = json!({"name": "siem", "type": "syslog",
                      "syslog": {"address": daemon.address(), "facility": "auth"}});
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let alerts: Vec<Value> = (0..3)
        .map(|i| {
            alert(
                "Terminal shell in container",
                "2026-05-04T10:00:00Z",
                &format!("shell {i}"),
            )
        })
        .collect();
    let reply = app.ingest(json!(alerts).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let received = daemon.wait_for(3).await;
    let ids: Vec<String> = received
        .iter()
        .map(|m| {
            let json: Value = serde_json::from_str(&m[m.find('{').unwrap()..]).unwrap();
            json["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids, reply.ids());
    // auth (4) × 8 + warning (4), the event's node as HOSTNAME.
    assert!(
        received[0]
            .starts_with("<36>1 2026-05-04T10:00:00.000000Z node-1 falconer - runtime_alert - {"),
        "{}",
        received[0]
    );

    let preview = app
        .post(
            "/api/v1/consumers/siem/preview",
            "application/json",
            json!({"event_id": ids[0]}).to_string(),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    let body = preview.json()["body"].as_str().unwrap().to_string();
    assert_eq!(body, received[0], "the preview is the message as received");
    app.stop().await;
}

async fn a_falco_format_webhook_puts_each_alert_byte_for_byte_to_another_hubs_root(
    backend: Backend,
) {
    let central_db = TestDb::new(backend).await;
    let central = TestApp::spawn(&central_db).await;
    let db = TestDb::new(backend).await;
    let spec = json!({"name": "sidekick", "type": "webhook",
                      "webhook": {"url": central.url("/"), "format": "falco", "method": "PUT"}});
    let edge = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let text = fixture("falcosidekick-webhook.json");
    let reply = edge.post("/", "application/json", text.clone()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    wait_until("the other hub stores the alert", || async {
        central.get("/api/v1/events").await.json()["events"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    })
    .await;
    let listed = central.get("/api/v1/events").await.json();
    let id = listed["events"][0]["id"].as_str().unwrap().to_string();
    let event = central.get(&format!("/api/v1/events/{id}")).await.json();
    let posted: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["raw"], posted, "the alert as Falco(sidekick) sent it");
    assert_eq!(event["source"], "falco");
    assert_eq!(event["rule"], "Outbound Connection to C2 Servers");
    edge.stop().await;
    central.stop().await;
}

on_both_stores!(
    falco_alerts_reach_rsyslog_in_order_through_a_syslog_consumer,
    a_falco_format_webhook_puts_each_alert_byte_for_byte_to_another_hubs_root,
);
