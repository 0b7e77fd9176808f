//! One module per sink; the module name is the sink's `type` in a Setting and its metric
//! label.

pub mod falconer;
pub mod file;
pub mod http;
pub mod opensearch;
pub mod phoenix;
pub mod webhook;

use falconer_store::Event;

/// The JSON of an event as sinks send it: the normalized fields, `fields` and the raw
/// payload, exactly as `GET /api/v1/events/{id}` shows it.
pub fn event_json(event: &Event) -> Vec<u8> {
    // Serializing a struct of strings, numbers and raw JSON cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

use crate::consumers::Desired;
use crate::error::DeliveryError;
use crate::sink::{Outcome, Sink};
use falconer_model::crd::SinkType;

/// Every sink this hub has, chosen by the consumer's `type`: a closed set while all sinks
/// live in this repository.
pub enum AnySink {
    File(file::FileLines),
    Stdout(file::Stdout),
    Webhook(webhook::Webhook),
    Falconer(falconer::Falconer),
    Phoenix(phoenix::PhoenixSink),
    OpenSearch(opensearch::OpenSearchSink),
}

impl AnySink {
    /// The sink a declared consumer asks for, or why it cannot run.
    /// `kube` is the hub's Kubernetes client, when it runs in a cluster (Phoenix needs it).
    pub fn build(desired: &Desired, kube: Option<&kube::Client>) -> Result<AnySink, DeliveryError> {
        let c = &desired.consumer;
        let name = c.name.as_str();
        let missing = |section: &str| DeliveryError::Config {
            consumer: name.to_string(),
            message: format!("type {} needs a `{section}` section", c.sink.as_str()),
        };
        Ok(match c.sink {
            SinkType::File => AnySink::File(file::FileLines::build(
                name,
                c.file.as_ref().ok_or_else(|| missing("file"))?,
            )?),
            SinkType::Stdout => AnySink::Stdout(file::Stdout),
            SinkType::Webhook => AnySink::Webhook(webhook::Webhook::build(
                name,
                c.webhook.as_ref().ok_or_else(|| missing("webhook"))?,
                &desired.secrets,
            )?),
            SinkType::Falconer => AnySink::Falconer(falconer::Falconer::build(
                name,
                c.falconer.as_ref().ok_or_else(|| missing("falconer"))?,
                &desired.secrets,
            )?),
            SinkType::Opensearch => AnySink::OpenSearch(opensearch::OpenSearchSink::build(
                name,
                c.opensearch.as_ref().ok_or_else(|| missing("opensearch"))?,
                &desired.secrets,
            )?),
            SinkType::Phoenix => {
                let client = kube.ok_or_else(|| DeliveryError::Config {
                    consumer: name.to_string(),
                    message: "type phoenix creates SecurityEvents in the hub's own cluster; this \
                              hub does not run in one"
                        .into(),
                })?;
                let settings = c.phoenix.clone().unwrap_or_default();
                AnySink::Phoenix(
                    phoenix::PhoenixSink::build(name, &settings, client.clone()).map_err(|e| {
                        DeliveryError::Config {
                            consumer: name.to_string(),
                            message: e.to_string(),
                        }
                    })?,
                )
            }
        })
    }
}

impl Sink for AnySink {
    fn batch_size(&self) -> usize {
        match self {
            AnySink::File(s) => s.batch_size(),
            AnySink::Stdout(s) => s.batch_size(),
            AnySink::Webhook(s) => s.batch_size(),
            AnySink::Falconer(s) => s.batch_size(),
            AnySink::Phoenix(s) => s.batch_size(),
            AnySink::OpenSearch(s) => s.batch_size(),
        }
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        match self {
            AnySink::File(s) => s.send(events).await,
            AnySink::Stdout(s) => s.send(events).await,
            AnySink::Webhook(s) => s.send(events).await,
            AnySink::Falconer(s) => s.send(events).await,
            AnySink::Phoenix(s) => s.send(events).await,
            AnySink::OpenSearch(s) => s.send(events).await,
        }
    }
}
