//! `falconer`: forwards events to another hub's `/ingest` (many clusters, one central hub).
//! Events travel as NDJSON of the normalized event (`?source=falconer`), so the central hub
//! keeps their cluster, source, severity and raw payload, and recognises a re-sent event as
//! a duplicate.

use crate::consumers::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::event_json;
use crate::sinks::webhook::{chain, http_client, require};
use falconer_model::crd::FalconerSink;
use falconer_store::Event;
use serde::Deserialize;

const BATCH: usize = 500;

pub struct Falconer {
    client: reqwest::Client,
    url: reqwest::Url,
    token: String,
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
    pub fn build(
        consumer: &str,
        settings: &FalconerSink,
        secrets: &Secrets,
    ) -> Result<Falconer, DeliveryError> {
        let config = |message: String| DeliveryError::Config {
            consumer: consumer.to_string(),
            message,
        };
        let base = settings.url.trim_end_matches('/');
        let mut url = reqwest::Url::parse(&format!("{base}/ingest"))
            .map_err(|e| config(format!("falconer.url `{}`: {e}", settings.url)))?;
        url.set_query(Some("source=falconer"));
        Ok(Falconer {
            client: http_client(consumer, &settings.tls, secrets)?,
            url,
            token: require(consumer, secrets, "token", "the other hub's ingest token")?,
        })
    }
}

impl Sink for Falconer {
    fn batch_size(&self) -> usize {
        BATCH
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let mut body = Vec::with_capacity(events.len() * 2048);
        for event in events {
            body.extend_from_slice(&event_json(event));
            body.push(b'\n');
        }
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
            Err(e) => return Outcome::Retry(format!("POST {}: {}", self.url, chain(&e))),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status.as_u16() {
            202 | 400 => match serde_json::from_str::<Reply>(&text) {
                // Only events the other hub names as rejected failed; it stored the rest.
                Ok(reply) if status.as_u16() == 202 || !reply.rejected.is_empty() => {
                    let mut results = vec![ItemResult::Delivered; events.len()];
                    for r in reply.rejected {
                        if let Some(slot) = results.get_mut(r.index) {
                            *slot = ItemResult::Refused(format!(
                                "the other hub refused it: {}",
                                r.error
                            ));
                        }
                    }
                    Outcome::Each(results)
                }
                _ => {
                    let why = format!("POST {}: HTTP {status}: {}", self.url, snippet(&text));
                    Outcome::Each(
                        events
                            .iter()
                            .map(|_| ItemResult::Refused(why.clone()))
                            .collect(),
                    )
                }
            },
            _ => Outcome::Retry(format!(
                "POST {}: HTTP {status}: {}",
                self.url,
                snippet(&text)
            )),
        }
    }
}

fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}
