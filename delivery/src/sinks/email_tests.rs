use super::*;
use crate::fixtures::event;
use crate::sinks::chat::tests::{golden_event, notice};
use falconer_model::crd::{Consumer, SinkType};
use falconer_model::event::Severity;

fn settings(value: Value) -> EmailConfig {
    serde_json::from_value(value).unwrap()
}

fn addressing() -> Addressing {
    Addressing::parse(&settings(json!({
        "host": "smtp.example", "from": "Falconer <alerts@falconer.example>",
        "to": ["sec@example.com", "Oncall <oncall@example.com>"], "cc": ["audit@example.com"],
        "subjectPrefix": "[prod]",
    })))
    .unwrap()
}

fn consumer(email: Value) -> Consumer {
    let mut consumer = Consumer::new("mail", SinkType::Email);
    consumer.email = Some(settings(email));
    consumer
}

fn build(consumer: &Consumer, secrets: &[(&str, &str)]) -> Result<Email, String> {
    let secrets = crate::fixtures::secrets(secrets);
    let declared = crate::fixtures::declared(consumer, &secrets);
    Email::from_consumer(&declared).map_err(|e| e.to_string())
}

#[test]
fn an_event_becomes_a_text_and_html_mail_with_ids_from_the_event_and_its_group() {
    let e = golden_event();
    let n = notice(&e, Some("https://falconer.example/ui/#/events/x?a=1&b=2"));
    let mail = addressing().mail(&n, None);
    let group = n.group.clone();
    assert_eq!(
        mail,
        Mail {
            subject: "[prod] [critical] Terminal shell in container — prod/shop/web-1".into(),
            message_id: "<event.0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e@falconer.example>".into(),
            thread: format!("<group.{group}@falconer.example>"),
            group: group.clone(),
            text: "\
A shell was spawned in a container <bash> & more

Severity: Critical
Source: falco
Cluster: prod
Namespace: shop
Workload: Deployment web
Pod: web-1
Container: web
Time: 2026-05-04T10:11:12Z
Tags: container, shell
Event: 0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e

Open in Falconer: https://falconer.example/ui/#/events/x?a=1&b=2
"
            .into(),
            html: "\
<!DOCTYPE html>
<html><head><meta charset=\"utf-8\"><title>[prod] [critical] Terminal shell in container — prod/shop/web-1</title></head>
<body style=\"font-family:sans-serif\">
<h2 style=\"border-left:6px solid #b71c1c;padding-left:8px\">Terminal shell in container</h2>
<p style=\"white-space:pre-wrap\">A shell was spawned in a container &lt;bash&gt; &amp; more</p>
<table cellpadding=\"4\" style=\"border-collapse:collapse\">
<tr><th align=\"left\">Severity</th><td>Critical</td></tr>
<tr><th align=\"left\">Source</th><td>falco</td></tr>
<tr><th align=\"left\">Cluster</th><td>prod</td></tr>
<tr><th align=\"left\">Namespace</th><td>shop</td></tr>
<tr><th align=\"left\">Workload</th><td>Deployment web</td></tr>
<tr><th align=\"left\">Pod</th><td>web-1</td></tr>
<tr><th align=\"left\">Container</th><td>web</td></tr>
<tr><th align=\"left\">Time</th><td>2026-05-04T10:11:12Z</td></tr>
<tr><th align=\"left\">Tags</th><td>container, shell</td></tr>
<tr><th align=\"left\">Event</th><td>0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e</td></tr>
</table>
<p><a href=\"https://falconer.example/ui/#/events/x?a=1&amp;b=2\">Open in Falconer</a></p>
</body></html>
"
            .into(),
        }
    );
    let preview = addressing().preview(&mail);
    assert_eq!(
        preview["to"],
        json!(["sec@example.com", "Oncall <oncall@example.com>"])
    );
    assert_eq!(preview["from"], "Falconer <alerts@falconer.example>");
    assert_eq!(preview["headers"]["X-Falconer-Group"], group);
    assert_eq!(preview["headers"]["In-Reply-To"], mail.thread);
}

