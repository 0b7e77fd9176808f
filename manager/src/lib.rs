//! Falconer's manager: reconciles `Policy` objects into the agents that run on the cluster
//! (Falco, kube-bench, Trivy) and validates `Setting` objects (DESIGN.md §7, §8).
//!
//! Everything that builds Kubernetes objects is a pure function of the resource (`objects`),
//! so `falconer manager render` prints exactly what the controller applies; the controllers
//! (`policy`, `setting`) only fetch, apply and report.

pub mod crdgen;
pub mod error;

pub use error::{Error, Result};
pub mod objects;
pub mod render;
pub mod settings;
pub mod status;
