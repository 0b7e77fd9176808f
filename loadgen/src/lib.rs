//! Test and benchmark tooling shared by `falconer-loadgen` and the test suite: an
//! OpenSearch-compatible server (`opensearch`), for the delivery tests and the backlog-drain
//! benchmark.

pub mod opensearch;
