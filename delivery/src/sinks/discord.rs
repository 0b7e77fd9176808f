//! `discord`: one embed per event to a Discord channel webhook, coloured by severity, with
//! mentions disabled (`allowed_mentions: {parse: []}`) so an alert's text can never ping
//! `@everyone`. Discord answers `204` (delivered), `400` (refused: dead letters), `404`
//! (unknown webhook: retried until the URL is fixed), `429` with `Retry-After`. Sending is
//! the shared [`chat`](super::chat) sink's. Markdown in the alert's text is rendered as
//! written.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::Declared;
use crate::sinks::chat::{self, Format, Target};
use serde_json::{Value, json};

/// Discord's embed limits: title 256, description 4096, field name 256 / value 1024, 25
/// fields, 6000 characters in all; content 2000.
const MAX_TITLE: usize = 250;
const MAX_DESCRIPTION: usize = 3000;
const MAX_VALUE: usize = 200;

pub struct Discord;

impl Format for Discord {
    const SECTION: &'static str = "discord";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        Ok((Discord, chat::webhook(declared, Self::SECTION)?))
    }

    /// The title links to the event's dashboard page when `link` is given.
    fn message(&self, notice: &Notice) -> Value {
        let (event, link) = (notice.event, notice.link.as_deref());
        let fields: Vec<Value> = chat::facts(event)
        .into_iter()
        .map(
            |(name, value)| json!({"name": name, "value": chat::cut(&value, MAX_VALUE), "inline": true}),
        )
        .collect();
        let mut footer = format!("event {}", event.id);
        if !event.tags.is_empty() {
            footer.push_str(" · ");
            footer.push_str(&chat::cut(&event.tags.join(", "), MAX_VALUE));
        }
        let mut message = json!({
            "content": chat::cut(
                &format!("[{}] {} — {}", notice.severity.as_str(), event.rule, chat::place(event)),
                MAX_TITLE
            ),
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": chat::cut(&event.rule, MAX_TITLE),
                "description": chat::cut(&notice.text, MAX_DESCRIPTION),
                "color": chat::severity_rgb(notice.severity),
                "fields": fields,
                "timestamp": event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "footer": {"text": footer},
            }],
        });
        if let Some(link) = link {
            message["embeds"][0]["url"] = link.into();
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::chat::tests::{golden_event, notice};

    #[test]
    fn the_message_is_one_severity_coloured_embed_that_pings_no_one() {
        let golden = json!({
            "content": "[critical] Terminal shell in container — prod / shop / web-1",
            "allowed_mentions": {"parse": []},
            "embeds": [{
                "title": "Terminal shell in container",
                "description": "A shell was spawned in a container <bash> & more",
                "color": 0xb71c1c,
                "fields": [
                    {"name": "Severity", "value": "Critical", "inline": true},
                    {"name": "Source", "value": "falco", "inline": true},
                    {"name": "Cluster", "value": "prod", "inline": true},
                    {"name": "Namespace", "value": "shop", "inline": true},
                    {"name": "Workload", "value": "Deployment web", "inline": true},
                    {"name": "Pod", "value": "web-1", "inline": true},
                    {"name": "Container", "value": "web", "inline": true},
                ],
                "timestamp": "2026-05-04T10:11:12Z",
                "footer": {"text": "event 0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e · container, shell"},
            }],
        });
        assert_eq!(Discord.message(&notice(&golden_event(), None)), golden);
        let linked = Discord.message(&notice(
            &golden_event(),
            Some("https://falconer.example/ui/#/events/x"),
        ));
        assert_eq!(
            linked["embeds"][0]["url"],
            "https://falconer.example/ui/#/events/x"
        );
    }

    #[test]
    fn an_embed_stays_within_discords_six_thousand_characters() {
        let mut e = golden_event();
        e.message = "x".repeat(10_000);
        e.rule = "r".repeat(1_000);
        e.image = Some("i".repeat(5_000));
        let embed = &Discord.message(&notice(&e, None))["embeds"][0];
        let mut total = embed["title"].as_str().unwrap().chars().count()
            + embed["description"].as_str().unwrap().chars().count()
            + embed["footer"]["text"].as_str().unwrap().chars().count();
        for field in embed["fields"].as_array().unwrap() {
            total += field["name"].as_str().unwrap().len()
                + field["value"].as_str().unwrap().chars().count();
        }
        assert!(total <= 6000, "{total}");
    }
}
