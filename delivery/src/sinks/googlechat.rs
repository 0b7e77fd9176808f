//! `googlechat`: one card message per event to a Google Chat space's incoming webhook
//! (`https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…`; the URL is the
//! credential). Each message names its alert group as `thread.threadKey`, and the URL asks
//! for `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`, so a group's messages (its
//! events and summaries) thread together.
//!
//! Google Chat answers `200` with the created message (delivered); `400` (invalid message:
//! dead letters); `403`/`404` (a removed webhook or space: retried until the URL is fixed);
//! `429` (about one message per second per space) and `5xx` (retried, no sooner than a
//! `Retry-After` when given). Sending is the shared [`chat`](super::chat) sink's.

use crate::error::DeliveryError;
use crate::notify::Notice;
use crate::sinks::Declared;
use crate::sinks::chat::{self, Format, Target};
use serde_json::{Value, json};

/// Google Chat takes 4096 characters of `text` and 32,000 bytes per message.
const MAX_TITLE: usize = 200;
const MAX_MESSAGE: usize = 3000;
const MAX_VALUE: usize = 500;
/// The query parameter that makes a `threadKey` reply in its thread.
const REPLY_OPTION: (&str, &str) = ("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");

pub struct GoogleChat;

/// Card text is a small HTML subset: the alert's text is escaped so it cannot add links or
/// markup.
fn html(value: &str, max: usize) -> String {
    chat::trimmed(value, max, |c, out| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    })
}

/// The plain `text` line: `<users/all>`-style mentions and `<url|label>` links are written
/// in angle brackets, so those are replaced by look-alikes.
fn plain(value: &str, max: usize) -> String {
    chat::trimmed(value, max, |c, out| match c {
        '<' => out.push('‹'),
        '>' => out.push('›'),
        c => out.push(c),
    })
}

impl Format for GoogleChat {
    const SECTION: &'static str = "googlechat";

    fn build(declared: &Declared<'_>) -> Result<(Self, Target), DeliveryError> {
        let mut target = chat::webhook(declared, Self::SECTION)?;
        if !target
            .url
            .query_pairs()
            .any(|(key, _)| key == REPLY_OPTION.0)
        {
            target
                .url
                .query_pairs_mut()
                .append_pair(REPLY_OPTION.0, REPLY_OPTION.1);
        }
        Ok((GoogleChat, target))
    }

