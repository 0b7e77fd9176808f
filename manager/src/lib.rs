//! Falconer's manager: reconciles `Policy` objects into the agents that run on the cluster
//! (Falco, kube-bench, Trivy) and validates `Setting` objects (DESIGN.md §7, §8).
//!
//! Everything that builds Kubernetes objects is a pure function of the resource (`objects`),
//! so `falconer manager render` prints exactly what the controller applies; the controllers
//! (`controller`) only fetch, apply and report. `run` wires them to a cluster.

pub mod controller;
pub mod crdgen;
pub mod error;
pub mod images;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod objects;
pub mod render;
pub mod run;
pub mod server;
pub mod setting_checks;
pub mod status;

pub use error::{Error, Result};
pub use run::{Options, run};