#[test]
fn html_in_an_alert_is_escaped_and_a_newline_in_a_rule_stays_out_of_the_subject() {
    let mut e = golden_event();
    e.rule = "Bad\r\nBcc: victim@example.com <script>".into();
    e.message = "<img src=x onerror=\"alert('x')\">".into();
    let mail = mail(&notice(&e, None), None, None, "f.example");
    assert!(!mail.subject.contains(['\r', '\n']), "{}", mail.subject);
    assert!(
        mail.subject
            .starts_with("[critical] Bad  Bcc: victim@example.com <script> — ")
    );
    assert!(mail.html.contains(
        "<p style=\"white-space:pre-wrap\">&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;</p>"
    ));
    assert!(mail.html.contains("&lt;script&gt;</h2>"));
    assert!(!mail.html.contains("<script>") && !mail.html.contains("<img"));
    assert!(
        !mail.text.contains("Open in Falconer"),
        "no link without a dashboard"
    );
    let message = String::from_utf8(addressing().message(&mail).unwrap().formatted()).unwrap();
    let headers = &message[..message.find("\r\n\r\n").unwrap()];
    assert!(!headers.contains("\r\nBcc:"), "{headers}");
}

#[test]
fn a_summary_is_titled_by_its_line_counts_its_events_and_has_its_own_message_id() {
    let mut sample = event("Terminal shell in container");
    sample.id = "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e".parse().unwrap();
    let summary = Summary {
        group: "g1".into(),
        sample: sample.clone(),
        folded: 37,
        first_sent: true,
        severity: Severity::Critical,
        first_seen: sample.received_at,
        last_seen: sample.received_at + chrono::TimeDelta::minutes(10),
    };
    let line = summary.line();
    let n = Notifier::plain().summary(&summary);
    let mail = mail(&n, Some(&line), None, "f.example");
    assert_eq!(
        mail.subject,
        "[critical] 37 more of Terminal shell in container on shop/web-1 in the last 10m"
    );
    assert_eq!(
        mail.message_id,
        "<summary.0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e@f.example>"
    );
    assert_eq!(mail.thread, "<group.g1@f.example>");
    assert!(
        mail.text.starts_with(&format!("{line}\n\n")),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("\nEvents: 37\n"), "{}", mail.text);
    assert!(
        mail.html
            .contains("<tr><th align=\"left\">Events</th><td>37</td></tr>")
    );
}

#[test]
fn the_sent_message_carries_the_ids_the_addresses_and_both_parts() {
    let e = golden_event();
    let a = addressing();
    let mail = a.mail(&notice(&e, None), None);
    let message = String::from_utf8(a.message(&mail).unwrap().formatted()).unwrap();
    for header in [
        "Message-ID: <event.0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e@falconer.example>\r\n".to_string(),
        format!("In-Reply-To: {}\r\n", mail.thread),
        format!("References: {}\r\n", mail.thread),
        format!("X-Falconer-Group: {}\r\n", mail.group),
        "From: Falconer <alerts@falconer.example>\r\n".to_string(),
        "To: sec@example.com, Oncall <oncall@example.com>\r\n".to_string(),
        "Cc: audit@example.com\r\n".to_string(),
        "Content-Type: multipart/alternative;".to_string(),
        "Content-Type: text/plain; charset=utf-8\r\n".to_string(),
        "Content-Type: text/html; charset=utf-8\r\n".to_string(),
    ] {
        assert!(message.contains(&header), "{header} in\n{message}");
    }
    let envelope = a.message(&mail).unwrap().envelope().clone();
    assert_eq!(envelope.to().len(), 3, "to and cc");
}

#[test]
fn settings_are_checked_naming_the_field() {
    let good = json!({"host": "smtp.example", "from": "a@example.com", "to": ["b@example.com"]});
    assert!(build(&consumer(good.clone()), &[]).is_ok());
    for (change, field) in [
        (
            json!({"to": ["b@example.com", "not an address"]}),
            "email.to[1]: `not an address`",
        ),
        (json!({"to": []}), "email.to: give 1 to 50 addresses, not 0"),
        (json!({"cc": ["@"]}), "email.cc[0]"),
        (json!({"from": "nobody"}), "email.from"),
        (json!({"host": "smtp example"}), "email.host"),
        (json!({"tls": "none"}), "email.tls: `none`"),
        (json!({"timeout": "10m"}), "email.timeout"),
        (json!({"port": 0}), "email.port"),
    ] {
        let mut spec = good.clone();
        for (k, v) in change.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let error = build(&consumer(spec.clone()), &[])
            .err()
            .unwrap_or_default();
        assert!(error.contains(field), "{spec}: {error}");
    }
    let too_many: Vec<String> = (0..51).map(|i| format!("u{i}@example.com")).collect();
    let mut spec = good.clone();
    spec["to"] = json!(too_many);
    assert!(
        build(&consumer(spec), &[])
            .err()
            .unwrap()
            .contains("email.to: give 1 to 50")
    );

    for host in ["localhost", "127.0.0.1", "::1"] {
        let local =
            json!({"host": host, "tls": "none", "from": "a@example.com", "to": ["b@example.com"]});
        assert!(build(&consumer(local), &[]).is_ok(), "{host}");
    }
    let allowed = json!({"host": "relay.internal", "tls": "none", "allowPlaintext": true,
                         "from": "a@example.com", "to": ["b@example.com"]});
    assert!(build(&consumer(allowed), &[]).is_ok());

    let half = build(&consumer(good.clone()), &[("username", "u")])
        .err()
        .unwrap();
    assert!(half.contains("both `username` and `password`"), "{half}");
    let ca = build(&consumer(good), &[("ca.crt", "not pem")])
        .err()
        .unwrap();
    assert!(ca.contains("ca.crt"), "{ca}");
}

