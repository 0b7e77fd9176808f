//! The behavioural suite of the hub, run against both stores over real HTTP.

// Test support code outside `#[test]` functions may panic: a panic fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod brokers;
mod cli;
mod dashboard;
mod delivery;
mod disk_full;
mod email;
mod ingest;
mod journal;
mod logs;
mod loki_sink;
mod notify;
mod opensearch_sink;
mod ops;
mod paging;
mod policyreport_sink;
mod query;
mod retention;
mod risk;
mod sources;
mod storage;
mod tls;
mod triage;
