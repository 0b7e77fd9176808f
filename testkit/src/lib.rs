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

pub mod opensearch;
