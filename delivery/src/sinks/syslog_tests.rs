//! The syslog sink: golden messages of the pure mappers, then delivery to a real rsyslog
//! (`falconer_testkit::syslog`) over UDP, TCP and TLS (with and without a client
//! certificate), an outage, and the failure paths.

use super::*;
use crate::fixtures::{event, secrets};
use falconer_testkit::syslog::{Listen, Rsyslog};
use serde_json::{Value, json};

/// A fixed event for golden messages.
fn golden() -> Event {
    serde_json::from_value(json!({
        "id": "0193f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6",
        "time": "2026-05-04T10:11:12.345678Z",
        "received_at": "2026-05-04T10:11:13Z",
        "source": "falco",
        "kind": "runtime_alert",
        "severity": "warning",
        "severity_raw": "Warning",
        "rule": "Shell | pipe \\ slash",
        "message": "a=b\nsecond line",
        "tags": ["shell", "T1059"],
        "cluster": "prod",
        "namespace": "shop",
        "pod": "web-1",
        "image": "registry.example/web:1",
        "node": "node-a",
        "fields": {"proc.name": "bash", "user.name": "root"}
    }))
    .unwrap()
}

fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/../tests/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(tls_fixture(name)).unwrap()
}

use std::path::PathBuf;

fn settings(section: Value) -> SyslogConfig {
    serde_json::from_value(section).unwrap()
}

fn sink(section: Value, secrets: &Secrets) -> Syslog {
    Syslog::build("logs", &settings(section), secrets).unwrap()
}

/// The event id of a received message: the JSON's `id`, or CEF's `externalId`.
fn id_of(message: &str) -> String {
    if let Some(at) = message.find("externalId=") {
        return message[at + 11..at + 47].to_string();
    }
    let json = &message[message.find('{').unwrap()..];
    serde_json::from_str::<Value>(json).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn events(n: usize) -> Vec<Event> {
    (0..n).map(|i| event(&format!("rule-{i}"))).collect()
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.to_string()).collect()
}

#[test]
fn severities_are_falcos_priorities_in_syslog_order() {
    let expected = [0, 1, 2, 3, 4, 5, 6, 7];
    for (s, code) in Severity::ALL.iter().zip(expected) {
        assert_eq!(severity(*s), code, "{s}");
    }
    // local0 (16) × 8 + warning (4).
    assert_eq!(priority(SyslogFacility::Local0, &golden()), 132);
    assert_eq!(priority(SyslogFacility::Auth, &golden()), 36);
}

#[test]
fn rfc5424_has_the_events_time_node_and_kind_and_its_json_as_message() {
    let e = golden();
    let json = crate::sinks::event_json(&e);
    let message = String::from_utf8(message(
        SyslogFormat::Rfc5424,
        SyslogFacility::Local0,
        "falconer",
        &e,
    ))
    .unwrap();
    assert_eq!(
        message,
        format!(
            "<132>1 2026-05-04T10:11:12.345678Z node-a falconer - runtime_alert - {}",
            String::from_utf8(json).unwrap()
        )
    );
    // Header fields are printable ASCII without spaces; absent ones are NILVALUE.
    let mut odd = golden();
    odd.node = Some("node ä".into());
    assert!(
        String::from_utf8(rfc5424(SyslogFacility::User, "app", &odd, b"m"))
            .unwrap()
            .starts_with("<12>1 2026-05-04T10:11:12.345678Z node__ app - runtime_alert - m")
    );
    odd.node = None;
    assert!(
        String::from_utf8(rfc5424(SyslogFacility::User, "app", &odd, b"m"))
            .unwrap()
            .contains("Z - app - ")
    );
}

#[test]
fn rfc3164_has_a_bsd_timestamp_and_a_tag() {
    let e = golden();
    let message =
        String::from_utf8(rfc3164(SyslogFacility::Local0, "falconer", &e, b"{}")).unwrap();
    assert_eq!(message, "<132>May  4 10:11:12 node-a falconer: {}");
}

