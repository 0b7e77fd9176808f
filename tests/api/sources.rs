//! Sources beyond Falco through HTTP into both stores: detection, each format's round trip,
//! findings' latest state, large reports, malformed payloads.

use crate::helpers::{Backend, TestApp, TestDb, hub_config, source_fixture};
use crate::on_both_stores;
use serde_json::{Value, json};

async fn findings(app: &TestApp, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/api/v1/findings?{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["findings"].as_array().unwrap().clone()
}

fn rules(findings: &[Value]) -> Vec<String> {
    let mut rules: Vec<String> = findings
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    rules.sort();
    rules
}

async fn each_source_is_detected_from_its_shape_and_round_trips(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let cases = [
        (
            "kubearmor/matched-policy-block.json",
            "kubearmor",
            "runtime_alert",
        ),
        (
            "kubearmor/container-log-timestamp-only.json",
            "kubearmor",
            "other",
        ),
        (
            "tetragon/kprobe-sensitive-file.json",
            "tetragon",
            "runtime_alert",
        ),
        ("tetragon/exec-host-no-pod.json", "tetragon", "other"),
        ("agent/full.json", "acme-scanner", "misconfiguration"),
        ("falco/k8saudit-exec.json", "falco", "audit"),
    ];
    for (name, source, kind) in cases {
        let text = source_fixture(name);
        let reply = app.ingest(text.clone()).await;
        assert_eq!(reply.status, 202, "{name}: {}", reply.text);
        let id = &reply.ids()[0];
        let event = app.get(&format!("/api/v1/events/{id}")).await.json();
        assert_eq!(event["source"], source, "{name}");
        assert_eq!(event["kind"], kind, "{name}");
        let posted: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["raw"], posted, "{name}");
        // Posted again, named explicitly: a duplicate of the first.
        let header_source = if source == "acme-scanner" {
            "agent"
        } else {
            source
        };
        let again = app
            .client
            .post(app.url("/ingest"))
            .header("content-type", "application/json")
            .header("x-falconer-source", header_source)
            .body(text)
            .send()
            .await
            .unwrap();
        let again = crate::helpers::Reply::read(again).await;
        assert_eq!(&again.ids()[..], std::slice::from_ref(id), "{name}");
    }
    let armor = app
        .get("/api/v1/events?source=kubearmor&kind=runtime_alert")
        .await
        .json();
    let armor = &armor["events"][0];
    assert_eq!(armor["cluster"], "prod-eu");
    assert_eq!(armor["pod"], "web-1");
    assert_eq!(armor["severity"], "warning");
    assert_eq!(
        armor["workload"],
        json!({"kind": "Deployment", "name": "web"})
    );
    let audit = app.get("/api/v1/events?kind=audit").await.json();
    assert_eq!(audit["events"][0]["namespace"], "shop");
    assert_eq!(audit["events"][0]["pod"], "web-1");
    assert_eq!(audit["events"][0]["fields"]["ka.verb"], "create");
    let tetragon = app
        .get("/api/v1/events?source=tetragon&kind=runtime_alert")
        .await
        .json();
    assert_eq!(tetragon["events"][0]["severity"], "notice");
    assert_eq!(tetragon["events"][0]["namespace"], "shop");
    app.stop().await;
}

async fn ambiguous_or_unknown_shapes_are_a_400_naming_the_candidates(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let ambiguous = app
        .ingest(json!({"priority": "Notice", "severity": "notice", "rule": "r"}).to_string())
        .await;
    assert_eq!(ambiguous.status, 400, "{}", ambiguous.text);
    let body = ambiguous.json();
    assert_eq!(body["field"], "source");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("falco") && error.contains("agent"),
        "{error}"
    );
    let unknown = app.ingest(json!({"hello": "world"}).to_string()).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.json()["error"]
            .as_str()
            .unwrap()
            .contains("?source=")
    );
    assert_eq!(db.count_events().await, 0);
    app.stop().await;
}

