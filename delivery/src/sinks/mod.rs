//! One module per sink; the module name is the sink's `type` in a Setting and its metric
//! label.

pub mod file;
pub mod webhook;

use falconer_store::Event;

/// The JSON of an event as sinks send it: the normalized fields, `fields` and the raw
/// payload, exactly as `GET /api/v1/events/{id}` shows it.
pub fn event_json(event: &Event) -> Vec<u8> {
    // Serializing a struct of strings, numbers and raw JSON cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}
