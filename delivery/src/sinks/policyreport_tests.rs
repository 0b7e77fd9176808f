use super::*;
use chrono::{TimeZone, Utc};
use falconer_model::event::{Kind, Workload};
use falconer_testkit::kube::{
    ApiServer, CLUSTER_POLICY_REPORT_CRD, POLICY_REPORT_CRD, expect, schema_errors, status,
};
use http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const BASE: &str = "/apis/wgpolicyk8s.io/v1alpha2";

fn path_of(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{BASE}/namespaces/{namespace}/policyreports/{name}"),
        None => format!("{BASE}/clusterpolicyreports/{name}"),
    }
}

fn falco_event(n: u128) -> Event {
    Event {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        dedup_key: None,
        time: Utc
            .timestamp_opt(1_795_860_000, 123_456_000)
            .single()
            .expect("time"),
        received_at: Utc
            .with_ymd_and_hms(2026, 11, 22, 10, 0, 1)
            .single()
            .expect("time"),
        source: "falco".into(),
        source_version: None,
        kind: Kind::RuntimeAlert,
        severity: Severity::Warning,
        severity_raw: "Warning".into(),
        rule: "Terminal shell in container".into(),
        message: "A shell was spawned in a container (user=root shell=bash)".into(),
        tags: vec!["container".into(), "shell".into()],
        cluster: "prod-eu-1".into(),
        namespace: Some("shop".into()),
        pod: Some("web-7d9f8-abcde".into()),
        container: Some("web".into()),
        image: Some("registry.example/shop/web:1.4.2".into()),
        node: Some("node-a".into()),
        workload: Some(Workload {
            kind: "Deployment".into(),
            name: "web".into(),
        }),
        fields: serde_json::value::RawValue::from_string("{}".into()).expect("JSON"),
        raw: None,
        group: Some("g-42".into()),
        suppressed: None,
    }
}

fn in_namespace(n: u128, namespace: &str) -> Event {
    Event {
        namespace: Some(namespace.into()),
        ..falco_event(n)
    }
}

/// A host alert: no namespace, pod, container or workload.
fn host_event(n: u128) -> Event {
    Event {
        namespace: None,
        pod: None,
        container: None,
        image: None,
        workload: None,
        severity: Severity::Critical,
        severity_raw: "Critical".into(),
        rule: "Write below etc".into(),
        message: "File below /etc opened for writing".into(),
        ..falco_event(n)
    }
}

fn home(client: kube::Client) -> crate::Home {
    crate::Home {
        client,
        cluster: "prod-eu-1".into(),
        namespace: "falconer-system".into(),
    }
}

fn sink(client: kube::Client, settings: &PolicyReportConfig) -> PolicyReportSink {
    PolicyReportSink::build("reports", settings, &home(client)).expect("sink")
}

fn not_found(plural: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": format!("{plural}.wgpolicyk8s.io \"{name}\" not found"),
        "reason": "NotFound",
        "details": {"name": name, "group": "wgpolicyk8s.io", "kind": plural},
        "code": 404,
    })
}

/// The report the sink must apply for `key` holding the results of `events`.
fn expected(key: &ReportKey, events: &[Event]) -> Value {
    let results: VecDeque<ReportResult> = events.iter().map(result_of).collect();
    serde_json::to_value(report("falconer", "reports", key, &results)).expect("JSON")
}

fn ns(namespace: &str) -> ReportKey {
    ReportKey::Namespace(namespace.into())
}

// ---------------------------------------------------------------------------------------------
// Mapping

