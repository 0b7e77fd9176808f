//! Every route, in one table with the access it needs: the same table registers the
//! handlers, guards them (`access`, checked before any handler runs), answers 404/405 for the
//! rest, and is compared with the OpenAPI document and the route × scope test.

use crate::auth::Access;
use crate::error::HubError;
pub mod consumers;
pub mod ingest;
pub mod ops;
pub mod params;
pub mod query;
pub mod risk;
pub mod stats;
pub mod triage;
pub mod ui;

use actix_web::http::Method;
use actix_web::{HttpRequest, web};

macro_rules! routes {
    ($($path:literal => { $($method:ident : $handler:path [$access:ident]),+ $(,)? }),* $(,)?) => {
        /// (method, path template, access) of every route.
        pub const ROUTES: &[(&str, &str, Access)] =
            &[$($((stringify!($method), $path, Access::$access)),+),*];

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
    "/ingest" => { POST: ingest::ingest [Ingest] },
    "/" => { POST: ingest::falco_root [Ingest], PUT: ingest::falco_root [Ingest], GET: ui::root [Open] },
    "/api/v1/events" => { GET: query::events [Read] },
    "/api/v1/events/{id}" => { GET: query::event [Read] },
    "/api/v1/groups" => { GET: triage::groups [Read] },
    "/api/v1/groups/{id}" => { GET: triage::group [Read] },
    "/api/v1/groups/{id}/acknowledge" => { POST: triage::acknowledge [Operate] },
    "/api/v1/groups/{id}/resolve" => { POST: triage::resolve [Operate] },
    "/api/v1/groups/{id}/reopen" => { POST: triage::reopen [Operate] },
    "/api/v1/suppressions" => { GET: triage::suppressions [Read], POST: triage::create_suppression [Operate] },
    "/api/v1/suppressions/{id}" => { DELETE: triage::delete_suppression [Operate] },
    "/api/v1/findings" => { GET: query::findings [Read] },
    "/api/v1/clusters" => { GET: query::clusters [Read] },
    "/api/v1/risk" => { GET: risk::summary [Read] },
    "/api/v1/risk/namespaces" => { GET: risk::namespaces [Read] },
    "/api/v1/risk/workloads" => { GET: risk::workloads [Read] },
    "/api/v1/risk/recompute" => { POST: risk::recompute [Operate] },
    "/api/v1/risk/{kind}/{name}/history" => { GET: risk::history [Read] },
    "/api/v1/stats/events" => { GET: stats::events [Read] },
    "/api/v1/stats/findings" => { GET: stats::findings [Read] },
    "/api/v1/consumers" => { GET: consumers::list [Read] },
    "/api/v1/consumers/{name}/dead-letters" => { GET: consumers::dead_letters [Read] },
    "/api/v1/consumers/{name}/dead-letters/replay" => { POST: consumers::replay [Operate] },
    "/api/v1/consumers/{name}/test" => { POST: consumers::test [Operate] },
    "/api/v1/consumers/{name}/preview" => { POST: consumers::preview [Read] },
    "/api/v1/schemas/agent-event.json" => { GET: ops::agent_event_schema [Open] },
    "/api/v1/openapi.json" => { GET: ops::openapi [Open] },
    "/healthz" => { GET: ops::healthz [Open] },
    "/readyz" => { GET: ops::readyz [Open] },
    "/metrics" => { GET: ops::metrics [Open] },
    "/ui" => { GET: ui::redirect [Open] },
    "/ui/" => { GET: ui::index [Open] },
    "/ui/{file}" => { GET: ui::file [Open] },
}

/// 405 with `Allow` when the path exists with other methods, else 404; both as JSON.
pub async fn fallback(request: HttpRequest) -> Result<&'static str, HubError> {
    let path = request.path();
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, template, _)| matches_template(template, path))
        .map(|(method, _, _)| *method)
        .collect();
    if allowed.is_empty() {
        return Err(HubError::NotFound(format!("no route for {path}")));
    }
    Err(HubError::MethodNotAllowed {
        method: request.method().to_string(),
        allowed: allowed.join(", "),
    })
}

/// What the route of `method` `path` needs of its caller; `None` when there is no such route
/// (the fallback answers 404/405).
pub fn access(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, template, _)| *m == method && matches_template(template, path))
        .map(|(_, _, access)| *access)
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
