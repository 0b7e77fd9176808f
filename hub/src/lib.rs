//! The hub: ingest API, query API and operations endpoints over the store.

pub mod auth;
pub mod body;
pub mod config;
pub mod consumers;
pub mod error;
pub mod falco;
pub mod ingest;
pub mod metrics;
pub mod ops;
pub mod params;
pub mod query;
pub mod retention;
pub mod risk;
pub mod routes;
pub mod sources;
pub mod startup;
pub mod stats;
pub mod tls;
pub mod ui;

pub use config::HubConfig;
pub use error::HubError;
pub use startup::Hub;
