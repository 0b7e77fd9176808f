use super::*;
use crate::declared::Secrets;
use crate::notify::Summary;
use crate::sinks::chat::tests::{golden_event, notice};
use falconer_model::crd::Consumer;
use falconer_model::event::Severity;
use falconer_testkit::webhook::WebhookServer;

const LINK: &str = "https://falconer.example/ui/#/events/0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn mapping() -> Mapping {
    Mapping {
        labels: falconer_model::crd::DEFAULT_ALERT_LABELS.to_vec(),
        extra_labels: BTreeMap::new(),
        resolve_after: Duration::from_secs(300),
    }
}

#[test]
fn an_event_is_an_alert_labelled_by_bounded_fields_and_annotated_with_text_facts_and_link() {
    let e = golden_event();
    let n = notice(&e, Some(LINK));
    let alert = mapping().alert(&n, e.time, at("2026-05-04T10:12:00Z"));
    let golden = json!({
        "labels": {
            "alertname": "Terminal shell in container",
            "severity": "critical",
            "source": "falco",
            "cluster": "prod",
            "namespace": "shop",
            "workload": "Deployment/web",
            "falconer_group": n.group,
        },
        "annotations": {
            "summary": "A shell was spawned in a container <bash> & more",
            "description": "Severity: Critical\nSource: falco\nCluster: prod\nNamespace: shop\n\
                Workload: Deployment web\nPod: web-1\nContainer: web\nTime: 2026-05-04T10:11:12.000Z",
            "falconer_event_id": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e",
            "falconer_url": LINK,
        },
        "startsAt": "2026-05-04T10:11:12.000Z",
        "endsAt": "2026-05-04T10:17:00.000Z",
        "generatorURL": LINK,
    });
    assert_eq!(alert, golden);

    let unlinked = mapping().alert(&notice(&e, None), e.time, at("2026-05-04T10:12:00Z"));
    assert!(unlinked.get("generatorURL").is_none(), "{unlinked}");
    assert!(unlinked["annotations"].get("falconer_url").is_none());
}

#[test]
fn a_summary_is_the_same_alert_saying_how_many_events_it_stands_for() {
    let mut sample = golden_event();
    sample.raw = None;
    let first = sample.time;
    let summary = Summary {
        group: crate::notify::Notifier::plain().event(&sample).group,
        sample,
        folded: 37,
        first_sent: true,
        severity: Severity::Critical,
        first_seen: first,
        last_seen: first + TimeDelta::minutes(10),
    };
    let n = Notifier::plain().summary(&summary);
    let alert = mapping().alert(&n, first, at("2026-05-04T10:30:00Z"));
    let one = mapping().alert(
        &notice(&summary.sample, None),
        first,
        at("2026-05-04T10:30:00Z"),
    );
    assert_eq!(alert["labels"], one["labels"], "one group, one alert");
    assert_eq!(
        alert["annotations"]["summary"],
        "37 more of Terminal shell in container on shop/web in the last 10m"
    );
    assert_eq!(alert["annotations"]["falconer_folded"], "37");
    assert_eq!(alert["endsAt"], "2026-05-04T10:35:00.000Z");
}

#[test]
fn labels_follow_the_chosen_fields_and_extra_labels_and_skip_what_the_event_lacks() {
    let mut e = golden_event();
    e.workload = None;
    e.namespace = None;
    e.node = Some("node-1".into());
    let m = Mapping {
        labels: vec![
            GroupField::Rule,
            GroupField::Namespace,
            GroupField::Workload,
            GroupField::Node,
            GroupField::Pod,
        ],
        extra_labels: [("team".to_string(), "security".to_string())].into(),
        resolve_after: Duration::from_secs(60),
    };
    let n = notice(&e, None);
    let alert = m.alert(&n, e.time, e.time);
    assert_eq!(
        alert["labels"],
        json!({
            "alertname": "Terminal shell in container",
            "node": "node-1",
            "pod": "web-1",
            "team": "security",
            "falconer_group": n.group,
        })
    );
    assert_eq!(alert["endsAt"], "2026-05-04T10:12:12.000Z");
}

