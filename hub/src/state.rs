//! What every request handler shares: the store, delivery, the analyst, the config, the
//! credentials and the metrics.

use crate::auth::Auth;
use crate::config::HubConfig;
use crate::metrics::HubMetrics;
use falconer_analyst::Analyst;
use falconer_delivery::Delivery;
use falconer_store::Store;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// What every request handler shares.
pub struct AppState {
    pub store: Store,
    pub delivery: Delivery,
    pub analyst: Analyst,
    pub config: HubConfig,
    pub auth: Auth,
    pub metrics: HubMetrics,
    pub registry: Arc<Registry>,
    /// Body bytes being received across requests.
    pub inflight: crate::body::InFlight,
    /// Clusters each credential sent for today.
    pub clusters: crate::auth::ClusterLedger,
    /// The bound `server.metrics_listen`, when set: `/metrics` is served there only.
    pub metrics_addr: Option<std::net::SocketAddr>,
}