#[test]
fn cef_escapes_its_header_and_extension_and_maps_the_documented_fields() {
    let record = cef(&golden());
    assert_eq!(
        record,
        concat!(
            "CEF:0|Falconer|Falconer|",
            env!("CARGO_PKG_VERSION"),
            "|Shell \\| pipe \\\\ slash|a=b second line|5|",
            "rt=1777889472345 externalId=0193f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6 ",
            "cat=runtime_alert msg=a\\=b\\nsecond line dvchost=node-a suser=root sproc=bash ",
            "cs1Label=cluster cs1=prod cs2Label=namespace cs2=shop cs3Label=pod cs3=web-1 ",
            "cs4Label=image cs4=registry.example/web:1 cs5Label=source cs5=falco ",
            "cs6Label=tags cs6=shell,T1059"
        )
    );
    assert_eq!(cef_value("a\\b=c|d\r"), "a\\\\b\\=c|d\\r");
    assert_eq!(cef_header("x|y\\z\n", 100), "x\\|y\\\\z ");
    let severities: Vec<u8> = Severity::ALL.iter().map(|s| cef_severity(*s)).collect();
    assert_eq!(severities, [10, 9, 8, 7, 5, 3, 1, 0]);
    // Without pod, image or tags, their pairs are left out.
    let mut bare = golden();
    bare.pod = None;
    bare.image = None;
    bare.tags.clear();
    let record = cef(&bare);
    assert!(!record.contains("cs3") && !record.contains("cs4") && !record.contains("cs6"));
    // In the syslog message it follows an RFC 3164 header.
    let message = String::from_utf8(message(
        SyslogFormat::Cef,
        SyslogFacility::Local0,
        "falconer",
        &bare,
    ))
    .unwrap();
    assert!(message.starts_with("<132>May  4 10:11:12 node-a falconer: CEF:0|"));
}

#[test]
fn octet_counting_prefixes_the_length_in_bytes() {
    assert_eq!(octet_counted("héllo".as_bytes()), b"6 h\xc3\xa9llo");
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let build = |section: Value, secrets: &Secrets| {
        Syslog::build("logs", &settings(section), secrets)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let none = Secrets::new();
    for address in [
        "no-port",
        "host:port",
        "host:0",
        "::1:514",
        "[::1]514",
        " :514",
    ] {
        let error = build(json!({"address": address}), &none);
        assert!(error.contains("syslog.address"), "{address}: {error}");
    }
    assert!(Syslog::build("logs", &settings(json!({"address": "[::1]:514"})), &none).is_ok());
    let error = build(
        json!({"address": "h:514", "protocol": "udp", "maxMessageBytes": 70000}),
        &none,
    );
    assert!(error.contains("syslog.maxMessageBytes"), "{error}");
    let error = build(json!({"address": "h:514", "appName": "has space"}), &none);
    assert!(error.contains("syslog.appName"), "{error}");
    let half = secrets(&[("tls.crt", &read("falco-edge-a.pem"))]);
    let error = build(json!({"address": "h:6514", "protocol": "tls"}), &half);
    assert!(error.contains("tls.crt and tls.key"), "{error}");
    let bad_ca = secrets(&[("ca.crt", "not a certificate")]);
    let error = build(json!({"address": "h:6514", "protocol": "tls"}), &bad_ca);
    assert!(error.contains("ca.crt"), "{error}");
}

#[tokio::test]
async fn a_server_that_is_not_listening_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut logs = sink(
        json!({"address": format!("127.0.0.1:{port}")}),
        &Secrets::new(),
    );
    let Outcome::Retry(why) = logs.send(&events(1)).await else {
        panic!("retried");
    };
    assert!(why.contains(&format!("tcp://127.0.0.1:{port}")), "{why}");
}

