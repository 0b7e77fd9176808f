//! The `policyreport` sink in a hub running "in a cluster": its connection is the scripted
//! Kubernetes API server of `falconer-testkit` (no cluster runs on the build machine), which
//! also answers the Setting and Secret watches as an idle cluster does.

use crate::helpers::{
    Backend, TestApp, TestDb, alert, app_config, consumer, hub_config, wait_until,
};
use crate::on_both_stores;
use falconer_testkit::kube::{ApiServer, Route, status};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const REPORTS: &str = "/apis/wgpolicyk8s.io/v1alpha2/namespaces";

fn list(kind: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": if kind == "SecretList" { "v1" } else { "falconer.io/v1alpha1" },
        "kind": kind,
        "metadata": {"resourceVersion": "1"},
        "items": [],
    }))
    .unwrap()
}

fn not_found(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404,
        "reason": "NotFound", "message": format!("policyreports.wgpolicyk8s.io \"{name}\" not found"),
        "details": {"name": name, "group": "wgpolicyk8s.io", "kind": "policyreports"},
    }))
    .unwrap()
}

fn applied(namespace: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "2"},
    }))
    .unwrap()
}

fn in_namespace(rule: &str, namespace: &str) -> Value {
    // Outputs differ, or the hub stores the second alert as a retry of the first.
    let output = format!("{rule} in {namespace}");
    let mut alert = alert(rule, "2026-11-22T10:00:00.000000000Z", &output);
    alert["output_fields"]["k8s.ns.name"] = json!(namespace);
    alert
}

async fn view(app: &TestApp, name: &str) -> Value {
    app.get("/api/v1/consumers").await.json()["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn alerts_become_policy_reports_and_a_refused_report_goes_to_the_dead_letters(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let shop = format!("{REPORTS}/shop/policyreports/falconer-shop");
    let payments = format!("{REPORTS}/payments/policyreports/falconer-payments");
    let routes = BTreeMap::from([
        // An idle cluster: no Setting, no Secret; the watches stay open.
        (
            "/apis/falconer.io/v1alpha1/settings".to_string(),
            Route::from([(200, list("SettingList"))]),
        ),
        (
            "/api/v1/namespaces/falconer-system/secrets".to_string(),
            Route::from([(200, list("SecretList"))]),
        ),
        // GET (no report yet), then the apply.
        (
            shop.clone(),
            Route::from([
                (404, not_found("falconer-shop")),
                (200, applied("shop", "falconer-shop")),
            ]),
        ),
        (
            payments.clone(),
            Route::from([
                (404, not_found("falconer-payments")),
                (
                    422,
                    serde_json::to_vec(&status(422, "Invalid", "results[0].rule: Too long"))
                        .unwrap(),
                ),
            ]),
        ),
    ]);
    let (client, server) = ApiServer::start();
    let routed = server.route(routes);
    let kube = falconer::app::Kube {
        client,
        cluster: "home".into(),
        namespace: "falconer-system".into(),
    };
    let reports = consumer(json!({"name": "reports", "type": "policyreport"}), &[]);
    let app = TestApp::spawn_in(
        app_config(hub_config(), db.store_config()),
        vec![reports],
        Some(kube),
    )
    .await;
    wait_until("the consumer runs", || async {
        !view(&app, "reports").await.is_null()
    })
    .await;

    let reply = app
        .ingest(
            json!([
                in_namespace("Shell", "shop"),
                in_namespace("Shell", "payments")
            ])
            .to_string(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let ids = reply.ids();

    wait_until("one delivered, one dead letter", || async {
        let view = view(&app, "reports").await;
        view["delivered"] == 1 && view["dead_letters"] == 1
    })
    .await;
    let dead = app.store.dead_letters("reports", 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id.to_string(), ids[1]);
    assert!(
        dead[0]
            .reason
            .contains("PolicyReport payments/falconer-payments (422 Invalid)"),
        "{}",
        dead[0].reason
    );
    let seen = routed.seen();
    let applies: Vec<&String> = seen
        .iter()
        .filter(|uri| uri.starts_with(&shop) && uri.contains("fieldManager=falconer"))
        .collect();
    assert_eq!(applies.len(), 1, "{seen:?}");
    assert!(applies[0].contains("force=true"), "{seen:?}");
    app.stop().await;
}

on_both_stores!(alerts_become_policy_reports_and_a_refused_report_goes_to_the_dead_letters);