#[test]
fn a_falco_alert_becomes_a_failing_medium_result_about_its_pod_and_workload() {
    assert_eq!(
        serde_json::to_value(result_of(&falco_event(1))).expect("JSON"),
        json!({
            "source": "falco",
            "policy": "Terminal shell in container",
            "rule": "Terminal shell in container",
            "category": "runtime_alert",
            "severity": "medium",
            "timestamp": {"seconds": 1_795_860_000_i64, "nanos": 123_456_000},
            "result": "fail",
            "resources": [
                {"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "web-7d9f8-abcde"},
                {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
            ],
            "message": "A shell was spawned in a container (user=root shell=bash)",
            "properties": {
                "eventId": "01900000-0000-7000-8000-000000000001",
                "groupId": "g-42",
                "cluster": "prod-eu-1",
                "container": "web",
                "image": "registry.example/shop/web:1.4.2",
                "node": "node-a",
            },
        })
    );
}

#[test]
fn a_host_alert_is_about_its_node() {
    let result = result_of(&host_event(1));
    assert_eq!(
        result.resources,
        [ObjectReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: String::new(),
            name: "node-a".into(),
        }]
    );
    assert_eq!(result.severity, Some(ResultSeverity::Critical));
    assert!(!result.properties.contains_key("container"));
}

#[test]
fn severities_map_onto_the_reports_scale_and_warning_or_worse_fails() {
    let table = [
        (Severity::Emergency, ResultSeverity::Critical, Verdict::Fail),
        (Severity::Alert, ResultSeverity::Critical, Verdict::Fail),
        (Severity::Critical, ResultSeverity::Critical, Verdict::Fail),
        (Severity::Error, ResultSeverity::High, Verdict::Fail),
        (Severity::Warning, ResultSeverity::Medium, Verdict::Fail),
        (Severity::Notice, ResultSeverity::Low, Verdict::Warn),
        (Severity::Informational, ResultSeverity::Info, Verdict::Warn),
        (Severity::Debug, ResultSeverity::Info, Verdict::Warn),
    ];
    for (severity, expected_severity, expected_verdict) in table {
        assert_eq!(severity_of(severity), expected_severity, "{severity}");
        assert_eq!(verdict_of(severity), expected_verdict, "{severity}");
    }
    assert_eq!(Severity::ALL.len(), table.len());
}

#[test]
fn long_texts_are_cut_on_a_character_boundary_and_marked() {
    assert_eq!(truncate("short", 10), "short");
    let cut = truncate(&"ü".repeat(100), 11);
    assert!(cut.len() <= 11, "{cut}");
    assert!(cut.ends_with('…'));
    let mut event = falco_event(1);
    event.message = "x".repeat(10_000);
    event.image = Some("i".repeat(10_000));
    event.rule = "r".repeat(10_000);
    let result = result_of(&event);
    assert!(result.message.len() <= MAX_MESSAGE);
    assert!(result.policy.len() <= MAX_VALUE);
    assert!(result.properties.values().all(|v| v.len() <= MAX_VALUE));
}

#[test]
fn names_are_the_prefix_and_the_namespace_or_cluster() {
    assert_eq!(report_name("falconer", &ns("shop")), "falconer-shop");
    assert_eq!(
        report_name("falconer", &ReportKey::Cluster),
        "falconer-cluster"
    );
    assert_eq!(report_name("sec", &ns(&"n".repeat(63))).len(), 67);
}

#[test]
fn a_report_counts_its_results_by_verdict_and_is_labelled_as_falconers() {
    let mut notice = falco_event(2);
    notice.severity = Severity::Notice;
    let results: VecDeque<ReportResult> = [falco_event(1), notice, falco_event(3)]
        .iter()
        .map(result_of)
        .collect();
    let object =
        serde_json::to_value(report("falconer", "Team A", &ns("shop"), &results)).expect("JSON");
    assert_eq!(object["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(object["kind"], "PolicyReport");
    assert_eq!(
        object["metadata"],
        json!({
            "name": "falconer-shop",
            "namespace": "shop",
            "labels": {"app.kubernetes.io/managed-by": "falconer", "falconer.io/consumer": "team-a"},
        })
    );
    assert_eq!(
        object["scope"],
        json!({"apiVersion": "v1", "kind": "Namespace", "name": "shop"})
    );
    assert_eq!(
        object["summary"],
        json!({"pass": 0, "fail": 2, "warn": 1, "error": 0, "skip": 0})
    );
    assert_eq!(object["results"].as_array().map(Vec::len), Some(3));
    let cluster = report("falconer", "reports", &ReportKey::Cluster, &results);
    assert_eq!(cluster.kind, "ClusterPolicyReport");
    assert_eq!(cluster.metadata.namespace, None);
    assert_eq!(cluster.scope, None);
}

#[test]
fn the_bound_keeps_the_newest_results_and_never_adds_an_event_twice() {
    let mut results: VecDeque<ReportResult> = (1..=3).map(|n| result_of(&falco_event(n))).collect();
    let new = (3..=6).map(|n| result_of(&falco_event(n))).collect();
    merge(&mut results, new, 4);
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r.properties[EVENT_ID].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "01900000-0000-7000-8000-000000000003",
            "01900000-0000-7000-8000-000000000004",
            "01900000-0000-7000-8000-000000000005",
            "01900000-0000-7000-8000-000000000006",
        ]
    );
}

#[test]
fn the_bound_keeps_a_report_under_a_megabyte_whatever_max_results_says() {
    let mut big = falco_event(0);
    big.message = "m".repeat(5000);
    big.image = Some("i".repeat(5000));
    let new: Vec<ReportResult> = (0..5000)
        .map(|n| {
            let mut event = big.clone();
            event.id = Uuid::from_u128(n);
            result_of(&event)
        })
        .collect();
    let mut results = VecDeque::new();
    merge(&mut results, new, 5000);
    let bytes = serde_json::to_vec(&report("falconer", "r", &ns("shop"), &results))
        .expect("JSON")
        .len();
    assert!(bytes < 1_100_000, "{bytes}");
    assert!(results.len() < 5000);
    assert_eq!(
        results.back().map(|r| r.properties[EVENT_ID].clone()),
        Some(Uuid::from_u128(4999).to_string()),
        "the newest stays"
    );
}

// ---------------------------------------------------------------------------------------------
// Validation against the official CRDs (testkit/crds), as the API server would do it

fn crd_schema(text: &str, plural: &str, scope: &str) -> Value {
    let crd: Value = serde_saphyr::from_str(text).expect("CRD is YAML");
    assert_eq!(crd["metadata"]["name"], format!("{plural}.wgpolicyk8s.io"));
    assert_eq!(crd["spec"]["scope"], scope);
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    let v1alpha2 = versions
        .iter()
        .find(|v| v["name"] == "v1alpha2")
        .expect("v1alpha2 is in the CRD");
    assert_eq!(v1alpha2["served"], true);
    v1alpha2["schema"]["openAPIV3Schema"].clone()
}

fn every_shape_of_event() -> Vec<Event> {
    let mut trivy = falco_event(10);
    trivy.source = "trivy".into();
    trivy.kind = Kind::Vulnerability;
    trivy.severity = Severity::Error;
    trivy.pod = None;
    trivy.workload = Some(Workload {
        kind: "CronJob".into(),
        name: "backup".into(),
    });
    let mut odd_workload = falco_event(11);
    odd_workload.workload = Some(Workload {
        kind: "Rollout".into(),
        name: "canary".into(),
    });
    odd_workload.group = None;
    let mut bare = host_event(12);
    bare.node = None;
    bare.message = String::new();
    bare.severity = Severity::Debug;
    let mut long = falco_event(13);
    long.message = "ü".repeat(5000);
    vec![
        falco_event(1),
        trivy,
        odd_workload,
        host_event(2),
        bare,
        long,
    ]
}

#[test]
fn every_report_the_sink_builds_matches_the_official_v1alpha2_schemas() {
    let namespaced = crd_schema(POLICY_REPORT_CRD, "policyreports", "Namespaced");
    let cluster = crd_schema(CLUSTER_POLICY_REPORT_CRD, "clusterpolicyreports", "Cluster");
    let results: VecDeque<ReportResult> = every_shape_of_event().iter().map(result_of).collect();
    for (key, schema) in [(ns("shop"), &namespaced), (ReportKey::Cluster, &cluster)] {
        let object =
            serde_json::to_value(report("falconer", "reports", &key, &results)).expect("JSON");
        assert_eq!(schema_errors(&object, schema, ""), Vec::<String>::new());
    }
    // An empty report too (every result dropped).
    let empty =
        serde_json::to_value(report("falconer", "r", &ns("a"), &VecDeque::new())).expect("JSON");
    assert_eq!(schema_errors(&empty, &namespaced, ""), Vec::<String>::new());
}

#[test]
fn the_schema_check_catches_what_the_api_server_would_refuse_or_prune() {
    let schema = crd_schema(POLICY_REPORT_CRD, "policyreports", "Namespaced");
    let bad = json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {"name": "x"},
        "summary": {"fail": "1"},
        "results": [{
            "source": "falco",
            "severity": "warning",
            "result": "failed",
            "subjects": [],
            "timestamp": {"seconds": 1, "nanos": 3_000_000_000_i64},
            "properties": {"count": 3},
        }],
    });
    assert_eq!(
        schema_errors(&bad, &schema, ""),
        [
            ".results[0].policy: required",
            ".results[0].properties.count: not a string",
            ".results[0].result: \"failed\" is not one of [String(\"pass\"), String(\"fail\"), String(\"warn\"), String(\"error\"), String(\"skip\")]",
            ".results[0].severity: \"warning\" is not one of [String(\"critical\"), String(\"high\"), String(\"low\"), String(\"medium\"), String(\"info\")]",
            ".results[0].subjects: unknown field, would be pruned",
            ".results[0].timestamp.nanos: 3000000000 is not an int32",
            ".summary.fail: not a integer",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Settings and answers

#[tokio::test]
async fn bad_settings_are_refused_naming_the_field() {
    let (client, _server) = ApiServer::start();
    let bad = PolicyReportConfig {
        name_prefix: "Falconer_".into(),
        ..PolicyReportConfig::default()
    };
    let error = PolicyReportSink::build("reports", &bad, &home(client.clone()))
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("policyreport.namePrefix"), "{error}");
    let bad = PolicyReportConfig {
        max_results: 0,
        ..PolicyReportConfig::default()
    };
    let error = PolicyReportSink::build("reports", &bad, &home(client))
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("policyreport.maxResults"), "{error}");
}

