//! Builds the HTTP server from config and a store: routes in one place, state shared by all
//! workers, port 0 allowed (tests read the real address back).

use crate::auth::Auth;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::metrics::HubMetrics;
use crate::routes;
use crate::state::AppState;
use actix_http::{Extensions, HttpService, Request};
use actix_service::{IntoServiceFactory, ServiceFactory, ServiceFactoryExt, map_config};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, Service};
use actix_web::http::header::{self, HeaderValue};
use actix_web::rt::net::TcpStream;
use actix_web::{App, web};
use falconer_analyst::Analyst;
use falconer_delivery::Delivery;
use falconer_store::Store;
use prometheus_client::registry::Registry;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bound, not yet awaited server.
pub struct Hub {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `server.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub server: Server,
}

impl Hub {
    /// Validates the config, binds the listener and builds the server; await `server` to run it.
    /// `analyst` serves `POST /api/v1/risk/recompute`. The application is assembled in one
    /// place, `falconer::app`; this builds its HTTP part only.
    pub fn start(
        config: HubConfig,
        store: Store,
        delivery: Delivery,
        analyst: Analyst,
        mut registry: Registry,
    ) -> Result<Hub, HubError> {
        config.validate().map_err(HubError::Config)?;
        let open = config.open_apis();
        if !open.is_empty() {
            tracing::warn!(apis = ?open, listen = %config.server.listen,
                "Running open: no tokens configured for these APIs; loopback only");
        }
        // Before binding: a bad certificate stops start-up with its file named.
        let tls = match &config.server.tls {
            Some(tls) => Some(crate::tls::server_config(tls).map_err(HubError::Config)?),
            None => None,
        };
        let metrics = HubMetrics::new(&mut registry);
        let listen = config.server.listen;
        let bind = |source| HubError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let metrics_listener = match config.server.metrics_listen {
            Some(at) => {
                let bind = |source| HubError::Bind { addr: at, source };
                let listener = TcpListener::bind(at).map_err(bind)?;
                let bound = listener.local_addr().map_err(bind)?;
                Some((listener, bound))
            }
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(|(_, at)| *at);
        let workers = config.server.workers;
        let shutdown_timeout = config.server.shutdown_timeout_secs;
        let state = web::Data::new(AppState {
            auth: Auth::new(&config.auth),
            inflight: crate::body::InFlight::new(config.ingest.max_inflight_bytes),
            clusters: crate::auth::ClusterLedger::default(),
            store,
            delivery,
            analyst,
            config,
            metrics,
            registry: Arc::new(registry),
            metrics_addr,
        });
        let limits = ExpectLimits {
            max_body_bytes: state.config.ingest.max_body_bytes,
            max_report_bytes: state.config.ingest.max_report_bytes,
        };
        let app = move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::fallback))
                .wrap_fn(|request, service| {
                    let method = request.method().clone();
                    let path = request.path().to_owned();
                    let started = Instant::now();
                    // Every route's access is checked here, before its handler: a route
                    // cannot ship unguarded (routes::ROUTES names each one's access).
                    let response = match guard(&request) {
                        Ok(()) => Ok(service.call(request)),
                        Err(refused) => Err(request.error_response(refused)),
                    };
                    async move {
                        let mut response = match response {
                            Ok(call) => call.await?.map_into_left_body(),
                            Err(refused) => refused.map_into_right_body(),
                        };
                        // No answer of the hub is for a shared cache, or to be sniffed as
                        // another type than it says.
                        let headers = response.headers_mut();
                        if !headers.contains_key(header::CACHE_CONTROL) {
                            headers.insert(
                                header::CACHE_CONTROL,
                                HeaderValue::from_static("no-store"),
                            );
                        }
                        headers.insert(
                            header::X_CONTENT_TYPE_OPTIONS,
                            HeaderValue::from_static("nosniff"),
                        );
                        let status = response.status().as_u16();
                        let ms = started.elapsed().as_secs_f64() * 1e3;
                        if status >= 500 {
                            tracing::warn!(%method, %path, status, ms, "Request failed");
                        } else {
                            tracing::debug!(%method, %path, status, ms, "Request served");
                        }
                        Ok(response)
                    }
                })
        };
        // actix-web's HttpServer, assembled here because it cannot be given an `Expect`
        // handler: every listener serves the same App through actix-http's HttpService.
        let https = tls.is_some();
        let mut server = actix_server::Server::build().shutdown_timeout(shutdown_timeout);
        server = serve(server, listener, tls, app.clone(), limits).map_err(bind)?;
        if let Some((listener, at)) = metrics_listener {
            server = serve(server, listener, None, app, limits)
                .map_err(|source| HubError::Bind { addr: at, source })?;
            tracing::info!(addr = %at, "Serving /metrics");
        }
        if workers > 0 {
            server = server.workers(workers);
        }
        tracing::info!(%addr, https, "Listening");
        Ok(Hub {
            addr,
            metrics_addr,
            server: server.run(),
        })
    }
}

/// The listener a connection came in on, for `guard` (one App serves both listeners).
#[derive(Clone, Copy)]
struct Listener(SocketAddr);

/// The body limits `Expect: 100-continue` is answered against.
#[derive(Clone, Copy)]
struct ExpectLimits {
    max_body_bytes: usize,
    max_report_bytes: usize,
}

/// Adds `listener` to `server`: HTTP/1.1 (and HTTP/2 over TLS) into the App `app` makes,
/// with HttpServer's defaults (keep-alive 5 s, request head within 5 s, 1 s to disconnect,
/// idle keep-alive connections closed on a graceful shutdown).
fn serve<F, I, S, B>(
    server: actix_server::ServerBuilder,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    app: F,
    limits: ExpectLimits,
) -> std::io::Result<actix_server::ServerBuilder>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let name = format!("falconer-{addr}");
    let shutdown = server.graceful_shutdown_signal();
    let expect = move || {
        actix_service::fn_service(move |request: Request| async move {
            match refuse_early(&request, limits) {
                Some(refused) => Err(actix_web::Error::from(refused)),
                None => Ok(request),
            }
        })
    };
    let application = move || {
        // The host and scheme are read from each request's headers; the local address,
        // which AppConfig cannot be given outside actix-web, from `Listener`.
        let factory = app().into_factory().map_err(|e| e.into().error_response());
        map_config(factory, |_| AppConfig::default())
    };
    // One HttpService per worker, over plain TCP or TLS (`$io`); `$connect` reads the
    // connection (the client certificate's names).
    macro_rules! http {
        ($io:ty, $connect:expr) => {{
            let shutdown = shutdown.clone();
            HttpService::build()
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .local_addr(addr)
                .expect(expect())
                .on_connect_ext(move |io: &$io, data: &mut Extensions| {
                    data.insert(Listener(addr));
                    $connect(io, data);
                })
                .finish(application())
        }};
    }
    match tls {
        None => server.listen(name, listener, move || http!(TcpStream, |_, _| {}).tcp()),
        Some(config) => server.listen(name, listener, move || {
            http!(TlsStream<TcpStream>, crate::tls::on_connect).rustls_0_23(config.clone())
        }),
    }
}

/// `Expect: 100-continue` on ingest: a Content-Length over the body limit is answered 413
/// before the client sends the body, instead of `100 Continue` and then 413. A request that
/// may name a scanner report is held to `max_report_bytes` here; the handler applies the
/// exact limit once it knows the source.
fn refuse_early(request: &Request, limits: ExpectLimits) -> Option<HubError> {
    let method = request.method();
    let ingest = match request.path() {
        "/ingest" => method == actix_web::http::Method::POST,
        "/" => method == actix_web::http::Method::POST || method == actix_web::http::Method::PUT,
        _ => false,
    };
    if !ingest {
        return None;
    }
    let declared: usize = request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let report = request.headers().contains_key("x-falconer-source")
        || request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("source=")));
    let (limit, key) = match report {
        true => (
            limits.max_report_bytes.max(limits.max_body_bytes),
            "ingest.max_report_bytes",
        ),
        false => (limits.max_body_bytes, "ingest.max_body_bytes"),
    };
    (declared > limit).then(|| {
        HubError::PayloadTooLarge(format!(
            "the body ({declared} bytes, Content-Length) exceeds {limit} bytes ({key}); \
             split it into smaller requests"
        ))
    })
}

/// Checks the caller against the access of the route asked for and hands the handler who it
/// is (`auth::caller`); unknown routes go on to the 404/405 fallback. On an open API (no
/// tokens, loopback only) a request must come to a loopback host name and not from another
/// site, so a web page the operator visits cannot post or act through the browser. Every
/// POST (and `PUT /`) carries a JSON body type (415 otherwise), which a page cannot send
/// cross-site without the browser asking first.
fn guard(request: &actix_web::dev::ServiceRequest) -> Result<(), HubError> {
    use actix_web::HttpMessage;
    let Some(access) = routes::access(request.method().as_str(), request.path()) else {
        return Ok(());
    };
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(HubError::Internal("no application state".into()));
    };
    if let Some(metrics_addr) = state.metrics_addr {
        // One listener for the API, another for the metrics; neither answers the other's.
        let on_metrics = request
            .conn_data::<Listener>()
            .is_some_and(|l| l.0 == metrics_addr);
        let is_metrics = request.path() == "/metrics";
        if on_metrics != is_metrics {
            return Err(HubError::NotFound(format!(
                "no route for {} on this port (server.metrics_listen is {metrics_addr})",
                request.path()
            )));
        }
    }
    let principal = state.auth.require(request.request(), access)?;
    if principal.as_ref().is_some_and(|p| p.anonymous) {
        same_site_loopback(request.request())?;
    }
    if request.method() == actix_web::http::Method::POST
        || request.method() == actix_web::http::Method::PUT
    {
        crate::body::format_of(request.request())?;
    }
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    Ok(())
}

/// Refuses a request to an open API that a browser sent on behalf of another site, or that
/// reached the hub under a name that is not a loopback address (DNS rebinding).
fn same_site_loopback(request: &actix_web::HttpRequest) -> Result<(), HubError> {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text("host").unwrap_or("");
    if !is_loopback_host(host) {
        return Err(HubError::Forbidden(format!(
            "this hub runs without tokens and answers only requests to a loopback address, \
             not to `{host}`; configure auth.tokens to serve other names"
        )));
    }
    if text("sec-fetch-site") == Some("cross-site") {
        return Err(HubError::Forbidden(
            "a request another web site made through the browser; this hub runs without tokens"
                .into(),
        ));
    }
    if let Some(origin) = text("origin") {
        let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if authority != host {
            return Err(HubError::Forbidden(format!(
                "a request from the web page of `{origin}`; this hub runs without tokens"
            )));
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_localhost_and_loopback_addresses_with_or_without_a_port() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
