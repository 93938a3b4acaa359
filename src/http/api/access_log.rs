//! `/api/v1/access-log...` and `/api/v1/me/access-log`: the privacy officer's review, reports
//! and export pages; everyone's own events and their receipts; the log's key and checkpoints.
//!
//! Every decision goes through `authorize` (via `Authed::authorize`, which logs a denial);
//! every read of the log is itself an access event.

use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::Authed;
use crate::audit::proof::{self, ProofError};
use crate::audit::review::{self, RawFilter};
use crate::audit::sequencer::StoredCheckpoint;
use crate::audit::{AccessEvent, AccessRecord, Action as Logged, Actor, Outcome, Reason, Target};
use crate::auth::{Action, Resource};
use crate::domain::ids::UserId;
use crate::http::{ApiError, AppState};

/// A page of records.
#[derive(Debug, Serialize)]
pub struct PageDto {
    records: Vec<AccessRecord>,
    /// Give as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The log's key and newest checkpoint.
#[derive(Debug, Serialize)]
pub struct CheckpointDto {
    origin: String,
    verifier_key: String,
    size: u64,
    root: String,
    checkpoint: String,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Serialize)]
pub struct ConsistencyDto {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

fn audit_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "access log unavailable");
    ApiError::Unavailable("the access log")
}

/// Parses the query string as review parameters; unknown parameters are refused by name.
fn raw_filter(query: Option<&str>) -> Result<RawFilter, ApiError> {
    let query = query.unwrap_or_default();
    serde_urlencoded_like(query)
}

