//! `POST /ingest` and `POST /`: events in, committed, then acknowledged (DESIGN.md §3).

use crate::auth::Scope;
use crate::body;
use crate::error::HubError;
use crate::falco;
use crate::metrics::SourceLabel;
use crate::params::Params;
use crate::startup::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use chrono::{SubsecRound, Utc};
use falconer_store::StoreError;
use serde::Serialize;
use std::time::Instant;
use uuid::Uuid;

/// Sources the hub can parse; `?source=` and `X-Falconer-Source` must name one.
pub const SOURCES: &[&str] = &["falco"];

#[derive(Debug, Serialize)]
pub struct Reply {
    pub accepted: usize,
    pub ids: Vec<Uuid>,
    pub rejected: Vec<Rejection>,
    /// Why the whole request was refused (400 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// `POST /ingest`: any supported source, chosen by `?source=` / `X-Falconer-Source`.
pub async fn ingest(request: HttpRequest, payload: Payload, state: Data<AppState>) -> HttpResponse {
    handle(request, payload, state, None).await
}

/// `POST /`: Falco JSON exactly as Falco's `http_output` and falcosidekick's webhook send it.
pub async fn falco_root(
    request: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> HttpResponse {
    handle(request, payload, state, Some("falco")).await
}

async fn handle(
    request: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
    source: Option<&'static str>,
) -> HttpResponse {
    let started = Instant::now();
    let response = match accept(&request, payload, &state, source).await {
        Ok(response) => response,
        // A refused request keeps the reply shape of the ingest API.
        Err(HubError::BadRequest { field, reason }) => HttpResponse::BadRequest().json(Reply {
            accepted: 0,
            ids: Vec::new(),
            rejected: Vec::new(),
            error: Some(format!("{field}: {reason}")),
            field: Some(field),
        }),
        Err(error) => error.error_response(),
    };
    state
        .metrics
        .requests
        .get_or_create(&crate::metrics::StatusLabel {
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn accept(
    request: &HttpRequest,
    payload: Payload,
    state: &AppState,
    forced_source: Option<&'static str>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), &["source", "cluster", "token"])?;
    state
        .auth
        .check(request, params.text("token")?, Scope::Ingest)?;
    let source = match forced_source {
        Some(source) => source,
        None => source_of(request, &params)?,
    };
    let cluster = match header(request, "x-falconer-cluster")? {
        Some(cluster) => Some(cluster),
        None => params.text("cluster")?,
    };
    if let Some(cluster) = cluster {
        check_cluster_name(cluster).map_err(|reason| HubError::bad("cluster", reason))?;
    }
    let format = body::format_of(request)?;
    let limits = &state.config.ingest;
    let bytes = body::read(request, payload, limits.max_body_bytes).await?;
    let items = body::split(&bytes, format, limits.max_events_per_request)?;

    let metrics = &state.metrics;
    metrics
        .received
        .get_or_create(&SourceLabel { source })
        .inc_by(items.len() as u64);
    let context = falco::Context {
        cluster,
        default_cluster: &state.config.cluster,
        received_at: Utc::now().trunc_subsecs(6),
    };
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    let mut too_large = 0;
    for (index, item) in items.into_iter().enumerate() {
        let parsed = item.and_then(|raw| {
            if raw.get().len() > limits.max_event_bytes {
                too_large += 1;
                return Err(format!(
                    "event is {} bytes; the limit is {} (ingest.max_event_bytes)",
                    raw.get().len(),
                    limits.max_event_bytes
                ));
            }
            falco::parse(raw, &context)
        });
        match parsed {
            Ok(event) => events.push(event),
            Err(error) => rejected.push(Rejection { index, error }),
        }
    }
    metrics.reject(source, "too_large", too_large);
    metrics.reject(source, "invalid", rejected.len() - too_large);

    if events.is_empty() {
        return Ok(HttpResponse::BadRequest().json(Reply {
            accepted: 0,
            ids: Vec::new(),
            error: Some("no valid event in the request".into()),
            field: None,
            rejected,
        }));
    }
    let count = events.len();
    let stored = match state.store.insert(events).await {
        Ok(stored) => stored,
        Err(error) => {
            let reason = match &error {
                StoreError::Overloaded => "overloaded",
                StoreError::Unavailable(_) => "unavailable",
                _ => "error",
            };
            metrics.reject(source, reason, count);
            return Err(error.into());
        }
    };
    let label = SourceLabel { source };
    metrics.accepted.get_or_create(&label).inc_by(count as u64);
    let duplicates = stored.iter().filter(|s| s.duplicate).count();
    metrics
        .duplicates
        .get_or_create(&label)
        .inc_by(duplicates as u64);
    Ok(HttpResponse::build(StatusCode::ACCEPTED).json(Reply {
        accepted: count,
        ids: stored.iter().map(|s| s.id).collect(),
        rejected,
        error: None,
        field: None,
    }))
}

fn source_of(request: &HttpRequest, params: &Params) -> Result<&'static str, HubError> {
    let (field, named) = match header(request, "x-falconer-source")? {
        Some(source) => ("X-Falconer-Source", Some(source)),
        None => ("source", params.text("source")?),
    };
    match named {
        // Only Falco is parsed so far, so there is nothing to detect between.
        None => Ok("falco"),
        Some(name) => SOURCES.iter().copied().find(|s| *s == name).ok_or_else(|| {
            HubError::bad(
                field,
                format!("unknown source `{name}`; supported: {}", SOURCES.join(", ")),
            )
        }),
    }
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, HubError> {
    request
        .headers()
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| HubError::bad(name, "is not visible ASCII"))
                .map(str::trim)
        })
        .transpose()
}

/// Cluster names: 1–253 bytes of printable text.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "is {} bytes long; at most 253 are allowed",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}