#[test]
fn a_policyreport_consumer_outside_a_cluster_names_the_setting_that_connects_one() {
    let consumer =
        falconer_model::crd::Consumer::new("reports", falconer_model::crd::SinkType::Policyreport);
    let secrets = crate::declared::Secrets::new();
    let declared = crate::fixtures::declared(&consumer, &secrets);
    let error = PolicyReportSink::from_consumer(&declared)
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("kubernetes.settings: on"), "{error}");
}

fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(message, reason)
            .with_code(code)
            .boxed(),
    )
}

#[test]
fn answers_are_read_as_retry_or_refusal() {
    let Failure::Retry(missing) =
        classify_apply(&api_error(404, "NotFound", "404 page not found"), "r")
    else {
        panic!("a missing CRD must be retried");
    };
    assert!(
        missing.contains("the wgpolicyk8s.io PolicyReport CRD is not installed"),
        "{missing}"
    );
    let Failure::Retry(forbidden) = classify_apply(
        &api_error(403, "Forbidden", "cannot patch resource \"policyreports\""),
        "r",
    ) else {
        panic!("403 must be retried");
    };
    for part in [
        "`patch`",
        "`create`",
        "wgpolicyk8s.io",
        "ClusterRole",
        "cannot patch",
    ] {
        assert!(forbidden.contains(part), "{part}: {forbidden}");
    }
    for code in [401, 408, 409, 429, 500, 503] {
        assert!(
            matches!(
                classify_apply(&api_error(code, "x", "m"), "r"),
                Failure::Retry(_)
            ),
            "{code}"
        );
    }
    assert_eq!(
        classify_apply(
            &api_error(422, "Invalid", "results[0].severity: Unsupported value"),
            "PolicyReport shop/falconer-shop"
        ),
        Failure::Refused(
            "the API server refused the PolicyReport shop/falconer-shop (422 Invalid): results[0].severity: Unsupported value".into()
        )
    );
    let error = kube::Error::Service("connection refused".into());
    assert!(
        matches!(classify_apply(&error, "r"), Failure::Retry(m) if m.contains("connection refused"))
    );
}

