//! The delivery crate's one error type: what can stop a consumer from running at all.
//! Failures of single sends are not errors here; they are `Outcome`s the worker retries.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The consumer's settings do not make sense; the message names the field.
    #[error("consumer {consumer}: {message}")]
    Config { consumer: String, message: String },
    /// A key the sink needs is missing from the consumer's secret.
    #[error("consumer {consumer}: secret key `{key}` is missing ({hint})")]
    MissingSecret {
        consumer: String,
        key: String,
        hint: String,
    },
    /// The same consumer name is declared twice.
    #[error("consumer {consumer} is declared both in {first} and in {second}; neither runs")]
    Duplicate {
        consumer: String,
        first: String,
        second: String,
    },
    /// No consumer of that name.
    #[error("no consumer named {0}")]
    UnknownConsumer(String),
    /// A duration setting that does not parse; names the field and gives examples.
    #[error("phoenix.{field}: `{value}` is not a duration like {example}")]
    InvalidDuration {
        field: &'static str,
        value: String,
        example: &'static str,
    },
    /// Work that needs the Tokio runtime was started outside it.
    #[error("the Phoenix sink's TTL cleanup needs a Tokio runtime; build the sink inside one")]
    NoRuntime,
    /// A call to the Kubernetes API server failed (`doing` says what it was for).
    #[error("{doing}: {message}")]
    Kube { doing: String, message: String },
    #[error(transparent)]
    Store(#[from] falconer_store::StoreError),
}
