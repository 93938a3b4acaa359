//! `/api/v1/releases/{id}/extract` and `/api/v1/jobs/...`: start a release's extract, watch
//! its job, cancel and retry it.
//!
//! Each handler authorizes first (through `Authenticator::check`, which logs a denial), then
//! parses its input, then calls `jobs::JobService`, the same code `steward jobs` runs.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{rfc3339, Authed};
use crate::auth::{Action, Resource};
use crate::domain::release::ReleaseId;
use crate::http::{ApiError, AppState};
use crate::jobs::{Cancelled, Job, JobId, JobService};
use crate::release::Caller;

/// A job on the wire.
#[derive(Debug, Serialize)]
pub struct JobDto {
    id: String,
    kind: &'static str,
    release_id: String,
    state: &'static str,
    attempts: i64,
    max_attempts: i64,
    run_after: String,
    lease_owner: Option<String>,
    lease_expires_at: Option<String>,
    heartbeat_at: Option<String>,
    cancel_requested: bool,
    progress: serde_json::Value,
    error: Option<String>,
    created_at: String,
    finished_at: Option<String>,
    /// Present on `GET /api/v1/jobs/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Vec<String>>,
}

/// The answer to a cancel: the job, and whether it stopped now or will at its next heartbeat.
#[derive(Debug, Serialize)]
pub struct CancelDto {
    cancel: &'static str,
    job: JobDto,
}

fn job_dto(job: &Job, log: Option<Vec<String>>) -> Result<JobDto, ApiError> {
    // Progress is written by the runner as JSON; a row that does not parse is a bug.
    let progress = serde_json::from_str(&job.progress).map_err(|e| {
        ApiError::Unexpected(anyhow::anyhow!(
            "job {} has malformed progress: {e}",
            job.id
        ))
    })?;
    Ok(JobDto {
        id: job.id.to_string(),
        kind: job.kind.as_str(),
        release_id: job.release_id.to_string(),
        state: job.state.as_str(),
        attempts: job.attempts,
        max_attempts: job.max_attempts,
        run_after: rfc3339(job.run_after),
        lease_owner: job.lease_owner.clone(),
        lease_expires_at: job.lease_expires_at.map(rfc3339),
        heartbeat_at: job.heartbeat_at.map(rfc3339),
        cancel_requested: job.cancel_requested,
        progress,
        error: job.error.clone(),
        created_at: rfc3339(job.created_at),
        finished_at: job.finished_at.map(rfc3339),
        log,
    })
}

fn service(state: &AppState) -> JobService {
    JobService::new(
        state.jobs.clone(),
        state.releases.clone(),
        state.audit.clone(),
    )
}

async fn check(state: &AppState, a: &Authed, action: Action) -> Result<(), ApiError> {
    a.authorize(state, action, &Resource::Jobs).await?;
    Ok(())
}

/// An id from the path; one that does not parse names nothing that exists.
fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}

fn parse_release_query(query: Option<&str>) -> Result<Option<ReleaseId>, ApiError> {
    let mut release = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "release" => {
                release = Some(value.parse::<ReleaseId>().map_err(|_| {
                    ApiError::BadRequest(format!("`release`: `{value}` is not a release id"))
                })?);
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`: expected release"
                )))
            }
        }
    }
    Ok(release)
}

pub(super) async fn start(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobDto>), ApiError> {
    check(&state, &a, Action::StartExtract).await?;
    let release = id.parse::<ReleaseId>().map_err(|_| ApiError::NotFound)?;
    let job = service(&state)
        .start(Caller::Person(&a.principal), release, &a.client)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job_dto(&job, None)?)))
}

pub(super) async fn list(
    State(state): State<AppState>,
    a: Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<JobDto>>, ApiError> {
    check(&state, &a, Action::ReadJobs).await?;
    let release = parse_release_query(query.as_deref())?;
    let jobs = service(&state)
        .list(Caller::Person(&a.principal), release)
        .await?;
    Ok(Json(
        jobs.iter()
            .map(|j| job_dto(j, None))
            .collect::<Result<_, _>>()?,
    ))
}

pub(super) async fn show(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<JobDto>, ApiError> {
    check(&state, &a, Action::ReadJobs).await?;
    let detail = service(&state)
        .show(Caller::Person(&a.principal), job_id(&id)?)
        .await?;
    Ok(Json(job_dto(&detail.job, Some(detail.log))?))
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<CancelDto>, ApiError> {
    check(&state, &a, Action::CancelJob).await?;
    let (job, outcome) = service(&state)
        .cancel(Caller::Person(&a.principal), job_id(&id)?, &a.client)
        .await?;
    Ok(Json(CancelDto {
        cancel: match outcome {
            Cancelled::Now => "cancelled",
            Cancelled::Requested => "requested",
        },
        job: job_dto(&job, None)?,
    }))
}

pub(super) async fn retry(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobDto>), ApiError> {
    check(&state, &a, Action::RetryJob).await?;
    let job = service(&state)
        .retry(Caller::Person(&a.principal), job_id(&id)?, &a.client)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job_dto(&job, None)?)))
}
