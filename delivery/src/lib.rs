//! Delivery of stored events to consumers (DESIGN.md §5–§6): each consumer has a durable
//! cursor over the events table and a worker that reads forward, filters, sends batches to its
//! sink, retries what may pass, dead-letters what never will, and moves the cursor only after
//! the sink confirmed.

pub mod backoff;
pub mod config;
pub mod declared;
pub mod engine;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod noise;
pub mod notify;
pub mod sink;
pub mod sinks;
pub mod template;
pub mod worker;

pub use engine::{ConsumerView, Delivery, Home};
pub use sink::{ItemResult, Outcome, Sink};