async fn a_newer_trivy_report_fixes_what_it_no_longer_shows_and_an_older_one_changes_nothing(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let first = source_fixture("trivy/image-schema2.json");
    let reply = app.ingest(first.clone()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["accepted"], 4);
    assert_eq!(
        body["reports"],
        json!([{"index": 0, "open": 4, "fixed": 0, "stale": false}])
    );
    let image = "image=registry.example/shop/web:1.4.2";
    let open = findings(&app, &format!("{image}&state=open")).await;
    assert_eq!(
        rules(&open),
        [
            "CVE-2026-0001",
            "CVE-2026-0002",
            "CVE-2026-0003",
            "aws-access-key-id"
        ]
    );
    // Most severe first.
    assert_eq!(open[0]["severity"], "critical");

    // The next scan: openssl fixed, the rest still there.
    let mut next: Value = serde_json::from_str(&first).unwrap();
    next["CreatedAt"] = json!("2026-05-05T10:00:00Z");
    next["Results"][0]["Vulnerabilities"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let reply = app.ingest(next.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json()["reports"][0]["fixed"], 1);
    // The same scan posted again: its observations are duplicates, the findings keep
    // pointing at the events stored first.
    let next_ids = reply.ids();
    let again = app.ingest(next.to_string()).await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(again.ids(), next_ids);
    assert_eq!(again.json()["reports"][0]["stale"], false);
    for finding in findings(&app, &format!("{image}&state=open")).await {
        let id = finding["event_id"].as_str().unwrap().to_string();
        assert!(next_ids.contains(&id), "{finding}");
    }
    let fixed = findings(&app, &format!("{image}&state=fixed")).await;
    assert_eq!(rules(&fixed), ["CVE-2026-0001"]);
    assert_eq!(fixed[0]["fixed_at"], "2026-05-05T10:00:00Z");
    assert_eq!(fixed[0]["first_seen"], "2026-05-04T10:00:00.123456Z");
    let open = findings(&app, &format!("{image}&state=open")).await;
    assert_eq!(open.len(), 3);
    assert_eq!(open[0]["last_seen"], "2026-05-05T10:00:00Z");

    // The first report again (a late retry): a duplicate, and stale.
    let late = app.ingest(first).await;
    assert_eq!(late.status, 202, "{}", late.text);
    assert_eq!(late.json()["reports"][0]["stale"], true);
    assert_eq!(
        findings(&app, &format!("{image}&state=open")).await.len(),
        3
    );
    // History: both scans' observations, the first stored once.
    let history = app
        .get("/api/v1/events?source=trivy&rule=CVE-2026-0002")
        .await
        .json();
    assert_eq!(history["events"].as_array().unwrap().len(), 2);
    assert_eq!(db.count_events().await, 7);

    // A clean image later: everything of the image fixed.
    let mut clean: Value =
        serde_json::from_str(&source_fixture("trivy/clean-image-null-results.json")).unwrap();
    clean["ArtifactName"] = json!("registry.example/shop/web:1.4.2");
    let reply = app.ingest(clean.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json()["accepted"], 0);
    assert_eq!(reply.json()["reports"][0]["fixed"], 3);
    assert!(findings(&app, "state=open").await.is_empty());
    app.stop().await;
}

const SEVERITIES: [&str; 5] = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"];

async fn a_trivy_report_of_ten_thousand_vulnerabilities_is_one_request(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let report = |count: usize, created: &str| {
        let vulnerabilities: Vec<Value> = (0..count)
            .map(|i| {
                json!({
                    "VulnerabilityID": format!("CVE-2026-{i:05}"),
                    "PkgName": format!("pkg-{}", i % 300),
                    "InstalledVersion": "1.0.0",
                    "FixedVersion": "1.0.1",
                    "Severity": SEVERITIES[i % 5],
                    "Title": format!("Flaw number {i} in a package — ünïcödé"),
                    "Description": "x".repeat(400),
                    "References": ["https://example.org/advisory"],
                })
            })
            .collect();
        json!({
            "SchemaVersion": 2,
            "CreatedAt": created,
            "ArtifactName": "registry.example/big:1",
            "ArtifactType": "container_image",
            "Results": [{"Target": "registry.example/big:1 (debian 12.8)", "Class": "os-pkgs", "Vulnerabilities": vulnerabilities}]
        })
        .to_string()
    };
    let reply = app.ingest(report(10_000, "2026-05-04T10:00:00Z")).await;
    assert_eq!(
        reply.status,
        202,
        "{}",
        &reply.text[..reply.text.len().min(500)]
    );
    assert_eq!(reply.json()["accepted"], 10_000);
    assert_eq!(reply.ids().len(), 10_000);
    let mut side = db.side_connection().await;
    let open = "SELECT count(*) FROM findings WHERE state = 'open'";
    assert_eq!(side.scalar(open).await, 10_000);
    let reply = app.ingest(report(9_990, "2026-05-05T10:00:00Z")).await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.json()["reports"][0]["fixed"], 10);
    assert_eq!(side.scalar(open).await, 9_990);
    assert_eq!(db.count_events().await, 19_990);
    app.stop().await;
}

