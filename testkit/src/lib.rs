//! Test doubles of the services Falconer talks to that cannot run on the build machine (see
//! shared/reference/toolchain.md). What the tests and benchmarks say about talking to these
//! services is verified against these fakes, so each one keeps to the real wire format for
//! the part it implements:
//!
//! - [`opensearch`]: an HTTP server speaking OpenSearch's REST API as the `opensearch` sink
//!   uses it: `_bulk` (NDJSON in, per-item results out), index templates, data streams,
//!   `_refresh`, `_count`, a simple `_search` and `_doc/{id}`, with injectable failures
//!   (whole-request and per-document statuses, 413 over a size limit, slow answers) and
//!   counters for benchmarks. `falconer-loadgen opensearch-server` serves it.
//! - [`webhook`]: an HTTP receiver for the `webhook` sink: takes a JSON event or a JSON array
//!   of events by `POST` on any path, answers 200, records headers, bodies and event ids, and
//!   can be told to answer 503 to everything or 400 to events of one rule.

// Test support: a panic fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod opensearch;
pub mod webhook;