#[test]
fn an_event_from_a_clock_ahead_of_the_hub_starts_no_later_than_now() {
    let e = golden_event();
    let now = e.time - TimeDelta::minutes(1);
    let alert = mapping().alert(&notice(&e, None), e.time, now);
    assert_eq!(alert["startsAt"], "2026-05-04T10:10:12.000Z");
}

pub fn consumer(section: Value) -> Consumer {
    serde_json::from_value(json!({
        "name": "am", "type": "alertmanager", "secretRef": {"name": "am"},
        "alertmanager": section,
    }))
    .unwrap()
}

pub use crate::fixtures::secrets;

pub fn build(consumer: &Consumer, secrets: &Secrets) -> Result<Alertmanager, String> {
    let declared = crate::fixtures::declared(consumer, secrets);
    Alertmanager::from_consumer(&declared).map_err(|e| e.to_string())
}

fn error_of(section: Value, secrets_given: &[(&str, &str)]) -> String {
    match build(&consumer(section), &secrets(secrets_given)) {
        Ok(_) => panic!("should be refused"),
        Err(e) => e,
    }
}

#[test]
fn settings_are_checked_naming_the_field() {
    let ok = build(
        &consumer(json!({"urls": ["http://127.0.0.1:1", "http://127.0.0.1:2/am/"]})),
        &Secrets::new(),
    )
    .unwrap();
    assert_eq!(
        ok.endpoints.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
        [
            "http://127.0.0.1:1/api/v2/alerts",
            "http://127.0.0.1:2/am/api/v2/alerts"
        ]
    );
    for (section, field) in [
        (json!({}), "exactly one of `url` and `urls`"),
        (
            json!({"url": "http://a:1", "urls": ["http://b:1"]}),
            "exactly one of `url` and `urls`",
        ),
        (json!({"urls": []}), "alertmanager.urls: name 1 to 8"),
        (
            json!({"urls": (0..9).map(|i| format!("http://a:{i}")).collect::<Vec<_>>()}),
            "alertmanager.urls: name 1 to 8",
        ),
        (json!({"url": ""}), "alertmanager.url: empty"),
        (
            json!({"urls": ["http://a:1", "nope"]}),
            "alertmanager.urls[1]: not a URL",
        ),
        (
            json!({"url": "http://a:1", "extraLabels": {"team-x": "a"}}),
            "alertmanager.extraLabels.team-x: not a Prometheus label name",
        ),
        (
            json!({"url": "http://a:1", "extraLabels": {"__name__": "a"}}),
            "alertmanager.extraLabels.__name__: names starting with `__` are reserved",
        ),
        (
            json!({"url": "http://a:1", "extraLabels": {"severity": "high"}}),
            "alertmanager.extraLabels.severity: Falconer sets this label",
        ),
        (
            json!({"url": "http://a:1", "extraLabels": {"falconer_group": "x"}}),
            "alertmanager.extraLabels.falconer_group: Falconer sets this label",
        ),
        (
            json!({"url": "http://a:1", "resolveAfter": "30s"}),
            "alertmanager.resolveAfter: `30s` is not a span of 1m to 24h",
        ),
        (
            json!({"url": "http://a:1", "resolveAfter": "25h"}),
            "alertmanager.resolveAfter: `25h`",
        ),
        (
            json!({"url": "http://a:1", "extraLabels": (0..33).map(|i| (format!("l{i}"), "v")).collect::<BTreeMap<_, _>>()}),
            "alertmanager.extraLabels: at most 32",
        ),
        (
            json!({"url": "http://a:1", "labels": []}),
            "alertmanager.labels: name at least one field",
        ),
    ] {
        let error = error_of(section.clone(), &[]);
        assert!(error.contains(field), "{section}: {error}");
    }
}

