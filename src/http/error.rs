//! One error type for every handler, mapped exhaustively to a status and a stable code.
//!
//! A 4xx says exactly what was wrong with the request; a 5xx logs the whole cause chain and
//! answers with a generic body, so internals never reach a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// What a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route or resource matches.
    #[error("not found")]
    NotFound,
    /// A dependency the request needs is down.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure; details go to the log only.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// Status and stable code for each variant.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = ?self, code, "request failed");
            match &self {
                ApiError::Unavailable(what) => format!("{what} is unavailable; try again later"),
                _ => "internal error; the request id identifies it in the server log".to_owned(),
            }
        } else {
            self.to_string()
        };
        (status, Json(ErrorBody { code, message })).into_response()
    }
}
