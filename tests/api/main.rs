//! The behavioural suite of the hub, run against both stores over real HTTP.

mod helpers;
mod webhook_server;

mod auth;
mod cli;
mod dashboard;
mod delivery;
mod ingest;
mod opensearch_sink;
mod ops;
mod query;
mod retention;
mod risk;
mod sources;
mod storage;
mod tls;