#[test]
fn smtp_credentials_are_read_from_the_secret_when_present_and_never_required() {
    let c = consumer(json!({"host": "h", "from": "a@example.com", "to": ["b@example.com"]}));
    assert!(c.required_secret_keys().is_empty());
    let readable = c.readable_secret_keys();
    for key in ["username", "password", "ca.crt"] {
        assert!(readable.iter().any(|k| k == key), "{key} in {readable:?}");
    }
    assert!(SinkType::Email.is_notification());
}

// ---------------------------------------------------------------------------------------
// Against a real SMTP server (aiosmtpd, `falconer_testkit::smtp`)

use falconer_testkit::smtp::{Options, Security, SmtpServer};

const PASSWORD: &str = "s3cr3t-Pa55";

/// An e-mail sink for `server` on `host`, with the server's CA and these SMTP credentials.
fn sink_for(
    server: &SmtpServer,
    host: &str,
    tls: &str,
    credentials: Option<(&str, &str)>,
) -> Email {
    let c = consumer(json!({
        "host": host, "port": server.port, "tls": tls, "timeout": "10s",
        "from": "Falconer <alerts@falconer.example>",
        "to": ["sec@example.com", "oncall@example.com"], "cc": ["audit@example.com"],
    }));
    let mut secrets = vec![("ca.crt", server.ca_pem.as_str())];
    if let Some((user, password)) = credentials {
        secrets.extend([("username", user), ("password", password)]);
    }
    if server.ca_pem.is_empty() {
        secrets.clear();
    }
    build(&c, &secrets).unwrap()
}

fn authenticated() -> Options {
    Options {
        auth: Some(("falconer".into(), PASSWORD.into())),
        ..Options::default()
    }
}

#[tokio::test]
async fn a_mail_sent_over_starttls_with_auth_is_received_with_both_parts_recipients_and_ids() {
    let server = SmtpServer::with(authenticated());
    let mut sink = sink_for(
        &server,
        "localhost",
        "starttls",
        Some(("falconer", PASSWORD)),
    );
    let e = golden_event();
    assert_eq!(
        sink.send(std::slice::from_ref(&e)).await,
        Outcome::Each(vec![ItemResult::Delivered])
    );
    let received = server.messages();
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert!(m.tls && m.authenticated, "STARTTLS then AUTH");
    assert_eq!(m.mail_from, "alerts@falconer.example");
    assert_eq!(
        m.rcpt_tos,
        ["sec@example.com", "oncall@example.com", "audit@example.com"]
    );
    assert_eq!(m.content_type, "multipart/alternative");
    let expected = sink.addressing.mail(&sink.notifier.event(&e), None);
    assert_eq!(m.headers["Subject"], expected.subject);
    assert_eq!(
        m.headers["Message-ID"],
        "<event.0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e@falconer.example>"
    );
    assert_eq!(m.headers["In-Reply-To"], expected.thread);
    assert_eq!(m.headers["References"], expected.thread);
    assert_eq!(m.headers["X-Falconer-Group"], expected.group);
    assert_eq!(m.headers["To"], "sec@example.com, oncall@example.com");
    // Lines travel as CRLF, as SMTP wants them.
    let lf = |part: &Option<String>| part.as_deref().unwrap_or_default().replace("\r\n", "\n");
    assert_eq!(lf(&m.text), expected.text);
    assert_eq!(lf(&m.html), expected.html);

    // Sent again (a retry after a lost answer): the same Message-ID, so clients show one.
    sink.send(std::slice::from_ref(&e)).await;
    let again = server.messages();
    assert_eq!(again[1].headers["Message-ID"], m.headers["Message-ID"]);
}

