use super::*;
use chrono::TimeZone;
use falconer_model::event::{Kind, Severity};
use falconer_testkit::kube::{ApiServer, expect, schema_errors, status};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

const COLLECTION: &str = "/apis/amtd.r6security.com/v1beta1/securityevents";

fn falco_event(n: u128) -> Event {
    Event {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n),
        dedup_key: None,
        time: Utc
            .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
            .single()
            .expect("time"),
        received_at: Utc
            .with_ymd_and_hms(2026, 11, 22, 10, 0, 1)
            .single()
            .expect("time"),
        source: "falco".into(),
        source_version: None,
        kind: Kind::RuntimeAlert,
        severity: Severity::Notice,
        severity_raw: "Notice".into(),
        rule: "Terminal shell in container".into(),
        message: "10:00:00.000000000: Notice A shell was spawned in a container (user=root)".into(),
        tags: vec!["container".into(), "shell".into()],
        cluster: "prod-eu-1".into(),
        namespace: Some("demo-page".into()),
        pod: Some("demo-page-6d4b9c7f9-x2x7k".into()),
        container: Some("nginx".into()),
        image: None,
        node: Some("node-1".into()),
        workload: None,
        fields: serde_json::value::RawValue::from_string("{}".into()).expect("JSON"),
        raw: None,
        group: None,
        suppressed: None,
    }
}

/// The event received `seconds` later (and claiming a time as much later).
fn at(event: Event, seconds: i64) -> Event {
    Event {
        time: event.time + TimeDelta::seconds(seconds),
        received_at: event.received_at + TimeDelta::seconds(seconds),
        ..event
    }
}

/// The hub's cluster is the fixtures' `prod-eu-1`.
fn scope(client: kube::Client) -> crate::Home {
    crate::Home {
        client,
        cluster: "prod-eu-1".into(),
        namespace: "falconer-system".into(),
    }
}

fn settings() -> PhoenixConfig {
    PhoenixConfig::default()
}

// ---------------------------------------------------------------------------------------------
// Payload mapping

#[test]
fn a_falco_alert_becomes_the_security_event_phoenixs_falco_integrator_would_create() {
    let object = security_event("phoenix", None, &falco_event(1)).expect("has a pod");
    assert_eq!(
        serde_json::to_value(&object).expect("JSON"),
        json!({
            "apiVersion": "amtd.r6security.com/v1beta1",
            "kind": "SecurityEvent",
            "metadata": {
                "name": "falconer-phoenix-01900000000070008000000000000001",
                "labels": {
                    "app.kubernetes.io/managed-by": "falconer-hub",
                    "falconer.io/consumer": "phoenix",
                },
                "annotations": {
                    "falconer.io/event-id": "01900000-0000-7000-8000-000000000001",
                },
            },
            "spec": {
                "targets": ["demo-page/demo-page-6d4b9c7f9-x2x7k"],
                "rule": {
                    "type": "Terminal shell in container",
                    "threatLevel": "Notice",
                    "source": "FalcoIntegrator",
                },
                "description": "10:00:00.000000000: Notice A shell was spawned in a container (user=root)",
            },
        })
    );
}

#[test]
fn the_threat_level_is_the_sources_own_severity_text_not_the_normalized_one() {
    let mut event = falco_event(1);
    event.severity = Severity::Informational;
    event.severity_raw = "Informational".into();
    let object = security_event("phoenix", None, &event).expect("has a pod");
    assert_eq!(object.spec.rule.threat_level, "Informational");
}

#[test]
fn kubearmor_events_keep_the_rule_source_of_phoenixs_kubearmor_integrator() {
    let mut event = falco_event(1);
    event.source = "kubearmor".into();
    event.rule = "block-pkg-mgmt-tools-exec".into();
    event.severity_raw = "1".into();
    let object = security_event("phoenix", None, &event).expect("has a pod");
    // kubearmor-integrator: source KubeArmorIntegrator, type PolicyName, threatLevel Severity.
    assert_eq!(object.spec.rule.source, "KubeArmorIntegrator");
    assert_eq!(object.spec.rule.rule_type, "block-pkg-mgmt-tools-exec");
    assert_eq!(object.spec.rule.threat_level, "1");
}

