use super::*;
use crate::fixtures::{declared, event, secrets};
use crate::sinks::chat::tests::golden_event;
use falconer_model::crd::Consumer;
use falconer_testkit::loki::{LokiServer, Options, go_time};
use serde_json::{Value, json};

fn consumer(loki: Value) -> Consumer {
    serde_json::from_value(
        json!({"name": "logs", "type": "loki", "secretRef": {"name": "loki"},
                                  "loki": loki}),
    )
    .unwrap()
}

fn build(loki: Value, keys: &[(&str, &str)]) -> Result<Loki, String> {
    let consumer = consumer(loki);
    let keys = secrets(keys);
    Loki::from_consumer(&declared(&consumer, &keys)).map_err(|e| e.to_string())
}

fn mapping(labels: &[&str], format: BodyFormat) -> Mapping {
    Mapping {
        labels: labels.iter().map(|l| Label::parse(l).unwrap()).collect(),
        format,
        timestamp: LokiTimestamp::Event,
    }
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().unwrap()
}

#[test]
fn a_batch_becomes_one_push_body_grouped_by_stream_in_time_order() {
    let first = golden_event();
    let mut earlier = golden_event();
    earlier.id = "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0f".parse().unwrap();
    earlier.time = at("2026-05-04T10:11:11.5Z");
    let mut other_ns = golden_event();
    other_ns.id = "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d10".parse().unwrap();
    other_ns.namespace = None;
    other_ns.time = at("2026-05-04T10:11:13Z");
    let events = [first.clone(), other_ns.clone(), earlier.clone()];
    let mapping = mapping(
        &["cluster", "source", "severity", "namespace"],
        BodyFormat::Falconer,
    );
    let streams = mapping.streams(&events);
    let body: Value = serde_json::from_slice(&mapping.body(&events, &streams)).unwrap();
    let line = |e: &Event| String::from_utf8(crate::sinks::event_json(e)).unwrap();
    let golden = json!({"streams": [
        {"stream": {"cluster": "prod", "namespace": "shop", "severity": "critical", "source": "falco"},
         "values": [["1777889471500000000", line(&earlier)], ["1777889472000000000", line(&first)]]},
        // No namespace: the label is left out, not sent empty.
        {"stream": {"cluster": "prod", "severity": "critical", "source": "falco"},
         "values": [["1777889473000000000", line(&other_ns)]]},
    ]});
    assert_eq!(body, golden);
    assert_eq!(
        streams[0].entries,
        [
            (1_777_889_471_500_000_000, 2),
            (1_777_889_472_000_000_000, 0)
        ]
    );
    let parsed: Value = serde_json::from_str(&line(&first)).unwrap();
    assert_eq!(parsed["id"], "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e");
    assert_eq!(parsed["rule"], "Terminal shell in container");
}

