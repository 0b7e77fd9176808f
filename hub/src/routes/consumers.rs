//! The consumers API: delivery state, dead letters and their replay, and a test send.

use crate::error::HubError;
use crate::routes::params::Params;
use crate::routes::triage::optional_json;
use crate::state::AppState;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use falconer_delivery::error::DeliveryError;
use falconer_delivery::{ItemResult, Outcome};
use serde_json::json;

const MAX_DEAD_LETTERS: u32 = 1000;

impl From<DeliveryError> for HubError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::UnknownConsumer(name) => {
                HubError::NotFound(format!("no consumer named {name}"))
            }
            DeliveryError::Store(e) => e.into(),
            other => HubError::Conflict(other.to_string()),
        }
    }
}

/// `GET /api/v1/consumers`
pub async fn list(request: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let consumers = state.delivery.consumers().await?;
    Ok(HttpResponse::Ok().json(json!({ "consumers": consumers })))
}

/// `GET /api/v1/consumers/{name}/dead-letters?after=&limit=`
pub async fn dead_letters(
    request: HttpRequest,
    name: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), &["after", "limit"])?;
    known(&state, &name)?;
    let after = params.parsed::<i64>("after")?.unwrap_or(0);
    let limit = match params.text("limit")? {
        None => 100,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=MAX_DEAD_LETTERS).contains(n))
            .ok_or_else(|| {
                HubError::bad(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_DEAD_LETTERS}"),
                )
            })?,
    };
    let letters = state.store.dead_letters(&name, after, limit).await?;
    let next = (letters.len() == limit as usize)
        .then(|| letters.last().map(|d| d.id))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "dead_letters": letters, "next_after": next })))
}

/// `POST /api/v1/consumers/{name}/dead-letters/replay`, body `{}` (all) or `{"ids": [..]}`.
pub async fn replay(
    request: HttpRequest,
    name: Path<String>,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let caller = crate::auth::caller(&request)?;
    let ids = match optional_json(&body)? {
        None => None,
        Some(value) => match value.get("ids") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(items)) => Some(
                items
                    .iter()
                    .map(serde_json::Value::as_i64)
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| HubError::bad("ids", "must be an array of dead-letter ids"))?,
            ),
            Some(_) => return Err(HubError::bad("ids", "must be an array of dead-letter ids")),
        },
    };
    let requested = state.delivery.replay(&name, ids).await?;
    tracing::info!(token = %caller.name, consumer = %name, requested, "Operate: replaying dead letters");
    Ok(HttpResponse::Accepted().json(json!({ "requested": requested })))
}

/// `POST /api/v1/consumers/{name}/test`: one synthetic event through the consumer's sink.
pub async fn test(
    request: HttpRequest,
    name: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let caller = crate::auth::caller(&request)?;
    tracing::info!(token = %caller.name, consumer = %name, "Operate: sending a test event");
    let (delivered, detail) = match state.delivery.test(&name).await? {
        Outcome::Delivered => (true, "delivered".to_string()),
        Outcome::Retry(why) => (false, why),
        Outcome::Each(results) => match results.into_iter().next() {
            Some(ItemResult::Delivered) => (true, "delivered".to_string()),
            Some(ItemResult::Skipped(why)) => (false, format!("skipped: {why}")),
            Some(ItemResult::Retry(why)) | Some(ItemResult::Refused(why)) => (false, why),
            None => (false, "the sink gave no answer".to_string()),
        },
    };
    let status = if delivered { 200 } else { 502 };
    Ok(
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
            .json(json!({ "delivered": delivered, "detail": detail })),
    )
}

/// `POST /api/v1/consumers/{name}/preview`: what the consumer's sink would send, with its
/// template, for a stored event (`{"event_id": …}`), a posted one (`{"event": …}`, the shape
/// `GET /api/v1/events/{id}` answers) or the test event (empty body); nothing is sent.
pub async fn preview(
    request: HttpRequest,
    name: Path<String>,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    known(&state, &name)?;
    let event = if let Some(value) = optional_json(&body)? {
        let object = value
            .as_object()
            .ok_or_else(|| HubError::bad("body", "must be an object with `event_id` or `event`"))?;
        if let Some(key) = object.keys().find(|k| *k != "event_id" && *k != "event") {
            return Err(HubError::bad(
                key.as_str(),
                "unknown field; use `event_id` or `event`",
            ));
        }
        match (object.get("event_id"), object.get("event")) {
            (Some(_), Some(_)) => {
                return Err(HubError::bad(
                    "event",
                    "give `event_id` or `event`, not both",
                ));
            }
            (Some(id), None) => {
                let id = id
                    .as_str()
                    .and_then(|t| t.parse::<uuid::Uuid>().ok())
                    .ok_or_else(|| HubError::bad("event_id", "must be an event id (a UUID)"))?;
                let event = state.store.event(id).await?;
                Some(event.ok_or_else(|| HubError::NotFound(format!("no event with id {id}")))?)
            }
            (None, Some(event)) => Some(
                serde_json::from_str::<falconer_store::Event>(&event.to_string())
                    .map_err(|e| HubError::bad("event", format!("is not an event: {e}")))?,
            ),
            (None, None) => {
                return Err(HubError::bad("body", "must have `event_id` or `event`"));
            }
        }
    } else {
        None
    };
    let (kind, body) = state.delivery.preview(&name, event.as_ref())?;
    Ok(HttpResponse::Ok().json(json!({ "consumer": name.as_str(), "type": kind, "body": body })))
}

fn known(state: &AppState, name: &str) -> Result<(), HubError> {
    if state.delivery.is_declared(name) {
        Ok(())
    } else {
        Err(HubError::NotFound(format!("no consumer named {name}")))
    }
}
