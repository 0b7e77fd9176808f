//! Triage: alert groups kept on ingest, their states and history, suppressions that mark
//! events without losing them, and consumers that skip or take suppressed events.

use crate::delivery::consumer_view;
use crate::helpers::{Backend, Reply, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_hub::config::{Scope, TokenEntry, TokenHash};
use serde_json::{Value, json};

fn token(name: &str, scopes: &[Scope]) -> TokenEntry {
    TokenEntry {
        name: name.into(),
        sha256: TokenHash::of(&format!("{name}-secret")),
        scopes: scopes.to_vec(),
        clusters: Vec::new(),
        sources: Vec::new(),
    }
}

fn in_days(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339()
}

async fn delete(app: &TestApp, token: Option<&str>, path: &str) -> Reply {
    let mut request = app.client.delete(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::read(request.send().await.expect("DELETE")).await
}

fn alert_in(rule: &str, pod: &str, priority: &str, time: &str) -> Value {
    let mut alert = alert(rule, time, &format!("{rule} in {pod}"));
    alert["priority"] = json!(priority);
    alert["output_fields"]["k8s.pod.name"] = json!(pod);
    alert
}

async fn groups(app: &TestApp, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/api/v1/groups{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["groups"].as_array().unwrap().clone()
}

async fn events_of(app: &TestApp, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/api/v1/events{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["events"].as_array().unwrap().clone()
}

async fn events_of_one_problem_form_one_group_that_counts_and_keeps_the_highest_severity(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let batch = json!([
        alert_in("Shell in pod", "web-1", "Warning", "2026-05-04T10:00:00Z"),
        alert_in("Shell in pod", "web-1", "Critical", "2026-05-04T10:01:00Z"),
        alert_in("Shell in pod", "web-2", "Notice", "2026-05-04T10:02:00Z"),
        alert_in(
            "Read sensitive file",
            "web-1",
            "Error",
            "2026-05-04T10:03:00Z"
        ),
    ]);
    let reply = app.ingest(batch.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let one_more = alert_in("Shell in pod", "web-1", "Notice", "2026-05-04T10:04:00Z");
    assert_eq!(app.ingest(one_more.to_string()).await.status, 202);

    let listed = groups(&app, "").await;
    assert_eq!(listed.len(), 3, "{listed:#?}");
    // Most recently seen first.
    let shell_web1 = &listed[0];
    assert_eq!(shell_web1["rule"], "Shell in pod");
    assert_eq!(shell_web1["count"], 3);
    assert_eq!(shell_web1["severity"], "critical");
    assert_eq!(shell_web1["state"], "open");
    assert_eq!(shell_web1["namespace"], "shop");
    assert_eq!(shell_web1["first_seen"], "2026-05-04T10:00:00Z");
    assert_eq!(shell_web1["last_seen"], "2026-05-04T10:04:00Z");
    assert_eq!(listed[1]["rule"], "Read sensitive file");
    assert_eq!(listed[2]["count"], 1);

    let id = shell_web1["id"].as_str().unwrap();
    let members = events_of(&app, &format!("?group={id}")).await;
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|e| e["group"] == id), "{members:#?}");

    let detail = app.get(&format!("/api/v1/groups/{id}")).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    let detail = detail.json();
    assert_eq!(detail["count"], 3);
    assert_eq!(detail["events"].as_array().unwrap().len(), 3);
    assert_eq!(detail["history"], json!([]));

    // Filters and keyset pages.
    assert_eq!(groups(&app, "?rule=Read%20sensitive%20file").await.len(), 1);
    assert_eq!(groups(&app, "?min_severity=error").await.len(), 2);
    assert_eq!(groups(&app, "?state=acknowledged").await.len(), 0);
    let first = app.get("/api/v1/groups?limit=2").await.json();
    assert_eq!(first["groups"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = groups(&app, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], listed[2]["id"]);
    app.stop().await;
}

async fn a_group_is_acknowledged_resolved_and_reopened_by_people_and_by_its_next_event(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.tokens = vec![
        token("falco", &[Scope::Ingest]),
        token("alice", &[Scope::Operate, Scope::Read]),
        token("dashboard", &[Scope::Read]),
    ];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let post = |time: &'static str| {
        let body = alert_in("Shell in pod", "web-1", "Warning", time).to_string();
        let app = &app;
        async move {
            let reply = app.post_as("falco-secret", "/ingest", body).await;
            assert_eq!(reply.status, 202, "{}", reply.text);
        }
    };
    post("2026-05-04T10:00:00Z").await;
    let listed = app
        .get_as("dashboard-secret", "/api/v1/groups")
        .await
        .json();
    let id = listed["groups"][0]["id"].as_str().unwrap().to_string();
    let action = |name: &str, body: Value| {
        let path = format!("/api/v1/groups/{id}/{name}");
        let app = &app;
        async move { app.post_as("alice-secret", &path, body.to_string()).await }
    };

    let reply = app
        .post_as(
            "dashboard-secret",
            &format!("/api/v1/groups/{id}/acknowledge"),
            "{}",
        )
        .await;
    assert_eq!(reply.status, 403, "a read token cannot acknowledge");

    let acked = action("acknowledge", json!({"comment": "looking at it"})).await;
    assert_eq!(acked.status, 200, "{}", acked.text);
    assert_eq!(acked.json()["state"], "acknowledged");
    let again = action("acknowledge", json!({})).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(
        again.text.contains("the group is acknowledged"),
        "{}",
        again.text
    );

    // An acknowledged group keeps counting and stays acknowledged.
    post("2026-05-04T10:05:00Z").await;
    let group = app
        .get_as("alice-secret", &format!("/api/v1/groups/{id}"))
        .await
        .json();
    assert_eq!(group["state"], "acknowledged");
    assert_eq!(group["count"], 2);

    assert_eq!(
        action("resolve", json!({"comment": "fixed the image"}))
            .await
            .status,
        200
    );
    assert_eq!(action("resolve", json!({})).await.status, 409);
    assert_eq!(action("reopen", json!({})).await.status, 200);
    assert_eq!(action("reopen", json!({})).await.status, 409);
    assert_eq!(action("resolve", Value::Null).await.status, 200);

    // A new event reopens a resolved group, and the history says so.
    post("2026-05-04T10:10:00Z").await;
    let group = app
        .get_as("alice-secret", &format!("/api/v1/groups/{id}"))
        .await
        .json();
    assert_eq!(group["state"], "open");
    assert_eq!(group["count"], 3);
    let history: Vec<(String, String, Option<String>)> = group["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["actor"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
                c["comment"].as_str().map(str::to_string),
            )
        })
        .collect();
    let alice = |state: &str, comment: Option<&str>| {
        (
            "alice".to_string(),
            state.to_string(),
            comment.map(str::to_string),
        )
    };
    assert_eq!(
        history,
        [
            alice("acknowledged", Some("looking at it")),
            alice("resolved", Some("fixed the image")),
            alice("open", None),
            alice("resolved", None),
            (
                "falconer".to_string(),
                "open".to_string(),
                Some("a new event arrived".to_string())
            ),
        ]
    );
    app.stop().await;
}

async fn bad_group_and_suppression_requests_are_refused_naming_the_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let refused = |reply: Reply, status: u16, field: &str| {
        assert_eq!(reply.status, status, "{}", reply.text);
        if status == 400 {
            assert_eq!(reply.json()["field"], field, "{}", reply.text);
        }
    };
    refused(app.get("/api/v1/groups?state=done").await, 400, "state");
    refused(app.get("/api/v1/groups?cursor=x").await, 400, "cursor");
    refused(app.get("/api/v1/groups?pod=x").await, 400, "pod");
    refused(app.get("/api/v1/groups/nothex").await, 400, "id");
    refused(
        app.get(&format!("/api/v1/groups/{}", "a".repeat(32))).await,
        404,
        "",
    );
    refused(app.get("/api/v1/events?group=x").await, 400, "group");
    refused(
        app.get("/api/v1/events?suppressed=maybe").await,
        400,
        "suppressed",
    );
    let unknown = format!("/api/v1/groups/{}/resolve", "a".repeat(32));
    refused(app.post(&unknown, "application/json", "").await, 404, "");
    refused(
        app.post(&unknown, "application/json", r#"{"note": "x"}"#)
            .await,
        400,
        "note",
    );
    refused(
        app.post(
            &unknown,
            "application/json",
            json!({"comment": "x".repeat(1001)}).to_string(),
        )
        .await,
        400,
        "comment",
    );
    refused(
        app.post(&unknown, "application/json", "[1]").await,
        400,
        "body",
    );

    let suppress = |body: Value| {
        let app = &app;
        async move {
            app.post("/api/v1/suppressions", "application/json", body.to_string())
                .await
        }
    };
    let good = json!({"match": {"rules": ["Shell*"]}, "reason": "known", "expires": in_days(7)});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    refused(suppress(with("match", json!({}))).await, 400, "match");
    refused(
        suppress(with("match", json!({"fields": {"proc.name": {}}}))).await,
        400,
        r#"match.fields["proc.name"]"#,
    );
    refused(
        suppress(with("match", json!({"rulez": ["x"]}))).await,
        400,
        "match",
    );
    refused(suppress(with("reason", json!(""))).await, 400, "reason");
    refused(
        suppress(with("expires", json!(in_days(91)))).await,
        400,
        "expires",
    );
    refused(
        suppress(with("expires", json!(in_days(-1)))).await,
        400,
        "expires",
    );
    refused(
        suppress(with("expires", json!("tomorrow"))).await,
        400,
        "expires",
    );
    refused(suppress(with("owner", json!("me"))).await, 400, "owner");
    let mut no_expiry = good.clone();
    no_expiry.as_object_mut().unwrap().remove("expires");
    refused(suppress(no_expiry).await, 400, "expires");
    refused(
        app.get("/api/v1/suppressions?expired=yes").await,
        400,
        "expired",
    );
    refused(
        delete(&app, None, "/api/v1/suppressions/x").await,
        400,
        "id",
    );
    let missing = format!("/api/v1/suppressions/{}", uuid::Uuid::now_v7());
    refused(delete(&app, None, &missing).await, 404, "");

    let created = suppress(good).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/suppressions/{id}").as_str())
    );
    let listed = app.get("/api/v1/suppressions").await.json();
    assert_eq!(listed["suppressions"][0]["created_by"], "anonymous");
    assert_eq!(listed["suppressions"][0]["origin"], "api");
    let path = format!("/api/v1/suppressions/{id}");
    assert_eq!(delete(&app, None, &path).await.status, 204);
    assert_eq!(delete(&app, None, &path).await.status, 404);
    assert_eq!(
        app.get("/api/v1/suppressions").await.json()["suppressions"],
        json!([])
    );
    app.stop().await;
}