// ---------------------------------------------------------------------------------------------
// The sink against a scripted API server

#[tokio::test]
async fn two_namespaces_and_a_host_alert_make_two_policy_reports_and_a_cluster_report() {
    let (client, server) = ApiServer::start();
    let shop = [in_namespace(1, "shop"), in_namespace(3, "shop")];
    let pay = [in_namespace(2, "payments")];
    let host = [host_event(4)];
    let mut steps = Vec::new();
    for (key, events, plural) in [
        (ns("shop"), &shop[..], "policyreports"),
        (ns("payments"), &pay[..], "policyreports"),
        (ReportKey::Cluster, &host[..], "clusterpolicyreports"),
    ] {
        let name = report_name("falconer", &key);
        let path = path_of(key.namespace(), &name);
        steps.push(expect(Method::GET, &path).reply(404, not_found(plural, &name)));
        steps.push(
            expect(Method::PATCH, &path)
                .query("fieldManager=falconer")
                .query("force=true")
                .header("content-type", "application/apply-patch+yaml")
                .body(expected(&key, events))
                .echo(200),
        );
    }
    let script = server.run(steps);
    let mut sink = sink(client, &PolicyReportConfig::default());
    let batch = [
        shop[0].clone(),
        pay[0].clone(),
        host[0].clone(),
        shop[1].clone(),
    ];
    assert_eq!(sink.send(&batch).await, Outcome::Delivered);
    script.done().await;
    assert_eq!(sink.held_reports(), 3);
}