#[tokio::test]
async fn implicit_tls_delivers_and_a_summary_threads_with_its_group() {
    let server = SmtpServer::with(Options {
        security: Security::Implicit,
        ..Options::default()
    });
    let mut sink = sink_for(&server, "127.0.0.1", "tls", None);
    let e = golden_event();
    let summary = Summary {
        group: sink.notifier.event(&e).group,
        sample: e.clone(),
        folded: 4,
        first_sent: true,
        severity: e.severity,
        first_seen: e.received_at,
        last_seen: e.received_at + chrono::TimeDelta::seconds(30),
    };
    assert_eq!(
        sink.send(std::slice::from_ref(&e)).await,
        Outcome::Each(vec![ItemResult::Delivered])
    );
    assert_eq!(sink.send_summary(&summary).await, Outcome::Delivered);
    let received = server.messages();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| m.tls && !m.authenticated));
    assert_eq!(
        received[0].headers["In-Reply-To"],
        received[1].headers["In-Reply-To"]
    );
    assert_ne!(
        received[0].headers["Message-ID"],
        received[1].headers["Message-ID"]
    );
    assert!(
        received[1].headers["Subject"]
            .starts_with("[critical] 4 more of Terminal shell in container"),
        "{}",
        received[1].headers["Subject"]
    );
}

#[tokio::test]
async fn a_550_for_a_mailbox_goes_to_the_dead_letters_with_the_servers_text() {
    let mut options = authenticated();
    options.answers = vec![(
        "oncall@example.com".into(),
        "550 5.1.1 <oncall@example.com>: no such user".into(),
    )];
    let server = SmtpServer::with(options);
    let mut sink = sink_for(
        &server,
        "localhost",
        "starttls",
        Some(("falconer", PASSWORD)),
    );
    let events = [golden_event(), golden_event()];
    let Outcome::Each(results) = sink.send(&events).await else {
        panic!("a 550 is answered per message");
    };
    assert_eq!(results.len(), 2, "the next message is tried too");
    for result in results {
        let ItemResult::Refused(why) = result else {
            panic!("refused for good: {result:?}");
        };
        assert!(why.contains("550") && why.contains("no such user"), "{why}");
        assert!(
            why.contains(&format!("SMTP localhost:{}", server.port)),
            "{why}"
        );
        assert!(!why.contains(PASSWORD), "{why}");
    }
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_451_or_a_server_that_is_down_is_retried() {
    let mut options = authenticated();
    options.answers = vec![("sec@example.com".into(), "451 4.3.0 try again later".into())];
    let server = SmtpServer::with(options);
    let mut sink = sink_for(
        &server,
        "localhost",
        "starttls",
        Some(("falconer", PASSWORD)),
    );
    let Outcome::Retry(why) = sink.send(&[golden_event()]).await else {
        panic!("a 451 is retried");
    };
    assert!(
        why.contains("451") && why.contains("try again later"),
        "{why}"
    );
    let summary_of = |e: &Event| Summary {
        group: "g".into(),
        sample: e.clone(),
        folded: 2,
        first_sent: true,
        severity: e.severity,
        first_seen: e.received_at,
        last_seen: e.received_at,
    };
    assert!(matches!(
        sink.send_summary(&summary_of(&golden_event())).await,
        Outcome::Retry(_)
    ));

    let port = server.port;
    server.stop();
    let Outcome::Retry(why) = sink.send(&[golden_event()]).await else {
        panic!("a server that is down is retried");
    };
    assert!(why.contains(&format!("SMTP localhost:{port}")), "{why}");
}

#[tokio::test]
async fn a_wrong_password_is_retried_for_the_operator_and_never_named() {
    let server = SmtpServer::with(authenticated());
    let wrong = "wr0ng-Pa55word";
    let mut sink = sink_for(&server, "localhost", "starttls", Some(("falconer", wrong)));
    let Outcome::Retry(why) = sink.send(&[golden_event()]).await else {
        panic!("an authentication failure waits for the operator");
    };
    assert!(why.contains("535"), "{why}");
    assert!(!why.contains(wrong) && !why.contains(PASSWORD), "{why}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_certificate_the_secret_does_not_vouch_for_is_retried_not_trusted() {
    let server = SmtpServer::start();
    let c = consumer(json!({
        "host": "localhost", "port": server.port, "from": "a@falconer.example",
        "to": ["b@example.com"], "timeout": "10s",
    }));
    let mut sink = build(&c, &[]).unwrap();
    assert!(matches!(
        sink.send(&[golden_event()]).await,
        Outcome::Retry(_)
    ));
    assert!(server.messages().is_empty());
}