#[test]
fn credentials_come_from_the_secret_and_need_https_to_another_host() {
    let bearer = consumer(json!({"url": "https://am.example:9093", "auth": "bearer"}));
    assert_eq!(bearer.required_secret_keys(), ["token"]);
    assert!(bearer.sends_credentials());
    let missing = error_of(
        json!({"url": "https://am.example:9093", "auth": "bearer"}),
        &[],
    );
    assert!(
        missing.contains("token") && missing.contains("alertmanager.auth bearer"),
        "{missing}"
    );
    let basic = consumer(json!({"url": "https://am.example:9093", "auth": "basic"}));
    assert_eq!(basic.required_secret_keys(), ["password", "username"]);

    let insecure = error_of(
        json!({"urls": ["https://am-0.example:9093", "http://am-1.example:9093/x"], "auth": "bearer"}),
        &[("token", "SECRET")],
    );
    assert!(
        insecure.contains("alertmanager.urls[1]") && insecure.contains("allowInsecureHttp"),
        "{insecure}"
    );
    assert!(!insecure.contains("SECRET"), "{insecure}");
    let plain = consumer(json!({"url": "http://am.example:9093"}));
    assert!(plain.required_secret_keys().is_empty());
    assert!(build(&plain, &Secrets::new()).is_ok(), "no credentials");
}

fn sink(urls: &[String]) -> Alertmanager {
    Alertmanager::new(
        reqwest::Client::new(),
        urls.iter()
            .map(|u| alerts_url(&u.parse().unwrap()))
            .collect(),
        mapping(),
        Notifier::plain().with_dashboard("https://falconer.example/"),
    )
}

#[tokio::test]
async fn a_send_is_one_array_of_alerts_and_a_400_sends_the_batch_to_the_dead_letters() {
    let receiver = WebhookServer::start();
    let mut am = sink(&[receiver.url()]);
    let events = [golden_event(), crate::fixtures::event("Write below etc")];
    assert_eq!(am.send(&events).await, Outcome::Delivered);
    let received = receiver.requests();
    assert_eq!(received.len(), 1, "one POST for the batch");
    let alerts = received[0].body.as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1]["labels"]["alertname"], "Write below etc");
    assert_eq!(
        received[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );

    *receiver.state.answer.lock().unwrap() =
        Some((400, "\"start time must be before end time\"".into()));
    let Outcome::Each(results) = am.send(&events).await else {
        panic!("a 400 is answered per event");
    };
    assert_eq!(results.len(), 2);
    for result in results {
        let ItemResult::Refused(why) = result else {
            panic!("refused for good: {result:?}");
        };
        assert!(
            why.contains("400") && why.contains("start time must be before end time"),
            "{why}"
        );
        assert!(!why.contains("/hook"), "no path in reasons: {why}");
    }
    receiver.stop().await;
}

