//! Test doubles of the services Falconer talks to that cannot run on the build machine (see
//! shared/reference/toolchain.md): what the tests and benchmarks establish about Falconer
//! talking to these services is verified against these fakes only, so each one keeps to the
//! real wire format for the part it implements, and no more:
//!
//! - [`opensearch`]: an HTTP server speaking OpenSearch's REST API as the `opensearch` sink
//!   uses it: `_bulk` (NDJSON in, per-item results out), index templates, data streams,
//!   `_refresh`, `_count`, a simple `_search` and `_doc/{id}`, with injectable failures
//!   (whole-request and per-document statuses, 413 over a size limit, slow answers) and
//!   counters for benchmarks. `falconer-loadgen opensearch-server` serves it.
//! - [`loki`]: an HTTP server speaking Loki's push API (`POST /loki/api/v1/push`, JSON):
//!   labels validated, entries kept per stream and tenant, `entry out of order` and `too
//!   old` refusals with Loki's messages while the rest of the request is kept, duplicates
//!   dropped, basic/bearer/tenant checks, injectable statuses (429 with `Retry-After`, 5xx),
//!   413 over a size, slow answers.
//! - [`kube`]: a scripted Kubernetes API server behind a real `kube::Client` (kube-rs's mock
//!   service): each request is checked against the next expected one (method, path, query,
//!   JSON body) and answered with a scripted JSON body, the API server's `Status` error body,
//!   or the request body echoed back as an applied object; or requests are answered by path
//!   from queues, watches as JSON-lines event streams that stay open when idle. Lists, gets,
//!   server-side apply, status patches, creates and deletes, leases and events are whatever
//!   the script says: the fake knows paths and bodies, not resources, and checks CRD objects
//!   against their structural schema ([`kube::schema_errors`]).
//! - [`webhook`]: an HTTP receiver for the `webhook` sink: takes a JSON event or a JSON array
//!   of events (or a text body, kept as a string) by `POST` or `PUT` on any path, answers 200,
//!   records the method, headers, bodies (parsed and raw) and event ids, and can be told to
//!   answer 503 to everything or 400 to events of one rule.
//!
//! Not a fake: [`alertmanager`] starts the real Prometheus Alertmanager (Debian's
//! `prometheus-alertmanager`, installed by `scripts/test`) on a free port and reads its
//! alerts back.
//! - [`gate`]: not a fake either: a TCP relay in front of a real broker (NATS, RabbitMQ,
//!   Mosquitto, Redis run on the machine) that a test cuts and restores, for outages.
//! - [`nats`]: not a fake: a private `nats-server` with JetStream and a test's own settings
//!   (payload limit, users and permissions).
//! - [`smtp`]: not a fake: aiosmtpd, a standalone SMTP server, run as a process with
//!   STARTTLS or implicit TLS, optional AUTH and scripted replies per recipient.
//! - [`syslog`]: not a fake: Debian's rsyslog (`rsyslog`, `rsyslog-gnutls`) run in the
//!   foreground with its own configuration — UDP, TCP or TLS (optionally requiring a client
//!   certificate) on a free port — writing each received message as received to a file; it
//!   can be stopped and started again for outage tests.

// Test support: a panic fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod alertmanager;
pub mod gate;
pub mod kube;
pub mod loki;
pub mod nats;
pub mod opensearch;
pub mod smtp;
pub mod syslog;
pub mod webhook;

/// The guarded value of a test double's mutex: a panicking handler cannot leave its maps
/// half-written in a way that matters to a test double, so it keeps serving.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