#[tokio::test]
async fn later_batches_apply_the_held_results_without_reading_again_and_drop_the_oldest() {
    let (client, server) = ApiServer::start();
    let path = path_of(Some("shop"), "falconer-shop");
    let script = server.run(vec![
        expect(Method::GET, &path).reply(404, not_found("policyreports", "falconer-shop")),
        expect(Method::PATCH, &path)
            .body(expected(&ns("shop"), &[falco_event(1), falco_event(2)]))
            .echo(200),
        // Bound 2: event 1 is dropped, 3 is added.
        expect(Method::PATCH, &path)
            .body(expected(&ns("shop"), &[falco_event(2), falco_event(3)]))
            .echo(200),
    ]);
    let settings = PolicyReportConfig {
        max_results: 2,
        ..PolicyReportConfig::default()
    };
    let mut sink = sink(client, &settings);
    assert_eq!(
        sink.send(&[falco_event(1), falco_event(2)]).await,
        Outcome::Delivered
    );
    assert_eq!(sink.send(&[falco_event(3)]).await, Outcome::Delivered);
    script.done().await;
}

#[tokio::test]
async fn after_a_restart_the_existing_report_is_read_and_its_results_kept() {
    let (client, server) = ApiServer::start();
    let path = path_of(Some("shop"), "falconer-shop");
    let before = [falco_event(1), falco_event(2)];
    let mut existing = expected(&ns("shop"), &before);
    existing["metadata"]["resourceVersion"] = json!("812");
    existing["metadata"]["uid"] = json!("5f0c");
    let script = server.run(vec![
        expect(Method::GET, &path).reply(200, existing),
        // Event 2 comes again (sent before the crash, its cursor not yet moved): once only.
        expect(Method::PATCH, &path)
            .body(expected(
                &ns("shop"),
                &[falco_event(1), falco_event(2), falco_event(3)],
            ))
            .echo(200),
    ]);
    let mut sink = sink(client, &PolicyReportConfig::default());
    assert_eq!(
        sink.send(&[falco_event(2), falco_event(3)]).await,
        Outcome::Delivered
    );
    script.done().await;
}