#[tokio::test]
async fn an_outage_of_every_alertmanager_is_retried_with_the_retry_after_they_asked_for() {
    let first = WebhookServer::start();
    let second = WebhookServer::start();
    let mut am = sink(&[first.url(), second.url()]);
    first
        .state
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    *second.state.rate_limited.lock().unwrap() = Some((1, 7));
    let e = golden_event();
    let Outcome::Retry(why) = am.send(std::slice::from_ref(&e)).await else {
        panic!("retried when none takes it");
    };
    assert!(why.contains("503") && why.contains("429"), "{why}");
    assert_eq!(am.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        am.send(std::slice::from_ref(&e)).await,
        Outcome::Delivered,
        "the second takes it now"
    );
    assert!(first.requests().is_empty());
    assert_eq!(second.requests().len(), 1);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn bearer_and_basic_credentials_reach_the_alertmanager() {
    let receiver = WebhookServer::start();
    let url = receiver.url();
    for (auth, keys, header) in [
        ("bearer", vec![("token", "t0ken")], "Bearer t0ken"),
        (
            "basic",
            vec![("username", "falconer"), ("password", "pw")],
            // base64("falconer:pw")
            "Basic ZmFsY29uZXI6cHc=",
        ),
    ] {
        let c = consumer(json!({"url": url, "auth": auth}));
        let mut am = build(&c, &secrets(&keys)).unwrap();
        assert_eq!(am.send(&[golden_event()]).await, Outcome::Delivered);
        let last = receiver.requests().pop().unwrap();
        assert_eq!(
            last.headers.get("authorization").map(String::as_str),
            Some(header)
        );
    }
    receiver.stop().await;
}

#[tokio::test]
async fn an_alert_keeps_its_groups_first_event_as_start_while_it_fires() {
    let receiver = WebhookServer::start();
    let mut am = sink(&[receiver.url()]);
    let first = golden_event();
    let mut later = golden_event();
    later.id = uuid::Uuid::now_v7();
    later.time = first.time + TimeDelta::minutes(2);
    am.send(std::slice::from_ref(&first)).await;
    am.send(std::slice::from_ref(&later)).await;
    let bodies: Vec<Value> = receiver.events();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["startsAt"], "2026-05-04T10:11:12.000Z");
    assert_eq!(bodies[1]["startsAt"], "2026-05-04T10:11:12.000Z");
    assert_eq!(
        bodies[1]["annotations"]["falconer_event_id"],
        later.id.to_string()
    );
    // Once the alert has resolved, the group's next event starts a new one.
    am.clock = || Utc::now() + TimeDelta::hours(1);
    am.send(std::slice::from_ref(&later)).await;
    assert_eq!(receiver.events()[2]["startsAt"], "2026-05-04T10:13:12.000Z");
    receiver.stop().await;
}

#[test]
fn the_preview_is_the_request_body_for_the_event_alone() {
    let am = sink(&["http://127.0.0.1:9".to_string()]);
    let e = golden_event();
    let preview = am.preview(&e);
    let alerts = preview.as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["annotations"]["falconer_url"], LINK);
    assert_eq!(alerts[0]["labels"]["alertname"], e.rule);
}

// Against a real Alertmanager (testkit::alertmanager).

use falconer_testkit::alertmanager::Alertmanager as RealAlertmanager;

fn millis(now: DateTime<Utc>) -> DateTime<Utc> {
    at(&time(now))
}

#[tokio::test]
async fn an_event_becomes_a_firing_alert_with_its_labels_and_annotations_in_alertmanager() {
    let real = RealAlertmanager::start().await;
    let mut am = sink(&[real.url()]);
    let e = golden_event();
    assert_eq!(am.send(std::slice::from_ref(&e)).await, Outcome::Delivered);
    let alerts = real.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    let sent = &am.preview(&e)[0];
    assert_eq!(alert["labels"], sent["labels"]);
    assert_eq!(alert["labels"]["alertname"], "Terminal shell in container");
    assert_eq!(alert["labels"]["workload"], "Deployment/web");
    assert_eq!(alert["annotations"], sent["annotations"]);
    assert_eq!(alert["annotations"]["falconer_url"], LINK);
    assert_eq!(alert["generatorURL"], LINK);
    assert_eq!(alert["startsAt"], "2026-05-04T10:11:12.000Z");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(alert["receivers"], json!([{"name": "null"}]));
}

#[tokio::test]
async fn with_the_first_of_two_alertmanagers_down_the_second_takes_the_alerts() {
    let mut down = RealAlertmanager::start().await;
    let up = RealAlertmanager::start().await;
    down.stop();
    let mut am = sink(&[down.url(), up.url()]);
    let events = [golden_event(), crate::fixtures::event("Write below etc")];
    assert_eq!(am.send(&events).await, Outcome::Delivered);
    let mut names: Vec<String> = up
        .alerts()
        .await
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["Terminal shell in container", "Write below etc"]);
}