#[test]
fn a_phoenix_consumer_outside_a_cluster_names_the_setting_that_connects_one() {
    let consumer =
        falconer_model::crd::Consumer::new("phoenix", falconer_model::crd::SinkType::Phoenix);
    let secrets = crate::declared::Secrets::new();
    let declared = crate::fixtures::declared(&consumer, &secrets);
    let error = PhoenixSink::from_consumer(&declared)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("kubernetes.settings: on"), "{error}");
    assert!(error.contains("KUBECONFIG"), "{error}");
}

#[test]
fn other_sources_default_to_their_own_name_and_a_configured_rule_source_wins() {
    let mut event = falco_event(1);
    event.source = "tetragon".into();
    event.severity_raw = "1".into();
    let object = security_event("phoenix", None, &event).expect("has a pod");
    assert_eq!(object.spec.rule.source, "tetragon");
    assert_eq!(object.spec.rule.threat_level, "1");
    let object = security_event("phoenix", Some("Falconer"), &falco_event(1)).expect("pod");
    assert_eq!(object.spec.rule.source, "Falconer");
}

#[test]
fn events_without_a_pod_or_a_namespace_have_no_security_event() {
    let mut no_pod = falco_event(1);
    no_pod.pod = None;
    assert_eq!(security_event("p", None, &no_pod).err(), Some(NO_POD));
    let mut empty_pod = falco_event(1);
    empty_pod.pod = Some(String::new());
    assert_eq!(security_event("p", None, &empty_pod).err(), Some(NO_POD));
    let mut no_namespace = falco_event(1);
    no_namespace.namespace = None;
    assert_eq!(security_event("p", None, &no_namespace).err(), Some(NO_POD));
}

