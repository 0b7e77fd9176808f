//! The behavioural suite of the hub, run against both stores over real HTTP.

mod helpers;
mod webhook_server;

mod auth;
mod cli;
mod delivery;
mod ingest;
mod ops;
mod query;
mod sources;
mod storage;