async fn suppressed_events_are_stored_and_counted_but_reach_only_a_consumer_that_includes_them(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (plain, all) = (dir.path().join("plain.jsonl"), dir.path().join("all.jsonl"));
    let consumers = vec![
        consumer(
            json!({"name": "plain", "type": "file", "file": {"path": plain}}),
            &[],
        ),
        consumer(
            json!({"name": "all", "type": "file", "file": {"path": all}, "includeSuppressed": true}),
            &[],
        ),
    ];
    let app = TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), consumers).await;
    let body = json!({
        "match": {"rules": ["Shell*"], "fields": {"proc.name": {"in": ["sh", "bash"]}}},
        "reason": "the nightly backup job opens a shell",
        "expires": in_days(1),
    });
    let created = app
        .post("/api/v1/suppressions", "application/json", body.to_string())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let suppression = created.json()["id"].as_str().unwrap().to_string();

    let mut other_process = alert_in("Shell in pod", "web-1", "Warning", "2026-05-04T10:01:00Z");
    other_process["output_fields"]["proc.name"] = json!("python");
    let batch = json!([
        alert_in("Shell in pod", "web-1", "Warning", "2026-05-04T10:00:00Z"),
        other_process,
        alert_in(
            "Read sensitive file",
            "web-1",
            "Warning",
            "2026-05-04T10:02:00Z"
        ),
    ]);
    let reply = app.ingest(batch.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let ids = reply.ids();

    let stored = app.get(&format!("/api/v1/events/{}", ids[0])).await.json();
    assert_eq!(stored["suppressed"], suppression.as_str());
    let shown = events_of(&app, "?suppressed=false").await;
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|e| e.get("suppressed").is_none()));
    assert_eq!(events_of(&app, "?suppressed=true").await.len(), 1);
    assert_eq!(events_of(&app, "").await.len(), 3);
    let shell = groups(&app, "?rule=Shell%20in%20pod").await;
    assert_eq!(shell[0]["count"], 2);
    assert_eq!(shell[0]["suppressed"], 1);

    wait_until("both consumers settled the three events", || async {
        let plain = consumer_view(&app, "plain").await;
        let all = consumer_view(&app, "all").await;
        plain["delivered"].as_i64().unwrap_or(0) + plain["skipped"].as_i64().unwrap_or(0) == 3
            && all["delivered"] == 3
    })
    .await;
    let delivered = |path: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(delivered(&plain), [ids[1].clone(), ids[2].clone()]);
    assert_eq!(delivered(&all), ids);
    app.stop().await;
}

