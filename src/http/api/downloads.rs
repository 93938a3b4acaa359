//! Downloads: `/api/v1/releases/{id}/files`, `/api/v1/files/{id}/links`, `GET /dl/{token}` and
//! `/api/v1/revocations`. Each handler hands the request to `delivery::DeliveryService`, where
//! it is authorized (through `auth::authorize`), counted and logged; here are only the shapes
//! on the wire and the response headers of a stream.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::releases::parse_optional;
use super::{parse_json, rfc3339, Authed};
use crate::auth::{Action, Resource};
use crate::db::downloads::{RevocationRow, RevocationScope};
use crate::delivery::{FileOffer, RevocationRequest};
use crate::domain::release::ReleaseId;
use crate::http::{ApiError, AppState};
use crate::release::Caller;

/// A file of a release on the wire.
#[derive(Debug, Serialize)]
pub struct FileDto {
    id: String,
    name: String,
    kind: String,
    rows: Option<i64>,
    plaintext_bytes: i64,
    ciphertext_bytes: i64,
    ciphertext_sha256: String,
    /// Whole downloads the caller has left; absent for callers the DUA does not name.
    #[serde(skip_serializing_if = "Option::is_none")]
    downloads_left: Option<u64>,
}

fn file_dto(offer: FileOffer) -> FileDto {
    let f = offer.file;
    FileDto {
        id: f.id.to_string(),
        name: f.name,
        kind: f.kind,
        rows: f.rows,
        plaintext_bytes: f.plaintext_bytes,
        ciphertext_bytes: f.ciphertext_bytes,
        ciphertext_sha256: f.ciphertext_sha256,
        downloads_left: offer.downloads_left,
    }
}

/// `POST /api/v1/files/{id}/links` body; both fields optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// The link's lifetime in seconds (default and maximum from `[downloads]`).
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// Bind the link to the address asking for it: no other address may use it.
    #[serde(default)]
    bind_address: bool,
}

/// An issued link.
#[derive(Debug, Serialize)]
pub struct LinkDto {
    url: String,
    token: String,
    expires_at: String,
    file_id: String,
    name: String,
    ciphertext_bytes: i64,
    ciphertext_sha256: String,
    bound_to: Option<String>,
}

/// `POST /api/v1/revocations` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationBody {
    /// What to stop: `user`, `organization`, `release` or `file`.
    scope: String,
    /// The id of that user, organization, release or file.
    id: String,
    /// Why (kept with the revocation).
    reason: String,
}

/// A revocation on the wire.
#[derive(Debug, Serialize)]
pub struct RevocationDto {
    id: String,
    scope: &'static str,
    scope_id: String,
    reason: String,
    created_by: String,
    created_at: String,
    lifted_by: Option<String>,
    lifted_at: Option<String>,
}

fn revocation_dto(row: RevocationRow) -> RevocationDto {
    RevocationDto {
        id: row.id.to_string(),
        scope: row.scope.kind(),
        scope_id: row.scope.id().to_string(),
        reason: row.reason,
        created_by: row.created_by,
        created_at: rfc3339(row.created_at),
        lifted_by: row.lifted_by,
        lifted_at: row.lifted_at.map(rfc3339),
    }
}

/// An id from the path; one that does not parse names nothing, like an unknown one.
fn path_id(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_else(|_| Uuid::nil())
}

pub(super) async fn files(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<FileDto>>, ApiError> {
    let offers = state
        .delivery
        .files(&a.principal, ReleaseId(path_id(&id)), a.route, &a.client)
        .await?;
    Ok(Json(offers.into_iter().map(file_dto).collect()))
}

pub(super) async fn create_link(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<LinkDto>), ApiError> {
    // The body says only how long and where from; it is read before the decision because the
    // decision (logged) is the service's, and an unparsable body changes nothing.
    let body: LinkBody = parse_optional(&body)?;
    let link = state
        .delivery
        .issue_link(
            &a.principal,
            path_id(&id),
            body.ttl_secs,
            body.bind_address,
            &a.client,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LinkDto {
            url: format!("/dl/{}", link.token),
            token: link.token,
            expires_at: rfc3339(link.expires_at),
            file_id: link.file.id.to_string(),
            name: link.file.name,
            ciphertext_bytes: link.file.ciphertext_bytes,
            ciphertext_sha256: link.file.ciphertext_sha256,
            bound_to: link.bound_to.map(|ip| ip.to_string()),
        }),
    ))
}

/// `GET /dl/{token}`: the link and the same user's own authentication; one byte range
/// resumes (206). The body streams from the object store; the request timeout covers only
/// the time to the response head, so a long download is never cut by it.
pub(super) async fn download(
    State(state): State<AppState>,
    a: Authed,
    Path(token): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers.get(header::RANGE).map(HeaderValue::as_bytes);
    let transfer = state
        .delivery
        .start(&a.principal, &token, range, &a.client)
        .await?;
    let (offset, len, size) = (transfer.offset(), transfer.len(), transfer.size());
    let status = if transfer.is_partial() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let file = transfer.file();
    let etag = format!("\"{}\"", file.ciphertext_sha256);
    // Names are server-made (`[A-Za-z0-9._-]`), so they need no quoting beyond the quotes.
    let disposition = format!("attachment; filename=\"{}\"", file.name);
    let mut chunks = transfer.stream();
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        chunks.poll_recv(cx)
    }));
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ETAG, etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_DISPOSITION, disposition);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {offset}-{}/{size}", offset + len - 1),
        );
    }
    builder
        .body(body)
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("download response: {e}")))
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<RevocationDto>), ApiError> {
    // Decided before the body is read, so a caller who may not revoke learns nothing from
    // its validation; the service decides again for its other callers (the CLI).
    a.authorize(&state, Action::RevokeAccess, &Resource::Revocations)
        .await?;
    let body: RevocationBody = parse_json(&body)?;
    let id = Uuid::parse_str(&body.id)
        .map_err(|_| ApiError::BadRequest(format!("`id`: `{}` is not an id", body.id)))?;
    let scope = RevocationScope::from_parts(&body.scope, id).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`scope`: `{}` is not one of user, organization, release, file",
            body.scope
        ))
    })?;
    let row = state
        .delivery
        .revoke(
            Caller::Person(&a.principal),
            RevocationRequest {
                scope,
                reason: body.reason,
            },
            a.route,
            &a.client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(revocation_dto(row))))
}

pub(super) async fn list_revocations(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<Vec<RevocationDto>>, ApiError> {
    let rows = state
        .delivery
        .revocations(Caller::Person(&a.principal), a.route, &a.client)
        .await?;
    Ok(Json(rows.into_iter().map(revocation_dto).collect()))
}

pub(super) async fn lift_revocation(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<RevocationDto>, ApiError> {
    let row = state
        .delivery
        .lift(
            Caller::Person(&a.principal),
            path_id(&id),
            a.route,
            &a.client,
        )
        .await?;
    Ok(Json(revocation_dto(row)))
}
