//! Noise control of a notification consumer (`aggregate`, `rateLimit`): decides, event by
//! event in delivery order, whether an event is sent now or folded into its group's next
//! summary, and which summaries are due. Pure and deterministic: its clock is the
//! `received_at` of the events it has seen, moved on to the wall clock only when the worker
//! has caught up, so a replay after a restart takes the same decisions. Its state is saved
//! with the cursor (nothing folded is lost by a restart; a summary sent just before one may
//! be sent again).

use crate::notify::Summary;
use chrono::{DateTime, TimeDelta, Utc};
use falconer_model::crd::{Consumer, parse_window};
use falconer_model::event::Event;
use falconer_model::group::{self, DEFAULT_GROUP_BY, GroupField};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Most groups with an open window; past it the window closing first is closed early (its
/// summary goes out at once), so the state stays bounded.
const MAX_OPEN: usize = 5_000;

/// What to do with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Send,
    Fold,
}

/// One group's window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Window {
    closes: DateTime<Utc>,
    /// The group's first event of the window, without its raw payload.
    sample: Event,
    /// Whether that first event was sent (not when the rate limit held it back).
    first_sent: bool,
    folded: u64,
    severity: falconer_model::event::Severity,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

/// The saved state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    clock: Option<DateTime<Utc>>,
    windows: BTreeMap<String, Window>,
    /// Times of the messages sent within the rate period, oldest first.
    sent: VecDeque<DateTime<Utc>>,
}

/// A consumer's noise control; `None` from [`Noise::new`] when it has none.
#[derive(Debug, Clone)]
pub struct Noise {
    window: Option<TimeDelta>,
    by: Vec<GroupField>,
    rate: Option<(usize, TimeDelta)>,
    state: State,
}

fn delta(text: &str) -> Option<TimeDelta> {
    parse_window(text).and_then(|d| TimeDelta::from_std(d).ok())
}

impl Noise {
    /// The consumer's noise control (config already validated when its sink was built).
    pub fn new(consumer: &Consumer) -> Option<Noise> {
        let window = consumer.aggregate.as_ref().and_then(|a| delta(&a.window));
        let rate = consumer
            .rate_limit
            .as_ref()
            .and_then(|r| Some((r.messages.max(1) as usize, delta(&r.per)?)));
        if window.is_none() && rate.is_none() {
            return None;
        }
        let by = match &consumer.aggregate {
            Some(a) if !a.by.is_empty() => a.by.clone(),
            _ => DEFAULT_GROUP_BY.to_vec(),
        };
        Some(Noise {
            window,
            by,
            rate,
            state: State::default(),
        })
    }

    /// Restores the state saved with the cursor; an unreadable one (a hub of another
    /// version) starts empty, with a warning.
    pub fn restore(&mut self, saved: Option<&str>, consumer: &str) {
        self.state = match saved.map(serde_json::from_str::<State>) {
            None => State::default(),
            Some(Ok(state)) => state,
            Some(Err(e)) => {
                tracing::warn!(consumer, error = %e, "Noise-control state unreadable; starting without open groups");
                State::default()
            }
        };
    }

    /// The state to save with the cursor.
    pub fn save(&self) -> String {
        // Plain structs of strings, numbers and times: serializing cannot fail.
        serde_json::to_string(&self.state).unwrap_or_default()
    }

    /// Events folded and not yet summarized.
    #[cfg(test)]
    fn pending(&self) -> u64 {
        self.state.windows.values().map(|w| w.folded).sum()
    }

    fn rate_allows(&mut self, at: DateTime<Utc>) -> bool {
        let Some((messages, per)) = self.rate else {
            return true;
        };
        while self.state.sent.front().is_some_and(|t| *t + per <= at) {
            self.state.sent.pop_front();
        }
        self.state.sent.len() < messages
    }

    fn record_sent(&mut self, at: DateTime<Utc>) {
        if self.rate.is_some() {
            self.state.sent.push_back(at);
        }
    }

