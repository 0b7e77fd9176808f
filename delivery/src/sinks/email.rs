//! `email`: one message per event (or summary of a group) through an SMTP server, over
//! `STARTTLS` (default), implicit TLS or, to loopback or when allowed, plain SMTP.
//!
//! Each message is `multipart/alternative`: a text part and an HTML part (every value
//! escaped) with the notice's text, a table of the event's facts and the dashboard link.
//! Subject: `[<severity>] <rule> — <cluster>/<namespace>/<pod>`, a summary's line for a
//! summary. `Message-ID` is derived from the event id (a re-sent message keeps its id, so
//! clients show it once), `In-Reply-To` and `References` from the alert group (clients
//! thread a group's messages), and `X-Falconer-Group` carries the group id for filters.
//!
//! The server's answers: 2xx delivered; 5xx (`550` no such mailbox, `552` too large, `554`
//! refused) refused for good: to the dead letters with the server's text; 4xx (`421`,
//! `451`, `452`), connection, TLS and timeout errors, and authentication refusals (`530`,
//! `534`, `535`, `538`: the operator fixes the credentials) retried by the worker. The
//! password never appears in an error.

use crate::error::DeliveryError;
use crate::notify::{Notice, Notifier, Summary};
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::http::{self, Action};
use crate::sinks::{Declared, FromConsumer, chat};
use falconer_model::crd::{EmailConfig, EmailTls, MAX_EMAIL_RECIPIENTS, parse_window};
use falconer_store::Event;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Identity, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use std::time::Duration;

/// Events handed to one `send`; each is its own message.
const BATCH: usize = 20;
/// Longest `timeout` accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Subjects are cut to this many characters (RFC 5322 lines stay short once folded).
const MAX_SUBJECT: usize = 200;
/// The notice's text is cut to this many characters: alerts are read, not archived here.
const MAX_TEXT: usize = 20_000;
/// The header carrying the alert group's id.
const GROUP_HEADER: &str = "X-Falconer-Group";

/// What one notice becomes, before addressing (pure: golden-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    /// `<event.<event id>@<sender's domain>>` (a summary: `<summary.<sample id>@…>`).
    pub message_id: String,
    /// `<group.<group id>@<sender's domain>>`: `In-Reply-To` and `References`.
    pub thread: String,
    /// The alert group's id (`X-Falconer-Group`).
    pub group: String,
    pub text: String,
    pub html: String,
}

/// `value` with every character HTML gives a meaning to escaped (text and attribute values).
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A header's text on one line: control characters (a rule with a newline) become spaces.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `cluster/namespace/pod` (or node), those the event has.
fn place(event: &Event) -> String {
    chat::place(event).replace(" / ", "/")
}

/// The message for `notice`. `headline` is a summary's line (its subject); `prefix` goes
/// before every subject; `domain` is the right side of the message ids (the sender's).
pub fn mail(notice: &Notice, headline: Option<&str>, prefix: Option<&str>, domain: &str) -> Mail {
    let event = notice.event;
    let severity = notice.severity.as_str();
    let about = match headline {
        Some(line) => line.to_string(),
        None => format!("{} — {}", event.rule, place(event)),
    };
    let mut subject = format!("[{severity}] {about}");
    if let Some(prefix) = prefix {
        subject = format!("{prefix} {subject}");
    }
    let subject = chat::cut(&one_line(&subject), MAX_SUBJECT);

    let mut facts = chat::facts(event);
    facts.push((
        "Time",
        event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ));
    if !event.tags.is_empty() {
        facts.push(("Tags", event.tags.join(", ")));
    }
    if notice.summary {
        facts.push(("Events", notice.count.to_string()));
    }
    facts.push(("Event", event.id.to_string()));
    let body = chat::cut(&notice.text, MAX_TEXT);

    let mut text = format!("{body}\n\n");
    for (name, value) in &facts {
        text.push_str(&format!("{name}: {value}\n"));
    }
    if let Some(link) = &notice.link {
        text.push_str(&format!("\nOpen in Falconer: {link}\n"));
    }

    let colour = chat::severity_rgb(notice.severity);
    let mut html = vec![
        "<!DOCTYPE html>".to_string(),
        format!(
            "<html><head><meta charset=\"utf-8\"><title>{}</title></head>",
            escape_html(&subject)
        ),
        "<body style=\"font-family:sans-serif\">".to_string(),
        format!(
            "<h2 style=\"border-left:6px solid #{colour:06x};padding-left:8px\">{}</h2>",
            escape_html(&event.rule)
        ),
        format!(
            "<p style=\"white-space:pre-wrap\">{}</p>",
            escape_html(&body)
        ),
        "<table cellpadding=\"4\" style=\"border-collapse:collapse\">".to_string(),
    ];
    for (name, value) in &facts {
        html.push(format!(
            "<tr><th align=\"left\">{name}</th><td>{}</td></tr>",
            escape_html(value)
        ));
    }
    html.push("</table>".to_string());
    if let Some(link) = &notice.link {
        html.push(format!(
            "<p><a href=\"{}\">Open in Falconer</a></p>",
            escape_html(link)
        ));
    }
    html.push("</body></html>".to_string());

    let kind = if notice.summary { "summary" } else { "event" };
    Mail {
        subject,
        message_id: format!("<{kind}.{}@{domain}>", event.id),
        thread: format!("<group.{}@{domain}>", notice.group),
        group: notice.group.clone(),
        text,
        html: html.join("\n") + "\n",
    }
}

