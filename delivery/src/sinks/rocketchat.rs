//! `rocketchat`: one message per event to a Rocket.Chat incoming webhook integration, as a
//! notification line and one Slack-style attachment coloured by severity (the mapper shared
//! with `mattermost`, [`chat::attachment_message`]), optionally under another name and
//! avatar (`alias`, `emoji`, `avatar`).
//!
//! Rocket.Chat answers `200 {"success": true}` (delivered), but may answer `200` with
//! `{"success": false, "error": …}` (e.g. an integration script refused it): that is a
//! refusal (dead letters with its error), as is a `400`; `401`/`403`/`404` (a disabled
//! integration, a wrong token: retried until fixed); `429` and `5xx` (retried, no sooner
//! than a `Retry-After` when given). Sending is the shared [`chat`](super::chat) sink's.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::Declared;
use crate::sinks::chat::{self, Format, Target};
use serde_json::Value;

pub struct RocketChat {
    alias: Option<String>,
    emoji: Option<String>,
    avatar: Option<String>,
}

impl Format for RocketChat {
    const SECTION: &'static str = "rocketchat";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        let settings = declared.section(declared.consumer.rocketchat.as_ref(), Self::SECTION)?;
        if let Some(avatar) = &settings.avatar
            && reqwest::Url::parse(avatar).is_err()
        {
            return Err(declared.config(format!("rocketchat.avatar: `{avatar}` is not a URL")));
        }
        let target = chat::target(declared, &settings.url, &settings.tls)?;
        Ok((
            RocketChat {
                alias: settings.alias.clone(),
                emoji: settings.emoji.clone(),
                avatar: settings.avatar.clone(),
            },
            target,
        ))
    }

    fn message(&self, notice: &Notice) -> Value {
        let mut message = chat::attachment_message(notice);
        for (key, value) in [
            ("alias", &self.alias),
            ("emoji", &self.emoji),
            ("avatar", &self.avatar),
        ] {
            if let Some(value) = value {
                message[key] = value.as_str().into();
            }
        }
        message
    }

    /// `200 {"success": false, "error": …}` refuses the message.
    fn refusal(&self, answer: &str) -> Option<String> {
        let answer: Value = serde_json::from_str(answer).ok()?;
        if answer.get("success")? != &Value::Bool(false) {
            return None;
        }
        let error = match answer.get("error") {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => "no reason given".into(),
        };
        Some(format!(
            "Rocket.Chat answered success: false: {}",
            crate::sinks::http::snippet(&error)
        ))
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

    fn format() -> RocketChat {
        RocketChat {
            alias: Some("Falconer".into()),
            emoji: Some(":rotating_light:".into()),
            avatar: None,
        }
    }

    #[test]
    fn the_message_is_the_shared_attachment_under_the_configured_alias_and_emoji() {
        let e = golden_event();
        let n = notice(&e, None);
        let mut golden = chat::attachment_message(&n);
        golden["alias"] = "Falconer".into();
        golden["emoji"] = ":rotating_light:".into();
        assert_eq!(format().message(&n), golden);
        assert_eq!(
            golden["attachments"][0]["fields"][0],
            json!({"title": "Severity", "value": "Critical", "short": true})
        );
        assert_eq!(golden["attachments"][0]["color"], "#b71c1c");
        assert!(format().message(&n).get("avatar").is_none());
    }

    #[test]
    fn only_a_success_false_answer_is_a_refusal() {
        let f = format();
        assert_eq!(f.refusal(r#"{"success":true}"#), None);
        assert_eq!(f.refusal(""), None);
        assert_eq!(f.refusal("ok"), None);
        assert_eq!(
            f.refusal(r#"{"success":false,"error":"error-invalid-channel"}"#)
                .as_deref(),
            Some("Rocket.Chat answered success: false: error-invalid-channel")
        );
    }

    #[tokio::test]
    async fn a_200_with_success_false_goes_to_the_dead_letters_and_the_next_one_goes_on() {
        let receiver = WebhookServer::start();
        let url = format!("{}/hooks/ID/SECRETTOKEN", receiver.url());
        let mut rc = Chat::new(format(), target_of(&url), Notifier::plain());
        let events = [golden_event(), golden_event()];
        *receiver.state.answer.lock().unwrap() = Some((
            200,
            r#"{"success":false,"error":"Integration script rejected the message"}"#.into(),
        ));
        let Outcome::Each(results) = rc.send(&events).await else {
            panic!("answered per message");
        };
        assert_eq!(results.len(), 2);
        for result in &results {
            let ItemResult::Refused(why) = result else {
                panic!("refused for good: {result:?}");
            };
            assert!(why.contains("script rejected"), "{why}");
            assert!(!why.contains("SECRETTOKEN"), "{why}");
        }
        *receiver.state.answer.lock().unwrap() = Some((200, r#"{"success":true}"#.into()));
        assert_eq!(
            rc.send(&events).await,
            Outcome::Each(vec![ItemResult::Delivered, ItemResult::Delivered])
        );
        *receiver.state.answer.lock().unwrap() = None;
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 4));
        assert!(matches!(rc.send(&events).await, Outcome::Retry(_)));
        assert_eq!(rc.retry_after(), Some(std::time::Duration::from_secs(4)));
        receiver.stop().await;
    }
}