    /// Sends or folds `event`, the next one in delivery order.
    pub fn admit(&mut self, event: &Event) -> Admit {
        let at = event.received_at;
        let clock = self.state.clock.map_or(at, |c| c.max(at));
        self.state.clock = Some(clock);
        let id = group::group_of(event, &self.by);
        if let Some(w) = self.state.windows.get_mut(&id)
            && w.closes > at
        {
            w.folded += 1;
            // Smaller is more severe.
            w.severity = w.severity.min(event.severity);
            w.last_seen = w.last_seen.max(at);
            return Admit::Fold;
        }
        let allowed = self.rate_allows(clock);
        if allowed {
            self.record_sent(clock);
        }
        // Past the rate limit without `aggregate`, the event is held in a window of the
        // rate's period.
        let length = match (self.window, self.rate) {
            (Some(window), _) => Some(window),
            (None, Some((_, per))) if !allowed => Some(per),
            _ => None,
        };
        if let Some(length) = length
            && !self.state.windows.contains_key(&id)
        {
            let mut sample = event.clone();
            sample.raw = None;
            self.state.windows.insert(
                id,
                Window {
                    closes: at + length,
                    sample,
                    first_sent: allowed,
                    folded: u64::from(!allowed),
                    severity: event.severity,
                    first_seen: at,
                    last_seen: at,
                },
            );
        }
        if allowed { Admit::Send } else { Admit::Fold }
    }

    /// The time the next window closes, if any.
    pub fn next_close(&self) -> Option<DateTime<Utc>> {
        self.state.windows.values().map(|w| w.closes).min()
    }

