//! `slack`: one message per event to a Slack incoming webhook, as Block Kit inside an
//! attachment coloured by severity, with a plain-text fallback for notifications.
//!
//! Slack answers `200 ok`; `400 invalid_payload`/`no_text` and `410 channel_is_archived`
//! (refused for good: dead letters), `403 action_prohibited`, `404 channel_not_found`
//! (retried: the operator fixes the app or URL), `429` with `Retry-After` (retried no
//! sooner). Sending is the shared [`chat`](super::chat) sink's.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::Declared;
use crate::sinks::chat::{self, Format, Target};
use serde_json::{Value, json};

/// Slack accepts 3000 characters in a section's text; the message keeps room for the rule.
const MAX_MESSAGE: usize = 2800;
/// Slack accepts 2000 characters in a field.
const MAX_FIELD: usize = 1900;

pub struct Slack;

/// Slack's `mrkdwn` control characters escaped (`&`, `<`, `>`), cut to `max` characters.
fn text(value: &str, max: usize) -> String {
    chat::trimmed(value, max, |c, out| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    })
}

impl Format for Slack {
    const SECTION: &'static str = "slack";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        Ok((Slack, chat::webhook(declared, Self::SECTION)?))
    }

    /// The context line links to the event's dashboard page when `link` is given.
    fn message(&self, notice: &Notice) -> Value {
        let (event, link) = (notice.event, notice.link.as_deref());
        let mut facts = chat::facts(event);
        // Slack shows at most 10 fields; the time has its own.
        facts.truncate(9);
        let time = event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let fields: Vec<Value> = facts
        .into_iter()
        .map(|(name, value)| {
            json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", text(&value, MAX_FIELD))})
        })
        .chain([json!({"type": "mrkdwn", "text": format!("*Time*\n{time}")})])
        .collect();
        let mut context = match link {
            Some(link) => format!("<{link}|event `{}`>", event.id),
            None => format!("event `{}`", event.id),
        };
        if !event.tags.is_empty() {
            context.push_str(" · ");
            context.push_str(&text(&event.tags.join(", "), MAX_FIELD));
        }
        let summary = format!(
            "[{}] {} — {}",
            notice.severity.as_str(),
            event.rule,
            chat::place(event)
        );
        json!({
            "text": text(&summary, MAX_FIELD),
            "attachments": [{
                "color": format!("#{:06x}", chat::severity_rgb(notice.severity)),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                        "*{}*\n{}",
                        text(&event.rule, 150),
                        text(&notice.text, MAX_MESSAGE)
                    )}},
                    {"type": "section", "fields": fields},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
                ],
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::chat::tests::{golden_event, notice};

    #[test]
    fn the_message_is_block_kit_in_a_severity_coloured_attachment_with_a_text_fallback() {
        let golden = json!({
            "text": "[critical] Terminal shell in container — prod / shop / web-1",
            "attachments": [{
                "color": "#b71c1c",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text":
                        "*Terminal shell in container*\nA shell was spawned in a container &lt;bash&gt; &amp; more"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Severity*\nCritical"},
                        {"type": "mrkdwn", "text": "*Source*\nfalco"},
                        {"type": "mrkdwn", "text": "*Cluster*\nprod"},
                        {"type": "mrkdwn", "text": "*Namespace*\nshop"},
                        {"type": "mrkdwn", "text": "*Workload*\nDeployment web"},
                        {"type": "mrkdwn", "text": "*Pod*\nweb-1"},
                        {"type": "mrkdwn", "text": "*Container*\nweb"},
                        {"type": "mrkdwn", "text": "*Time*\n2026-05-04T10:11:12Z"},
                    ]},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text":
                        "event `0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e` · container, shell"}]},
                ],
            }],
        });
        assert_eq!(Slack.message(&notice(&golden_event(), None)), golden);
        let linked = Slack.message(&notice(
            &golden_event(),
            Some("https://falconer.example/ui/#/events/x"),
        ));
        assert_eq!(
            linked["attachments"][0]["blocks"][2]["elements"][0]["text"],
            "<https://falconer.example/ui/#/events/x|event `0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e`> · container, shell"
        );
    }

    #[test]
    fn long_texts_are_cut_within_slacks_limits_and_fields_stay_at_most_ten() {
        let mut e = golden_event();
        e.message = "x".repeat(10_000);
        e.node = Some("node-1".into());
        e.image = Some("registry.example/web:1".into());
        let m = Slack.message(&notice(&e, None));
        let blocks = &m["attachments"][0]["blocks"];
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        assert!(blocks[1]["fields"].as_array().unwrap().len() <= 10);
    }
}
