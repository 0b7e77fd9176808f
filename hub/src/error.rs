//! The hub's one error type. Caller mistakes become 4xx with a JSON body naming the field and
//! the reason; failures of ours become an opaque 500 while the log keeps the cause.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use falconer_store::StoreError;
use serde_json::json;

/// Seconds a client should wait after 429 (overload) and 503 (store down).
pub const RETRY_AFTER_OVERLOADED: u32 = 1;
pub const RETRY_AFTER_UNAVAILABLE: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the hub is overloaded; retry later")]
    Overloaded,
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    /// No room to keep what was sent durably (the ingest journal is full or its disk is):
    /// 507 with Retry-After, answered at once.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl HubError {
    pub fn bad(field: impl Into<String>, reason: impl Into<String>) -> HubError {
        HubError::BadRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for HubError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded => HubError::Overloaded,
            StoreError::Unavailable(m) => HubError::Unavailable(format!("store unavailable: {m}")),
            StoreError::JournalFull(m) => HubError::InsufficientStorage(m),
            // The database's text (paths, SQL) is for the log, where the writer put it.
            StoreError::DiskFull(_) => HubError::InsufficientStorage(
                "the store's disk is full: nothing of this request was stored".into(),
            ),
            other => HubError::Internal(other.to_string()),
        }
    }
}

impl ResponseError for HubError {
    fn status_code(&self) -> StatusCode {
        match self {
            HubError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            HubError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HubError::Forbidden(_) => StatusCode::FORBIDDEN,
            HubError::NotFound(_) => StatusCode::NOT_FOUND,
            HubError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HubError::Conflict(_) => StatusCode::CONFLICT,
            HubError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HubError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HubError::Overloaded | HubError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            HubError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            HubError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HubError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            HubError::Internal(_) | HubError::Bind { .. } | HubError::Config(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        let body = match self {
            HubError::BadRequest { field, reason } => {
                json!({"error": format!("{field}: {reason}"), "field": field, "reason": reason})
            }
            HubError::Internal(_) | HubError::Bind { .. } | HubError::Config(_) => {
                tracing::error!(error = %self, "Request failed");
                json!({"error": "internal error; see the hub's log"})
            }
            HubError::Unavailable(_) => {
                tracing::warn!(error = %self, "Store unavailable");
                json!({"error": self.to_string()})
            }
            _ => json!({"error": self.to_string()}),
        };
        match self {
            HubError::Overloaded | HubError::Busy(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_OVERLOADED));
            }
            HubError::Unavailable(_) | HubError::InsufficientStorage(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_UNAVAILABLE));
            }
            HubError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            HubError::MethodNotAllowed { allowed, .. } => {
                response.insert_header((header::ALLOW, allowed.as_str()));
            }
            _ => {}
        }
        response.json(body)
    }
}
