//! Builds the HTTP server from config and a store: routes in one place, state shared by all
//! workers, port 0 allowed (tests read the real address back).

use crate::auth::Auth;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::metrics::HubMetrics;
use crate::routes;
use crate::state::AppState;
use actix_web::dev::{Server, Service};
use actix_web::{App, HttpServer, web};
use falconer_analyst::Analyst;
use falconer_delivery::Delivery;
use falconer_store::Store;
use prometheus_client::registry::Registry;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

/// A bound, not yet awaited server.
pub struct Hub {
    pub addr: SocketAddr,
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
        let workers = config.server.workers;
        let shutdown_timeout = config.server.shutdown_timeout_secs;
        let state = web::Data::new(AppState {
            auth: Auth::new(&config.auth),
            store,
            delivery,
            analyst,
            config,
            metrics,
            registry: Arc::new(registry),
        });
        let mut server = HttpServer::new(move || {
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
                    let response = guard(&request).map(|()| service.call(request));
                    async move {
                        let response = response?.await?;
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
        })
        .shutdown_timeout(shutdown_timeout);
        let https = tls.is_some();
        server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls),
            None => server.listen(listener),
        }
        .map_err(bind)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        tracing::info!(%addr, https, "Listening");
        Ok(Hub {
            addr,
            server: server.run(),
        })
    }
}

/// Checks the caller against the access of the route asked for and hands the handler who it
/// is (`auth::caller`); unknown routes go on to the 404/405 fallback.
fn guard(request: &actix_web::dev::ServiceRequest) -> Result<(), actix_web::Error> {
    use actix_web::HttpMessage;
    let Some(access) = routes::access(request.method().as_str(), request.path()) else {
        return Ok(());
    };
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return Err(HubError::Internal("no application state".into()).into());
    };
    if let Some(principal) = state.auth.require(request.request(), access)? {
        request.extensions_mut().insert(principal);
    }
    Ok(())
}