    /// A "Open in Falconer" button links to the event's dashboard page when `link` is given.
    fn message(&self, notice: &Notice) -> Value {
        let event = notice.event;
        let place = chat::place(event);
        let mut facts: Vec<Value> = chat::facts(event)
            .into_iter()
            .map(|(label, value)| {
                json!({"decoratedText": {"topLabel": label, "text": html(&value, MAX_VALUE)}})
            })
            .collect();
        facts.push(json!({"decoratedText": {
            "topLabel": "Time",
            "text": event.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }}));
        facts.push(json!({"decoratedText": {"topLabel": "Event", "text": event.id.to_string()}}));
        let mut sections = vec![
            json!({"widgets": [{"textParagraph": {"text": html(&notice.text, MAX_MESSAGE)}}]}),
            json!({"header": "Facts", "widgets": facts}),
        ];
        if let Some(link) = &notice.link {
            sections.push(json!({"widgets": [{"buttonList": {"buttons": [
                {"text": "Open in Falconer", "onClick": {"openLink": {"url": link}}}
            ]}}]}));
        }
        json!({
            "text": plain(
                &format!("[{}] {} — {place}", notice.severity.as_str(), event.rule),
                MAX_TITLE
            ),
            "cardsV2": [{
                "cardId": "falconer-event",
                "card": {
                    "header": {
                        "title": html(&event.rule, MAX_TITLE),
                        "subtitle": html(&format!("{} · {place}", event.severity_raw), MAX_TITLE),
                    },
                    "sections": sections,
                },
            }],
            "thread": {"threadKey": notice.group},
        })
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

    #[test]
    fn the_message_is_a_card_with_a_text_fallback_threaded_by_its_group() {
        let e = golden_event();
        let n = notice(&e, Some("https://falconer.example/ui/#/events/x"));
        let golden = json!({
            "text": "[critical] Terminal shell in container — prod / shop / web-1",
            "cardsV2": [{
                "cardId": "falconer-event",
                "card": {
                    "header": {
                        "title": "Terminal shell in container",
                        "subtitle": "Critical · prod / shop / web-1",
                    },
                    "sections": [
                        {"widgets": [{"textParagraph": {"text":
                            "A shell was spawned in a container &lt;bash&gt; &amp; more"}}]},
                        {"header": "Facts", "widgets": [
                            {"decoratedText": {"topLabel": "Severity", "text": "Critical"}},
                            {"decoratedText": {"topLabel": "Source", "text": "falco"}},
                            {"decoratedText": {"topLabel": "Cluster", "text": "prod"}},
                            {"decoratedText": {"topLabel": "Namespace", "text": "shop"}},
                            {"decoratedText": {"topLabel": "Workload", "text": "Deployment web"}},
                            {"decoratedText": {"topLabel": "Pod", "text": "web-1"}},
                            {"decoratedText": {"topLabel": "Container", "text": "web"}},
                            {"decoratedText": {"topLabel": "Time", "text": "2026-05-04T10:11:12Z"}},
                            {"decoratedText": {"topLabel": "Event",
                                               "text": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e"}},
                        ]},
                        {"widgets": [{"buttonList": {"buttons": [
                            {"text": "Open in Falconer",
                             "onClick": {"openLink": {"url": "https://falconer.example/ui/#/events/x"}}}
                        ]}}]},
                    ],
                },
            }],
            "thread": {"threadKey": n.group},
        });
        assert_eq!(GoogleChat.message(&n), golden);
        let unlinked = GoogleChat.message(&notice(&e, None));
        assert_eq!(
            unlinked["cardsV2"][0]["card"]["sections"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn the_text_line_cannot_mention_everyone() {
        let mut e = golden_event();
        e.rule = "<users/all> look".into();
        let m = GoogleChat.message(&notice(&e, None));
        let text = m["text"].as_str().unwrap();
        assert!(
            !text.contains('<') && text.contains("‹users/all› look"),
            "{text}"
        );
    }

    fn build(url: &str) -> Result<String, String> {
        let consumer: falconer_model::crd::Consumer = serde_json::from_value(json!({
            "name": "space", "type": "googlechat", "googlechat": {"url": url}
        }))
        .unwrap();
        let secrets = crate::declared::Secrets::new();
        let declared = crate::fixtures::declared(&consumer, &secrets);
        GoogleChat::build(&declared)
            .map(|(_, target)| target.url.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_webhook_url_keeps_its_key_and_token_and_asks_for_replies_in_thread() {
        assert_eq!(
            build("https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T").unwrap(),
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T\
             &messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        );
        let chosen = "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T&messageReplyOption=REPLY_MESSAGE_OR_FAIL";
        assert_eq!(build(chosen).unwrap(), chosen);
        let error = build("http://chat.example/v1/spaces/AAA/messages?key=K&token=T").unwrap_err();
        assert!(
            error.contains("googlechat.url") && !error.contains("token=T"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_invalid_message_goes_to_the_dead_letters_without_the_webhooks_token() {
        let receiver = WebhookServer::start();
        let url = format!("{}?key=K&token=SECRET", receiver.url());
        let mut space = Chat::new(GoogleChat, target_of(&url), Notifier::plain());
        let e = golden_event();
        assert_eq!(
            space.send(std::slice::from_ref(&e)).await,
            Outcome::Each(vec![ItemResult::Delivered])
        );
        assert_eq!(
            receiver.requests()[0].body["thread"]["threadKey"],
            Notifier::plain().event(&e).group
        );
        *receiver.state.answer.lock().unwrap() = Some((
            400,
            r#"{"error":{"code":400,"message":"Invalid JSON payload received.","status":"INVALID_ARGUMENT"}}"#.into(),
        ));
        let Outcome::Each(results) = space.send(std::slice::from_ref(&e)).await else {
            panic!("a 400 is answered per message");
        };
        let [ItemResult::Refused(why)] = results.as_slice() else {
            panic!("refused for good: {results:?}");
        };
        assert!(why.contains("INVALID_ARGUMENT"), "{why}");
        assert!(!why.contains("SECRET") && !why.contains("key=K"), "{why}");
        *receiver.state.answer.lock().unwrap() = None;
        *receiver.state.rate_limited.lock().unwrap() = Some((1, 2));
        assert!(matches!(
            space.send(std::slice::from_ref(&e)).await,
            Outcome::Retry(_)
        ));
        assert_eq!(space.retry_after(), Some(std::time::Duration::from_secs(2)));
        receiver.stop().await;
    }
}