fn is_dns_subdomain(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[test]
fn object_names_are_dns_subdomains_fixed_by_consumer_and_event_id() {
    let id = Uuid::from_u128(u128::MAX);
    assert_eq!(
        object_name("phoenix", id),
        "falconer-phoenix-ffffffffffffffffffffffffffffffff"
    );
    assert_eq!(object_name("phoenix", id), object_name("phoenix", id));
    assert_ne!(object_name("a", id), object_name("b", id));
    // Config-file consumers are not checked by an API server.
    for consumer in ["Phoenix_Main", "-x-", "", "ü", &"long".repeat(40)] {
        let name = object_name(consumer, id);
        assert!(is_dns_subdomain(&name), "{name}");
        let label = consumer_label(consumer);
        assert!(
            falconer_model::crd::is_dns_label(&label),
            "label value {label}"
        );
    }
    assert_eq!(consumer_label("Phoenix_Main"), "phoenix-main");
}

// ---------------------------------------------------------------------------------------------
// Validation against Phoenix's CRD schema (tests/fixtures), as the API server would do it.

fn crd_schema() -> Value {
    let crd: Value = serde_saphyr::from_str(include_str!(
        "../../tests/fixtures/phoenix-securityevents-crd.yaml"
    ))
    .expect("fixture is YAML");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    assert_eq!(crd["spec"]["group"], "amtd.r6security.com");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1beta1");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn security_events_match_phoenixs_crd_schema_and_phoenixs_target_format() {
    let schema = crd_schema();
    let mut kubearmor = falco_event(2);
    kubearmor.source = "kubearmor".into();
    kubearmor.message = String::new();
    for event in [falco_event(1), kubearmor] {
        let object = security_event("phoenix", None, &event).expect("has a pod");
        let value = serde_json::to_value(&object).expect("JSON");
        assert_eq!(schema_errors(&value, &schema, ""), Vec::<String>::new());
        assert!(is_dns_subdomain(&object.name_any()));
        // Phoenix splits each target on `/` and indexes [0] and [1].
        for target in &object.spec.targets {
            let parts: Vec<&str> = target.split('/').collect();
            assert_eq!(parts.len(), 2, "{target}");
            assert!(parts.iter().all(|p| !p.is_empty()), "{target}");
        }
    }
}

#[test]
fn the_schema_check_catches_missing_required_fields_unknown_fields_and_wrong_types() {
    let schema = crd_schema();
    let bad = json!({
        "apiVersion": "amtd.r6security.com/v1beta1",
        "kind": "SecurityEvent",
        "metadata": {"name": "x"},
        "spec": {"targets": "ns/pod", "rule": {"type": "r", "severity": "high"}},
    });
    assert_eq!(
        schema_errors(&bad, &schema, ""),
        [
            ".spec.description: required",
            ".spec.rule.severity: unknown field, would be pruned",
            ".spec.targets: not a array",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn durations_take_only_the_units_each_setting_allows() {
    assert_eq!(parse_duration("30s", "smh"), Some(TimeDelta::seconds(30)));
    assert_eq!(parse_duration("5m", "smh"), Some(TimeDelta::minutes(5)));
    assert_eq!(parse_duration("2w", "hdw"), Some(TimeDelta::weeks(2)));
    for bad in ["", "m", "0m", "-5m", "5", "5d", "1.5h", "5mm", "ü"] {
        assert_eq!(parse_duration(bad, "smh"), None, "{bad}");
    }
}

#[tokio::test]
async fn bad_durations_are_refused_when_the_sink_is_built() {
    let (client, _server) = ApiServer::start();
    let mut bad = settings();
    bad.dedup_window = Some("1d".into());
    let error = PhoenixSink::build("phoenix", &bad, &scope(client.clone()))
        .err()
        .expect("refused");
    assert_eq!(
        error.to_string(),
        "phoenix.dedupWindow: `1d` is not a duration like 30s, 5m or 1h"
    );
    let mut bad = settings();
    bad.ttl = Some("10m".into());
    assert!(matches!(
        PhoenixSink::build("phoenix", &bad, &scope(client)),
        Err(DeliveryError::InvalidDuration { field: "ttl", .. })
    ));
}

#[test]
fn a_sink_with_a_ttl_cannot_be_built_outside_the_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // The client itself needs a runtime to exist; the sink is built after leaving it.
    let (client, _server) = runtime.block_on(async { ApiServer::start() });
    let mut with_ttl = settings();
    with_ttl.ttl = Some("24h".into());
    assert!(matches!(
        PhoenixSink::build("phoenix", &with_ttl, &scope(client)),
        Err(DeliveryError::NoRuntime)
    ));
}

// ---------------------------------------------------------------------------------------------
// API server answers

fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(message, reason)
            .with_code(code)
            .boxed(),
    )
}

#[test]
fn an_object_that_already_exists_counts_as_created() {
    assert_eq!(classify(&api_error(409, "AlreadyExists", "exists")), Ok(()));
}

#[test]
fn a_missing_crd_is_retried_with_a_message_saying_phoenix_is_not_installed() {
    let Err(Failure::Retry(message)) = classify(&api_error(404, "NotFound", "404 page not found"))
    else {
        panic!("404 must be retried");
    };
    assert!(message.contains("Phoenix is not installed"), "{message}");
}

#[test]
fn forbidden_is_retried_with_a_message_naming_the_missing_permission() {
    let Err(Failure::Retry(message)) = classify(&api_error(
        403,
        "Forbidden",
        "securityevents.amtd.r6security.com is forbidden: User \"system:serviceaccount:falconer-system:falconer-hub\" cannot create resource",
    )) else {
        panic!("403 must be retried");
    };
    assert!(message.contains("`create`"), "{message}");
    assert!(message.contains("amtd.r6security.com"), "{message}");
    assert!(message.contains("ClusterRole"), "{message}");
    assert!(message.contains("cannot create resource"), "{message}");
}

#[test]
fn busy_or_failing_api_servers_are_retried_and_invalid_objects_refused() {
    for code in [401, 408, 429, 500, 503, 504] {
        assert!(
            matches!(classify(&api_error(code, "x", "m")), Err(Failure::Retry(_))),
            "{code}"
        );
    }
    assert_eq!(
        classify(&api_error(
            422,
            "Invalid",
            "SecurityEvent.amtd.r6security.com \"x\" is invalid: spec.description: Required value"
        )),
        Err(Failure::Refused(
            "the API server refused the SecurityEvent (422 Invalid): SecurityEvent.amtd.r6security.com \"x\" is invalid: spec.description: Required value".into()
        ))
    );
    assert!(matches!(
        classify(&api_error(400, "BadRequest", "m")),
        Err(Failure::Refused(_))
    ));
}

#[test]
fn connection_errors_are_retried() {
    let error = kube::Error::Service("connection refused".into());
    assert!(matches!(classify(&error), Err(Failure::Retry(m)) if m.contains("connection refused")));
}

// ---------------------------------------------------------------------------------------------
// The sink against a scripted API server

fn created(body: &Value) -> Value {
    let mut object = body.clone();
    object["metadata"]["uid"] = json!("0a0b");
    object["metadata"]["resourceVersion"] = json!("1");
    object
}

#[tokio::test]
async fn send_creates_one_cluster_scoped_object_per_event_and_takes_409_as_delivered() {
    let (client, server) = ApiServer::start();
    let first = security_event("phoenix", None, &falco_event(1)).expect("pod");
    let first_body = serde_json::to_value(&first).expect("JSON");
    let reply = created(&first_body);
    let script = server.run(vec![
        expect(Method::POST, COLLECTION)
            .query("fieldManager=falconer-hub")
            .body(first_body)
            .reply(201, reply),
        expect(Method::POST, COLLECTION)
            .check(|body| {
                assert_eq!(
                    body["metadata"]["name"],
                    "falconer-phoenix-01900000000070008000000000000002"
                )
            })
            .reply(
                409,
                status(409, "AlreadyExists", "securityevents \"x\" already exists"),
            ),
    ]);
    let mut sink = PhoenixSink::build("phoenix", &settings(), &scope(client)).expect("sink");
    let outcome = sink.send(&[falco_event(1), falco_event(2)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    script.done().await;
}

#[tokio::test]
async fn events_without_a_pod_are_skipped_without_a_request() {
    let (client, server) = ApiServer::start();
    let mut host_alert = falco_event(1);
    host_alert.pod = None;
    host_alert.namespace = None;
    let script = server.run(vec![
        expect(Method::POST, COLLECTION)
            .check(|body| {
                assert_eq!(
                    body["spec"]["targets"][0],
                    "demo-page/demo-page-6d4b9c7f9-x2x7k"
                )
            })
            .echo(201),
    ]);
    let mut sink = PhoenixSink::build("phoenix", &settings(), &scope(client)).expect("sink");
    let outcome = sink.send(&[host_alert, falco_event(2)]).await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![ItemResult::Skipped(NO_POD), ItemResult::Delivered])
    );
    script.done().await;
}

#[tokio::test]
async fn without_phoenixs_crd_the_whole_batch_is_retried_with_a_clear_message() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![expect(Method::POST, COLLECTION).reply(
        404,
        status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    )]);
    let mut sink = PhoenixSink::build("phoenix", &settings(), &scope(client)).expect("sink");
    let outcome = sink.send(&[falco_event(1), falco_event(2)]).await;
    let Outcome::Retry(message) = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    assert!(message.contains("Phoenix is not installed"), "{message}");
    script.done().await;
}