#[test]
fn format_falco_sends_the_alert_as_received_and_received_at_can_be_the_timestamp() {
    let mut e = event("Terminal shell");
    e.received_at = at("2026-05-04T10:15:00Z");
    let mut mapping = mapping(&["rule", "kind"], BodyFormat::Falco);
    assert_eq!(mapping.line(&e), r#"{"rule":"Terminal shell"}"#);
    let streams = mapping.streams(std::slice::from_ref(&e));
    assert_eq!(
        streams[0].labels,
        BTreeMap::from([
            ("kind", "runtime_alert".to_string()),
            ("rule", "Terminal shell".to_string())
        ])
    );
    assert_eq!(streams[0].entries[0].0, 1_777_889_472_000_000_000);
    mapping.timestamp = LokiTimestamp::ReceivedAt;
    assert_eq!(
        mapping.streams(&[e])[0].entries[0].0,
        1_777_889_700_000_000_000
    );
}

#[test]
fn an_event_without_any_chosen_label_value_is_labelled_with_its_source() {
    let mut e = event("x");
    e.namespace = None;
    let labels = mapping(&["namespace"], BodyFormat::Falconer).stream_labels(&e);
    assert_eq!(labels, BTreeMap::from([("source", "falco".to_string())]));
}

#[test]
fn unbounded_unknown_and_repeated_labels_are_refused_naming_the_entry() {
    let error = build(
        json!({"url": "http://127.0.0.1:9", "labels": ["cluster", "pod"]}),
        &[],
    )
    .err()
    .unwrap();
    assert!(
        error.contains("loki.labels[1]") && error.contains("`pod` is unbounded"),
        "{error}"
    );
    for (labels, needle) in [
        (json!(["image"]), "loki.labels[0]: `image` is unbounded"),
        (
            json!(["workload"]),
            "loki.labels[0]: `workload` is unbounded",
        ),
        (
            json!(["rule", "team"]),
            "loki.labels[1]: `team` is not an event field",
        ),
        (
            json!(["rule", "rule"]),
            "loki.labels[1]: `rule` is listed twice",
        ),
        (json!([]), "loki.labels: name at least one field"),
    ] {
        let error = build(json!({"url": "http://127.0.0.1:9", "labels": labels}), &[])
            .err()
            .unwrap();
        assert!(error.contains(needle), "{error}");
    }
    assert!(
        build(
            json!({"url": "http://127.0.0.1:9", "labels": ["cluster", "source", "severity", "namespace", "kind", "rule"]}),
            &[]
        )
        .is_ok()
    );
}

#[test]
fn settings_errors_name_their_field() {
    let error = build(json!({"url": "http://127.0.0.1:9", "auth": "bearer"}), &[])
        .err()
        .unwrap();
    assert!(
        error.contains("token") && error.contains("loki.auth bearer"),
        "{error}"
    );
    let error = build(json!({"url": "http://127.0.0.1:9", "tenant": "a b"}), &[])
        .err()
        .unwrap();
    assert!(error.contains("loki.tenant"), "{error}");
    let error = build(
        json!({"url": "http://127.0.0.1:9", "headers": {"X-Scope-OrgID": "t"}}),
        &[],
    )
    .err()
    .unwrap();
    assert!(error.contains("loki.headers"), "{error}");
    let error = build(
        json!({"url": "http://loki.example:3100", "auth": "basic"}),
        &[("username", "u"), ("password", "p")],
    )
    .err()
    .unwrap();
    assert!(
        error.contains("loki.url") && error.contains("allowInsecureHttp"),
        "{error}"
    );
    let error = build(
        json!({"url": "http://127.0.0.1:9", "format": "template"}),
        &[],
    )
    .err()
    .unwrap();
    assert!(error.contains("loki.format"), "{error}");
}

#[test]
fn the_push_path_is_appended_to_the_base_path() {
    let url = |text: &str| push_url(&text.parse().unwrap()).to_string();
    assert_eq!(url("http://loki:3100"), "http://loki:3100/loki/api/v1/push");
    assert_eq!(
        url("https://gw.example/tenant-a/"),
        "https://gw.example/tenant-a/loki/api/v1/push"
    );
}

#[test]
fn go_times_of_loki_answers_are_read_back_to_nanoseconds() {
    for ns in [
        0,
        1_777_889_472_000_000_000,
        1_777_889_472_123_456_789,
        1_777_889_472_100_000_000,
    ] {
        assert_eq!(parse_go_time(&go_time(ns)), Some(ns), "{}", go_time(ns));
    }
    assert_eq!(
        parse_go_time("2026-05-04 12:11:12.5 +0200 CEST"),
        Some(1_777_889_472_500_000_000)
    );
    assert_eq!(parse_go_time("yesterday"), None);
}

#[test]
fn a_400_names_the_refused_entries_and_the_others_are_sent_again() {
    let mut old = event("old");
    old.time = at("2026-05-04T09:00:00Z");
    let fresh = event("fresh");
    let mapping = mapping(&["cluster"], BodyFormat::Falconer);
    // As Loki's ingester writes it (the Go times of the refused entries).
    let answer = format!(
        "entry with timestamp {} ignored, reason: 'entry out of order',\nuser 'fake', total \
         ignored: 1 out of 2 for stream: {{cluster=\"prod\"}}\n",
        go_time(mapping.time(&old))
    );
    let results = results_of_400(
        &answer,
        "POST x: HTTP 400",
        &[fresh.clone(), old.clone()],
        &mapping,
    )
    .unwrap();
    assert!(matches!(&results[0], ItemResult::Retry(_)), "{results:?}");
    assert_eq!(
        results[1],
        ItemResult::Refused("POST x: HTTP 400: entry out of order".into())
    );

    let too_far = "entry with timestamp 2026-05-04 09:00:00 +0000 UTC ignored, reason: 'entry too far \
                   behind, entry timestamp is: 2026-05-04T09:00:00Z, oldest acceptable timestamp \
                   is: 2026-05-04T10:00:00Z',";
    assert_eq!(
        refused_entries(too_far),
        [(
            1_777_885_200_000_000_000,
            "entry too far behind, entry timestamp is: 2026-05-04T09:00:00Z, oldest acceptable \
             timestamp is: 2026-05-04T10:00:00Z"
                .to_string()
        )]
    );
    let too_old = "entry for stream '{cluster=\"prod\"}' has timestamp too old: 2026-05-04 09:00:00 \
                   +0000 UTC, oldest acceptable timestamp is: 2026-05-04 10:00:00 +0000 UTC";
    let results = results_of_400(too_old, "POST x: HTTP 400", &[old.clone()], &mapping).unwrap();
    assert_eq!(
        results,
        [ItemResult::Refused(
            "POST x: HTTP 400: timestamp too old: 2026-05-04 09:00:00 +0000 UTC, oldest \
             acceptable timestamp is: 2026-05-04 10:00:00 +0000 UTC"
                .into()
        )]
    );
    // An answer naming none of the events: the shared table refuses them all.
    assert_eq!(
        results_of_400(
            "error at least one label pair is required per stream",
            "w",
            &[old],
            &mapping
        ),
        None
    );
}

#[tokio::test]
async fn pushes_carry_the_tenant_and_credentials_and_land_in_streams() {
    let server = LokiServer::with(Options {
        require_tenant: true,
        bearer: Some("s3cret".into()),
        ..Options::default()
    })
    .unwrap();
    let mut sink = build(
        json!({"url": server.url(), "tenant": "team-a", "auth": "bearer",
               "headers": {"X-Gateway": "falconer"}}),
        &[("token", "s3cret")],
    )
    .unwrap();
    let events = [event("a"), event("b")];
    assert_eq!(sink.send(&events).await, Outcome::Delivered);
    let entries = server.entries();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.tenant == "team-a"));
    assert_eq!(
        entries[0].labels,
        BTreeMap::from([
            ("cluster".to_string(), "prod".to_string()),
            ("namespace".to_string(), "shop".to_string()),
            ("severity".to_string(), "warning".to_string()),
            ("source".to_string(), "falco".to_string()),
        ])
    );
    let request = &server.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer s3cret");
    assert_eq!(request.headers["x-gateway"], "falconer");
    assert_eq!(request.headers["content-type"], "application/json");

    let mut wrong = build(
        json!({"url": server.url(), "auth": "bearer"}),
        &[("token", "nope")],
    )
    .unwrap();
    let Outcome::Retry(why) = wrong.send(&events).await else {
        panic!("bad credentials are retried, nothing lost");
    };
    assert!(
        why.contains("HTTP 401") && why.contains("loki.auth"),
        "{why}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_an_out_of_order_entry_is_refused_alone() {
    let server = LokiServer::start().unwrap();
    let mut sink = build(json!({"url": server.url(), "labels": ["cluster"]}), &[]).unwrap();
    server.faults(|f| {
        f.status = Some(429);
        f.retry_after = Some(7);
    });
    let Outcome::Retry(why) = sink.send(&[event("a")]).await else {
        panic!("429 is retried");
    };
    assert!(
        why.contains("HTTP 429") && why.contains("Retry-After: 7 s"),
        "{why}"
    );
    assert_eq!(sink.retry_after(), Some(Duration::from_secs(7)));
    server.faults(|f| f.status = None);
    assert_eq!(sink.send(&[event("a")]).await, Outcome::Delivered);

    let mut old = event("old");
    old.time = at("2026-05-04T09:00:00Z");
    let mut later = event("later");
    later.time = at("2026-05-04T10:20:00Z");
    let Outcome::Each(results) = sink.send(&[old.clone(), later.clone()]).await else {
        panic!("per-event results expected");
    };
    let ItemResult::Refused(why) = &results[0] else {
        panic!("{results:?}");
    };
    assert!(
        why.contains("HTTP 400") && why.ends_with("entry out of order"),
        "{why}"
    );
    assert!(matches!(results[1], ItemResult::Retry(_)), "{results:?}");
    // The retry of the accepted entry is a duplicate Loki takes without keeping it twice.
    assert_eq!(sink.send(&[later]).await, Outcome::Delivered);
    let rules: Vec<String> = server
        .entries()
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.line).unwrap()["rule"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(rules, ["a", "later"]);
    server.stop().await;
}

#[tokio::test]
async fn a_413_splits_the_batch_and_the_preview_is_the_push_body() {
    let server = LokiServer::start().unwrap();
    server.faults(|f| f.max_body_bytes = Some(1500));
    let mut sink = build(json!({"url": server.url()}), &[]).unwrap();
    let events: Vec<Event> = (0..6).map(|i| event(&format!("r{i}"))).collect();
    let outcome = sink.send(&events).await;
    assert_eq!(http::per_item(outcome, 6), vec![ItemResult::Delivered; 6]);
    assert!(sink.batch_size() < 500);
    assert_eq!(server.entries().len(), 6);
    let preview = sink.preview(&events[0]);
    assert_eq!(preview["streams"][0]["stream"]["cluster"], "prod");
    assert_eq!(preview["streams"][0]["values"][0][0], "1777889472000000000");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_answer_is_waited_for() {
    let server = LokiServer::start().unwrap();
    server.faults(|f| f.delay = Duration::from_millis(300));
    let mut sink = build(json!({"url": server.url()}), &[]).unwrap();
    assert_eq!(sink.send(&[event("slow")]).await, Outcome::Delivered);
    assert_eq!(server.entries().len(), 1);
    server.stop().await;
}
