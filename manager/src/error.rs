//! The manager's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Policy or Setting that the API server would refuse, or that cannot be turned into
    /// objects (only reachable for objects that skipped the API server, e.g. `render`).
    #[error("invalid {kind} `{name}`: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// Some agents' objects could not be applied or deleted (the others were).
    #[error("{0}")]
    Agents(String),
    /// The CRDs are not installed in the cluster.
    #[error(
        "the CustomResourceDefinition {0} is not installed; install the chart's crds/ or run \
         `falconer crdgen --stdout | kubectl apply --server-side -f -`"
    )]
    CrdMissing(String),
    /// Another replica holds the leader lease and this one lost it.
    #[error("leader lease lost: {0}")]
    LeaseLost(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("YAML: {0}")]
    Yaml(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A bounded label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 404 => "not_found",
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Invalid { .. } => "invalid",
            Error::Agents(_) => "agents",
            Error::CrdMissing(_) => "crd_missing",
            Error::LeaseLost(_) => "lease_lost",
            Error::File { .. } | Error::Io(_) => "io",
            Error::Parse { .. } | Error::Yaml(_) => "parse",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
