//! `/api/v1/me`, `/api/v1/me/keys`, `/api/v1/me/tokens`: the signed-in user's own account.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{parse_json, rfc3339, Authed};
use crate::auth::{Action, Resource};
use crate::db::api_tokens::ApiTokenRow;
use crate::db::recipient_keys::RecipientKeyRow;
use crate::domain::ids::{ApiTokenId, RecipientKeyId};
use crate::domain::role::Role;
use crate::http::{ApiError, AppState};

/// The signed-in user.
#[derive(Serialize)]
pub struct MeDto {
    id: String,
    username: String,
    display_name: String,
    organization_id: String,
    roles: Vec<Role>,
    authenticated_with: &'static str,
}

/// A registered public key.
#[derive(Serialize)]
pub struct KeyDto {
    id: String,
    kind: String,
    public_key: String,
    label: String,
    created_at: String,
}

impl From<RecipientKeyRow> for KeyDto {
    fn from(row: RecipientKeyRow) -> Self {
        Self {
            id: row.id.to_string(),
            kind: row.kind,
            public_key: row.public_key,
            label: row.label,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// `PUT /api/v1/me/password` body. `Debug` is not derived: it holds passwords.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// The password in use.
    #[schema(value_type = String, format = Password)]
    current_password: secrecy::SecretString,
    /// The new one (the password policy applies).
    #[schema(value_type = String, format = Password)]
    new_password: secrecy::SecretString,
}

/// `POST /api/v1/me/keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    /// An age X25519 recipient (`age1...`) or an `ssh-ed25519` public key.
    public_key: String,
    /// A name for the key (the laptop it lives on).
    #[serde(default)]
    label: String,
}

/// An API token (never its secret, except once at creation).
#[derive(Serialize)]
pub struct TokenDto {
    id: String,
    name: String,
    roles: Vec<Role>,
    created_at: String,
    expires_at: String,
    revoked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<ApiTokenRow> for TokenDto {
    fn from(row: ApiTokenRow) -> Self {
        Self {
            id: row.id.to_string(),
            name: row.name,
            roles: row.roles,
            created_at: rfc3339(row.created_at),
            expires_at: rfc3339(row.expires_at),
            revoked: row.revoked_at.is_some(),
            token: None,
        }
    }
}

/// `POST /api/v1/me/tokens` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// What the token is for.
    name: String,
    /// Its lifetime in days (default and maximum from `[auth]`).
    #[serde(default)]
    expires_in_days: Option<u32>,
    /// Some of one's roles, to limit the token to them (default: all of them).
    #[serde(default)]
    roles: Option<Vec<Role>>,
}

pub(super) async fn show(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<MeDto>, ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::ViewOwnAccount,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    let user = state.auth.find_user(&p.user_id.to_string()).await?;
    Ok(Json(MeDto {
        id: user.id.to_string(),
        username: user.username,
        display_name: user.display_name,
        organization_id: user.org_id.to_string(),
        roles: p.roles.clone(),
        authenticated_with: match p.credential {
            crate::auth::Credential::Session { .. } => "session",
            crate::auth::Credential::ApiToken(_) => "api_token",
        },
    }))
}

pub(super) async fn change_password(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::ChangeOwnPassword,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    let body: PasswordBody = parse_json(&body)?;
    state
        .auth
        .change_password(p, body.current_password, body.new_password, &a.client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_keys(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<Vec<KeyDto>>, ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::ListRecipientKeys,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    let keys = state.auth.list_recipient_keys(p.user_id).await?;
    Ok(Json(keys.into_iter().map(KeyDto::from).collect()))
}

pub(super) async fn add_key(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<KeyDto>), ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::AddRecipientKey,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    let body: NewKeyBody = parse_json(&body)?;
    let key = state
        .auth
        .add_recipient_key(p, &body.public_key, &body.label, &a.client)
        .await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

pub(super) async fn remove_key(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<RecipientKeyId>,
) -> Result<StatusCode, ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::RemoveRecipientKey,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    state.auth.remove_recipient_key(p, id, &a.client).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_tokens(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<Vec<TokenDto>>, ApiError> {
    let p = &a.principal;
    a.authorize(&state, Action::ListApiTokens, &Resource::OwnedBy(p.user_id))
        .await?;
    let tokens = state.auth.list_api_tokens(p.user_id).await?;
    Ok(Json(tokens.into_iter().map(TokenDto::from).collect()))
}

pub(super) async fn create_token(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<TokenDto>), ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::CreateApiToken,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    let body: NewTokenBody = parse_json(&body)?;
    let (row, secret) = state
        .auth
        .create_api_token(p, &body.name, body.expires_in_days, body.roles, &a.client)
        .await?;
    let mut dto = TokenDto::from(row);
    dto.token = Some(secret.expose_secret().to_owned());
    Ok((StatusCode::CREATED, Json(dto)))
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<ApiTokenId>,
) -> Result<StatusCode, ApiError> {
    let p = &a.principal;
    a.authorize(
        &state,
        Action::RevokeApiToken,
        &Resource::OwnedBy(p.user_id),
    )
    .await?;
    let token = state.auth.api_token(id).await?;
    if token.user_id != p.user_id {
        // Someone else's token looks exactly like a missing one.
        return Err(ApiError::NotFound);
    }
    state.auth.revoke_api_token(p, id, &a.client).await?;
    Ok(StatusCode::NO_CONTENT)
}
