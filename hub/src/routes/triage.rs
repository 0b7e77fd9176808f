//! Triage: alert groups (listing, detail, acknowledge/resolve/reopen) and suppressions.

use crate::error::HubError;
use crate::routes::params::Params;
use crate::routes::query::limit;
use crate::state::AppState;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use falconer_model::group::is_group_id;
use falconer_store::triage::MAX_ACTIVE_SUPPRESSIONS;
use falconer_store::{
    Changed, GroupCursor, GroupQuery, GroupState, Severity, Suppression, SuppressionSpec,
    Transition,
};
use serde_json::json;
use uuid::Uuid;

/// Characters of a state change's comment at most.
pub const MAX_COMMENT: usize = 1000;
/// Where suppressions made through the API come from (`Setting` ones name their Setting).
pub const API_ORIGIN: &str = "api";

pub(crate) const GROUP_PARAMS: &[&str] = &[
    "state",
    "source",
    "cluster",
    "namespace",
    "rule",
    "min_severity",
    "since",
    "until",
    "limit",
    "cursor",
];

/// `GET /api/v1/groups`: most recently seen first.
pub async fn groups(request: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), GROUP_PARAMS)?;
    let owned = |key| Ok::<_, HubError>(params.text(key)?.map(str::to_owned));
    let query = GroupQuery {
        state: params.parsed::<GroupState>("state")?,
        source: owned("source")?,
        cluster: owned("cluster")?,
        namespace: owned("namespace")?,
        rule: owned("rule")?,
        min_severity: params.parsed::<Severity>("min_severity")?,
        since: params.time("since")?,
        until: params.time("until")?,
        after: params
            .text("cursor")?
            .map(|c| {
                GroupCursor::decode(c)
                    .ok_or_else(|| HubError::bad("cursor", "is not a cursor returned by this API"))
            })
            .transpose()?,
        limit: limit(&params)?,
    };
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since >= until
    {
        return Err(HubError::bad("until", "must be later than `since`"));
    }
    let page = state.store.groups(query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "groups": page.groups,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

fn group_id(id: &str) -> Result<String, HubError> {
    if is_group_id(id) {
        Ok(id.to_string())
    } else {
        Err(HubError::bad("id", "is not a group id (32 hex digits)"))
    }
}

/// `GET /api/v1/groups/{id}`: the group, its history of state changes and its recent events.
pub async fn group(
    request: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let id = group_id(&id)?;
    let Some(detail) = state.store.group(id.clone()).await? else {
        return Err(HubError::NotFound(format!("no alert group with id {id}")));
    };
    let mut body = serde_json::to_value(&detail.group)
        .map_err(|e| HubError::Internal(format!("group as JSON: {e}")))?;
    body["history"] = json!(detail.changes);
    body["events"] = json!(detail.events);
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /api/v1/groups/{id}/acknowledge`
pub async fn acknowledge(
    request: HttpRequest,
    id: Path<String>,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    change(request, &id, &body, &state, Transition::Acknowledge).await
}

/// `POST /api/v1/groups/{id}/resolve`
pub async fn resolve(
    request: HttpRequest,
    id: Path<String>,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    change(request, &id, &body, &state, Transition::Resolve).await
}

/// `POST /api/v1/groups/{id}/reopen`
pub async fn reopen(
    request: HttpRequest,
    id: Path<String>,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    change(request, &id, &body, &state, Transition::Reopen).await
}

async fn change(
    request: HttpRequest,
    id: &str,
    body: &Bytes,
    state: &AppState,
    transition: Transition,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let caller = crate::auth::caller(&request)?;
    let id = group_id(id)?;
    let comment = comment(body)?;
    let outcome = state
        .store
        .change_group(id.clone(), transition, caller.name.clone(), comment.clone())
        .await?;
    match outcome {
        Changed::Done(group) => {
            tracing::info!(token = %caller.name, group = %id, action = transition.as_str(),
                comment = comment.as_deref().unwrap_or(""), "Operate: alert group changed");
            Ok(HttpResponse::Ok().json(group))
        }
        Changed::Missing => Err(HubError::NotFound(format!("no alert group with id {id}"))),
        Changed::NotAllowed(current) => Err(HubError::Conflict(format!(
            "the group is {}; {} applies to {}",
            current.as_str(),
            transition.as_str(),
            starts_from(transition)
        ))),
    }
}

fn starts_from(transition: Transition) -> String {
    GroupState::ALL
        .into_iter()
        .filter(|s| transition.allowed_from(*s))
        .map(|s| format!("{} groups", s.as_str()))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The optional `{"comment": …}` body of a state change.
fn comment(body: &Bytes) -> Result<Option<String>, HubError> {
    let value = match optional_json(body)? {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let object = value
        .as_object()
        .ok_or_else(|| HubError::bad("body", "must be an object such as {\"comment\": \"…\"}"))?;
    if let Some(key) = object.keys().find(|k| *k != "comment") {
        return Err(HubError::bad(key.as_str(), "unknown field; use `comment`"));
    }
    match object.get("comment") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) if text.chars().count() > MAX_COMMENT => {
            Err(HubError::bad(
                "comment",
                format!("is longer than {MAX_COMMENT} characters"),
            ))
        }
        Some(serde_json::Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(HubError::bad("comment", "must be a string")),
    }
}

/// An optional JSON body: `None` when empty.
pub(crate) fn optional_json(body: &Bytes) -> Result<Option<serde_json::Value>, HubError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| HubError::bad("body", format!("is not valid JSON: {e}")))
}

/// `GET /api/v1/suppressions`: the active ones (`expired=true` adds the expired ones).
pub async fn suppressions(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), &["expired"])?;
    let with_expired = params.flag("expired")?.unwrap_or(false);
    let suppressions = state.store.suppressions(with_expired).await?;
    Ok(HttpResponse::Ok().json(json!({ "suppressions": suppressions })))
}

/// `POST /api/v1/suppressions`: `{match, reason, expires}`.
pub async fn create_suppression(
    request: HttpRequest,
    body: Bytes,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let caller = crate::auth::caller(&request)?;
    let value = optional_json(&body)?.ok_or_else(|| {
        HubError::bad(
            "body",
            "must be {\"match\": …, \"reason\": …, \"expires\": …}",
        )
    })?;
    let spec = spec_of(value)?;
    let now = chrono::Utc::now();
    spec.validate("", now, state.store.max_suppression_days())
        .map_err(|message| match message.split_once(": ") {
            Some((field, reason)) => HubError::bad(field, reason),
            None => HubError::bad("body", message),
        })?;
    let active = state.store.suppressions(false).await?.len();
    if active >= MAX_ACTIVE_SUPPRESSIONS {
        return Err(HubError::Conflict(format!(
            "{active} suppressions are active, the most the hub keeps \
             ({MAX_ACTIVE_SUPPRESSIONS}); delete one or let one expire first"
        )));
    }
    let suppression = Suppression {
        id: Uuid::now_v7(),
        filter: spec.filter,
        reason: spec.reason.trim().to_string(),
        expires: spec.expires,
        created_at: now,
        created_by: caller.name.clone(),
        origin: API_ORIGIN.to_string(),
    };
    state.store.create_suppression(suppression.clone()).await?;
    tracing::info!(token = %caller.name, suppression = %suppression.id,
        expires = %suppression.expires, reason = %suppression.reason, "Operate: suppression created");
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/api/v1/suppressions/{}", suppression.id),
        ))
        .json(suppression))
}

/// A suppression body, each part parsed on its own so an error names the part.
fn spec_of(value: serde_json::Value) -> Result<SuppressionSpec, HubError> {
    let serde_json::Value::Object(mut object) = value else {
        return Err(HubError::bad(
            "body",
            "must be an object with `match`, `reason` and `expires`",
        ));
    };
    if let Some(key) = object
        .keys()
        .find(|k| !["match", "reason", "expires"].contains(&k.as_str()))
    {
        return Err(HubError::bad(
            key.as_str(),
            "unknown field; use `match`, `reason` and `expires`",
        ));
    }
    let mut take = |field: &'static str| {
        object
            .remove(field)
            .ok_or_else(|| HubError::bad(field, "is required"))
    };
    let filter = serde_json::from_value(take("match")?)
        .map_err(|e| HubError::bad("match", e.to_string()))?;
    let reason = match take("reason")? {
        serde_json::Value::String(text) => text,
        _ => return Err(HubError::bad("reason", "must be a string")),
    };
    let expires = take("expires")?
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| {
            HubError::bad(
                "expires",
                "must be an RFC 3339 timestamp such as 2026-05-04T10:11:12Z",
            )
        })?;
    Ok(SuppressionSpec {
        filter,
        reason,
        expires,
    })
}

/// `DELETE /api/v1/suppressions/{id}`: ends a suppression made through the API.
pub async fn delete_suppression(
    request: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let caller = crate::auth::caller(&request)?;
    let id = Uuid::try_parse(&id).map_err(|_| HubError::bad("id", "is not a UUID"))?;
    let all = state.store.suppressions(true).await?;
    let Some(found) = all.iter().find(|s| s.id == id) else {
        return Err(HubError::NotFound(format!("no suppression with id {id}")));
    };
    if found.origin != API_ORIGIN {
        return Err(HubError::Conflict(format!(
            "suppression {id} is declared by {}; remove it there",
            found.origin
        )));
    }
    if !state.store.delete_suppression(id).await? {
        return Err(HubError::NotFound(format!("no suppression with id {id}")));
    }
    tracing::info!(token = %caller.name, suppression = %id, "Operate: suppression deleted");
    Ok(HttpResponse::NoContent().finish())
}