#[tokio::test]
async fn an_invalid_object_is_refused_with_the_api_servers_message_and_the_batch_goes_on() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::POST, COLLECTION).reply(
            422,
            status(422, "Invalid", "spec.description: Invalid value"),
        ),
        expect(Method::POST, COLLECTION).echo(201),
    ]);
    let mut sink = PhoenixSink::build("phoenix", &settings(), &scope(client)).expect("sink");
    let outcome = sink.send(&[falco_event(1), falco_event(2)]).await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![
            ItemResult::Refused(
                "the API server refused the SecurityEvent (422 Invalid): spec.description: Invalid value"
                    .into()
            ),
            ItemResult::Delivered,
        ])
    );
    script.done().await;
}

#[tokio::test]
async fn after_a_retryable_failure_mid_batch_the_rest_is_retried_without_being_sent() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::POST, COLLECTION).echo(201),
        expect(Method::POST, COLLECTION).reply(
            503,
            status(503, "ServiceUnavailable", "etcd leader changed"),
        ),
    ]);
    let mut sink = PhoenixSink::build("phoenix", &settings(), &scope(client)).expect("sink");
    let outcome = sink
        .send(&[falco_event(1), falco_event(2), falco_event(3)])
        .await;
    let retry = ItemResult::Retry("the API server answered 503: etcd leader changed".into());
    assert_eq!(
        outcome,
        Outcome::Each(vec![ItemResult::Delivered, retry.clone(), retry])
    );
    script.done().await;
}