/// `key=value&...` into a [`RawFilter`], percent-decoded, each key at most once.
fn serde_urlencoded_like(query: &str) -> Result<RawFilter, ApiError> {
    let mut map = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |t: &str| {
            percent_decode(t)
                .ok_or_else(|| ApiError::BadRequest(format!("`{key}`: bad percent-encoding")))
        };
        let (key, value) = (decode(key)?, decode(value)?);
        if map
            .insert(key.clone(), serde_json::Value::String(value))
            .is_some()
        {
            return Err(ApiError::BadRequest(format!("`{key}` is given twice")));
        }
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
        ApiError::BadRequest(format!(
            "{e}: filters are release, dua, user, organization, action, outcome, from, to, limit, cursor"
        ))
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn log_read(
    state: &AppState,
    a: &Authed,
    target: Target,
    what: &'static str,
) -> Result<(), ApiError> {
    let event = AccessEvent::new(
        Actor::User(a.principal.user_id.0),
        Logged::AccessLogReviewed,
        target,
        Outcome::Granted,
    )
    .with_reason(Reason::new(what))
    .with_client(&a.client);
    state.audit.append(&event).await.map_err(audit_failed)?;
    Ok(())
}

async fn page_of(
    state: &AppState,
    raw: &RawFilter,
    force_user: Option<UserId>,
) -> Result<PageDto, ApiError> {
    let (mut filter, page) = raw
        .check()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(user) = force_user {
        filter.user = Some(user.0);
    }
    let page = review::page(&state.db, &filter, page)
        .await
        .map_err(audit_failed)?;
    Ok(PageDto {
        records: page.records,
        next: page.next,
    })
}

/// `GET /api/v1/access-log`: the privacy officer's filtered, paginated review.
pub(super) async fn list(
    State(state): State<AppState>,
    a: Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<PageDto>, ApiError> {
    a.authorize(&state, Action::ReviewAccessLog, &Resource::AccessLog)
        .await?;
    let raw = raw_filter(query.as_deref())?;
    let page = page_of(&state, &raw, None).await?;
    log_read(&state, &a, Target::AccessLog, "access log page read").await?;
    Ok(Json(page))
}

/// `GET /api/v1/me/access-log`: the caller's own events (to find a receipt's position).
pub(super) async fn list_own(
    State(state): State<AppState>,
    a: Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<PageDto>, ApiError> {
    a.authorize(
        &state,
        Action::ViewOwnAccount,
        &Resource::OwnedBy(a.principal.user_id),
    )
    .await?;
    let raw = raw_filter(query.as_deref())?;
    if raw.user.is_some() || raw.organization.is_some() {
        return Err(ApiError::BadRequest(
            "`user` and `organization` are always the caller here".into(),
        ));
    }
    let page = page_of(&state, &raw, Some(a.principal.user_id)).await?;
    log_read(
        &state,
        &a,
        Target::User(a.principal.user_id.0),
        "own access log events read",
    )
    .await?;
    Ok(Json(page))
}

/// `GET /api/v1/access-log/{seq}/proof`: the receipt of one record (its own actor, or the
/// privacy officer), proved against a signed checkpoint; the body is the receipt file.
pub(super) async fn receipt(
    State(state): State<AppState>,
    a: Authed,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    let seq: i64 = match seq.parse() {
        Ok(n) if n >= 1 => n,
        _ => {
            return Err(ApiError::BadRequest(
                "the position must be a whole number from 1".into(),
            ))
        }
    };
    let actor = {
        let mut conn = state.db.pool().acquire().await.map_err(audit_failed)?;
        crate::audit::sequencer::records_from(&mut conn, seq, 1)
            .await
            .map_err(audit_failed)?
            .into_iter()
            .next()
            .filter(|r| r.seq == Some(seq))
            .map(|r| r.actor_user.and_then(|u| u.parse().ok()).map(UserId))
    };
    // A position that does not exist is refused like one the caller may not see, so the answer
    // does not tell how long the log is.
    let actor = actor.unwrap_or(None);
    a.authorize(&state, Action::ReadLogReceipt, &Resource::LogRecord(actor))
        .await?;
    let checkpoint: StoredCheckpoint = state
        .sequencer
        .checkpoint_covering(seq as u64)
        .await
        .map_err(audit_failed)?;
    let receipt = match proof::receipt(&state.db, seq, &checkpoint).await {
        Ok(receipt) => receipt,
        Err(ProofError::NoSuchPosition(_)) => return Err(ApiError::NotFound),
        Err(e) => return Err(audit_failed(e)),
    };
    let event = AccessEvent::new(
        Actor::User(a.principal.user_id.0),
        Logged::AccessLogProofServed,
        Target::LogRecord(seq),
        Outcome::Granted,
    )
    .with_client(&a.client);
    state.audit.append(&event).await.map_err(audit_failed)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        receipt.to_canonical_bytes(),
    )
        .into_response())
}

/// `GET /api/v1/access-log/checkpoint`: the log's verifier key and newest signed checkpoint,
/// for anyone signed in (a recipient keeps it to check receipts later).
pub(super) async fn checkpoint(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<CheckpointDto>, ApiError> {
    a.authorize(&state, Action::ReadSigningKey, &Resource::ServerKeys)
        .await?;
    let checkpoint = state
        .sequencer
        .checkpoint_covering(1)
        .await
        .map_err(audit_failed)?;
    let signer = state.sequencer.signer();
    Ok(Json(CheckpointDto {
        origin: signer.origin().to_owned(),
        verifier_key: signer.verifier_key(),
        size: checkpoint.size,
        root: checkpoint.root,
        checkpoint: checkpoint.note,
    }))
}

/// `GET /api/v1/access-log/consistency?from=N&to=M`: proof that the tree of M records extends
/// the tree of N.
pub(super) async fn consistency(
    State(state): State<AppState>,
    a: Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<ConsistencyDto>, ApiError> {
    a.authorize(&state, Action::ReadSigningKey, &Resource::ServerKeys)
        .await?;
    let mut from = None;
    let mut to = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = value
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest(format!("`{key}` must be a tree size")))?;
        match key {
            "from" => from = Some(number),
            "to" => to = Some(number),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}`: expected from, to"
                )))
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::BadRequest("give both `from` and `to`".into()));
    };
    match proof::consistency(&state.db, from, to).await {
        Ok(proof) => Ok(Json(ConsistencyDto { from, to, proof })),
        Err(e @ ProofError::BadSizes { .. }) => Err(ApiError::BadRequest(e.to_string())),
        Err(e) => Err(audit_failed(e)),
    }
}

/// `GET /api/v1/access-log/reports/{name}`: refusals (by reason and address, over `from`..`to`),
/// expiring DUAs (next 30 days), overdue destruction demands.
pub(super) async fn report(
    State(state): State<AppState>,
    a: Authed,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    a.authorize(&state, Action::ReviewAccessLog, &Resource::AccessLog)
        .await?;
    let today = state.clock.now().date();
    let body = match name.as_str() {
        "refusals" => {
            let raw = raw_filter(query.as_deref())?;
            let only_period = RawFilter {
                from: raw.from.clone(),
                to: raw.to.clone(),
                ..RawFilter::default()
            };
            if raw.from.is_none() || raw.to.is_none() || only_period_differs(&raw, &only_period) {
                return Err(ApiError::BadRequest(
                    "the refusals report takes `from` and `to` (RFC 3339), nothing else".into(),
                ));
            }
            let (filter, _) = only_period
                .check()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let rows = review::refusals(
                &state.db,
                filter.from.as_deref().unwrap_or_default(),
                filter.to.as_deref().unwrap_or_default(),
            )
            .await
            .map_err(audit_failed)?;
            serde_json::json!({ "from": filter.from, "to": filter.to, "refusals": rows })
        }
        "expiring-duas" | "overdue-destructions"
            if query.as_deref().is_some_and(|q| !q.is_empty()) =>
        {
            return Err(ApiError::BadRequest(format!(
                "the {name} report takes no parameters"
            )));
        }
        "expiring-duas" => {
            let until = today + time::Duration::days(30);
            let rows = review::expiring_duas(&state.db, &today.to_string(), &until.to_string())
                .await
                .map_err(audit_failed)?;
            serde_json::json!({ "today": today.to_string(), "until": until.to_string(), "duas": rows })
        }
        "holders" => {
            let release = query
                .as_deref()
                .and_then(|q| q.strip_prefix("release="))
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "the holders report takes `release` (a release id), nothing else".into(),
                    )
                })?;
            let rows = review::holders(&state.db, release)
                .await
                .map_err(audit_failed)?;
            serde_json::json!({ "release": release.to_string(), "holders": rows })
        }
        "overdue-destructions" => {
            let rows = review::overdue_destructions(&state.db, today)
                .await
                .map_err(audit_failed)?;
            serde_json::json!({ "today": today.to_string(), "releases": rows })
        }
        _ => return Err(ApiError::NotFound),
    };
    log_read(&state, &a, Target::AccessLog, "access log report read").await?;
    Ok(Json(body).into_response())
}

fn only_period_differs(raw: &RawFilter, period: &RawFilter) -> bool {
    raw.release != period.release
        || raw.dua != period.dua
        || raw.user != period.user
        || raw.organization != period.organization
        || raw.action != period.action
        || raw.outcome != period.outcome
        || raw.limit != period.limit
        || raw.cursor != period.cursor
}
