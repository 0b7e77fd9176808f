//! HTTPS on the hub's listener (`server.tls`), with the certificate in tests/fixtures/tls
//! (self-signed for localhost and 127.0.0.1, valid until 2126).

use crate::helpers::{Backend, TestApp, TestDb, alert, app_config, hub_config};
use falconer_hub::config::TlsConfig;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls")).join(name)
}

fn tls() -> TlsConfig {
    TlsConfig {
        cert_file: fixture("cert.pem"),
        key_file: fixture("key.pem"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_hub_serves_https_with_its_certificate_and_refuses_plain_http() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = hub_config();
    config.server.tls = Some(tls());
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let ca = std::fs::read(fixture("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", app.addr.port());

    let healthz = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let posted = client
        .post(format!("{base}/ingest"))
        .header("content-type", "application/json")
        .body(alert("Over TLS", "2026-05-04T10:00:00Z", "x").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);

    // A client that does not trust the certificate gets no answer, nor does plain HTTP.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.addr.port()))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_file_stops_start_up_with_the_key_and_file_named() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = hub_config();
    config.server.tls = Some(TlsConfig {
        key_file: fixture("no-such-key.pem"),
        ..tls()
    });
    let message = start_up_error(&db, config).await;
    assert!(message.contains("server.tls.key_file"), "{message}");
    assert!(message.contains("no-such-key.pem"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_file_without_a_certificate_stops_start_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = hub_config();
    config.server.tls = Some(TlsConfig {
        cert_file: fixture("key.pem"),
        ..tls()
    });
    let message = start_up_error(&db, config).await;
    assert!(message.contains("server.tls.cert_file"), "{message}");
}

/// Why the application refused to start with `config`.
async fn start_up_error(db: &TestDb, config: falconer_hub::HubConfig) -> String {
    let config = app_config(config, db.store_config());
    falconer::app::Application::assemble(&config, &|_: &str| None, None)
        .await
        .err()
        .expect("start-up refused")
        .to_string()
}
