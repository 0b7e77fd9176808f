//! Risk scores (docs/risk-model.md) on both stores: the scenarios of issue 7, workloads
//! derived from pod names, history and deltas, the API's shapes and refusals, and one analyst
//! at a time on PostgreSQL.

use crate::helpers::{Backend, TestApp, TestDb, source_fixture};
use crate::on_both_stores;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

on_both_stores!(
    a_critical_shell_alert_outranks_fifty_notice_alerts_of_one_rule,
    distinct_rules_weigh_more_than_repeats_of_one_rule,
    decay_halves_a_contribution_after_the_half_life,
    a_fixed_vulnerability_stops_counting,
    adding_findings_never_lowers_any_score,
    workloads_are_derived_from_pod_names_and_named_owners,
    history_grows_when_a_score_changes_and_every_score_carries_factors_and_delta,
    before_the_first_computation_the_summary_is_empty_and_not_a_404,
    the_risk_api_refuses_bad_parameters_by_name,
    the_summary_lists_clusters_and_top_objects_with_at_most_five_factors,
    objects_with_nothing_left_go_away_with_a_last_history_row_of_zero,
);

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An agent event (docs/sources.md#agent-events) of this rule and severity in a pod.
fn agent(
    kind: &str,
    severity: &str,
    rule: &str,
    ns: &str,
    pod: &str,
    time: DateTime<Utc>,
) -> Value {
    json!({
        "source": "test-agent", "kind": kind, "severity": severity, "rule": rule,
        "message": format!("{rule} in {pod}"), "time": at(time),
        "namespace": ns, "pod": pod, "node": "node-a",
        "id": uuid::Uuid::now_v7().to_string(),
    })
}

fn alert(severity: &str, rule: &str, ns: &str, pod: &str, time: DateTime<Utc>) -> Value {
    agent("runtime_alert", severity, rule, ns, pod, time)
}

async fn post(app: &TestApp, events: Vec<Value>) {
    let body: String = events.iter().map(|e| e.to_string() + "\n").collect();
    let reply = app
        .post("/ingest?source=agent", "application/x-ndjson", body)
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}

async fn recompute(app: &TestApp) -> Value {
    let reply = app
        .post("/api/v1/risk/recompute", "application/json", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

/// Computes as of `now` (so ages are exact) through the hub's analyst.
async fn recompute_at(app: &TestApp, now: DateTime<Utc>) {
    let run = app.analyst.recompute_at(now).await.expect("recompute");
    assert!(run.is_some(), "another analyst was computing");
}

async fn items(app: &TestApp, path: &str) -> Vec<Value> {
    let reply = app.get(path).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["items"].as_array().expect("items").clone()
}

fn named<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {items:?}"))
}

fn score(item: &Value) -> f64 {
    item["score"].as_f64().expect("score")
}

async fn a_critical_shell_alert_outranks_fifty_notice_alerts_of_one_rule(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    let mut events = vec![alert(
        "critical",
        "Terminal shell in container",
        "payments",
        "api-7d4b9c8f5-x2x7k",
        now,
    )];
    for _ in 0..50 {
        events.push(alert(
            "notice",
            "Read sensitive file untrusted",
            "batch",
            "worker-7d4b9c8f5-h7rqz",
            now,
        ));
    }
    post(&app, events).await;
    recompute_at(&app, now).await;
    let namespaces = items(&app, "/api/v1/risk/namespaces").await;
    let names: Vec<&str> = namespaces
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    // One Critical shell (25 raw points) ranks above 50 Notice repeats (2·(1 + ln 50) = 9.8).
    assert_eq!(names, ["payments", "batch"]);
    assert_eq!(score(&namespaces[0]), 39.3);
    assert_eq!(score(&namespaces[1]), 17.8);
    assert_eq!(
        namespaces[1]["factors"][0]["description"],
        "50 Notice alerts of rule Read sensitive file untrusted in the last 1m"
    );
    app.stop().await;
}

async fn distinct_rules_weigh_more_than_repeats_of_one_rule(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    let mut events = Vec::new();
    for rule in ["Rule A", "Rule B", "Rule C"] {
        events.push(alert("warning", rule, "distinct", "a-0", now));
        events.push(alert("warning", "Rule A", "repeated", "b-0", now));
    }
    post(&app, events).await;
    recompute_at(&app, now).await;
    let namespaces = items(&app, "/api/v1/risk/namespaces").await;
    assert_eq!(score(named(&namespaces, "distinct")), 30.2);
    assert_eq!(score(named(&namespaces, "repeated")), 22.3);
    app.stop().await;
}

async fn decay_halves_a_contribution_after_the_half_life(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    let half_life = Duration::hours(24);
    post(
        &app,
        vec![
            alert(
                "critical",
                "Terminal shell in container",
                "fresh",
                "web-0",
                now,
            ),
            alert(
                "critical",
                "Terminal shell in container",
                "old",
                "web-0",
                now - half_life,
            ),
            alert(
                "critical",
                "Terminal shell in container",
                "older",
                "web-0",
                now - half_life * 2,
            ),
        ],
    )
    .await;
    recompute_at(&app, now).await;
    let namespaces = items(&app, "/api/v1/risk/namespaces").await;
    // 25 raw points new, 12.5 after one half-life, 6.25 after two.
    assert_eq!(score(named(&namespaces, "fresh")), 39.3);
    assert_eq!(score(named(&namespaces, "old")), 22.1);
    assert_eq!(score(named(&namespaces, "older")), 11.8);
    app.stop().await;
}

async fn a_fixed_vulnerability_stops_counting(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let image = "registry.example/shop/web:1.4.2";
    let now = Utc::now();
    let mut running = agent(
        "other",
        "informational",
        "pod started",
        "shop",
        "web-0",
        now,
    );
    running["image"] = json!(image);
    post(&app, vec![running]).await;
    let scan = source_fixture("trivy/image-schema2.json");
    assert_eq!(app.ingest(scan.clone()).await.status, 202);
    recompute_at(&app, now).await;
    let workloads = items(&app, "/api/v1/risk/workloads?namespace=shop").await;
    let web = named(&workloads, "web");
    let descriptions: Vec<&str> = web["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            "1 Critical vulnerability in image registry.example/shop/web:1.4.2",
            "1 High vulnerability (1 fixable) in image registry.example/shop/web:1.4.2",
        ]
    );
    let before = score(web);
    assert_eq!(before, 18.5);

    // The next scan no longer shows the openssl vulnerability: it is fixed.
    let mut next: Value = serde_json::from_str(&scan).unwrap();
    next["CreatedAt"] = json!("2026-05-05T10:00:00Z");
    next["Results"][0]["Vulnerabilities"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    assert_eq!(app.ingest(next.to_string()).await.status, 202);
    recompute_at(&app, now).await;
    let workloads = items(&app, "/api/v1/risk/workloads?namespace=shop").await;
    let web = named(&workloads, "web");
    assert_eq!(web["factors"].as_array().unwrap().len(), 1, "{web}");
    assert_eq!(score(web), 11.3);
    assert_eq!(web["delta"], -7.2);
    app.stop().await;
}

async fn adding_findings_never_lowers_any_score(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    let severities = [
        "emergency",
        "critical",
        "error",
        "warning",
        "notice",
        "debug",
    ];
    let pods = ["web-7d4b9c8f5-x2x7k", "db-0", "agent-h7rqz", "debug"];
    let mut state: u64 = 7;
    let mut next = |n: usize| {
        // A fixed linear congruential sequence: the same "random" additions every run.
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    for _ in 0..6 {
        let mut batch = Vec::new();
        for _ in 0..5 {
            let ns = ["a", "b"][next(2)];
            let mut event = alert(
                severities[next(severities.len())],
                ["R1", "R2", "R3"][next(3)],
                ns,
                pods[next(pods.len())],
                now - Duration::minutes(next(600) as i64),
            );
            if next(4) == 0 {
                event["tags"] = json!(["exposed"]);
            }
            batch.push(event);
        }
        post(&app, batch).await;
        recompute_at(&app, now).await;
        for path in [
            "/api/v1/risk/namespaces?limit=500",
            "/api/v1/risk/workloads?limit=500",
        ] {
            for item in items(&app, path).await {
                if let Some(delta) = item["delta"].as_f64() {
                    assert!(delta >= 0.0, "a score went down: {item}");
                }
            }
        }
        let summary = app.get("/api/v1/risk").await.json();
        for cluster in summary["clusters"].as_array().unwrap() {
            assert!(cluster["delta"].as_f64().unwrap_or(0.0) >= 0.0, "{cluster}");
        }
    }
    app.stop().await;
}

async fn workloads_are_derived_from_pod_names_and_named_owners(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    let mut owned = alert("error", "Write below etc", "shop", "cache-x2x7k", now);
    owned["workload"] = json!({"kind": "ReplicaSet", "name": "cache-5f6b8d7c9d"});
    post(
        &app,
        vec![
            alert(
                "error",
                "Write below etc",
                "shop",
                "web-7d4b9c8f5-x2x7k",
                now,
            ),
            alert(
                "error",
                "Write below etc",
                "shop",
                "web-7d4b9c8f5-lq4zn",
                now,
            ),
            alert("error", "Write below etc", "shop", "db-1", now),
            alert(
                "error",
                "Write below etc",
                "shop",
                "backup-28745160-h7rqz",
                now,
            ),
            alert("error", "Write below etc", "shop", "falco-9vxz4", now),
            alert("error", "Write below etc", "shop", "debug", now),
            owned,
        ],
    )
    .await;
    recompute(&app).await;
    let workloads = items(&app, "/api/v1/risk/workloads?sort=name").await;
    let found: Vec<(&str, &str)> = workloads
        .iter()
        .map(|w| (w["kind"].as_str().unwrap(), w["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            ("CronJob", "backup"),
            ("Deployment", "cache"),
            ("StatefulSet", "db"),
            ("Pod", "debug"),
            ("DaemonSet", "falco"),
            ("Deployment", "web"),
        ]
    );
    // Two pods of one Deployment: one rule repeated, not two workloads.
    assert!(named(&workloads, "web")["score"].as_f64() > named(&workloads, "db")["score"].as_f64());
    let only = items(&app, "/api/v1/risk/workloads?kind=deployment").await;
    assert_eq!(only.len(), 2);
    app.stop().await;
}

async fn history_grows_when_a_score_changes_and_every_score_carries_factors_and_delta(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    post(
        &app,
        vec![alert(
            "critical",
            "Terminal shell in container",
            "shop",
            "web-0",
            now,
        )],
    )
    .await;
    recompute_at(&app, now).await;
    let first = items(&app, "/api/v1/risk/workloads").await;
    assert_eq!(first[0]["previous"], Value::Null);
    assert_eq!(first[0]["delta"], Value::Null);
    assert_eq!(
        first[0]["factors"],
        json!([{
            "kind": "runtime",
            "description": "1 Critical alert of rule Terminal shell in container in the last 1m",
            "points": 39.3
        }])
    );

    // Unchanged: the delta is 0 and no history row is added.
    recompute_at(&app, now).await;
    let same = items(&app, "/api/v1/risk/workloads").await;
    assert_eq!(same[0]["delta"], 0.0);

    post(
        &app,
        vec![alert("error", "Write below etc", "shop", "web-0", now)],
    )
    .await;
    recompute_at(&app, now + Duration::seconds(1)).await;
    let second = items(&app, "/api/v1/risk/workloads").await;
    assert_eq!(second[0]["previous"], 39.3);
    assert!(second[0]["delta"].as_f64().unwrap() > 0.0);

    let history = app
        .get("/api/v1/risk/statefulset/web/history?cluster=home&namespace=shop")
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let body = history.json();
    assert_eq!(body["kind"], "StatefulSet");
    assert_eq!(body["namespace"], "shop");
    let rows = body["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0]["score"], second[0]["score"]);
    assert_eq!(rows[0]["delta"], second[0]["delta"]);
    assert_eq!(rows[1]["score"], 39.3);
    assert_eq!(rows[1]["delta"], Value::Null);
    let cluster = app.get("/api/v1/risk/Cluster/home/history").await.json();
    assert_eq!(cluster["namespace"], Value::Null);
    assert_eq!(cluster["items"].as_array().unwrap().len(), 2);
    let namespace = app
        .get("/api/v1/risk/namespace/shop/history?limit=1")
        .await
        .json();
    assert_eq!(namespace["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn before_the_first_computation_the_summary_is_empty_and_not_a_404(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let reply = app.get("/api/v1/risk").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"computed_at": null, "clusters": [], "top_namespaces": [], "top_workloads": []})
    );
    assert_eq!(
        app.get("/api/v1/risk/namespaces").await.json(),
        json!({"items": [], "total": 0})
    );
    // An empty store still gets a computation, and a time.
    let run = recompute(&app).await;
    assert_eq!(
        (
            run["clusters"].clone(),
            run["namespaces"].clone(),
            run["workloads"].clone()
        ),
        (json!(0), json!(0), json!(0))
    );
    assert!(run["duration_ms"].is_i64());
    let summary = app.get("/api/v1/risk").await.json();
    assert_eq!(summary["computed_at"], run["computed_at"]);
    app.stop().await;
}

async fn the_risk_api_refuses_bad_parameters_by_name(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    for (path, field) in [
        ("/api/v1/risk?top=0", "top"),
        ("/api/v1/risk?top=101", "top"),
        ("/api/v1/risk?limit=5", "limit"),
        ("/api/v1/risk/namespaces?sort=risk", "sort"),
        ("/api/v1/risk/namespaces?limit=501", "limit"),
        ("/api/v1/risk/namespaces?offset=-1", "offset"),
        ("/api/v1/risk/namespaces?namespace=x", "namespace"),
        ("/api/v1/risk/workloads?kind=Deploy-ment", "kind"),
        ("/api/v1/risk/workloads?cluster=", "cluster"),
        ("/api/v1/risk/workloads?limit=x", "limit"),
        ("/api/v1/risk/deploy.ment/web/history", "kind"),
        ("/api/v1/risk/namespace/shop/history?limit=0", "limit"),
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert_eq!(reply.json()["field"], field, "{path}: {}", reply.text);
    }
    let missing = app.get("/api/v1/risk/namespace/nowhere/history").await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("nowhere")
    );
    let wrong_method = app.get("/api/v1/risk/recompute").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    app.stop().await;
}

async fn the_summary_lists_clusters_and_top_objects_with_at_most_five_factors(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    let mut events = Vec::new();
    for (i, ns) in ["a", "b", "c"].iter().enumerate() {
        for rule in 0..=(i * 3) {
            events.push(alert("warning", &format!("Rule {rule}"), ns, "web-0", now));
        }
    }
    post(&app, events).await;
    let other = app
        .post(
            "/ingest?source=agent&cluster=edge",
            "application/json",
            alert("notice", "Rule 0", "a", "web-0", now).to_string(),
        )
        .await;
    assert_eq!(other.status, 202, "{}", other.text);
    recompute_at(&app, now).await;
    let summary = app.get("/api/v1/risk?top=2").await.json();
    let clusters: Vec<&str> = summary["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["home", "edge"]);
    assert_eq!(summary["clusters"][0]["kind"], "Cluster");
    assert_eq!(summary["clusters"][0]["namespace"], Value::Null);
    let top: Vec<&str> = summary["top_namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["c", "b"]);
    assert_eq!(summary["top_workloads"].as_array().unwrap().len(), 2);
    for object in summary["top_namespaces"].as_array().unwrap() {
        assert!(object["factors"].as_array().unwrap().len() <= 5, "{object}");
        let mut keys: Vec<&str> = object
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "cluster",
                "computed_at",
                "delta",
                "factors",
                "kind",
                "name",
                "namespace",
                "previous",
                "score"
            ]
        );
    }
    assert_eq!(
        summary["top_namespaces"][0]["factors"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let edge = app.get("/api/v1/risk?cluster=edge").await.json();
    assert_eq!(edge["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(edge["top_namespaces"][0]["cluster"], "edge");
    // Pages: total counts every match.
    let page = app
        .get("/api/v1/risk/namespaces?limit=1&offset=1")
        .await
        .json();
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn objects_with_nothing_left_go_away_with_a_last_history_row_of_zero(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let now = Utc::now();
    post(
        &app,
        vec![alert(
            "critical",
            "Terminal shell in container",
            "shop",
            "web-0",
            now,
        )],
    )
    .await;
    recompute_at(&app, now).await;
    // Past the 7-day lookback the alert is no longer read.
    recompute_at(&app, now + Duration::days(8)).await;
    assert!(items(&app, "/api/v1/risk/namespaces").await.is_empty());
    let history = app.get("/api/v1/risk/namespace/shop/history").await.json();
    let rows = history["items"].as_array().unwrap();
    assert_eq!(rows[0]["score"], 0.0);
    assert_eq!(rows[0]["delta"], -39.3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_only_one_analyst_computes_at_a_time() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = TestApp::spawn(&db).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let second = falconer_analyst::Analyst::new(
        app.store.clone(),
        falconer_analyst::AnalystConfig::default(),
        &mut registry,
    );
    post(
        &app,
        vec![alert(
            "critical",
            "Terminal shell in container",
            "shop",
            "web-0",
            Utc::now(),
        )],
    )
    .await;
    // Both compute when they take turns.
    assert!(app.analyst.recompute().await.unwrap().is_some());
    assert!(second.recompute().await.unwrap().is_some());

    // Another analyst process computing right now holds the lock.
    let mut other = db.side_connection().await;
    let key = falconer_store::risk::risk_lock_key();
    other
        .execute(&format!("SELECT pg_advisory_lock({key})"))
        .await;
    assert_eq!(second.recompute().await.unwrap(), None);
    let reply = app
        .post("/api/v1/risk/recompute", "application/json", "")
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("another analyst")
    );
    other
        .execute(&format!("SELECT pg_advisory_unlock({key})"))
        .await;
    assert!(second.recompute().await.unwrap().is_some());
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("falconer_risk_computations_total{result=\"busy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("falconer_risk_cluster_score{cluster=\"home\"} 39.3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("falconer_risk_namespace_score{cluster=\"home\",namespace=\"shop\"} 39.3"),
        "{metrics}"
    );
    app.stop().await;
}
