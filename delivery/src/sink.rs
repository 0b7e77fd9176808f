//! The one interface every sink implements. A sink only maps events to its target and says
//! what happened to each; batching, retries, backoff, dead letters, the cursor and metrics
//! are the worker's (`worker.rs`), shared by all sinks.

use crate::notify::Summary;
use falconer_store::Event;
use std::future::Future;

/// What a sink reports about one `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every event was accepted by the target.
    Delivered,
    /// Nothing can be said per event and the failure may pass (connection refused, timeout,
    /// 429, 5xx): the worker retries the whole batch, in order, with backoff.
    Retry(String),
    /// One result per event, in the order sent (e.g. an OpenSearch `_bulk` reply).
    Each(Vec<ItemResult>),
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    Delivered,
    /// Not for this sink (e.g. a Phoenix event without a pod): counted, not retried.
    Skipped(&'static str),
    /// May pass: retried with backoff before the cursor moves on.
    Retry(String),
    /// Refused for good (e.g. a mapping error): goes to the dead-letter table with the
    /// reason, and delivery goes on.
    Refused(String),
}

/// A destination for events. Implementations keep their client and settings; `send` must
/// not retry by itself and must never panic.
pub trait Sink: Send + 'static {
    /// Most events the worker hands to one `send`.
    fn batch_size(&self) -> usize;

    /// Delivers `events` (never empty) in order.
    fn send(&mut self, events: &[Event]) -> impl Future<Output = Outcome> + Send;

    /// How long the target asked to be left alone in its last answer (`Retry-After` of a
    /// 429 or 503), taken once: the worker waits at least this before retrying.
    fn retry_after(&mut self) -> Option<std::time::Duration> {
        None
    }

    /// What the sink would send for `event` alone, without sending it (`POST
    /// /api/v1/consumers/{name}/preview`): by default the event's JSON.
    fn preview(&self, event: &Event) -> serde_json::Value {
        serde_json::from_slice(&crate::sinks::event_json(event)).unwrap_or_default()
    }

    /// Sends one summary of folded events; answers like `send` for one item. Only called
    /// for notification sinks (`SinkType::is_notification`), which must implement it.
    fn send_summary(&mut self, summary: &Summary) -> impl Future<Output = Outcome> + Send {
        let why = format!(
            "this sink does not send summaries (group {})",
            summary.group
        );
        async move { Outcome::Each(vec![ItemResult::Refused(why)]) }
    }
}