/// Who a message is from and to, and the subject's prefix.
#[derive(Debug, Clone)]
pub struct Addressing {
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    prefix: Option<String>,
}

impl Addressing {
    /// The addresses of `settings`, each parsed; errors name the field (`email.to[2]`).
    pub fn parse(settings: &EmailConfig) -> Result<Addressing, String> {
        let parse = |field: String, text: &str| {
            text.trim()
                .parse::<Mailbox>()
                .map_err(|e| format!("{field}: `{text}` is not an e-mail address ({e})"))
        };
        let from = parse("email.from".into(), &settings.from)?;
        for (field, list, min) in [("to", &settings.to, 1), ("cc", &settings.cc, 0)] {
            if list.len() < min || list.len() > MAX_EMAIL_RECIPIENTS {
                return Err(format!(
                    "email.{field}: give {min} to {MAX_EMAIL_RECIPIENTS} addresses, not {}",
                    list.len()
                ));
            }
        }
        let list = |field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, text)| parse(format!("email.{field}[{i}]"), text))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Addressing {
            from,
            to: list("to", &settings.to)?,
            cc: list("cc", &settings.cc)?,
            prefix: settings.subject_prefix.clone(),
        })
    }

    /// The right side of message ids: the sender's domain.
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }

    /// The mail for `notice`.
    pub fn mail(&self, notice: &Notice, headline: Option<&str>) -> Mail {
        mail(notice, headline, self.prefix.as_deref(), self.domain())
    }

    /// The message to send.
    pub fn message(&self, mail: &Mail) -> Result<Message, lettre::error::Error> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(Some(mail.message_id.clone()))
            .in_reply_to(mail.thread.clone())
            .references(mail.thread.clone())
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(GROUP_HEADER),
                mail.group.clone(),
            ));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        for cc in &self.cc {
            builder = builder.cc(cc.clone());
        }
        builder.multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
    }

    /// What `POST /api/v1/consumers/{name}/preview` shows: the envelope, headers and parts.
    pub fn preview(&self, mail: &Mail) -> Value {
        let list = |list: &[Mailbox]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        json!({
            "from": self.from.to_string(),
            "to": list(&self.to),
            "cc": list(&self.cc),
            "subject": mail.subject,
            "headers": {
                "Message-ID": mail.message_id,
                "In-Reply-To": mail.thread,
                "References": mail.thread,
                GROUP_HEADER: mail.group,
            },
            "text": mail.text,
            "html": mail.html,
        })
    }
}

/// Whether `host` is this machine (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `email` sink.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    addressing: Addressing,
    notifier: Notifier,
    /// `host:port`, for errors.
    server: String,
    /// Removed from every error text, should a server echo it.
    password: Option<String>,
    /// Longest conversation for one message: a few answers' `timeout`s.
    deadline: Duration,
}

impl FromConsumer for Email {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.email.as_ref(), "email")?;
        let addressing = Addressing::parse(settings).map_err(|why| declared.config(why))?;
        let host = settings.host.trim();
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(declared.config(format!(
                "email.host: `{}` is not a host name",
                settings.host
            )));
        }
        if settings.tls == EmailTls::None && !settings.allow_plaintext && !is_loopback(host) {
            return Err(declared.config(format!(
                "email.tls: `none` sends mail (and credentials) to {host} in clear; use \
                 starttls or tls, or set email.allowPlaintext: true"
            )));
        }
        let timeout = parse_window(&settings.timeout)
            .filter(|t| *t <= MAX_TIMEOUT)
            .ok_or_else(|| {
                declared.config(format!(
                    "email.timeout: `{}` is not a span of 1s to 5m (e.g. `30s`)",
                    settings.timeout
                ))
            })?;
        let port = settings.port.unwrap_or(settings.tls.default_port());
        if port == 0 {
            return Err(declared.config("email.port: must be 1 to 65535".into()));
        }
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(timeout));
        if settings.tls != EmailTls::None {
            let parameters = tls_parameters(declared, host, settings.insecure_skip_verify)?;
            builder = builder.tls(match settings.tls {
                EmailTls::Tls => Tls::Wrapper(parameters),
                _ => Tls::Required(parameters),
            });
        }
        let secret = |key: &str| declared.secrets.get(key).map(|v| v.0.clone());
        let password = match (secret("username"), secret("password")) {
            (Some(username), Some(password)) => {
                builder = builder.credentials(Credentials::new(username, password.clone()));
                Some(password).filter(|p| !p.is_empty())
            }
            (None, None) => None,
            _ => {
                return Err(declared.config(
                    "secretRef: give both `username` and `password` for SMTP AUTH, or neither"
                        .into(),
                ));
            }
        };
        Ok(Email {
            transport: builder.build(),
            addressing,
            notifier: Notifier::new(declared)?,
            server: format!("{host}:{port}"),
            password,
            deadline: timeout * 3,
        })
    }
}

