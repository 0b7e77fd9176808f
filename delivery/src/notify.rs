//! What every notification sink (chat, paging, Alertmanager, e-mail) shares: the [`Notice`]
//! it turns into its service's message — the text (the consumer's template, the event's
//! message, or a summary line), the dashboard link and the alert group — and the
//! [`Summary`] noise control sends for the events it folded.

use crate::error::DeliveryError;
use crate::sinks::Declared;
use crate::template::Template;
use chrono::{DateTime, Utc};
use falconer_model::crd::{Consumer, parse_window};
use falconer_model::event::{Event, Severity};
use falconer_model::group::{self, DEFAULT_GROUP_BY, GroupField};
use serde::{Deserialize, Serialize};

/// The events of one group that noise control folded (repeats within its window, or
/// events past the rate limit), sent as one message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The group's id ([`group::group_id`]).
    pub group: String,
    /// The first event of the group's window: the message shows its place and facts.
    pub sample: Event,
    /// Events represented by this summary.
    pub folded: u64,
    /// Whether the group's first event was sent (not when the rate limit held it back).
    pub first_sent: bool,
    /// The highest severity among them.
    pub severity: Severity,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl Summary {
    /// "37 more of Terminal shell in container on shop/web in the last 10m".
    pub fn line(&self) -> String {
        let e = &self.sample;
        let place = match (&e.namespace, &e.workload, &e.pod, &e.node) {
            (Some(ns), Some(w), _, _) => format!("{ns}/{}", w.name),
            (Some(ns), None, Some(pod), _) => format!("{ns}/{pod}"),
            (Some(ns), None, None, _) => ns.clone(),
            (None, _, _, Some(node)) => format!("node {node}"),
            (None, _, _, None) => format!("cluster {}", e.cluster),
        };
        let last = span(self.last_seen - self.first_seen);
        if self.first_sent {
            format!(
                "{} more of {} on {place} in the last {last}",
                self.folded, e.rule
            )
        } else {
            format!(
                "{} of {} on {place} in the last {last} (held back by the rate limit)",
                self.folded, e.rule
            )
        }
    }
}

/// A time span in its largest whole unit, at least one second: `45s`, `10m`, `2h`.
pub fn span(delta: chrono::TimeDelta) -> String {
    let secs = delta.num_seconds().max(1);
    if secs % 3600 == 0 || secs >= 3 * 3600 {
        format!("{}h", (secs + 1800) / 3600)
    } else if secs >= 60 {
        format!("{}m", (secs + 30) / 60)
    } else {
        format!("{secs}s")
    }
}

/// One message a notification sink sends: about an event, or a summary of its group.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// The event (a summary's first event).
    pub event: &'a Event,
    /// The message's text: the template's output, else the event's message or, for a
    /// summary, its line.
    pub text: String,
    /// The event's dashboard page, when `ui.external_url` is set.
    pub link: Option<String>,
    /// The alert group's id: one problem, one incident downstream.
    pub group: String,
    /// 1 for an event; the folded events for a summary.
    pub count: u64,
    /// Whether this is a summary.
    pub summary: bool,
    /// The event's severity, or the highest of a summary's events.
    pub severity: Severity,
}

/// What a notification sink needs besides its own settings: the consumer's template, the
/// dashboard's URL and the group key.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    template: Option<Template>,
    dashboard: Option<String>,
    by: Vec<GroupField>,
}

impl Notifier {
    /// The consumer's notifier; an invalid template is an error naming the consumer and
    /// the line.
    pub fn new(declared: &Declared<'_>) -> Result<Notifier, DeliveryError> {
        let template = match &declared.consumer.template {
            Some(source) => Some(
                Template::compile(source).map_err(|e| declared.config(format!("template: {e}")))?,
            ),
            None => None,
        };
        let by = match &declared.consumer.aggregate {
            Some(aggregate) => aggregate.by.clone(),
            None => DEFAULT_GROUP_BY.to_vec(),
        };
        Ok(Notifier {
            template,
            dashboard: declared.dashboard.map(String::from),
            by,
        })
    }

    /// A notifier without a template or dashboard, grouping by the default key (tests).
    #[cfg(test)]
    pub fn plain() -> Notifier {
        Notifier {
            by: DEFAULT_GROUP_BY.to_vec(),
            ..Notifier::default()
        }
    }

    /// With the dashboard at `url` (tests).
    #[cfg(test)]
    pub fn with_dashboard(mut self, url: &str) -> Notifier {
        self.dashboard = Some(url.to_string());
        self
    }

    /// The event's dashboard page.
    pub fn link(&self, event: &Event) -> Option<String> {
        self.dashboard
            .as_deref()
            .map(|d| format!("{}/ui/#/events/{}", d.trim_end_matches('/'), event.id))
    }

