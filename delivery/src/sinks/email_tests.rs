use super::*;
use crate::declared::{SecretValue, Secrets};
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
    let secrets: Secrets = secrets
        .iter()
        .map(|(k, v)| (k.to_string(), SecretValue(v.to_string())))
        .collect();
    let declared = Declared {
        name: &consumer.name,
        consumer,
        secrets: &secrets,
        home: None,
        file_dir: None,
        dashboard: None,
    };
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