/// TLS towards `host`: the system roots and the Secret's `ca.crt`; `tls.crt` + `tls.key`
/// as client certificate when present.
fn tls_parameters(
    declared: &Declared<'_>,
    host: &str,
    insecure: bool,
) -> Result<TlsParameters, DeliveryError> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(ca) = declared.secrets.get("ca.crt") {
        if !ca.0.contains("-----BEGIN CERTIFICATE-----") {
            return Err(declared.config("secret key ca.crt: no PEM certificate in it".into()));
        }
        let ca = Certificate::from_pem(ca.0.as_bytes())
            .map_err(|e| declared.config(format!("secret key ca.crt: {}", http::chain(&e))))?;
        builder = builder.add_root_certificate(ca);
    }
    match (
        declared.secrets.get("tls.crt"),
        declared.secrets.get("tls.key"),
    ) {
        (Some(cert), Some(key)) => {
            let identity =
                Identity::from_pem(cert.0.as_bytes(), key.0.as_bytes()).map_err(|e| {
                    declared.config(format!("secret keys tls.crt/tls.key: {}", http::chain(&e)))
                })?;
            builder = builder.identify_with(identity);
        }
        (None, None) => {}
        _ => {
            return Err(declared.config("secret needs both tls.crt and tls.key, or neither".into()));
        }
    }
    if insecure {
        builder = builder.dangerous_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| declared.config(format!("email TLS: {}", http::chain(&e))))
}

/// What an SMTP failure says about the message.
pub fn action(error: &lettre::transport::smtp::Error) -> Action {
    match error.status().map(u16::from) {
        // Authentication required, failed or too weak: the operator fixes the credentials,
        // nothing is lost meanwhile.
        Some(530 | 534 | 535 | 538) => Action::Retry,
        // The server refuses this message for good (no such mailbox, too large, policy).
        Some(500..=599) => Action::Refuse,
        // 4xx, and everything that is not an answer: connection, TLS, timeouts.
        _ => Action::Retry,
    }
}

impl Email {
    /// `text` without the password.
    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(password) => text.replace(password.as_str(), "***"),
            None => text,
        }
    }

    async fn deliver(&self, mail: &Mail) -> Result<(), (Action, String)> {
        let message = self.addressing.message(mail).map_err(|e| {
            let why = format!("email: the message cannot be built: {}", http::chain(&e));
            (Action::Refuse, why)
        })?;
        // lettre's timeout is per read; this bounds the whole conversation of one message
        // (a server that stops answering after STARTTLS would otherwise hold the worker).
        let sent = tokio::time::timeout(self.deadline, self.transport.send(message)).await;
        match sent {
            Err(_) => Err((
                Action::Retry,
                format!(
                    "SMTP {}: no complete answer within {} s",
                    self.server,
                    self.deadline.as_secs()
                ),
            )),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let why = format!("SMTP {}: {}", self.server, http::chain(&e));
                Err((action(&e), self.scrub(why)))
            }
        }
    }
}

impl Sink for Email {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        // In order: after a failure that may pass, the rest waits behind it.
        let mut results = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let mail = self.addressing.mail(&self.notifier.event(event), None);
            match self.deliver(&mail).await {
                Ok(()) => results.push(ItemResult::Delivered),
                Err((Action::Retry, why)) => {
                    if i == 0 {
                        return Outcome::Retry(why);
                    }
                    results.extend(events[i..].iter().map(|_| ItemResult::Retry(why.clone())));
                    break;
                }
                Err((_, why)) => results.push(ItemResult::Refused(why)),
            }
        }
        Outcome::Each(results)
    }

    fn preview(&self, event: &Event) -> Value {
        let mail = self.addressing.mail(&self.notifier.event(event), None);
        self.addressing.preview(&mail)
    }

    async fn send_summary(&mut self, summary: &Summary) -> Outcome {
        let line = summary.line();
        let mail = self
            .addressing
            .mail(&self.notifier.summary(summary), Some(&line));
        match self.deliver(&mail).await {
            Ok(()) => Outcome::Delivered,
            Err((Action::Retry, why)) => Outcome::Retry(why),
            Err((_, why)) => Outcome::Each(vec![ItemResult::Refused(why)]),
        }
    }
}

#[cfg(test)]
#[path = "email_tests.rs"]
mod tests;
