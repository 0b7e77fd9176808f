//! `mattermost`: one message per event to a Mattermost incoming webhook, as a notification
//! line and one Slack-style attachment coloured by severity (the mapper shared with
//! `rocketchat`, [`chat::attachment_message`]), optionally posted under another name and
//! picture (`username`, `icon_url`: honoured when the server allows webhooks to override
//! them).
//!
//! Mattermost answers `200 ok` (delivered); `400` with `{"id": …, "message": …}` (an
//! invalid payload: dead letters with its message); `403`/`404` (webhooks disabled, an
//! unknown hook: retried until fixed); `429` and `5xx` (retried, no sooner than a
//! `Retry-After` when given). Sending is the shared [`chat`](super::chat) sink's.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::Declared;
use crate::sinks::chat::{self, Format, Target};
use serde_json::Value;

pub struct Mattermost {
    username: Option<String>,
    icon_url: Option<String>,
}

impl Format for Mattermost {
    const SECTION: &'static str = "mattermost";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        let settings = declared.section(declared.consumer.mattermost.as_ref(), Self::SECTION)?;
        if let Some(icon) = &settings.icon_url
            && reqwest::Url::parse(icon).is_err()
        {
            return Err(declared.config(format!("mattermost.iconUrl: `{icon}` is not a URL")));
        }
        let target = chat::target(declared, &settings.url, &settings.tls)?;
        Ok((
            Mattermost {
                username: settings.username.clone(),
                icon_url: settings.icon_url.clone(),
            },
            target,
        ))
    }

    fn message(&self, notice: &Notice) -> Value {
        let mut message = chat::attachment_message(notice);
        if let Some(username) = &self.username {
            message["username"] = username.as_str().into();
        }
        if let Some(icon) = &self.icon_url {
            message["icon_url"] = icon.as_str().into();
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notifier;
    use crate::sink::{ItemResult, Outcome, Sink};
    use crate::sinks::chat::Chat;
    use crate::sinks::chat::tests::{golden_event, notice, target_of};
    use falconer_testkit::webhook::WebhookServer;
    use serde_json::json;

    fn format() -> Mattermost {
        Mattermost {
            username: Some("falconer".into()),
            icon_url: Some("https://falconer.example/icon.png".into()),
        }
    }

    #[test]
    fn the_message_is_one_severity_coloured_attachment_under_the_configured_name() {
        let golden = json!({
            "text": "[critical] Terminal shell in container — prod / shop / web-1",
            "username": "falconer",
            "icon_url": "https://falconer.example/icon.png",
            "attachments": [{
                "fallback": "[critical] Terminal shell in container — prod / shop / web-1",
                "color": "#b71c1c",
                "title": "Terminal shell in container",
                "title_link": "https://falconer.example/ui/#/events/x",
                "text": "A shell was spawned in a container <bash> & more",
                "fields": [
                    {"title": "Severity", "value": "Critical", "short": true},
                    {"title": "Source", "value": "falco", "short": true},
                    {"title": "Cluster", "value": "prod", "short": true},
                    {"title": "Namespace", "value": "shop", "short": true},
                    {"title": "Workload", "value": "Deployment web", "short": true},
                    {"title": "Pod", "value": "web-1", "short": true},
                    {"title": "Container", "value": "web", "short": true},
                    {"title": "Time", "value": "2026-05-04T10:11:12Z", "short": true},
                ],
                "footer": "event 0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e · container, shell",
            }],
        });
        let e = golden_event();
        assert_eq!(
            format().message(&notice(&e, Some("https://falconer.example/ui/#/events/x"))),
            golden
        );
        let bare = Mattermost {
            username: None,
            icon_url: None,
        }
        .message(&notice(&e, None));
        assert!(bare.get("username").is_none() && bare.get("icon_url").is_none());
        assert!(bare["attachments"][0].get("title_link").is_none());
    }

    #[test]
    fn the_notification_line_cannot_mention_the_channel() {
        let mut e = golden_event();
        e.rule = "@channel look".into();
        let m = format().message(&notice(&e, None));
        assert!(
            m["text"]
                .as_str()
                .unwrap()
                .contains("@\u{200b}channel look")
        );
    }

    #[tokio::test]
    async fn a_refused_payload_goes_to_the_dead_letters_with_mattermosts_message() {
        let receiver = WebhookServer::start();
        let url = format!("{}/hooks/SECRETKEY", receiver.url());
        let mut mm = Chat::new(format(), target_of(&url), Notifier::plain());
        let e = golden_event();
        assert_eq!(
            mm.send(std::slice::from_ref(&e)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        *receiver.state.answer.lock().unwrap() = Some((
            400,
            r#"{"id":"web.incoming_webhook.text.app_error","message":"No text specified","status_code":400}"#.into(),
        ));
        let Outcome::Each(results) = mm.send(std::slice::from_ref(&e)).await else {
            panic!("a 400 is answered per message");
        };
        let [ItemResult::Refused(why)] = results.as_slice() else {
            panic!("refused for good: {results:?}");
        };
        assert!(why.contains("No text specified"), "{why}");
        assert!(!why.contains("SECRETKEY"), "{why}");
        *receiver.state.answer.lock().unwrap() = Some((503, "maintenance".into()));
        assert!(matches!(
            mm.send(std::slice::from_ref(&e)).await,
            Outcome::Retry(_)
        ));
        receiver.stop().await;
    }
}