async fn an_expired_or_deleted_suppression_stops_matching_by_itself(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let short = json!({"match": {"rules": ["Shell in pod"]}, "reason": "a short one",
                       "expires": expires.to_rfc3339()});
    let created = app
        .post(
            "/api/v1/suppressions",
            "application/json",
            short.to_string(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let post = || async {
        let mut body = alert_in("Shell in pod", "web-1", "Warning", "2026-05-04T10:00:00Z");
        body["output"] = json!(uuid::Uuid::now_v7().to_string());
        let reply = app.ingest(body.to_string()).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        reply.ids()[0].clone()
    };
    let early = post().await;
    let stored = app.get(&format!("/api/v1/events/{early}")).await.json();
    assert!(stored["suppressed"].is_string(), "{stored}");

    let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    let late = post().await;
    let stored = app.get(&format!("/api/v1/events/{late}")).await.json();
    assert!(stored.get("suppressed").is_none(), "{stored}");
    assert_eq!(
        app.get("/api/v1/suppressions").await.json()["suppressions"],
        json!([])
    );
    let with_expired = app.get("/api/v1/suppressions?expired=true").await.json();
    assert_eq!(with_expired["suppressions"].as_array().unwrap().len(), 1);

    // A deleted one stops at once.
    let long = json!({"match": {"rules": ["Shell in pod"]}, "reason": "until deleted",
                      "expires": in_days(1)});
    let created = app
        .post("/api/v1/suppressions", "application/json", long.to_string())
        .await
        .json();
    let during = post().await;
    let stored = app.get(&format!("/api/v1/events/{during}")).await.json();
    assert_eq!(stored["suppressed"], created["id"]);
    let path = format!("/api/v1/suppressions/{}", created["id"].as_str().unwrap());
    assert_eq!(delete(&app, None, &path).await.status, 204);
    let after = post().await;
    let stored = app.get(&format!("/api/v1/events/{after}")).await.json();
    assert!(stored.get("suppressed").is_none(), "{stored}");
    app.stop().await;
}

fn declared(name: &str, rule: &str, days: i64) -> falconer_model::suppression::DeclaredSuppression {
    serde_json::from_value(json!({"name": name, "match": {"rules": [rule]},
        "reason": format!("{name} is known"), "expires": in_days(days)}))
    .unwrap()
}

async fn the_suppressions_of_settings_are_stored_followed_and_removed_with_them(backend: Backend) {
    use falconer_delivery::declared::Observed;
    use falconer_hub::suppressions::DeclaredSuppressions;
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let observed =
        |entries: Vec<(&str, falconer_model::suppression::DeclaredSuppression)>| Observed {
            suppressions: entries
                .into_iter()
                .map(|(s, d)| (s.to_string(), d))
                .collect(),
            synced: true,
            ..Observed::default()
        };
    let backup = declared("backup-shell", "Shell in pod", 7);
    let (tx, rx) = tokio::sync::watch::channel(observed(vec![
        ("team-a", backup.clone()),
        ("team-a", declared("too-long", "Read sensitive file", 400)),
    ]));
    // Two replicas follow the same Settings into the same database.
    let mut registry = prometheus_client::registry::Registry::default();
    let replicas = [
        tokio::spawn(DeclaredSuppressions::new(app.store.clone(), rx.clone(), &mut registry).run()),
        tokio::spawn(DeclaredSuppressions::new(app.store.clone(), rx, &mut registry).run()),
    ];
    let listed = || async {
        let mut listed: Vec<(String, String, String)> =
            app.get("/api/v1/suppressions").await.json()["suppressions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["origin"].as_str().unwrap().to_string(),
                        s["reason"].as_str().unwrap().to_string(),
                        s["id"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
        listed.sort();
        listed
    };
    wait_until("the Setting's valid suppression is stored once", || async {
        let listed = listed().await;
        listed.len() == 1
            && listed[0].0 == "Setting team-a"
            && listed[0].1 == "backup-shell is known"
    })
    .await;
    let first = listed().await[0].2.clone();

    // It matches like one made through the API (the writer takes it up right after the
    // replica stored it), and the API cannot delete it.
    wait_until("a new event is suppressed by it", || async {
        let mut alert = alert_in("Shell in pod", "web-1", "Warning", "2026-05-04T10:00:00Z");
        alert["output"] = json!(uuid::Uuid::now_v7().to_string());
        let id = app.ingest(alert.to_string()).await.ids()[0].clone();
        let stored = app.get(&format!("/api/v1/events/{id}")).await.json();
        stored["suppressed"] == first.as_str()
    })
    .await;
    let refused = delete(&app, None, &format!("/api/v1/suppressions/{first}")).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.text.contains("Setting team-a"), "{}", refused.text);

    // An edit replaces it; a new Setting adds its own; a removed entry goes.
    let mut edited = backup.clone();
    edited.reason = "the backup job, reviewed".into();
    tx.send(observed(vec![
        ("team-a", edited),
        ("team-b", declared("scanner", "Read sensitive file", 3)),
    ]))
    .unwrap();
    wait_until("the edit and the new Setting are followed", || async {
        let reasons: Vec<String> = listed().await.into_iter().map(|l| l.1).collect();
        reasons == ["the backup job, reviewed", "scanner is known"]
    })
    .await;
    assert!(listed().await.iter().all(|l| l.2 != first));
    tx.send(observed(vec![])).unwrap();
    wait_until("suppressions of deleted Settings are removed", || async {
        listed().await.is_empty()
    })
    .await;
    for replica in replicas {
        replica.abort();
    }
    app.stop().await;
}

on_both_stores!(
    events_of_one_problem_form_one_group_that_counts_and_keeps_the_highest_severity,
    a_group_is_acknowledged_resolved_and_reopened_by_people_and_by_its_next_event,
    bad_group_and_suppression_requests_are_refused_naming_the_field,
    suppressed_events_are_stored_and_counted_but_reach_only_a_consumer_that_includes_them,
    an_expired_or_deleted_suppression_stops_matching_by_itself,
    the_suppressions_of_settings_are_stored_followed_and_removed_with_them,
);