#[tokio::test]
async fn without_the_crd_the_batch_is_retried_with_the_reason() {
    let (client, server) = ApiServer::start();
    let path = path_of(Some("shop"), "falconer-shop");
    let script = server.run(vec![
        // What an API server without the group answers: no Status naming the object.
        expect(Method::GET, &path).reply(
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    ]);
    let mut sink = sink(client, &PolicyReportConfig::default());
    let outcome = sink.send(&[falco_event(1), host_event(2)]).await;
    let Outcome::Retry(reason) = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    assert!(
        reason.contains("the wgpolicyk8s.io PolicyReport CRD is not installed"),
        "{reason}"
    );
    script.done().await;
}

#[tokio::test]
async fn a_missing_crd_on_apply_and_forbidden_are_retried_and_the_retry_adds_each_event_once() {
    let (client, server) = ApiServer::start();
    let path = path_of(Some("shop"), "falconer-shop");
    let script = server.run(vec![
        expect(Method::GET, &path).reply(404, not_found("policyreports", "falconer-shop")),
        expect(Method::PATCH, &path).reply(
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
        expect(Method::PATCH, &path).reply(
            403,
            status(403, "Forbidden", "cannot patch resource \"policyreports\""),
        ),
        expect(Method::PATCH, &path).reply(409, status(409, "Conflict", "try again")),
        expect(Method::PATCH, &path)
            .body(expected(&ns("shop"), &[falco_event(1)]))
            .echo(200),
    ]);
    let mut sink = sink(client, &PolicyReportConfig::default());
    let Outcome::Retry(reason) = sink.send(&[falco_event(1)]).await else {
        panic!("404 must be retried");
    };
    assert!(reason.contains("CRD is not installed"), "{reason}");
    let Outcome::Retry(reason) = sink.send(&[falco_event(1)]).await else {
        panic!("403 must be retried");
    };
    assert!(reason.contains("forbidden"), "{reason}");
    assert!(matches!(
        sink.send(&[falco_event(1)]).await,
        Outcome::Retry(_)
    ));
    assert_eq!(sink.send(&[falco_event(1)]).await, Outcome::Delivered);
    script.done().await;
}

#[tokio::test]
async fn an_invalid_report_sends_its_events_to_the_dead_letters_and_the_others_go_on() {
    let (client, server) = ApiServer::start();
    let shop = path_of(Some("shop"), "falconer-shop");
    let cluster = path_of(None, "falconer-cluster");
    let script = server.run(vec![
        expect(Method::GET, &shop).reply(404, not_found("policyreports", "falconer-shop")),
        expect(Method::PATCH, &shop).reply(
            422,
            status(
                422,
                "Invalid",
                "PolicyReport.wgpolicyk8s.io \"falconer-shop\" is invalid: results[0].result: Unsupported value",
            ),
        ),
        expect(Method::GET, &cluster)
            .reply(404, not_found("clusterpolicyreports", "falconer-cluster")),
        expect(Method::PATCH, &cluster)
            .body(expected(&ReportKey::Cluster, &[host_event(2)]))
            .echo(200),
    ]);
    let mut sink = sink(client, &PolicyReportConfig::default());
    let outcome = sink.send(&[falco_event(1), host_event(2)]).await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![
            ItemResult::Refused(
                "the API server refused the PolicyReport shop/falconer-shop (422 Invalid): PolicyReport.wgpolicyk8s.io \"falconer-shop\" is invalid: results[0].result: Unsupported value".into()
            ),
            ItemResult::Delivered,
        ])
    );
    script.done().await;
}

#[tokio::test]
async fn an_event_of_a_namespace_this_cluster_does_not_have_is_refused() {
    let (client, server) = ApiServer::start();
    let path = path_of(Some("gone"), "falconer-gone");
    let script = server.run(vec![
        expect(Method::GET, &path).reply(404, not_found("policyreports", "falconer-gone")),
        expect(Method::PATCH, &path).reply(
            404,
            json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure",
                "message": "namespaces \"gone\" not found", "reason": "NotFound",
                "details": {"name": "gone", "kind": "namespaces"}, "code": 404,
            }),
        ),
    ]);
    let mut sink = sink(client, &PolicyReportConfig::default());
    let Outcome::Each(results) = sink.send(&[in_namespace(1, "gone")]).await else {
        panic!("expected results per event");
    };
    assert!(
        matches!(&results[..], [ItemResult::Refused(why)] if why.contains("does not exist in this cluster")),
        "{results:?}"
    );
    script.done().await;
}

