//! `POST /ingest` and `POST /`: events in, committed, then acknowledged (DESIGN.md §3).

use crate::body;
use crate::error::HubError;
use crate::metrics::SourceLabel;
use crate::routes::params::Params;
use crate::sources::{self, Options, Parsed, Source};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use chrono::{SubsecRound, Utc};
use falconer_store::{StoreError, Stored};
use serde::Serialize;
use serde_json::value::RawValue;
use std::time::Instant;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct Reply {
    pub accepted: usize,
    pub ids: Vec<Uuid>,
    pub rejected: Vec<Rejection>,
    /// What each scanner report did to the findings (report sources only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportReply>,
    /// Why the whole request was refused (400 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReportReply {
    /// The item's index in the request.
    pub index: usize,
    /// Distinct findings the report showed open (0 when stale).
    pub open: u64,
    /// Findings of its scopes it marked fixed.
    pub fixed: u64,
    /// A newer report of the same scope was applied before: only history was added.
    pub stale: bool,
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

/// `POST /` and `PUT /`: Falco JSON exactly as Falco's `http_output` and falcosidekick's
/// webhook send it (falcosidekick's `webhook.method` may be `PUT`).
pub async fn falco_root(
    request: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> HttpResponse {
    handle(request, payload, state, Some(Source::Falco)).await
}

async fn handle(
    request: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
    source: Option<Source>,
) -> HttpResponse {
    let started = Instant::now();
    let response = match accept(&request, payload, &state, source).await {
        Ok(response) => response,
        // A refused request keeps the reply shape of the ingest API.
        Err(HubError::BadRequest { field, reason }) => HttpResponse::BadRequest().json(Reply {
            accepted: 0,
            ids: Vec::new(),
            rejected: Vec::new(),
            reports: Vec::new(),
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
    forced_source: Option<Source>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(
        request.query_string(),
        &["source", "cluster", "token", "node"],
    )?;
    let caller = crate::auth::caller(request)?;
    let named = match forced_source {
        Some(source) => Some(source),
        None => source_of(request, &params)?,
    };
    if let Some(source) = named {
        caller.may_send(source)?;
    }
    let cluster = match header(request, "x-falconer-cluster")? {
        Some(cluster) => Some(cluster),
        None => params.text("cluster")?,
    };
    if let Some(cluster) = cluster {
        falconer_model::names::check_cluster_name(cluster)
            .map_err(|reason| HubError::bad("cluster", reason))?;
        caller.may_send_for(cluster, named.unwrap_or(Source::Falco))?;
    }
    let node = params.text("node")?;
    if let Some(node) = node {
        sources::check_name("node", node).map_err(|reason| HubError::bad("node", reason))?;
    }
    let format = body::format_of(request)?;
    // Overloaded: refuse before reading and parsing the body, so the bodies of requests that
    // would be refused anyway never pile up in memory.
    if state.store.is_full() {
        return Err(match state.store.journaled() {
            true => HubError::InsufficientStorage(
                "the ingest journal is full: the database is not keeping up".into(),
            ),
            false => HubError::Overloaded,
        });
    }
    let limits = &state.config.ingest;
    // Reports may be larger than other bodies, when the request names their source: an
    // unnamed body is held to the smaller limit, so detection never reads more than that.
    let report_named = named.is_some_and(Source::is_report);
    let (body_limit, key) = match report_named {
        true => (limits.max_report_bytes, "ingest.max_report_bytes"),
        false => (limits.max_body_bytes, "ingest.max_body_bytes"),
    };
    let bytes = body::read(
        request,
        payload,
        body_limit,
        key,
        std::time::Duration::from_secs(limits.body_timeout_secs),
        &state.inflight,
    )
    .await
    .map_err(|error| match error {
        HubError::PayloadTooLarge(message) if !report_named => HubError::PayloadTooLarge(format!(
            "{message}; scanner reports may be up to {} bytes \
                     (ingest.max_report_bytes) with ?source=trivy or ?source=kube-bench",
            limits.max_report_bytes
        )),
        other => other,
    })?;
    let mut items = body::split(&bytes, format, limits.max_events_per_request)?;
    let source = match named {
        Some(source) => source,
        None => match items.iter().find_map(|item| item.as_ref().ok()) {
            Some(first) => {
                sources::detect(first).map_err(|reason| HubError::bad("source", reason))?
            }
            // Nothing readable to detect from: every line is rejected below.
            None => Source::Falco,
        },
    };
    if named.is_none() {
        caller.may_send(source)?;
    }
    if source == Source::KubeBench && node.is_none() {
        return Err(HubError::bad(
            "node",
            "kube-bench reports do not name their node; name it with ?node=<node name>",
        ));
    }
    // A JSON array of old Trivy results or of kube-bench controls is one report.
    if source.is_report()
        && format == body::Format::Json
        && bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
        && items
            .first()
            .and_then(|i| i.as_ref().ok())
            .is_some_and(|first| sources::is_report_part(source, first))
    {
        let whole: &RawValue = serde_json::from_slice(&bytes)
            .map_err(|e| HubError::bad("body", format!("is not valid JSON: {e}")))?;
        items = vec![Ok(whole)];
    }

    let label = SourceLabel {
        source: source.as_str(),
    };
    let metrics = &state.metrics;
    metrics
        .received
        .get_or_create(&label)
        .inc_by(items.len() as u64);
    let context = sources::Context {
        cluster,
        // A token bound to one cluster names the cluster of events that name none.
        default_cluster: caller.only_cluster().unwrap_or(&state.config.cluster),
        received_at: Utc::now().trunc_subsecs(6),
    };
    let options = Options {
        node,
        max_part_bytes: limits.max_event_bytes,
        max_findings: limits.max_report_findings,
        tetragon: &state.config.sources.tetragon,
    };
    // Room for the events in the write queue before they are parsed: under overload the
    // request is refused without building what would be thrown away.
    let reservation = match source.is_report() {
        true => None,
        false => match state.store.reserve(items.len()) {
            Ok(reservation) => Some(reservation),
            Err(error) => {
                metrics.reject(label.source, "overloaded", items.len());
                return Err(error.into());
            }
        },
    };
    let mut events = Vec::with_capacity(if source.is_report() { 0 } else { items.len() });
    let mut reports = Vec::new();
    let mut report_indexes = Vec::new();
    let mut findings = 0;
    let mut rejected = Vec::new();
    let mut too_large = 0;
    for (index, item) in items.into_iter().enumerate() {
        let parsed = item.and_then(|raw| {
            if !source.is_report() && raw.get().len() > limits.max_event_bytes {
                too_large += 1;
                return Err(format!(
                    "event is {} bytes; the limit is {} (ingest.max_event_bytes)",
                    raw.get().len(),
                    limits.max_event_bytes
                ));
            }
            if let Some(depth) = too_deep(raw.get().as_bytes()) {
                return Err(format!(
                    "is nested more than {depth} levels deep; at most {MAX_DEPTH} are accepted"
                ));
            }
            sources::parse(source, raw, &context, &options)
        });
        match parsed {
            Ok(Parsed::Event(mut event)) => match check_time(&event) {
                Ok(()) => {
                    caller.stamp(&mut event, source);
                    events.push(*event)
                }
                Err(error) => rejected.push(Rejection { index, error }),
            },
            // Every observation is an event for the store's queue: bound them per request.
            Ok(Parsed::ScanReport(report))
                if findings + report.observations.len() > limits.max_report_findings =>
            {
                too_large += 1;
                rejected.push(Rejection {
                    index,
                    error: format!(
                        "this request's reports hold more than {} results (ingest.max_report_findings); send this report in a request of its own",
                        limits.max_report_findings
                    ),
                });
            }
            Ok(Parsed::ScanReport(report)) => {
                findings += report.observations.len();
                report_indexes.push(index);
                reports.push(report);
            }
            Err(error) => rejected.push(Rejection { index, error }),
        }
    }
    metrics.reject(label.source, "too_large", too_large);
    metrics.reject(label.source, "invalid", rejected.len() - too_large);
    // The clusters the events claim: held to a bound token's list; for an unbound token
    // counted per day (forwarding hubs carry their edges' clusters and are exempt). Nothing
    // of a refused request is stored.
    let mut claimed = events
        .iter()
        .map(|e| e.cluster.as_str())
        .chain(reports.iter().map(|r| r.cluster.as_str()));
    let allowed = if !caller.clusters.is_empty() {
        claimed.try_for_each(|cluster| caller.may_send_for(cluster, source))
    } else if source != Source::Falconer {
        state
            .clusters
            .admit(
                &caller,
                claimed,
                limits.max_clusters_per_token_per_day,
                Utc::now().date_naive(),
            )
            .inspect_err(|_| {
                metrics.cluster_refusals.inc();
            })
    } else {
        Ok(())
    };
    if let Err(refused) = allowed {
        metrics.reject(label.source, "forbidden", events.len() + findings);
        return Err(refused);
    }

    if events.is_empty() && reports.is_empty() {
        return Ok(HttpResponse::BadRequest().json(Reply {
            accepted: 0,
            ids: Vec::new(),
            error: Some("no valid event in the request".into()),
            field: None,
            rejected,
            reports: Vec::new(),
        }));
    }
    let count = events.len() + findings;
    let written = if let Some(reservation) = reservation {
        state
            .store
            .insert_reserved(events, reservation)
            .await
            .map(|stored| (stored, Vec::new()))
    } else {
        state.store.insert_reports(reports).await.map(|stored| {
            let mut ids: Vec<Stored> = Vec::with_capacity(findings);
            let mut replies = Vec::with_capacity(stored.len());
            for (report, index) in stored.into_iter().zip(report_indexes) {
                ids.extend(report.events);
                replies.push(ReportReply {
                    index,
                    open: report.outcome.open,
                    fixed: report.outcome.fixed,
                    stale: report.outcome.stale,
                });
            }
            (ids, replies)
        })
    };
    let (stored, report_replies) = match written {
        Ok(written) => written,
        Err(error) => {
            let reason = match &error {
                StoreError::Overloaded => "overloaded",
                StoreError::Unavailable(_) => "unavailable",
                StoreError::JournalFull(_) => "journal_full",
                StoreError::DiskFull(_) => "disk_full",
                _ => "error",
            };
            metrics.reject(label.source, reason, count);
            return Err(error.into());
        }
    };
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
        reports: report_replies,
        error: None,
        field: None,
    }))
}

fn source_of(request: &HttpRequest, params: &Params) -> Result<Option<Source>, HubError> {
    let (field, named) = match header(request, "x-falconer-source")? {
        Some(source) => ("X-Falconer-Source", Some(source)),
        None => ("source", params.text("source")?),
    };
    named
        .map(|name| {
            Source::named(name).ok_or_else(|| {
                HubError::bad(
                    field,
                    format!("unknown source `{name}`; supported: {}", Source::names()),
                )
            })
        })
        .transpose()
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

/// How far ahead of the hub's clock an event's time may be (clock skew between nodes).
pub const MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Refuses an event dated more than `MAX_AHEAD` ahead of the hub's clock: it would sort
/// before every real event and stay on top of every listing. (An old time is accepted:
/// retention counts from receipt, so an old claim neither escapes retention nor is cut by
/// it, and an agent's backlog after an outage is old but real.)
fn check_time(event: &falconer_store::Event) -> Result<(), String> {
    let ahead = event.time - event.received_at;
    if ahead > MAX_AHEAD {
        return Err(format!(
            "time: {} is {} minutes ahead of the hub's clock; at most {} are accepted",
            event.time.to_rfc3339(),
            ahead.num_minutes(),
            MAX_AHEAD.num_minutes()
        ));
    }
    Ok(())
}

/// Deepest nesting of arrays and objects accepted in one item: far beyond any real alert or
/// report, and far below what the database refuses (PostgreSQL fails a whole group commit
/// for JSON nested some thousands deep).
pub const MAX_DEPTH: usize = 64;

/// `Some(MAX_DEPTH)` when `json` nests arrays and objects deeper than `MAX_DEPTH`.
fn too_deep(json: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(MAX_DEPTH);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    #[test]
    fn nesting_counts_arrays_and_objects_but_not_brackets_in_strings() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(too_deep(deep(MAX_DEPTH).as_bytes()), None);
        assert_eq!(too_deep(deep(MAX_DEPTH + 1).as_bytes()), Some(MAX_DEPTH));
        let quoted = format!(r#"{{"output": "{}", "q": "\\\"{{"}}"#, "[".repeat(500));
        assert_eq!(too_deep(quoted.as_bytes()), None);
    }
}
