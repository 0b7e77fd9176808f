//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use crate::error::HubError;
use crate::state::AppState;
use actix_web::HttpResponse;
use actix_web::web::Data;
use serde_json::json;
use std::time::Duration;

/// The OpenAPI document of every route (checked against the route table by a test).
pub const OPENAPI: &str = include_str!("openapi.json");

const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers a query within two seconds, or, with the ingest journal,
/// the journal has room (ingest is durable while PostgreSQL restarts).
pub async fn readyz(state: Data<AppState>) -> HttpResponse {
    let store = state.store.database();
    if state.store.journaled() && !state.store.is_full() {
        return HttpResponse::Ok()
            .json(json!({"status": "ready", "store": store, "journal": "has room"}));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready", "store": store})),
        // The store's error text (host names, users, SQL) is for the log, not for anyone
        // who can reach the probe.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Not ready: the store does not answer");
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "unavailable", "store": store,
                "error": "the store cannot be reached; see the hub's log"
            }))
        }
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable", "store": store, "error": "the store did not answer within 2 s"
        })),
    }
}

/// `GET /metrics`: Prometheus (OpenMetrics text).
pub async fn metrics(state: Data<AppState>) -> Result<HttpResponse, HubError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.registry)
        .map_err(|e| HubError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}

/// `GET /api/v1/schemas/agent-event.json`: the JSON Schema of generic agent events.
pub async fn agent_event_schema() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/schema+json")
        .body(crate::sources::agent::AGENT_EVENT_SCHEMA)
}

/// `GET /api/v1/openapi.json`
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;
    use crate::routes::ROUTES;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn document() -> Value {
        serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes_of_the_route_table() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn the_documented_event_filters_are_exactly_the_accepted_ones() {
        let doc = document();
        let documented: BTreeSet<&str> = doc["paths"]["/api/v1/events"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        let accepted: BTreeSet<&str> = crate::routes::query::EVENT_PARAMS.iter().copied().collect();
        assert_eq!(documented, accepted);
    }

    #[test]
    fn the_documented_finding_filters_are_exactly_the_accepted_ones() {
        let doc = document();
        let documented: BTreeSet<&str> = doc["paths"]["/api/v1/findings"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        let accepted: BTreeSet<&str> = crate::routes::query::FINDING_PARAMS
            .iter()
            .copied()
            .collect();
        assert_eq!(documented, accepted);
    }

    #[test]
    fn the_documented_risk_and_stats_parameters_are_exactly_the_accepted_ones() {
        use crate::routes::risk::{
            HISTORY_PARAMS, NAMESPACE_PARAMS, SUMMARY_PARAMS, WORKLOAD_PARAMS,
        };
        let doc = document();
        for (path, accepted) in [
            ("/api/v1/risk", SUMMARY_PARAMS),
            ("/api/v1/risk/namespaces", NAMESPACE_PARAMS),
            ("/api/v1/risk/workloads", WORKLOAD_PARAMS),
            ("/api/v1/risk/{kind}/{name}/history", HISTORY_PARAMS),
            (
                "/api/v1/stats/events",
                crate::routes::stats::EVENT_STATS_PARAMS,
            ),
            (
                "/api/v1/stats/findings",
                crate::routes::stats::FINDING_STATS_PARAMS,
            ),
            ("/api/v1/groups", crate::routes::triage::GROUP_PARAMS),
            ("/api/v1/suppressions", &["expired"]),
        ] {
            let documented: BTreeSet<&str> = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().expect("name"))
                .collect();
            let accepted: BTreeSet<&str> = accepted.iter().copied().collect();
            assert_eq!(documented, accepted, "{path}");
        }
    }

    #[test]
    fn the_documented_sources_and_kinds_are_exactly_the_known_ones() {
        let doc = document();
        let names = |schema: &str| -> BTreeSet<String> {
            doc["components"]["schemas"][schema]["enum"]
                .as_array()
                .expect("enum")
                .iter()
                .map(|v| v.as_str().expect("name").to_string())
                .collect()
        };
        let sources = crate::sources::Source::ALL
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        assert_eq!(names("Source"), sources);
        let kinds = falconer_store::Kind::ALL
            .iter()
            .map(|k| k.as_str().to_string())
            .collect();
        assert_eq!(names("Kind"), kinds);
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = OPENAPI;
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().expect("name");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "missing schema {name}"
            );
        }
    }
}
