//! The hub: ingest API, query API and operations endpoints over the store.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod metrics;
pub mod retention;
pub mod routes;
pub mod sources;
pub mod startup;
pub mod state;
pub mod suppressions;
pub mod tls;

pub use config::HubConfig;
pub use error::HubError;
pub use startup::Hub;
