//! The risk API: cluster summary and top objects, namespace and workload listings, history
//! per object, and recomputation on demand (docs/api.md#risk, docs/risk-model.md).

use crate::error::HubError;
use crate::routes::params::Params;
use crate::state::AppState;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use falconer_store::{HistoryAnswer, HistoryQuery, RiskLevel, RiskQuery, RiskScore, RiskSort};
use serde_json::json;

/// Factors per object in list responses.
pub const LISTED_FACTORS: usize = 5;
pub const DEFAULT_TOP: u32 = 10;
pub const MAX_TOP: u32 = 100;
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_HISTORY: u32 = 100;
pub const MAX_HISTORY: u32 = 1000;
/// Longest cluster, namespace or workload name accepted (a DNS subdomain).
const MAX_NAME: usize = 253;

pub(crate) const SUMMARY_PARAMS: &[&str] = &["cluster", "top"];
pub(crate) const NAMESPACE_PARAMS: &[&str] = &["cluster", "sort", "limit", "offset"];
pub(crate) const WORKLOAD_PARAMS: &[&str] =
    &["cluster", "namespace", "kind", "sort", "limit", "offset"];
pub(crate) const HISTORY_PARAMS: &[&str] = &["cluster", "namespace", "limit"];

/// `GET /api/v1/risk?cluster=&top=`
pub async fn summary(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), SUMMARY_PARAMS)?;
    let cluster = name(&params, "cluster")?;
    let top = bounded(&params, "top", DEFAULT_TOP, MAX_TOP)?;
    let summary = state.store.risk_summary(cluster, top).await?;
    Ok(HttpResponse::Ok().json(json!({
        "computed_at": summary.computed_at,
        "clusters": listed(summary.clusters),
        "top_namespaces": listed(summary.top_namespaces),
        "top_workloads": listed(summary.top_workloads),
    })))
}

/// `GET /api/v1/risk/namespaces?cluster=&sort=&limit=&offset=`
pub async fn namespaces(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), NAMESPACE_PARAMS)?;
    let query = RiskQuery {
        level: RiskLevel::Namespace,
        cluster: name(&params, "cluster")?,
        namespace: None,
        kind: None,
        sort: params.parsed::<RiskSort>("sort")?.unwrap_or_default(),
        limit: bounded(&params, "limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        offset: offset(&params)?,
    };
    page(&state, query).await
}

/// `GET /api/v1/risk/workloads?cluster=&namespace=&kind=&sort=&limit=&offset=`
pub async fn workloads(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), WORKLOAD_PARAMS)?;
    let kind = match params.text("kind")? {
        Some(kind) => Some(workload_kind("kind", kind)?),
        None => None,
    };
    let query = RiskQuery {
        level: RiskLevel::Workload,
        cluster: name(&params, "cluster")?,
        namespace: name(&params, "namespace")?,
        kind,
        sort: params.parsed::<RiskSort>("sort")?.unwrap_or_default(),
        limit: bounded(&params, "limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        offset: offset(&params)?,
    };
    page(&state, query).await
}

async fn page(state: &AppState, query: RiskQuery) -> Result<HttpResponse, HubError> {
    let page = state.store.risk_scores(query).await?;
    Ok(HttpResponse::Ok().json(json!({"items": listed(page.items), "total": page.total})))
}

/// `GET /api/v1/risk/{kind}/{name}/history?cluster=&namespace=&limit=`
pub async fn history(
    request: HttpRequest,
    path: Path<(String, String)>,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), HISTORY_PARAMS)?;
    let (kind, object) = path.into_inner();
    let kind = match kind.to_ascii_lowercase().as_str() {
        "cluster" => "Cluster".to_string(),
        "namespace" => "Namespace".to_string(),
        _ => workload_kind("kind", &kind)?,
    };
    if object.len() > MAX_NAME || object.chars().any(char::is_control) {
        return Err(HubError::bad(
            "name",
            format!("must be at most {MAX_NAME} bytes without control characters"),
        ));
    }
    let query = HistoryQuery {
        kind: kind.clone(),
        name: object.clone(),
        cluster: name(&params, "cluster")?,
        namespace: name(&params, "namespace")?,
        limit: bounded(&params, "limit", DEFAULT_HISTORY, MAX_HISTORY)?,
    };
    match state.store.risk_history(query).await? {
        HistoryAnswer::Found(history) => Ok(HttpResponse::Ok().json(history)),
        HistoryAnswer::NotFound => Err(HubError::NotFound(format!(
            "no risk score for {kind} {object}"
        ))),
        HistoryAnswer::Ambiguous { field, candidates } => Err(HubError::bad(
            field,
            format!(
                "{kind} {object} has scores in several {field}s; choose one of {}",
                candidates.join(", ")
            ),
        )),
    }
}

/// `POST /api/v1/risk/recompute`: computes now; 409 while another analyst computes.
pub async fn recompute(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    Params::parse(request.query_string(), &[])?;
    let caller = crate::auth::caller(&request)?;
    tracing::info!(token = %caller.name, "Operate: recomputing risk scores");
    match state.analyst.recompute().await? {
        Some(run) => Ok(HttpResponse::Ok().json(run)),
        None => Err(HubError::Conflict(
            "another analyst is computing risk scores right now; retry when it is done".into(),
        )),
    }
}

/// Scores as list responses serve them: at most [`LISTED_FACTORS`] factors each.
fn listed(mut scores: Vec<RiskScore>) -> Vec<RiskScore> {
    for score in &mut scores {
        score.factors.truncate(LISTED_FACTORS);
    }
    scores
}

fn name(params: &Params, key: &str) -> Result<Option<String>, HubError> {
    match params.text(key)? {
        Some(v) if v.len() > MAX_NAME || v.chars().any(char::is_control) => Err(HubError::bad(
            key,
            format!("must be at most {MAX_NAME} bytes without control characters"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// A workload kind such as `Deployment`: ASCII letters only.
fn workload_kind(key: &str, kind: &str) -> Result<String, HubError> {
    if kind.is_empty() || kind.len() > 63 || !kind.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(HubError::bad(
            key,
            format!(
                "`{kind}` is not an object kind: cluster, namespace, or a workload kind such \
                 as Deployment"
            ),
        ));
    }
    Ok(kind.to_string())
}

fn bounded(params: &Params, key: &str, default: u32, max: u32) -> Result<u32, HubError> {
    match params.text(key)? {
        None => Ok(default),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| HubError::bad(key, format!("must be a whole number from 1 to {max}"))),
    }
}

fn offset(params: &Params) -> Result<u64, HubError> {
    match params.text("offset")? {
        None => Ok(0),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| HubError::bad("offset", "must be a whole number of at least 0")),
    }
}
