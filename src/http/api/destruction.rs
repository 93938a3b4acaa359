//! After delivery: destruction (`/api/v1/releases/{id}/destruction`: demand, progress, the
//! certificate as JSON and PDF, the recipient's attestation) and publication reviews
//! (`/api/v1/releases/{id}/publication-reviews`, `/api/v1/publication-reviews`). Each handler
//! hands the request to its service (`destruction::DestructionService`,
//! `disclosure::service::PublicationReviews`), which authorizes (through `auth::authorize`)
//! and logs.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use uuid::Uuid;

use super::{parse_json, rfc3339, Authed};
use crate::db::destruction::DemandRow;
use crate::destruction::{Attestation, DemandRequest, DemandView};
use crate::domain::release::ReleaseId;
use crate::http::{ApiError, AppState};
use crate::release::Caller;

/// A demand as recorded.
#[derive(Debug, Serialize)]
pub struct DemandDto {
    release: String,
    demanded_by: String,
    demanded_at: String,
    deadline: String,
    revocation: String,
    certificate_issued: bool,
    attested: bool,
}

fn demand_dto(row: DemandRow) -> DemandDto {
    DemandDto {
        release: row.release.to_string(),
        demanded_by: row.demanded_by.clone(),
        demanded_at: rfc3339(row.demanded_at),
        deadline: row.deadline.clone(),
        revocation: row.revocation.to_string(),
        certificate_issued: row.certified(),
        attested: row.attestation_json.is_some(),
    }
}

/// An id from the path; one that does not parse names nothing, like an unknown one.
fn release_id(id: &str) -> ReleaseId {
    ReleaseId(Uuid::parse_str(id).unwrap_or_else(|_| Uuid::nil()))
}

/// `POST /api/v1/releases/{id}/destruction` `{"reason": "...", "deadline": "YYYY-MM-DD"}`.
pub(super) async fn demand(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<DemandDto>), ApiError> {
    let request: DemandRequest = parse_json(&body)?;
    let row = state
        .destruction
        .demand(
            Caller::Person(&a.principal),
            release_id(&id),
            request,
            a.route,
            &a.client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(demand_dto(row))))
}

/// `GET /api/v1/releases/{id}/destruction`: the demand, its progress and the users the
/// attestation must cover.
pub(super) async fn show(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<DemandView>, ApiError> {
    let view = state
        .destruction
        .view(
            Caller::Person(&a.principal),
            release_id(&id),
            a.route,
            &a.client,
        )
        .await?;
    Ok(Json(view))
}

async fn signed_certificate(
    state: &AppState,
    a: &Authed,
    id: &str,
) -> Result<crate::destruction::certificate::SignedCertificate, ApiError> {
    Ok(state
        .destruction
        .certificate(
            Caller::Person(&a.principal),
            release_id(id),
            a.route,
            &a.client,
        )
        .await?)
}

fn file_response(content_type: &str, name: String, bytes: Vec<u8>) -> Result<Response, ApiError> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from(bytes))
        .map_err(|e| ApiError::Unexpected(e.into()))
}

/// `GET /api/v1/releases/{id}/destruction/certificate`: the signed JSON file.
pub(super) async fn certificate(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let signed = signed_certificate(&state, &a, &id).await?;
    let name = format!("destruction-{}.json", signed.certificate.release);
    file_response("application/json", name, signed.to_file())
}

/// `GET /api/v1/releases/{id}/destruction/certificate.pdf`: the same certificate as a PDF.
pub(super) async fn certificate_pdf(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let signed = signed_certificate(&state, &a, &id).await?;
    let name = format!("destruction-{}.pdf", signed.certificate.release);
    let pdf = tokio::task::spawn_blocking(move || signed.to_pdf())
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    file_response("application/pdf", name, pdf)
}

/// `POST /api/v1/releases/{id}/destruction/attestation`: the responsible person's
/// certificate of destruction, one entry per user who downloaded.
pub(super) async fn attest(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<DemandDto>, ApiError> {
    let attestation: Attestation = parse_json(&body)?;
    let row = state
        .destruction
        .attest(
            Caller::Person(&a.principal),
            release_id(&id),
            attestation,
            a.route,
            &a.client,
        )
        .await?;
    Ok(Json(demand_dto(row)))
}

/// `POST /api/v1/releases/{id}/publication-reviews`: the body is the table (CSV); the answer
/// is the review.
pub(super) async fn submit_publication_review(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (review_id, review) = state
        .publications
        .submit(&a.principal, release_id(&id), &body, a.route, &a.client)
        .await?;
    let mut json = serde_json::to_value(&review).map_err(|e| ApiError::Unexpected(e.into()))?;
    json["id"] = serde_json::Value::String(review_id.to_string());
    Ok((StatusCode::CREATED, Json(json)))
}

/// `GET /api/v1/publication-reviews`: every review (the privacy officer's).
pub(super) async fn publication_reviews(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<Vec<crate::disclosure::service::StoredReview>>, ApiError> {
    Ok(Json(
        state
            .publications
            .list(&a.principal, a.route, &a.client)
            .await?,
    ))
}
