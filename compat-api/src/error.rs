//! The one mapping from error kinds to HTTP status codes, and Docker's `{"message": ...}`
//! error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use engine::ErrorKind;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
}

/// Docker's status for each kind of failure; the only place this decision is made.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        // Docker answers 503 for "not a swarm manager" and 500 for registry failures;
        // Unavailable is used for both with the matching message.
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(self.kind);
        if status == StatusCode::NOT_MODIFIED {
            // A 304 has no body.
            return status.into_response();
        }
        let body = serde_json::json!({ "message": self.message }).to_string();
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        // A failed start is a runtime failure for the API (the CLI maps it to 125/126/127
        // from the message); Docker answers 500 with an "OCI runtime" style message.
        let kind = match &e {
            engine::Error::StartFailed { .. } => ErrorKind::Internal,
            other => other.kind(),
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<network::Error> for ApiError {
    fn from(e: network::Error) -> Self {
        engine::Error::from(e).into()
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("internal error: {e}"))
    }
}
