//! Every route, in one table: the same table registers the handlers, answers 404/405 for the
//! rest, and is compared with the OpenAPI document by a test.

use crate::error::HubError;
pub mod consumers;
pub mod ingest;
pub mod ops;
pub mod params;
pub mod query;
pub mod risk;
pub mod stats;
pub mod ui;

use actix_web::http::Method;
use actix_web::{HttpRequest, web};

macro_rules! routes {
    ($($path:literal => { $($method:ident : $handler:path),+ $(,)? }),* $(,)?) => {
        /// (method, path template) of every route.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path)),+),*];

        pub fn configure(config: &mut web::ServiceConfig) {
            $(
                config.service(
                    web::resource($path)
                        $(.route(web::method(Method::$method).to($handler)))+
                        .default_service(web::to(fallback)),
                );
            )*
        }
    };
}

routes! {
    "/ingest" => { POST: ingest::ingest },
    "/" => { POST: ingest::falco_root, GET: ui::root },
    "/api/v1/events" => { GET: query::events },
    "/api/v1/events/{id}" => { GET: query::event },
    "/api/v1/findings" => { GET: query::findings },
    "/api/v1/clusters" => { GET: query::clusters },
    "/api/v1/risk" => { GET: risk::summary },
    "/api/v1/risk/namespaces" => { GET: risk::namespaces },
    "/api/v1/risk/workloads" => { GET: risk::workloads },
    "/api/v1/risk/recompute" => { POST: risk::recompute },
    "/api/v1/risk/{kind}/{name}/history" => { GET: risk::history },
    "/api/v1/stats/events" => { GET: stats::events },
    "/api/v1/stats/findings" => { GET: stats::findings },
    "/api/v1/consumers" => { GET: consumers::list },
    "/api/v1/consumers/{name}/dead-letters" => { GET: consumers::dead_letters },
    "/api/v1/consumers/{name}/dead-letters/replay" => { POST: consumers::replay },
    "/api/v1/consumers/{name}/test" => { POST: consumers::test },
    "/api/v1/schemas/agent-event.json" => { GET: ops::agent_event_schema },
    "/api/v1/openapi.json" => { GET: ops::openapi },
    "/healthz" => { GET: ops::healthz },
    "/readyz" => { GET: ops::readyz },
    "/metrics" => { GET: ops::metrics },
    "/ui" => { GET: ui::redirect },
    "/ui/" => { GET: ui::index },
    "/ui/{file}" => { GET: ui::file },
}

/// 405 with `Allow` when the path exists with other methods, else 404; both as JSON.
pub async fn fallback(request: HttpRequest) -> Result<&'static str, HubError> {
    let path = request.path();
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, template)| matches_template(template, path))
        .map(|(method, _)| *method)
        .collect();
    if allowed.is_empty() {
        return Err(HubError::NotFound(format!("no route for {path}")));
    }
    Err(HubError::MethodNotAllowed {
        method: request.method().to_string(),
        allowed: allowed.join(", "),
    })
}

/// Whether `path` fits `template`, where `{name}` stands for one non-empty segment.
pub fn matches_template(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment_per_placeholder() {
        assert!(matches_template(
            "/api/v1/events/{id}",
            "/api/v1/events/abc"
        ));
        assert!(!matches_template("/api/v1/events/{id}", "/api/v1/events/"));
        assert!(!matches_template(
            "/api/v1/events/{id}",
            "/api/v1/events/a/b"
        ));
        assert!(matches_template("/", "/"));
        assert!(!matches_template("/", "/x"));
    }
}