async fn kube_bench_keeps_the_latest_state_per_node_and_check(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let full = source_fixture("kube-bench/controls-totals.json");
    let missing = app.ingest(full.clone()).await;
    assert_eq!(missing.status, 400, "{}", missing.text);
    assert_eq!(missing.json()["field"], "node");

    let reply = app
        .post("/ingest?node=node-a", "application/json", full)
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json()["accepted"], 5);
    let open = findings(&app, "node=node-a&state=open").await;
    assert_eq!(rules(&open), ["1.1.2", "4.2.1", "4.2.2"]);
    assert!(open.iter().all(|f| f["kind"] == "misconfiguration"));

    // A later run of the worker checks only (bare array): 4.2.1 passes, 4.2.2 is gone,
    // 4.2.6 fails; the master checks of the node are untouched.
    let reply = app
        .post(
            "/ingest?node=node-a&source=kube-bench",
            "application/json",
            source_fixture("kube-bench/bare-array-nototals.json"),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json()["reports"][0]["fixed"], 2);
    assert_eq!(
        rules(&findings(&app, "node=node-a&state=open").await),
        ["1.1.2", "4.2.6"]
    );
    assert_eq!(
        rules(&findings(&app, "node=node-a&state=fixed").await),
        ["4.2.1", "4.2.2"]
    );
    // Another node is its own set.
    let reply = app
        .post(
            "/ingest?node=node-b",
            "application/json",
            source_fixture("kube-bench/bare-array-nototals.json"),
        )
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(rules(&findings(&app, "node=node-b").await), ["4.2.6"]);
    let checks = app
        .get("/api/v1/events?source=kube-bench&rule=4.2.1")
        .await
        .json();
    assert_eq!(
        checks["events"].as_array().unwrap().len(),
        3,
        "history of 4.2.1"
    );
    app.stop().await;
}