/// Sends `events` in batches of the sink's size, each delivered at the first try.
async fn deliver(logs: &mut Syslog, events: &[Event]) {
    for batch in events.chunks(logs.batch_size()) {
        assert_eq!(logs.send(batch).await, Outcome::Delivered);
    }
}

#[tokio::test]
async fn tcp_delivers_every_event_once_in_order_to_rsyslog() {
    let daemon = Rsyslog::start(Listen::Tcp).await;
    let mut logs = sink(json!({"address": daemon.address()}), &Secrets::new());
    let sent = events(250);
    deliver(&mut logs, &sent).await;
    let received = daemon.wait_for(250).await;
    assert_eq!(
        received.iter().map(|m| id_of(m)).collect::<Vec<_>>(),
        ids(&sent)
    );
    assert!(received[0].starts_with("<132>1 "), "{}", received[0]);
    assert!(
        received[0].contains(" falconer - runtime_alert - {"),
        "{}",
        received[0]
    );
}

#[tokio::test]
async fn udp_delivers_every_event_once_to_rsyslog() {
    let daemon = Rsyslog::start(Listen::Udp).await;
    let mut logs = sink(
        json!({"address": daemon.address(), "protocol": "udp", "format": "rfc3164", "facility": "auth", "appName": "falconer-test"}),
        &Secrets::new(),
    );
    let sent = events(120);
    deliver(&mut logs, &sent).await;
    let received = daemon.wait_for(120).await;
    let mut got: Vec<String> = received.iter().map(|m| id_of(m)).collect();
    let mut want = ids(&sent);
    got.sort();
    want.sort();
    assert_eq!(got, want, "each once (UDP keeps no order)");
    // auth (4) × 8 + warning (4).
    assert!(received[0].starts_with("<36>"), "{}", received[0]);
    assert!(
        received[0].contains(" - falconer-test: {"),
        "{}",
        received[0]
    );
}

#[tokio::test]
async fn tls_delivers_in_order_trusting_the_secrets_ca() {
    let daemon = Rsyslog::start(Listen::Tls {
        cert: tls_fixture("cert.pem"),
        key: tls_fixture("key.pem"),
        client_ca: None,
    })
    .await;
    let ca = secrets(&[("ca.crt", &read("cert.pem"))]);
    let mut logs = sink(
        json!({"address": daemon.address(), "protocol": "tls", "format": "cef"}),
        &ca,
    );
    let sent = events(150);
    deliver(&mut logs, &sent).await;
    let received = daemon.wait_for(150).await;
    assert_eq!(
        received.iter().map(|m| id_of(m)).collect::<Vec<_>>(),
        ids(&sent)
    );
    assert!(
        received[0].contains("falconer: CEF:0|Falconer|Falconer|"),
        "{}",
        received[0]
    );

    // Without the CA the server's certificate is not trusted: retried, nothing sent.
    let mut untrusting = sink(
        json!({"address": daemon.address(), "protocol": "tls"}),
        &Secrets::new(),
    );
    let Outcome::Retry(why) = untrusting.send(&events(1)).await else {
        panic!("retried");
    };
    assert!(why.contains("TLS handshake"), "{why}");
    assert_eq!(daemon.messages().len(), 150);

    // tls.insecureSkipVerify: no CA needed (tests only).
    let mut skipping = sink(
        json!({"address": daemon.address(), "protocol": "tls", "tls": {"insecureSkipVerify": true}}),
        &Secrets::new(),
    );
    let one = events(1);
    deliver(&mut skipping, &one).await;
    let received = daemon.wait_for(151).await;
    assert_eq!(id_of(&received[150]), one[0].id.to_string());
}

