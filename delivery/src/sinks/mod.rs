//! One module per sink; the module name is the sink's `type` in a Setting and its metric
//! label.

pub mod alertmanager;
pub mod broker;
pub mod chat;
pub mod discord;
pub mod email;
pub mod falconer;
pub mod file;
pub mod format;
pub mod googlechat;
pub mod http;
pub mod loki;
pub mod mattermost;
pub mod mqtt;
pub mod nats;
pub mod opensearch;
pub mod opsgenie;
pub mod pagerduty;
pub mod phoenix;
pub mod policyreport;
pub mod rabbitmq;
pub mod redis;
pub mod rocketchat;
pub mod slack;
pub mod syslog;
pub mod teams;
pub mod webhook;

use falconer_store::Event;

/// The JSON of an event as sinks send it: the normalized fields, `fields` and the raw
/// payload, exactly as `GET /api/v1/events/{id}` shows it.
pub fn event_json(event: &Event) -> Vec<u8> {
    // Serializing a struct of strings, numbers and raw JSON cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

use crate::declared::{Desired, Secrets};
use crate::error::DeliveryError;
use crate::sink::{Outcome, Sink};
use falconer_model::crd::{Consumer, SinkType};

/// What a sink is built from: the declared consumer, its resolved secrets, and the hub's
/// Kubernetes client when it runs in a cluster.
pub struct Declared<'a> {
    pub name: &'a str,
    pub consumer: &'a Consumer,
    pub secrets: &'a Secrets,
    /// The cluster the hub runs in, when it does.
    pub home: Option<&'a crate::Home>,
    /// Where `file` consumers may write (`delivery.file_dir`; the application defaults it
    /// to the data directory).
    pub file_dir: Option<&'a std::path::Path>,
    /// The dashboard's base URL (`ui.external_url`), for links to an event.
    pub dashboard: Option<&'a str>,
}

impl<'a> Declared<'a> {
    /// The consumer's section for its type (e.g. `webhook:`), or an error naming it.
    pub fn section<T>(&self, section: Option<&'a T>, key: &str) -> Result<&'a T, DeliveryError> {
        section.ok_or_else(|| {
            self.config(format!(
                "type {} needs a `{key}` section",
                self.consumer.sink.as_str()
            ))
        })
    }

    /// A configuration error of this consumer.
    pub fn config(&self, message: String) -> DeliveryError {
        DeliveryError::Config {
            consumer: self.name.to_string(),
            message,
        }
    }
}

/// How the engine builds a sink of each type.
pub trait FromConsumer: Sized {
    /// The sink `declared` asks for, or why it cannot run.
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError>;
}

/// Registers every sink: `Variant(module::Sink) = SinkType`. The match on `SinkType` is
/// exhaustive, so a type without a sink does not compile.
macro_rules! sinks {
    ($($variant:ident($sink:ty) = $kind:ident),* $(,)?) => {
        /// Every sink this hub has, chosen by the consumer's `type`: a closed set while all
        /// sinks live in this repository.
        // One value per running consumer: the size of the largest sink costs nothing.
        #[allow(clippy::large_enum_variant)]
        pub enum AnySink {
            $($variant($sink)),*
        }

        impl AnySink {
            /// The sink a declared consumer asks for, or why it cannot run. `home` is the
            /// cluster the hub runs in, when it does (Phoenix acts on it).
            pub fn build(
                desired: &Desired,
                home: Option<&crate::Home>,
                config: &crate::config::DeliveryConfig,
            ) -> Result<AnySink, DeliveryError> {
                let declared = Declared {
                    name: &desired.consumer.name,
                    consumer: &desired.consumer,
                    secrets: &desired.secrets,
                    home,
                    file_dir: config.file_dir.as_deref(),
                    dashboard: config.dashboard_url.as_deref(),
                };
                let sink = match desired.consumer.sink {
                    $(SinkType::$kind => AnySink::$variant(
                        <$sink as FromConsumer>::from_consumer(&declared)?
                    ),)*
                };
                crate::notify::check(declared.consumer)
                    .map_err(|(field, why)| declared.config(format!("{field}: {why}")))?;
                Ok(sink)
            }
        }

        impl Sink for AnySink {
            fn batch_size(&self) -> usize {
                match self {
                    $(AnySink::$variant(s) => s.batch_size(),)*
                }
            }

            async fn send(&mut self, events: &[Event]) -> Outcome {
                match self {
                    $(AnySink::$variant(s) => s.send(events).await,)*
                }
            }

            fn retry_after(&mut self) -> Option<std::time::Duration> {
                match self {
                    $(AnySink::$variant(s) => s.retry_after(),)*
                }
            }

            fn preview(&self, event: &Event) -> serde_json::Value {
                match self {
                    $(AnySink::$variant(s) => s.preview(event),)*
                }
            }

            async fn send_summary(&mut self, summary: &crate::notify::Summary) -> Outcome {
                match self {
                    $(AnySink::$variant(s) => s.send_summary(summary).await,)*
                }
            }
        }
    };
}

sinks! {
    File(file::FileLines) = File,
    Stdout(file::Stdout) = Stdout,
    Webhook(webhook::Webhook) = Webhook,
    Falconer(falconer::Falconer) = Falconer,
    Phoenix(phoenix::PhoenixSink) = Phoenix,
    OpenSearch(opensearch::OpenSearchSink) = Opensearch,
    Slack(chat::Chat<slack::Slack>) = Slack,
    Discord(chat::Chat<discord::Discord>) = Discord,
    Teams(chat::Chat<teams::Teams>) = Teams,
    Alertmanager(alertmanager::Alertmanager) = Alertmanager,
    Email(email::Email) = Email,
    PagerDuty(chat::Chat<pagerduty::PagerDuty>) = Pagerduty,
    Opsgenie(chat::Chat<opsgenie::Opsgenie>) = Opsgenie,
    GoogleChat(chat::Chat<googlechat::GoogleChat>) = Googlechat,
    Mattermost(chat::Chat<mattermost::Mattermost>) = Mattermost,
    RocketChat(chat::Chat<rocketchat::RocketChat>) = Rocketchat,
    Nats(nats::NatsSink) = Nats,
    Rabbitmq(rabbitmq::RabbitmqSink) = Rabbitmq,
    Mqtt(mqtt::MqttSink) = Mqtt,
    Redis(redis::RedisSink) = Redis,
    Syslog(syslog::Syslog) = Syslog,
    Loki(loki::Loki) = Loki,
    PolicyReport(policyreport::PolicyReportSink) = Policyreport,
}
