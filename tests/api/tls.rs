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
        client_ca_file: None,
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

/// A client of the hub's test certificate presenting the client certificate `name`.
fn client_with(name: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(fixture("cert.pem")).unwrap();
    let mut builder =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
    if let Some(name) = name {
        let mut pem = std::fs::read(fixture(&format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(fixture(&format!("{name}.key"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_naming_a_token_entry_posts_as_that_entry_without_a_token() {
    use falconer_hub::config::{Scope, TokenEntry, TokenHash};
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = hub_config();
    config.server.tls = Some(TlsConfig {
        client_ca_file: Some(fixture("client-ca.pem")),
        ..tls()
    });
    let entry = |name: &str, token: &str, scopes: &[Scope]| TokenEntry {
        name: name.into(),
        sha256: TokenHash::of(token),
        scopes: scopes.to_vec(),
        clusters: Vec::new(),
        sources: Vec::new(),
    };
    config.auth.tokens = vec![
        TokenEntry {
            clusters: vec!["edge-a".into()],
            ..entry(
                "falco-edge-a",
                "unused-by-the-certificate",
                &[Scope::Ingest],
            )
        },
        entry("scanner", "scanner-token", &[Scope::Ingest]),
        entry("dashboard", "dashboard-token", &[Scope::Read]),
    ];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let base = format!("https://localhost:{}", app.addr.port());
    let post = |client: reqwest::Client, token: Option<&'static str>| {
        let mut request = client
            .post(format!("{base}/ingest"))
            .header("content-type", "application/json")
            .body(alert("mTLS", "2026-05-04T10:00:00Z", "x").to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let accepted = post(client_with(Some("falco-edge-a")), None).await;
    assert_eq!(accepted.status(), 202);
    let reply: serde_json::Value = accepted.json().await.unwrap();
    let id = reply["ids"][0].as_str().unwrap().to_string();
    let event: serde_json::Value = client_with(None)
        .get(format!("{base}/api/v1/events/{id}"))
        .bearer_auth("dashboard-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        event["cluster"], "edge-a",
        "the entry's cluster binding applies"
    );

    // A certificate of the CA naming no entry, or none at all: 401. Tokens still work.
    assert_eq!(
        post(client_with(Some("stranger")), None).await.status(),
        401
    );
    assert_eq!(post(client_with(None), None).await.status(), 401);
    assert_eq!(
        post(client_with(None), Some("scanner-token"))
            .await
            .status(),
        202
    );
    // A certificate is an ingest credential only.
    let read = client_with(Some("falco-edge-a"))
        .get(format!("{base}/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 401);
    app.stop().await;
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