#[tokio::test]
async fn the_dedup_window_creates_one_object_per_rule_and_pod_per_window_of_event_time() {
    let (client, server) = ApiServer::start();
    let name = |n: u128| object_name("phoenix", falco_event(n).id);
    let (first, other_pod, third, after_window) = (name(1), name(3), name(4), name(5));
    let script = server.run(vec![
        expect(Method::POST, COLLECTION)
            .check(move |b| assert_eq!(b["metadata"]["name"], first.as_str()))
            .echo(201),
        expect(Method::POST, COLLECTION)
            .check(move |b| assert_eq!(b["metadata"]["name"], other_pod.as_str()))
            .echo(201),
        expect(Method::POST, COLLECTION)
            .check(move |b| assert_eq!(b["metadata"]["name"], third.as_str()))
            .echo(201),
        expect(Method::POST, COLLECTION)
            .check(move |b| assert_eq!(b["metadata"]["name"], after_window.as_str()))
            .echo(201),
    ]);
    let mut with_window = settings();
    with_window.dedup_window = Some("1m".into());
    let mut sink = PhoenixSink::build("phoenix", &with_window, &scope(client)).expect("sink");

    let mut other_pod = at(falco_event(3), 10);
    other_pod.pod = Some("other".into());
    let mut other_rule = at(falco_event(4), 20);
    other_rule.rule = "Read sensitive file untrusted".into();
    let outcome = sink
        .send(&[
            falco_event(1),
            at(falco_event(2), 59), // same rule and pod, inside the window
            other_pod,
            other_rule,
        ])
        .await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![
            ItemResult::Delivered,
            ItemResult::Skipped(DUPLICATE),
            ItemResult::Delivered,
            ItemResult::Delivered,
        ])
    );
    // Later batches remember; an event a full window after the first object creates again.
    let outcome = sink
        .send(&[at(falco_event(6), -30), at(falco_event(5), 60)])
        .await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![ItemResult::Skipped(DUPLICATE), ItemResult::Delivered])
    );
    script.done().await;
}

#[tokio::test]
async fn a_create_that_must_be_retried_does_not_count_for_the_dedup_window() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::POST, COLLECTION).reply(500, status(500, "InternalError", "boom")),
        expect(Method::POST, COLLECTION).echo(201),
    ]);
    let mut with_window = settings();
    with_window.dedup_window = Some("1h".into());
    let mut sink = PhoenixSink::build("phoenix", &with_window, &scope(client)).expect("sink");
    assert!(matches!(
        sink.send(&[falco_event(1)]).await,
        Outcome::Retry(_)
    ));
    assert_eq!(sink.send(&[falco_event(1)]).await, Outcome::Delivered);
    script.done().await;
}

#[test]
fn the_dedup_memory_forgets_pairs_no_later_event_can_collide_with() {
    let mut dedup = Dedup::new(TimeDelta::minutes(1));
    let t0 = falco_event(1).time;
    dedup.record(("r".into(), "a/p".into()), t0);
    dedup.record(("r".into(), "a/q".into()), t0 + TimeDelta::minutes(5));
    dedup.prune();
    assert_eq!(dedup.last.len(), 1);
    assert!(dedup.is_duplicate(&("r".into(), "a/q".into()), t0 + TimeDelta::minutes(5)));
}

// ---------------------------------------------------------------------------------------------
// TTL cleanup

