//! The `email` sink end to end: a hub delivering to a real SMTP server (aiosmtpd, STARTTLS
//! and AUTH), with noise control folding a burst into one summary mail threaded with the
//! first.

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::smtp::{Options, SmtpServer};
use serde_json::{Value, json};

async fn a_burst_reaches_the_mailbox_as_one_mail_and_a_summary_in_the_same_thread(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server = SmtpServer::with(Options {
        auth: Some(("falconer".into(), "mail-Pa55".into())),
        ..Options::default()
    });
    let mail = consumer(
        json!({
            "name": "mail", "type": "email", "secretRef": {"name": "smtp"},
            "email": {"host": "localhost", "port": server.port, "from": "alerts@falconer.example",
                      "to": ["sec@example.com"], "subjectPrefix": "[prod]"},
            "aggregate": {"window": "2s"},
        }),
        &[
            ("ca.crt", &server.ca_pem),
            ("username", "falconer"),
            ("password", "mail-Pa55"),
        ],
    );
    let app = TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![mail]).await;
    let alerts: Vec<Value> = (0..5)
        .map(|i| {
            alert(
                "Terminal shell in container",
                "2026-05-04T10:00:00Z",
                &format!("shell {i}"),
            )
        })
        .collect();
    let reply = app.ingest(json!(alerts).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    wait_until("the summary mail arrives", || async {
        server.messages().len() >= 2
    })
    .await;

    let received = server.messages();
    assert_eq!(received.len(), 2, "one mail and one summary");
    let (first, summary) = (&received[0], &received[1]);
    assert!(first.tls && first.authenticated);
    assert_eq!(
        first.headers["Subject"],
        "[prod] [warning] Terminal shell in container — home/shop/web-1"
    );
    assert_eq!(
        first.headers["Message-ID"],
        format!("<event.{}@falconer.example>", reply.ids()[0])
    );
    assert!(
        summary.headers["Subject"]
            .starts_with("[prod] [warning] 4 more of Terminal shell in container on shop/web-1"),
        "{}",
        summary.headers["Subject"]
    );
    assert_eq!(summary.headers["In-Reply-To"], first.headers["In-Reply-To"]);
    assert_eq!(
        summary.headers["X-Falconer-Group"],
        first.headers["X-Falconer-Group"]
    );
    assert!(
        summary
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("Events: 4")
    );
    assert!(
        summary
            .html
            .as_deref()
            .unwrap_or_default()
            .contains("<td>4</td>")
    );

    let preview = app
        .post(
            "/api/v1/consumers/mail/preview",
            "application/json",
            json!({"event_id": reply.ids()[0]}).to_string(),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(preview.json()["type"], "email");
    assert_eq!(preview.json()["body"]["subject"], first.headers["Subject"]);
    assert_eq!(server.messages().len(), 2, "a preview sends nothing");
    app.stop().await;
}

on_both_stores!(a_burst_reaches_the_mailbox_as_one_mail_and_a_summary_in_the_same_thread);
