//! `teams`: one Adaptive Card per event to a Microsoft Teams Workflows webhook (the
//! "Post to a channel when a webhook request is received" flow; Office 365 connectors are
//! retired). The flow answers `202 Accepted`; `400` is refused (dead letters), `401`/`403`/
//! `404` retried until the flow or URL is fixed, `429` with `Retry-After`. Sending is the
//! shared [`chat`](super::chat) sink's. TextBlocks render a small markdown subset (bold,
//! italic, lists, links) of the alert's text as written: Adaptive Cards have no escape.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::Declared;
use crate::sinks::chat::{self, Format, Target};
use falconer_model::event::Severity;
use serde_json::{Value, json};

const MAX_TITLE: usize = 250;
const MAX_MESSAGE: usize = 3000;
const MAX_VALUE: usize = 500;

pub struct Teams;

/// The title's Adaptive Card colour.
fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency | Severity::Alert | Severity::Critical | Severity::Error => "Attention",
        Severity::Warning | Severity::Notice => "Warning",
        Severity::Informational | Severity::Debug => "Default",
    }
}

impl Format for Teams {
    const SECTION: &'static str = "teams";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        Ok((Teams, chat::webhook(declared, Self::SECTION)?))
    }

    /// An "Open in Falconer" action links to the event's dashboard page when `link` is given.
    fn message(&self, notice: &Notice) -> Value {
        let (event, link) = (notice.event, notice.link.as_deref());
        let mut facts: Vec<Value> = chat::facts(event)
            .into_iter()
            .map(|(title, value)| json!({"title": title, "value": chat::cut(&value, MAX_VALUE)}))
            .collect();
        facts.push(json!({
            "title": "Time",
            "value": event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }));
        facts.push(json!({"title": "Event", "value": event.id.to_string()}));
        let mut message = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": [
                        {"type": "TextBlock", "text": chat::cut(&event.rule, MAX_TITLE), "weight": "Bolder",
                         "size": "Medium", "color": colour(notice.severity), "wrap": true},
                        {"type": "TextBlock", "text": chat::cut(&chat::place(event), MAX_TITLE),
                         "isSubtle": true, "spacing": "None", "wrap": true},
                        {"type": "TextBlock", "text": chat::cut(&notice.text, MAX_MESSAGE), "wrap": true},
                        {"type": "FactSet", "facts": facts},
                    ],
                },
            }],
        });
        if let Some(link) = link {
            message["attachments"][0]["content"]["actions"] =
                json!([{"type": "Action.OpenUrl", "title": "Open in Falconer", "url": link}]);
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::chat::tests::{golden_event, notice};

    #[test]
    fn the_message_is_an_adaptive_card_with_the_rule_place_message_and_facts() {
        let golden = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": [
                        {"type": "TextBlock", "text": "Terminal shell in container", "weight": "Bolder",
                         "size": "Medium", "color": "Attention", "wrap": true},
                        {"type": "TextBlock", "text": "prod / shop / web-1", "isSubtle": true,
                         "spacing": "None", "wrap": true},
                        {"type": "TextBlock", "text": "A shell was spawned in a container <bash> & more",
                         "wrap": true},
                        {"type": "FactSet", "facts": [
                            {"title": "Severity", "value": "Critical"},
                            {"title": "Source", "value": "falco"},
                            {"title": "Cluster", "value": "prod"},
                            {"title": "Namespace", "value": "shop"},
                            {"title": "Workload", "value": "Deployment web"},
                            {"title": "Pod", "value": "web-1"},
                            {"title": "Container", "value": "web"},
                            {"title": "Time", "value": "2026-05-04T10:11:12Z"},
                            {"title": "Event", "value": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e"},
                        ]},
                    ],
                },
            }],
        });
        assert_eq!(Teams.message(&notice(&golden_event(), None)), golden);
        let linked = Teams.message(&notice(
            &golden_event(),
            Some("https://falconer.example/ui/#/events/x"),
        ));
        assert_eq!(
            linked["attachments"][0]["content"]["actions"],
            json!([{"type": "Action.OpenUrl", "title": "Open in Falconer",
                    "url": "https://falconer.example/ui/#/events/x"}])
        );
    }
}