fn stored(name: &str, created_second: i64) -> Value {
    json!({
        "apiVersion": "amtd.r6security.com/v1beta1",
        "kind": "SecurityEvent",
        "metadata": {
            "name": name,
            "creationTimestamp": Time(Timestamp::from_second(created_second).expect("ts")),
            "labels": {"app.kubernetes.io/managed-by": "falconer-hub", "falconer.io/consumer": "phoenix"},
        },
        "spec": {"targets": ["a/p"], "rule": {"type": "r", "threatLevel": "Notice", "source": "FalcoIntegrator"}, "description": "d"},
    })
}

fn list(items: Vec<Value>, continue_token: &str) -> Value {
    json!({
        "apiVersion": "amtd.r6security.com/v1beta1",
        "kind": "SecurityEventList",
        "metadata": {"resourceVersion": "7", "continue": continue_token},
        "items": items,
    })
}

#[tokio::test]
async fn cleanup_deletes_only_this_consumers_objects_older_than_the_ttl_page_by_page() {
    let now = Utc.timestamp_opt(1_800_000_000, 0).single().expect("now");
    let day = 86_400;
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::GET, COLLECTION)
            .query("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dfalconer-hub%2Cfalconer.io%2Fconsumer%3Dphoenix")
            .query("limit=500")
            .reply(
                200,
                list(
                    vec![
                        stored("old", 1_800_000_000 - day - 1),
                        stored("young", 1_800_000_000 - day + 60),
                    ],
                    "page-2",
                ),
            ),
        expect(Method::DELETE, &format!("{COLLECTION}/old")).reply(200, stored("old", 0)),
        expect(Method::GET, COLLECTION)
            .query("continue=page-2")
            .reply(200, list(vec![stored("gone", 1_800_000_000 - 2 * day)], "")),
        expect(Method::DELETE, &format!("{COLLECTION}/gone"))
            .reply(404, status(404, "NotFound", "securityevents \"gone\" not found")),
    ]);
    let api: Api<SecurityEvent> = Api::all(client);
    let deleted = cleanup_expired(&api, "phoenix", TimeDelta::days(1), now)
        .await
        .expect("cleanup");
    assert_eq!(deleted, 1);
    script.done().await;
}

#[tokio::test]
async fn cleanup_without_phoenixs_crd_has_nothing_to_do() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::GET, COLLECTION).reply(404, status(404, "NotFound", "not found")),
    ]);
    let api: Api<SecurityEvent> = Api::all(client);
    let deleted = cleanup_expired(&api, "phoenix", TimeDelta::days(1), Utc::now())
        .await
        .expect("cleanup");
    assert_eq!(deleted, 0);
    script.done().await;
}

#[tokio::test]
async fn a_sink_with_a_ttl_runs_a_first_cleanup_pass_when_it_starts() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::GET, COLLECTION)
            .query("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dfalconer-hub%2Cfalconer.io%2Fconsumer%3Dphx")
            .reply(200, list(vec![stored("old", 1_000_000_000)], "")),
        expect(Method::DELETE, &format!("{COLLECTION}/old")).reply(200, stored("old", 0)),
    ]);
    let mut with_ttl = settings();
    with_ttl.ttl = Some("24h".into());
    let sink = PhoenixSink::build("phx", &with_ttl, &scope(client)).expect("sink");
    script.done().await;
    drop(sink);
}

#[test]
fn cleanup_runs_every_tenth_of_the_ttl_between_a_minute_and_an_hour() {
    assert_eq!(
        cleanup_period(TimeDelta::hours(1)),
        Duration::from_secs(360)
    );
    assert_eq!(
        cleanup_period(TimeDelta::seconds(5)),
        Duration::from_secs(60)
    );
    assert_eq!(
        cleanup_period(TimeDelta::weeks(2)),
        Duration::from_secs(3600)
    );
}

// ---------------------------------------------------------------------------------------------
// What a sender cannot steer

