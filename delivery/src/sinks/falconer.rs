//! `falconer`: forwards events to another hub's `/ingest` (many clusters, one central hub).
//! Events travel as NDJSON of the normalized event (`?source=falconer`), so the central hub
//! keeps their cluster, source, severity and raw payload, and recognises a re-sent event as
//! a duplicate.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::http::{self, Action, BatchPost, Posted, chain, require};
use crate::sinks::{Declared, FromConsumer, event_json};
use falconer_model::crd::FalconerConfig;
use falconer_store::Event;
use serde::Deserialize;

const BATCH: usize = 500;

pub struct Falconer {
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
    /// Events per request; halved after the other hub answers 413.
    batch: usize,
    /// What the other hub's last 429/503 asked for (`Retry-After`).
    asked: Option<std::time::Duration>,
}

/// The other hub's ingest reply (DESIGN.md §3).
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
struct Rejected {
    index: usize,
    error: String,
}

impl Falconer {
    /// A sink posting to `base` (the other hub's base URL; `/ingest` is appended).
    pub fn build(
        consumer: &str,
        base: &reqwest::Url,
        settings: &FalconerConfig,
        secrets: &Secrets,
    ) -> Result<Falconer, DeliveryError> {
        let mut url = base.clone();
        let path = format!("{}/ingest", base.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(Some("source=falconer"));
        Ok(Falconer {
            client: http::client(consumer, &settings.tls, secrets)?,
            url,
            token: require(consumer, secrets, "token", "the other hub's ingest token")?,
            batch: BATCH,
            asked: None,
        })
    }
}

impl FromConsumer for Falconer {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.falconer.as_ref(), "falconer")?;
        let base = http::endpoint(declared, "falconer.url", &settings.url)?;
        Falconer::build(declared.name, &base, settings, declared.secrets)
    }
}

impl Sink for Falconer {
    fn batch_size(&self) -> usize {
        self.batch
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        http::send_splitting(self, events).await
    }

    fn retry_after(&mut self) -> Option<std::time::Duration> {
        self.asked.take()
    }
}

impl BatchPost for Falconer {
    async fn post(&mut self, events: &[Event]) -> Posted {
        let mut body = Vec::with_capacity(events.len() * 2048);
        for event in events {
            body.extend_from_slice(&event_json(event));
            body.push(b'\n');
        }
        let bytes = body.len();
        let response = self
            .client
            .post(self.url.clone())
            .bearer_auth(&self.token)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return Posted::Done(Outcome::Retry(format!(
                    "POST {}: {}",
                    http::redact(&self.url),
                    chain(&e.without_url())
                )));
            }
        };
        let status = response.status();
        // The last answer decides: a later one without `Retry-After` clears an older wait.
        self.asked = http::retry_after(response.headers(), chrono::Utc::now());
        let text = response.text().await.unwrap_or_default();
        let why = format!(
            "POST {}: HTTP {status}: {}",
            http::redact(&self.url),
            http::snippet(&text)
        );
        let action = http::action(status.as_u16());
        // 202 and 400 carry the other hub's verdict per event (DESIGN.md §3).
        if matches!(status.as_u16(), 202 | 400) {
            if let Ok(reply) = serde_json::from_str::<Reply>(&text)
                && (status.as_u16() == 202 || !reply.rejected.is_empty())
            {
                // Only events the other hub names as rejected failed; it stored the rest.
                let mut results = vec![ItemResult::Delivered; events.len()];
                for r in reply.rejected {
                    if let Some(slot) = results.get_mut(r.index) {
                        *slot =
                            ItemResult::Refused(format!("the other hub refused it: {}", r.error));
                    }
                }
                return Posted::Done(Outcome::Each(results));
            }
            return Posted::Done(http::refuse_all(events.len(), &why));
        }
        Posted::Done(match action {
            // Another 2xx says nothing per event: the other hub is not answering as a hub.
            Action::Deliver | Action::Retry => Outcome::Retry(why),
            Action::Split => return Posted::TooLarge { bytes, why },
            Action::Refuse => http::refuse_all(events.len(), &why),
        })
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn lower_batch(&mut self, size: usize) {
        self.batch = size.max(1);
    }
}