#[tokio::test]
async fn each_event_and_summary_moves_end_later_and_without_them_the_alert_resolves() {
    static NOW: std::sync::Mutex<Option<DateTime<Utc>>> = std::sync::Mutex::new(None);
    fn clock() -> DateTime<Utc> {
        NOW.lock().unwrap().unwrap()
    }
    let set = |at: DateTime<Utc>| *NOW.lock().unwrap() = Some(at);
    let real = RealAlertmanager::start().await;
    let mut am = sink(&[real.url()]);
    am.clock = clock;
    let e = golden_event();
    let now = millis(Utc::now());

    // Its last event 10 minutes ago: ended 5 minutes ago, resolved.
    set(now - TimeDelta::minutes(10));
    assert_eq!(am.send(std::slice::from_ref(&e)).await, Outcome::Delivered);
    assert_eq!(real.alerts().await, Vec::<Value>::new(), "resolved");

    let ends = |alerts: &[Value]| {
        assert_eq!(alerts.len(), 1, "one group, one alert: {alerts:?}");
        (
            at(alerts[0]["startsAt"].as_str().unwrap()),
            at(alerts[0]["endsAt"].as_str().unwrap()),
        )
    };
    set(now);
    am.send(std::slice::from_ref(&e)).await;
    let (started, ended) = ends(&real.alerts().await);
    assert_eq!(ended, now + TimeDelta::minutes(5), "fires again");

    set(now + TimeDelta::minutes(1));
    am.send(std::slice::from_ref(&e)).await;
    let (restarted, ended) = ends(&real.alerts().await);
    assert_eq!(
        ended,
        now + TimeDelta::minutes(6),
        "a later event, a later end"
    );
    assert_eq!(restarted, started, "the same alert");

    set(now + TimeDelta::minutes(2));
    let summary = Summary {
        group: am.notifier.event(&e).group,
        sample: e.clone(),
        folded: 12,
        first_sent: true,
        severity: e.severity,
        first_seen: e.received_at,
        last_seen: e.received_at + TimeDelta::minutes(2),
    };
    assert_eq!(am.send_summary(&summary).await, Outcome::Delivered);
    let alerts = real.alerts().await;
    let (_, ended) = ends(&alerts);
    assert_eq!(ended, now + TimeDelta::minutes(7), "a summary, a later end");
    assert_eq!(alerts[0]["annotations"]["falconer_folded"], "12");
}

/// The `alertmanager.yml` block of docs/sinks/alertmanager.md.
fn documented_config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sinks/alertmanager.md");
    let page = std::fs::read_to_string(path).unwrap();
    let start = page
        .find("```yaml\n# alertmanager.yml\n")
        .expect("the documented config")
        + 8;
    let end = start + page[start..].find("```").unwrap();
    page[start..end].to_string()
}

#[tokio::test]
async fn the_documented_routes_page_severe_alerts_and_send_the_rest_to_chat() {
    let real = RealAlertmanager::start_with(&documented_config()).await;
    let mut am = sink(&[real.url()]);
    let critical = golden_event();
    let mut inhibited = golden_event();
    inhibited.id = uuid::Uuid::now_v7();
    inhibited.severity = Severity::Warning;
    let warning = crate::fixtures::event("Write below etc");
    assert_eq!(
        am.send(&[critical, inhibited, warning]).await,
        Outcome::Delivered
    );
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = real
            .alerts()
            .await
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_string(),
                    a["labels"]["severity"].as_str().unwrap().to_string(),
                    a["receivers"][0]["name"].as_str().unwrap().to_string(),
                    a["status"]["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        seen.sort();
        if seen.iter().any(|s| s.3 == "suppressed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = |a: &str, s: &str, r: &str, state: &str| {
        (
            a.to_string(),
            s.to_string(),
            r.to_string(),
            state.to_string(),
        )
    };
    assert_eq!(
        seen,
        [
            row(
                "Terminal shell in container",
                "critical",
                "security-pager",
                "active"
            ),
            row(
                "Terminal shell in container",
                "warning",
                "security-chat",
                "suppressed"
            ),
            row("Write below etc", "warning", "security-chat", "active"),
        ],
        "{}",
        real.log()
    );
}