#[tokio::test]
async fn events_of_other_clusters_denied_namespaces_or_other_sources_create_nothing() {
    let (client, server) = ApiServer::start();
    // Only the last event reaches the API server.
    let last = object_name("phoenix", falco_event(5).id);
    let script = server.run(vec![
        expect(Method::POST, COLLECTION)
            .check(move |b| assert_eq!(b["metadata"]["name"], last.as_str()))
            .echo(201),
    ]);
    let mut required = settings();
    required.require_sources = vec!["falco".into()];
    let mut sink = PhoenixSink::build("phoenix", &required, &scope(client)).expect("sink");
    let mut edge = falco_event(1);
    edge.cluster = "edge-a".into();
    let mut control_plane = falco_event(2);
    control_plane.namespace = Some("kube-system".into());
    let mut the_hub = falco_event(3);
    the_hub.namespace = Some("falconer-system".into());
    let mut agent = falco_event(4);
    agent.source = "agent".into();
    let outcome = sink
        .send(&[edge, control_plane, the_hub, agent, falco_event(5)])
        .await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![
            ItemResult::Skipped(OTHER_CLUSTER),
            ItemResult::Skipped(DENIED_NAMESPACE),
            ItemResult::Skipped(DENIED_NAMESPACE),
            ItemResult::Skipped(OTHER_SOURCE),
            ItemResult::Delivered,
        ])
    );
    script.done().await;
}

#[tokio::test]
async fn past_max_per_minute_the_circuit_opens_and_events_go_to_the_dead_letters() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::POST, COLLECTION).echo(201),
        expect(Method::POST, COLLECTION).echo(201),
    ]);
    let mut capped = settings();
    capped.max_per_minute = Some(2);
    let mut sink = PhoenixSink::build("phoenix", &capped, &scope(client)).expect("sink");
    let mut burst: Vec<Event> = (1..=4).map(falco_event).collect();
    for (i, event) in burst.iter_mut().enumerate() {
        event.pod = Some(format!("web-{i}"));
    }
    let Outcome::Each(results) = sink.send(&burst).await else {
        panic!("expected results per event");
    };
    assert_eq!(results[..2], [ItemResult::Delivered, ItemResult::Delivered]);
    for result in &results[2..] {
        assert!(
            matches!(result, ItemResult::Refused(why) if why.contains("circuit open") && why.contains("maxPerMinute")),
            "{result:?}"
        );
    }
    assert!(sink.circuit_open());
    script.done().await;
}

#[tokio::test]
async fn the_dedup_window_counts_receipt_times_so_a_forged_time_does_not_step_past_it() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![expect(Method::POST, COLLECTION).echo(201)]);
    let mut with_window = settings();
    with_window.dedup_window = Some("1m".into());
    let mut sink = PhoenixSink::build("phoenix", &with_window, &scope(client)).expect("sink");
    // Received a second apart, claiming to be a day apart.
    let mut forged = falco_event(2);
    forged.time += TimeDelta::days(1);
    forged.received_at += TimeDelta::seconds(1);
    let outcome = sink.send(&[falco_event(1), forged]).await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![ItemResult::Delivered, ItemResult::Skipped(DUPLICATE)])
    );
    script.done().await;
}

#[tokio::test]
async fn with_require_bound_sender_only_events_the_hub_marked_as_bound_create_anything() {
    let (client, server) = ApiServer::start();
    let marked = falco_event(2);
    let name = object_name("phoenix", marked.id);
    let script = server.run(vec![
        expect(Method::POST, COLLECTION)
            .check(move |b| assert_eq!(b["metadata"]["name"], name.as_str()))
            .echo(201),
    ]);
    let mut required = settings();
    required.require_bound_sender = true;
    let mut sink = PhoenixSink::build("phoenix", &required, &scope(client)).expect("sink");
    let mut marked = marked;
    marked.tags.push(format!(
        "{}agent-falco",
        falconer_model::event::BOUND_SENDER_TAG
    ));
    let outcome = sink.send(&[falco_event(1), marked]).await;
    assert_eq!(
        outcome,
        Outcome::Each(vec![
            ItemResult::Skipped(UNBOUND_SENDER),
            ItemResult::Delivered
        ])
    );
    script.done().await;
}
