//! One error type for every handler, mapped exhaustively to a status and a stable code.
//!
//! A 4xx says exactly what was wrong with the request; a 5xx logs the whole cause chain and
//! answers with a generic body, so internals never reach a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::auth::authorize::DenialKind;
use crate::auth::AuthError;
use crate::delivery::range::RangeError;
use crate::delivery::DeliveryError;
use crate::destruction::DestructionError;
use crate::disclosure::service::PublicationError;
use crate::jobs::{JobServiceError, QueueError};
use crate::release::ServiceError;

/// What a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route or resource matches.
    #[error("not found")]
    NotFound,
    /// The request is malformed; the text says how.
    #[error("{0}")]
    BadRequest(String),
    /// Identity and access refused or failed the request.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The release service refused or failed the request.
    #[error(transparent)]
    Release(#[from] ServiceError),
    /// The job service refused or failed the request.
    #[error(transparent)]
    Jobs(#[from] JobServiceError),
    /// Delivery refused or failed the request.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// Destruction refused or failed the request.
    #[error(transparent)]
    Destruction(#[from] DestructionError),
    /// A publication review refused or failed.
    #[error(transparent)]
    Publication(#[from] PublicationError),
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
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Auth(error) => auth_status_and_code(error),
            ApiError::Release(error) => release_status_and_code(error),
            ApiError::Jobs(error) => job_status_and_code(error),
            ApiError::Delivery(error) => delivery_status_and_code(error),
            ApiError::Destruction(error) => destruction_status_and_code(error),
            ApiError::Publication(error) => publication_status_and_code(error),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Status and stable code for each identity-and-access failure.
fn auth_status_and_code(error: &AuthError) -> (StatusCode, &'static str) {
    match error {
        AuthError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        AuthError::LoginFailed => (StatusCode::UNAUTHORIZED, "login_failed"),
        AuthError::SecondFactorRequired => (StatusCode::UNAUTHORIZED, "second_factor_required"),
        AuthError::LockedOut { .. } => (StatusCode::TOO_MANY_REQUESTS, "locked_out"),
        AuthError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        AuthError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
        AuthError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        AuthError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        AuthError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        AuthError::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        AuthError::Audit(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        AuthError::Keyring(_) | AuthError::Hashing(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

/// Status and stable code for each release-service failure.
fn release_status_and_code(error: &ServiceError) -> (StatusCode, &'static str) {
    use crate::domain::committee::CommitteeError;
    match error {
        ServiceError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ServiceError::NoRowsSelected(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "filters_select_no_rows")
        }
        ServiceError::SourceUnreadable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "source_unavailable")
        }
        ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        ServiceError::Request(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ServiceError::Illegal(_) => (StatusCode::CONFLICT, "illegal_transition"),
        ServiceError::WrongState { .. } => (StatusCode::CONFLICT, "wrong_state"),
        ServiceError::BadDecision(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_decision"),
        ServiceError::CommitteeRequired(CommitteeError::DecisionMissing) => {
            (StatusCode::CONFLICT, "committee_decision_missing")
        }
        ServiceError::CommitteeRequired(_) => (StatusCode::CONFLICT, "committee_not_approved"),
        ServiceError::Dua(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_dua"),
        ServiceError::UnknownUser(_) => (StatusCode::UNPROCESSABLE_ENTITY, "dua_unknown_user"),
        ServiceError::UserOfOtherOrganization(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "dua_user_of_other_organization",
        ),
        ServiceError::UserDisabled(_) => (StatusCode::UNPROCESSABLE_ENTITY, "dua_user_disabled"),
        ServiceError::UserWithoutKey(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "dua_user_without_key")
        }
        ServiceError::DuaNumberTaken(_) => (StatusCode::CONFLICT, "dua_number_taken"),
        ServiceError::BadReason(_) => (StatusCode::BAD_REQUEST, "bad_reason"),
        ServiceError::Concurrent => (StatusCode::CONFLICT, "concurrent_change"),
        ServiceError::Database(_) | ServiceError::Stored(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
        ServiceError::Audit(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
    }
}

/// Status and stable code for each delivery failure: the kind of a refusal is decided by the
/// authorization function, not here.
fn publication_status_and_code(error: &PublicationError) -> (StatusCode, &'static str) {
    match error {
        PublicationError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        PublicationError::Auth(error) => auth_status_and_code(error),
        PublicationError::Upload(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_table"),
        PublicationError::Release(error) => release_status_and_code(error),
        PublicationError::Audit(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        PublicationError::Database(_) | PublicationError::Seal(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

fn destruction_status_and_code(error: &DestructionError) -> (StatusCode, &'static str) {
    match error {
        DestructionError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        DestructionError::Auth(error) => auth_status_and_code(error),
        DestructionError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        DestructionError::NeverAvailable(_) => (StatusCode::CONFLICT, "never_available"),
        DestructionError::AlreadyDemanded(_) => (StatusCode::CONFLICT, "already_demanded"),
        DestructionError::NoDemand(_) => (StatusCode::NOT_FOUND, "no_destruction_demand"),
        DestructionError::AlreadyAttested(_) => (StatusCode::CONFLICT, "already_attested"),
        DestructionError::Attestation(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "attestation_refused")
        }
        DestructionError::NotCertified(_) => (StatusCode::CONFLICT, "not_certified_yet"),
        DestructionError::Release(error) => release_status_and_code(error),
        DestructionError::Audit(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
        DestructionError::ObjectsRemain(_)
        | DestructionError::Store(_)
        | DestructionError::Queue(_)
        | DestructionError::Database(_)
        | DestructionError::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn delivery_status_and_code(error: &DeliveryError) -> (StatusCode, &'static str) {
    match error {
        DeliveryError::BadLink(_) => (StatusCode::UNAUTHORIZED, "invalid_link"),
        DeliveryError::Denied(denied) => match denied.kind() {
            DenialKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            DenialKind::Gone => (StatusCode::GONE, "gone"),
            DenialKind::LimitReached => (StatusCode::TOO_MANY_REQUESTS, "download_limit_reached"),
        },
        DeliveryError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        DeliveryError::Range(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
        DeliveryError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        DeliveryError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        DeliveryError::Release(error) => release_status_and_code(error),
        DeliveryError::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// Status and stable code for each job-service failure.
fn job_status_and_code(error: &JobServiceError) -> (StatusCode, &'static str) {
    match error {
        JobServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        JobServiceError::ReleaseNotFound | JobServiceError::JobNotFound => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        JobServiceError::ReleaseWrongState { .. } => (StatusCode::CONFLICT, "wrong_state"),
        JobServiceError::AlreadyActive { .. } => (StatusCode::CONFLICT, "job_already_active"),
        JobServiceError::JobWrongState { .. } => (StatusCode::CONFLICT, "job_wrong_state"),
        JobServiceError::ErasingJob(_) => (StatusCode::CONFLICT, "erasing_job"),
        JobServiceError::Release(error) => release_status_and_code(error),
        JobServiceError::Queue(error) => queue_status_and_code(error),
        JobServiceError::Audit(_) => (StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable"),
    }
}

/// Status and stable code for each queue failure.
fn queue_status_and_code(error: &QueueError) -> (StatusCode, &'static str) {
    match error {
        QueueError::AlreadyActive { .. } => (StatusCode::CONFLICT, "job_already_active"),
        QueueError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        QueueError::WrongState { .. } => (StatusCode::CONFLICT, "job_wrong_state"),
        // Only runners hold leases; a request never should.
        QueueError::LeaseLost(_) | QueueError::Corrupt(_) | QueueError::Database(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = ?self, code, "request failed");
            match &self {
                ApiError::Unavailable(what)
                | ApiError::Delivery(DeliveryError::Unavailable(what)) => {
                    format!("{what} is unavailable; try again later")
                }
                _ => "internal error; the request id identifies it in the server log".to_owned(),
            }
        } else {
            self.to_string()
        };
        let retry_after = match &self {
            ApiError::Auth(
                AuthError::LockedOut { retry_after_secs }
                | AuthError::RateLimited { retry_after_secs },
            ) => Some(*retry_after_secs),
            _ => None,
        };
        let mut response = (status, Json(ErrorBody { code, message })).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if let ApiError::Delivery(DeliveryError::Range(RangeError::Unsatisfiable { size })) = &self
        {
            if let Ok(value) = axum::http::HeaderValue::from_str(&format!("bytes */{size}")) {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