async fn findings_filter_paginate_and_refuse_bad_parameters(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    assert_eq!(
        app.ingest(source_fixture("trivy/image-schema2.json"))
            .await
            .status,
        202
    );
    assert_eq!(
        app.ingest(source_fixture("trivy/config-misconfigurations.json"))
            .await
            .status,
        202
    );
    assert_eq!(
        rules(&findings(&app, "kind=misconfiguration").await),
        ["AVD-KSV-0001"]
    );
    assert_eq!(
        rules(&findings(&app, "kind=secret").await),
        ["aws-access-key-id"]
    );
    assert_eq!(
        rules(&findings(&app, "severity=critical").await),
        ["CVE-2026-0002", "aws-access-key-id"]
    );
    assert_eq!(findings(&app, "min_severity=error").await.len(), 3);
    assert_eq!(findings(&app, "source=trivy&cluster=home").await.len(), 5);
    assert!(findings(&app, "namespace=shop").await.is_empty());

    let mut seen = Vec::new();
    let mut path = "/api/v1/findings?limit=2".to_string();
    loop {
        let page = app.get(&path).await.json();
        seen.extend(rules(page["findings"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/findings?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 5);
    seen.dedup();
    assert_eq!(seen.len(), 5, "a page repeated a finding");

    for (query, field) in [
        ("state=closed", "state"),
        ("severity=severe", "severity"),
        ("kind=alert", "kind"),
        ("cursor=nope", "cursor"),
        ("limit=0", "limit"),
        ("imgae=x", "imgae"),
    ] {
        let reply = app.get(&format!("/api/v1/findings?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(reply.json()["field"], field, "{query}");
    }
    app.stop().await;
}

async fn malformed_reports_are_a_400_with_the_reason_and_store_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let mut bad: Value = serde_json::from_str(&source_fixture("trivy/image-schema2.json")).unwrap();
    bad["Results"][1]["Vulnerabilities"][0]["Severity"] = json!("SEVERE");
    let reply = app.ingest(bad.to_string()).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let error = reply.json()["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("field `Results[1].Vulnerabilities[0].Severity`"),
        "{error}"
    );
    let reply = app
        .post(
            "/ingest?source=tetragon",
            "application/x-ndjson",
            "{\"process_exec\":{}}\n{\"process_exec\":{},\"time\":\"2026-05-04T10:11:12Z\"}\n",
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(
        reply.json()["rejected"][0]["error"],
        "field `time` is missing"
    );
    assert_eq!(db.count_events().await, 1);
    assert!(findings(&app, "").await.is_empty());
    app.stop().await;
}

async fn new_sources_have_their_own_metrics_label_and_the_schema_is_served(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    app.ingest(source_fixture("trivy/legacy-bare-array.json"))
        .await;
    app.ingest(source_fixture("kubearmor/matched-policy-block.json"))
        .await;
    let text = app.get("/metrics").await.text;
    for line in [
        "falconer_ingest_events_received_total{source=\"trivy\"} 1",
        "falconer_ingest_events_accepted_total{source=\"trivy\"} 2",
        "falconer_ingest_events_accepted_total{source=\"kubearmor\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    let schema = app.get("/api/v1/schemas/agent-event.json").await;
    assert_eq!(schema.status, 200);
    assert_eq!(
        schema.header("content-type"),
        Some("application/schema+json")
    );
    assert_eq!(schema.json()["title"], "Falconer agent event");
    app.stop().await;
}

async fn a_report_over_the_body_limit_needs_its_source_named_and_stays_under_the_report_limit(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.ingest.max_body_bytes = 1_024;
    config.ingest.max_report_bytes = 8_192;
    config.ingest.max_report_findings = 3;
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let report = source_fixture("trivy/legacy-bare-array.json");
    assert!(report.len() < 1_024);
    let padded = format!("{report}{}", " ".repeat(1_100));
    let unnamed = app.ingest(padded.clone()).await;
    assert_eq!(unnamed.status, 413, "{}", unnamed.text);
    assert!(
        unnamed.json()["error"]
            .as_str()
            .unwrap()
            .contains("?source=trivy")
    );
    let named = app
        .post("/ingest?source=trivy", "application/json", padded)
        .await;
    assert_eq!(named.status, 202, "{}", named.text);
    let huge = format!("{report}{}", " ".repeat(9_000));
    let reply = app
        .post("/ingest?source=trivy", "application/json", huge)
        .await;
    assert_eq!(reply.status, 413);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("ingest.max_report_bytes")
    );
    // Two reports of two results each: the second would pass max_report_findings.
    let two = format!("{report}\n{report}");
    let reply = app
        .post("/ingest?source=trivy", "application/x-ndjson", two)
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ingest.max_report_findings")
    );
    app.stop().await;
}

async fn a_report_is_written_whole_or_not_at_all(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let first = source_fixture("trivy/image-schema2.json");
    assert_eq!(app.ingest(first.clone()).await.status, 202);
    let mut next: Value = serde_json::from_str(&first).unwrap();
    next["CreatedAt"] = json!("2026-05-05T10:00:00Z");
    next["Results"][0]["Vulnerabilities"]
        .as_array_mut()
        .unwrap()
        .remove(0);

    let outage = db.break_store().await;
    let reply = app.ingest(next.to_string()).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.header("retry-after"), Some("5"));
    outage.restore().await;

    // Neither the observations nor the fix were written.
    let mut side = db.side_connection().await;
    assert_eq!(db.count_events().await, 4);
    assert_eq!(
        side.scalar("SELECT count(*) FROM findings WHERE state = 'open'")
            .await,
        4
    );
    let retry = app.ingest(next.to_string()).await;
    assert_eq!(retry.status, 202, "{}", retry.text);
    assert_eq!(retry.json()["reports"][0]["fixed"], 1);
    assert_eq!(db.count_events().await, 7);
    app.stop().await;
}

async fn a_kubearmor_alert_without_a_time_is_stored_at_its_receipt_time_and_tagged_so(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let before = chrono::Utc::now();
    let reply = app
        .ingest(source_fixture("kubearmor/container-alert-no-time.json"))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let event = app
        .get(&format!("/api/v1/events/{}", reply.ids()[0]))
        .await
        .json();
    assert_eq!(event["source"], "kubearmor");
    assert_eq!(event["time"], event["received_at"]);
    let time: chrono::DateTime<chrono::Utc> = event["time"].as_str().unwrap().parse().unwrap();
    assert!(time >= before - chrono::TimeDelta::seconds(1), "{time}");
    assert_eq!(event["tags"], json!(["MITRE", "falconer.io/time=received"]));
    // The tag is the hub's: a Falco alert claiming it loses it.
    let mut forged = crate::helpers::alert("forged", "2026-05-04T10:00:00Z", "x");
    forged["tags"] = json!(["falconer.io/time=received"]);
    let reply = app.post("/", "application/json", forged.to_string()).await;
    let event = app
        .get(&format!("/api/v1/events/{}", reply.ids()[0]))
        .await
        .json();
    assert_eq!(event["tags"], json!([]));
    app.stop().await;
}

on_both_stores!(
    a_kubearmor_alert_without_a_time_is_stored_at_its_receipt_time_and_tagged_so,
    a_report_is_written_whole_or_not_at_all,
    a_report_over_the_body_limit_needs_its_source_named_and_stays_under_the_report_limit,
    each_source_is_detected_from_its_shape_and_round_trips,
    ambiguous_or_unknown_shapes_are_a_400_naming_the_candidates,
    a_newer_trivy_report_fixes_what_it_no_longer_shows_and_an_older_one_changes_nothing,
    a_trivy_report_of_ten_thousand_vulnerabilities_is_one_request,
    kube_bench_keeps_the_latest_state_per_node_and_check,
    findings_filter_paginate_and_refuse_bad_parameters,
    malformed_reports_are_a_400_with_the_reason_and_store_nothing,
    new_sources_have_their_own_metrics_label_and_the_schema_is_served,
);
