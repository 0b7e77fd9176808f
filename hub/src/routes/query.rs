//! The query API: events (filtered, keyset-paginated) and clusters.

use crate::error::HubError;
use crate::routes::params::Params;
use crate::state::AppState;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use falconer_store::{
    Cursor, EventQuery, FindingCursor, FindingQuery, FindingState, Kind, Severity,
};
use serde_json::json;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
const MAX_TEXT: usize = 256;

pub(crate) const EVENT_PARAMS: &[&str] = &[
    "since",
    "until",
    "source",
    "kind",
    "min_severity",
    "cluster",
    "namespace",
    "pod",
    "rule",
    "text",
    "group",
    "suppressed",
    "limit",
    "cursor",
];

/// `GET /api/v1/events`
pub async fn events(request: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), EVENT_PARAMS)?;
    let query = event_query(&params)?;
    let page = state.store.events(query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "events": page.events,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}

fn event_query(params: &Params) -> Result<EventQuery, HubError> {
    let owned = |key| Ok::<_, HubError>(params.text(key)?.map(str::to_owned));
    let query = EventQuery {
        since: params.time("since")?,
        until: params.time("until")?,
        source: owned("source")?,
        kind: params.parsed::<Kind>("kind")?,
        min_severity: params.parsed::<Severity>("min_severity")?,
        cluster: owned("cluster")?,
        namespace: owned("namespace")?,
        pod: owned("pod")?,
        rule: owned("rule")?,
        text: owned("text")?,
        group: params
            .text("group")?
            .map(|g| {
                falconer_model::group::is_group_id(g)
                    .then(|| g.to_string())
                    .ok_or_else(|| HubError::bad("group", "is not a group id (32 hex digits)"))
            })
            .transpose()?,
        suppressed: params.flag("suppressed")?,
        after: params
            .text("cursor")?
            .map(|c| {
                Cursor::decode(c)
                    .ok_or_else(|| HubError::bad("cursor", "is not a cursor returned by this API"))
            })
            .transpose()?,
        limit: limit(params)?,
    };
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since >= until
    {
        return Err(HubError::bad("until", "must be later than `since`"));
    }
    if query.text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
        return Err(HubError::bad(
            "text",
            format!("is longer than {MAX_TEXT} bytes"),
        ));
    }
    Ok(query)
}

/// `GET /api/v1/events/{id}`: one event, with its raw payload.
pub async fn event(
    request: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let id = Uuid::try_parse(&id).map_err(|_| HubError::bad("id", "is not a UUID"))?;
    match state.store.event(id).await? {
        Some(event) => Ok(HttpResponse::Ok().json(event)),
        None => Err(HubError::NotFound(format!("no event with id {id}"))),
    }
}

/// `GET /api/v1/clusters`
pub async fn clusters(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let clusters = state.store.clusters().await?;
    Ok(HttpResponse::Ok().json(json!({ "clusters": clusters })))
}

pub(crate) fn limit(params: &Params) -> Result<u32, HubError> {
    match params.text("limit")? {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                HubError::bad(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

pub(crate) const FINDING_PARAMS: &[&str] = &[
    "kind",
    "severity",
    "min_severity",
    "state",
    "source",
    "cluster",
    "image",
    "namespace",
    "node",
    "rule",
    "limit",
    "cursor",
];

/// `GET /api/v1/findings`: the latest state of scanner findings, most severe first.
pub async fn findings(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), FINDING_PARAMS)?;
    let owned = |key| Ok::<_, HubError>(params.text(key)?.map(str::to_owned));
    let query = FindingQuery {
        kind: params.parsed::<Kind>("kind")?,
        severity: params.parsed::<Severity>("severity")?,
        min_severity: params.parsed::<Severity>("min_severity")?,
        state: params.parsed::<FindingState>("state")?,
        source: owned("source")?,
        cluster: owned("cluster")?,
        image: owned("image")?,
        namespace: owned("namespace")?,
        node: owned("node")?,
        rule: owned("rule")?,
        after: params
            .text("cursor")?
            .map(|c| {
                FindingCursor::decode(c)
                    .ok_or_else(|| HubError::bad("cursor", "is not a cursor returned by this API"))
            })
            .transpose()?,
        limit: limit(&params)?,
    };
    let page = state.store.findings(query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "findings": page.findings,
        "next_cursor": page.next.map(|c| c.encode()),
    })))
}