    /// Summaries of the windows closed by `now` (the wall clock; only moved on when the
    /// worker has caught up), and of the windows closed early to keep the state bounded.
    /// Windows without folded events close silently. Each summary taken is gone from the
    /// state: the worker saves the state once the summary was delivered.
    pub fn due(&mut self, now: Option<DateTime<Utc>>) -> Vec<(String, Summary)> {
        let clock = match (self.state.clock, now) {
            (Some(c), Some(n)) => c.max(n),
            (c, n) => c.or(n).unwrap_or_else(Utc::now),
        };
        self.state.clock = Some(clock);
        let mut closing: Vec<String> = self
            .state
            .windows
            .iter()
            .filter(|(_, w)| w.closes <= clock)
            .map(|(id, _)| id.clone())
            .collect();
        if self.state.windows.len() > MAX_OPEN {
            let mut open: Vec<(&String, DateTime<Utc>)> = self
                .state
                .windows
                .iter()
                .filter(|(_, w)| w.closes > clock)
                .map(|(id, w)| (id, w.closes))
                .collect();
            open.sort_by_key(|(_, closes)| *closes);
            let over = self.state.windows.len() - closing.len();
            closing.extend(
                open.into_iter()
                    .take(over.saturating_sub(MAX_OPEN))
                    .map(|(id, _)| id.clone()),
            );
        }
        let mut due = Vec::new();
        for id in closing {
            let Some(w) = self.state.windows.remove(&id) else {
                continue;
            };
            if w.folded == 0 {
                continue;
            }
            self.record_sent(clock);
            due.push((
                id.clone(),
                Summary {
                    group: id,
                    sample: w.sample,
                    folded: w.folded,
                    first_sent: w.first_sent,
                    severity: w.severity,
                    first_seen: w.first_seen,
                    last_seen: w.last_seen,
                },
            ));
        }
        due.sort_by_key(|(_, s)| s.first_seen);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;
    use falconer_model::crd::{Aggregate, RateLimit, SinkType};

    fn consumer(window: Option<&str>, rate: Option<(u32, &str)>) -> Consumer {
        let mut c = Consumer::new("chat", SinkType::Slack);
        c.aggregate = window.map(|w| Aggregate {
            window: w.into(),
            by: DEFAULT_GROUP_BY.to_vec(),
        });
        c.rate_limit = rate.map(|(messages, per)| RateLimit {
            messages,
            per: per.into(),
        });
        c
    }

    fn at(rule: &str, pod: &str, secs: i64) -> Event {
        let mut e = event(rule);
        e.pod = Some(pod.into());
        e.received_at =
            "2026-05-04T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(secs);
        e
    }

    #[test]
    fn a_consumer_without_aggregate_or_rate_limit_has_no_noise_control() {
        assert!(Noise::new(&consumer(None, None)).is_none());
    }

    #[test]
    fn a_burst_of_one_rule_on_one_pod_sends_the_first_and_summarizes_the_rest_when_the_window_closes()
     {
        let mut noise = Noise::new(&consumer(Some("60s"), None)).unwrap();
        let mut sent = 0;
        for i in 0..50 {
            if noise.admit(&at("Terminal shell", "web-1", i)) == Admit::Send {
                sent += 1;
            }
        }
        assert_eq!(noise.admit(&at("Other rule", "web-1", 50)), Admit::Send);
        assert_eq!(sent, 1);
        assert!(noise.due(None).is_empty(), "the window is still open");
        assert_eq!(noise.pending(), 49);
        // The next event after the window moves the clock past it.
        assert_eq!(noise.admit(&at("Third", "web-1", 61)), Admit::Send);
        let due = noise.due(None);
        assert_eq!(due.len(), 1, "the other rule folded nothing: no summary");
        let summary = &due[0].1;
        assert_eq!(summary.folded, 49);
        assert!(summary.first_sent);
        assert!(
            summary
                .line()
                .starts_with("49 more of Terminal shell on shop"),
            "{}",
            summary.line()
        );
        assert_eq!(noise.pending(), 0);
    }

    #[test]
    fn an_idle_consumer_closes_its_windows_on_the_wall_clock() {
        let mut noise = Noise::new(&consumer(Some("60s"), None)).unwrap();
        noise.admit(&at("r", "p", 0));
        noise.admit(&at("r", "p", 1));
        let later = at("r", "p", 120).received_at;
        assert_eq!(noise.due(Some(later)).len(), 1);
    }

    #[test]
    fn past_the_rate_limit_events_are_folded_and_named_in_the_next_summary() {
        let mut noise = Noise::new(&consumer(None, Some((3, "1m")))).unwrap();
        let decisions: Vec<Admit> = (0..10)
            .map(|i| noise.admit(&at(&format!("rule {}", i % 2), "p", i)))
            .collect();
        assert_eq!(decisions.iter().filter(|d| **d == Admit::Send).count(), 3);
        let due = noise.due(Some(at("x", "p", 200).received_at));
        let folded: u64 = due.iter().map(|(_, s)| s.folded).sum();
        assert_eq!(folded, 7);
        assert!(due.iter().all(|(_, s)| !s.first_sent));
        // A minute later the budget is back.
        assert_eq!(noise.admit(&at("rule 0", "p", 300)), Admit::Send);
    }

    #[test]
    fn the_state_saved_with_the_cursor_brings_back_every_folded_event_after_a_restart() {
        let mut noise = Noise::new(&consumer(Some("10m"), None)).unwrap();
        for i in 0..5 {
            noise.admit(&at("r", "p", i));
        }
        let saved = noise.save();
        let mut again = Noise::new(&consumer(Some("10m"), None)).unwrap();
        again.restore(Some(&saved), "chat");
        assert_eq!(again.pending(), 4);
        assert_eq!(again.admit(&at("r", "p", 6)), Admit::Fold);
        let due = again.due(Some(at("r", "p", 601).received_at));
        assert_eq!(due[0].1.folded, 5);
    }

    #[test]
    fn the_open_groups_stay_bounded() {
        let mut noise = Noise::new(&consumer(Some("24h"), None)).unwrap();
        for i in 0..(MAX_OPEN as i64 + 10) {
            let pod = format!("p{i}");
            let mut e = at("r", &pod, i);
            e.namespace = Some(pod);
            noise.admit(&e);
            noise.admit(&e);
        }
        let due = noise.due(None);
        assert_eq!(due.len(), 10);
        assert_eq!(noise.state.windows.len(), MAX_OPEN);
    }
}