    /// The message about one event.
    pub fn event<'a>(&self, event: &'a Event) -> Notice<'a> {
        let group = group::group_of(event, &self.by);
        let link = self.link(event);
        let text = match &self.template {
            Some(t) => t.render(event, &group, 1, None, link.as_deref()),
            None => event.message.clone(),
        };
        Notice {
            event,
            text,
            link,
            group,
            count: 1,
            summary: false,
            severity: event.severity,
        }
    }

    /// The message summarizing folded events of one group.
    pub fn summary<'a>(&self, summary: &'a Summary) -> Notice<'a> {
        let link = self.link(&summary.sample);
        let line = summary.line();
        let text = match &self.template {
            Some(t) => {
                let rendered = t.render(
                    &summary.sample,
                    &summary.group,
                    summary.folded,
                    Some(summary),
                    link.as_deref(),
                );
                // A template that does not look at the group would make a summary read
                // like one event: say what it stands for first.
                if t.uses_group() {
                    rendered
                } else {
                    format!("{line}\n{rendered}")
                }
            }
            None => line,
        };
        Notice {
            event: &summary.sample,
            text,
            link,
            group: summary.group.clone(),
            count: summary.folded,
            summary: true,
            severity: summary.severity,
        }
    }
}

/// Checks a consumer's `template`, `aggregate` and `rateLimit`: only on notification sinks,
/// a template that compiles, windows of 1 s to 24 h. The error names the field.
pub fn check(consumer: &Consumer) -> Result<(), (&'static str, String)> {
    let kind = consumer.sink.as_str();
    if consumer.template.is_some() && !consumer.takes_template() {
        let why = match consumer.message_format() {
            Some(format) => format!(
                "type {kind} with format {} sends events as they are; `template` is for \
                 notification sinks and format: template",
                format.as_str()
            ),
            None => format!(
                "type {kind} sends events as they are; `template` is for notification sinks"
            ),
        };
        return Err(("template", why));
    }
    if consumer.template.is_none()
        && consumer.message_format() == Some(falconer_model::crd::MessageFormat::Template)
    {
        return Err((
            "template",
            format!("type {kind} with format: template needs the consumer's `template`"),
        ));
    }
    for (key, set) in [
        ("aggregate", consumer.aggregate.is_some()),
        ("rateLimit", consumer.rate_limit.is_some()),
    ] {
        if set && !consumer.sink.is_notification() {
            return Err((
                key,
                format!("type {kind} sends events as they are; `{key}` is for notification sinks"),
            ));
        }
    }
    if let Some(source) = &consumer.template {
        Template::compile(source).map_err(|e| ("template", e))?;
    }
    let windows = [
        (
            "aggregate.window",
            consumer.aggregate.as_ref().map(|a| &a.window),
        ),
        (
            "rateLimit.per",
            consumer.rate_limit.as_ref().map(|r| &r.per),
        ),
    ];
    for (key, window) in windows {
        if let Some(text) = window {
            match parse_window(text) {
                Some(d) if d.as_secs() <= 24 * 3600 => {}
                _ => {
                    return Err((
                        key,
                        format!("`{text}` is not a span of 1s to 24h (e.g. `60s`, `10m`, `1h`)"),
                    ));
                }
            }
        }
    }
    if consumer.aggregate.as_ref().is_some_and(|a| a.by.is_empty()) {
        return Err(("aggregate.by", "name at least one field".into()));
    }
    if consumer
        .rate_limit
        .as_ref()
        .is_some_and(|r| r.messages == 0)
    {
        return Err(("rateLimit.messages", "must be at least 1".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    #[test]
    fn a_summary_says_how_many_events_of_which_rule_on_which_workload_in_what_time() {
        let mut sample = event("Terminal shell in container");
        sample.workload = Some(falconer_model::event::Workload {
            kind: "Deployment".into(),
            name: "checkout".into(),
        });
        sample.namespace = Some("payments".into());
        let first = sample.received_at;
        let summary = Summary {
            group: "g".into(),
            sample,
            folded: 37,
            first_sent: true,
            severity: Severity::Critical,
            first_seen: first,
            last_seen: first + chrono::TimeDelta::minutes(10),
        };
        assert_eq!(
            summary.line(),
            "37 more of Terminal shell in container on payments/checkout in the last 10m"
        );
        assert_eq!(span(chrono::TimeDelta::seconds(0)), "1s");
        assert_eq!(span(chrono::TimeDelta::seconds(90)), "2m");
        assert_eq!(span(chrono::TimeDelta::hours(5)), "5h");
    }

    #[test]
    fn without_a_template_an_event_reads_its_message_and_links_to_its_page() {
        let e = event("Terminal shell in container");
        let notice = Notifier::plain()
            .with_dashboard("https://falconer.example/")
            .event(&e);
        assert_eq!(notice.text, e.message);
        assert_eq!(
            notice.link.as_deref(),
            Some(format!("https://falconer.example/ui/#/events/{}", e.id).as_str())
        );
        assert_eq!(notice.group, group::group_id(&e, &DEFAULT_GROUP_BY));
        assert_eq!((notice.count, notice.summary), (1, false));
    }
}
