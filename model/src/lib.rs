//! Falconer's data model, shared by every crate and free of any database or HTTP server:
//! the normalized event every source is parsed into (DESIGN.md §2) and the custom resources
//! (`Policy`, `Setting`, consumer and sink configs, DESIGN.md §7) with their validation, and
//! the plain records of findings and risk scores that the store keeps and the hub serves.

#[cfg(feature = "crd")]
pub mod crd;
pub mod event;
pub mod finding;
pub mod group;
pub mod matcher;
pub mod names;
pub mod risk;
pub mod suppression;

pub use event::{Cluster, Event, Kind, Severity, Stored, Workload, dedup_key};