#[tokio::test]
async fn a_server_requiring_a_client_certificate_takes_ours_and_refuses_none() {
    let daemon = Rsyslog::start(Listen::Tls {
        cert: tls_fixture("cert.pem"),
        key: tls_fixture("key.pem"),
        client_ca: Some(tls_fixture("client-ca.pem")),
    })
    .await;
    let with_cert = secrets(&[
        ("ca.crt", &read("cert.pem")),
        ("tls.crt", &read("falco-edge-a.pem")),
        ("tls.key", &read("falco-edge-a.key")),
    ]);
    let section = json!({"address": daemon.address(), "protocol": "tls"});
    let mut logs = sink(section.clone(), &with_cert);
    let sent = events(3);
    deliver(&mut logs, &sent).await;
    let received = daemon.wait_for(3).await;
    assert_eq!(
        received.iter().map(|m| id_of(m)).collect::<Vec<_>>(),
        ids(&sent)
    );

    let ca_only = secrets(&[("ca.crt", &read("cert.pem"))]);
    let mut anonymous = sink(section, &ca_only);
    let outcome = anonymous.send(&events(1)).await;
    assert!(matches!(outcome, Outcome::Retry(_)), "{outcome:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(daemon.messages().len(), 3, "nothing more arrived");
}

#[tokio::test]
async fn events_sent_while_the_daemon_is_down_are_retried_and_all_arrive_once_in_order() {
    outage(Listen::Tcp, json!({}), Secrets::new()).await;
}

#[tokio::test]
async fn over_tls_too_an_outage_loses_nothing() {
    let listen = Listen::Tls {
        cert: tls_fixture("cert.pem"),
        key: tls_fixture("key.pem"),
        client_ca: None,
    };
    let ca = secrets(&[("ca.crt", &read("cert.pem"))]);
    outage(listen, json!({"protocol": "tls"}), ca).await;
}

/// 20 events delivered, the daemon stopped, 20 more retried while it is down, the daemon
/// started again: those 20 and 5 more delivered; all 45 arrive once, in order.
async fn outage(listen: Listen, mut section: Value, secrets: Secrets) {
    let mut daemon = Rsyslog::start(listen).await;
    section["address"] = daemon.address().into();
    let mut logs = sink(section, &secrets);
    let before = events(20);
    deliver(&mut logs, &before).await;
    daemon.wait_for(20).await;

    daemon.stop();
    let during = events(20);
    for _ in 0..3 {
        let outcome = logs.send(&during).await;
        assert!(matches!(outcome, Outcome::Retry(_)), "{outcome:?}");
    }
    daemon.restart().await;
    deliver(&mut logs, &during).await;
    let after = events(5);
    deliver(&mut logs, &after).await;

    let received = daemon.wait_for(45).await;
    let mut expected = ids(&before);
    expected.extend(ids(&during));
    expected.extend(ids(&after));
    assert_eq!(
        received.iter().map(|m| id_of(m)).collect::<Vec<_>>(),
        expected
    );
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_not_cut_and_the_rest_arrives() {
    let daemon = Rsyslog::start(Listen::Udp).await;
    let mut logs = sink(
        json!({"address": daemon.address(), "protocol": "udp", "maxMessageBytes": 2048}),
        &Secrets::new(),
    );
    let mut big = event("big");
    big.message = "x".repeat(4000);
    let small = event("small");
    let Outcome::Each(results) = logs.send(&[big, small.clone()]).await else {
        panic!("per event");
    };
    let ItemResult::Refused(why) = &results[0] else {
        panic!("{results:?}");
    };
    assert!(why.contains("syslog.maxMessageBytes (2048)"), "{why}");
    assert_eq!(results[1], ItemResult::Delivered);
    let received = daemon.wait_for(1).await;
    assert_eq!(
        received.iter().map(|m| id_of(m)).collect::<Vec<_>>(),
        [small.id.to_string()]
    );
}

#[test]
fn the_preview_is_the_message_as_sent() {
    let logs = sink(
        json!({"address": "h:514", "format": "cef"}),
        &Secrets::new(),
    );
    let preview = logs.preview(&golden());
    assert!(
        preview
            .as_str()
            .unwrap()
            .contains("falconer: CEF:0|Falconer|"),
        "{preview}"
    );
}