#[tokio::test]
async fn other_clusters_low_severities_bad_namespaces_and_host_events_without_cluster_report() {
    let (client, server) = ApiServer::start();
    let path = path_of(Some("shop"), "falconer-shop");
    let script = server.run(vec![
        expect(Method::GET, &path).reply(404, not_found("policyreports", "falconer-shop")),
        expect(Method::PATCH, &path)
            .body(expected(&ns("shop"), &[falco_event(5)]))
            .echo(200),
    ]);
    let settings = PolicyReportConfig {
        min_severity: Some(Severity::Warning),
        cluster_report: false,
        ..PolicyReportConfig::default()
    };
    let mut sink = sink(client, &settings);
    let mut edge = falco_event(1);
    edge.cluster = "edge-a".into();
    let mut notice = falco_event(2);
    notice.severity = Severity::Notice;
    let bad_namespace = in_namespace(3, "Not_A_Namespace");
    let outcome = sink
        .send(&[edge, notice, bad_namespace, host_event(4), falco_event(5)])
        .await;
    let Outcome::Each(results) = outcome else {
        panic!("expected results per event, got {outcome:?}");
    };
    assert_eq!(results[0], ItemResult::Skipped(OTHER_CLUSTER));
    assert_eq!(results[1], ItemResult::Skipped(BELOW_MIN_SEVERITY));
    assert!(matches!(&results[2], ItemResult::Refused(why) if why.contains("DNS label")));
    assert_eq!(results[3], ItemResult::Skipped(NO_NAMESPACE));
    assert_eq!(results[4], ItemResult::Delivered);
    script.done().await;
}

#[tokio::test]
async fn after_a_retry_mid_batch_the_remaining_reports_are_not_asked() {
    let (client, server) = ApiServer::start();
    let shop = path_of(Some("shop"), "falconer-shop");
    let pay = path_of(Some("payments"), "falconer-payments");
    let script = server.run(vec![
        expect(Method::GET, &shop).reply(404, not_found("policyreports", "falconer-shop")),
        expect(Method::PATCH, &shop).echo(200),
        expect(Method::GET, &pay).reply(
            503,
            status(503, "ServiceUnavailable", "etcd leader changed"),
        ),
    ]);
    let mut sink = sink(client, &PolicyReportConfig::default());
    let outcome = sink
        .send(&[falco_event(1), in_namespace(2, "payments"), host_event(3)])
        .await;
    let retry = ItemResult::Retry("the API server answered 503: etcd leader changed".into());
    assert_eq!(
        outcome,
        Outcome::Each(vec![ItemResult::Delivered, retry.clone(), retry])
    );
    script.done().await;
}

#[tokio::test]
async fn held_reports_are_bounded_and_an_evicted_one_is_read_again() {
    let (client, server) = ApiServer::start();
    let mut steps = Vec::new();
    let count = MAX_CACHED_REPORTS + 1;
    for n in 0..count {
        let name = format!("falconer-ns-{n}");
        let path = path_of(Some(&format!("ns-{n}")), &name);
        steps.push(expect(Method::GET, &path).reply(404, not_found("policyreports", &name)));
        steps.push(expect(Method::PATCH, &path).echo(200));
    }
    // ns-0 was the least recently used: read again.
    let path = path_of(Some("ns-0"), "falconer-ns-0");
    steps.push(expect(Method::GET, &path).reply(404, not_found("policyreports", "falconer-ns-0")));
    steps.push(expect(Method::PATCH, &path).echo(200));
    let script = server.run(steps);
    let mut sink = sink(client, &PolicyReportConfig::default());
    for n in 0..count {
        let event = in_namespace(n as u128, &format!("ns-{n}"));
        assert_eq!(sink.send(&[event]).await, Outcome::Delivered);
    }
    assert_eq!(sink.held_reports(), MAX_CACHED_REPORTS);
    assert_eq!(
        sink.send(&[in_namespace(1000, "ns-0")]).await,
        Outcome::Delivered
    );
    script.done().await;
}

#[test]
fn the_preview_names_the_report_and_shows_the_result() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (client, _server) = runtime.block_on(async { ApiServer::start() });
    let sink = sink(client, &PolicyReportConfig::default());
    let preview = sink.preview(&falco_event(1));
    assert_eq!(preview["kind"], "PolicyReport");
    assert_eq!(preview["namespace"], "shop");
    assert_eq!(preview["name"], "falconer-shop");
    assert_eq!(preview["result"]["policy"], "Terminal shell in container");
    let mut edge = falco_event(2);
    edge.cluster = "edge-a".into();
    assert_eq!(sink.preview(&edge)["skipped"], OTHER_CLUSTER);
}
