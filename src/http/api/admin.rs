//! `/api/v1/admin/...`: organizations, users, roles, lockouts and API tokens, for admins.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::me::TokenDto;
use super::{parse_json, rfc3339, Authed};
use crate::audit::Actor;
use crate::auth::{Action, By, NewAccount, Resource};
use crate::db::users::{OrgRow, UserRow};
use crate::domain::ids::{ApiTokenId, UserId};
use crate::domain::role::Role;
use crate::http::{ApiError, AppState};

/// An organization.
#[derive(Serialize)]
pub struct OrgDto {
    id: String,
    name: String,
    created_at: String,
}

impl From<OrgRow> for OrgDto {
    fn from(row: OrgRow) -> Self {
        Self {
            id: row.id.to_string(),
            name: row.name,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// A user, as admins see it (no secrets).
#[derive(Serialize)]
pub struct UserDto {
    id: String,
    username: String,
    display_name: String,
    organization_id: String,
    roles: Vec<Role>,
    disabled: bool,
    locked_until: Option<String>,
    created_at: String,
}

impl From<UserRow> for UserDto {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id.to_string(),
            username: row.username,
            display_name: row.display_name,
            organization_id: row.org_id.to_string(),
            roles: row.roles,
            disabled: row.disabled,
            locked_until: row.locked_until.map(rfc3339),
            created_at: rfc3339(row.created_at),
        }
    }
}

/// A new user's one-time secrets, shown once.
#[derive(Serialize)]
pub struct NewAccountDto {
    id: String,
    username: String,
    one_time_password: String,
    totp_uri: String,
    recovery_codes: Vec<String>,
}

impl From<NewAccount> for NewAccountDto {
    fn from(account: NewAccount) -> Self {
        Self {
            id: account.user_id.to_string(),
            username: account.username,
            one_time_password: account.password.expose_secret().to_owned(),
            totp_uri: account.totp_uri.expose_secret().to_owned(),
            recovery_codes: account
                .recovery_codes
                .iter()
                .map(|c| c.expose_secret().to_owned())
                .collect(),
        }
    }
}

/// `POST /api/v1/admin/orgs` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrgBody {
    /// The organization's name (unique).
    name: String,
}

/// `POST /api/v1/admin/users` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    /// Login name (unique).
    username: String,
    /// The name shown in letters and reports.
    #[serde(default)]
    display_name: String,
    /// Organization id or name.
    organization: String,
    /// The user's roles.
    roles: Vec<Role>,
}

/// `PUT /api/v1/admin/users/{id}/roles` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    /// The user's roles from now on (replacing the old ones).
    roles: Vec<Role>,
}

/// The administrator making a change, and from where.
fn actor(a: &Authed) -> By {
    By {
        actor: Actor::User(a.principal.user_id.0),
        client: a.client.clone(),
    }
}

pub(super) async fn list_orgs(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<Vec<OrgDto>>, ApiError> {
    a.authorize(&state, Action::ListOrganizations, &Resource::Directory)
        .await?;
    Ok(Json(
        state
            .auth
            .list_orgs()
            .await?
            .into_iter()
            .map(OrgDto::from)
            .collect(),
    ))
}

pub(super) async fn create_org(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<OrgDto>), ApiError> {
    a.authorize(&state, Action::CreateOrganization, &Resource::Directory)
        .await?;
    let body: NewOrgBody = parse_json(&body)?;
    // Over HTTPS an organization is never the agency: only bootstrap and the shell mark it.
    let org = state.auth.create_org(&actor(&a), &body.name, false).await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

pub(super) async fn list_users(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<Vec<UserDto>>, ApiError> {
    a.authorize(&state, Action::ListUsers, &Resource::Directory)
        .await?;
    Ok(Json(
        state
            .auth
            .list_users()
            .await?
            .into_iter()
            .map(UserDto::from)
            .collect(),
    ))
}

pub(super) async fn create_user(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<NewAccountDto>), ApiError> {
    a.authorize(&state, Action::CreateUser, &Resource::Directory)
        .await?;
    let body: NewUserBody = parse_json(&body)?;
    let account = state
        .auth
        .create_user(
            &actor(&a),
            &body.username,
            &body.display_name,
            &body.organization,
            &body.roles,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

pub(super) async fn disable_user(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    a.authorize(&state, Action::DisableUser, &Resource::Directory)
        .await?;
    state.auth.disable_user(&actor(&a), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn set_roles(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<UserId>,
    body: Bytes,
) -> Result<Json<Vec<Role>>, ApiError> {
    // Against the account itself: nobody changes their own roles.
    a.authorize(&state, Action::SetRoles, &Resource::OwnedBy(id))
        .await?;
    let body: RolesBody = parse_json(&body)?;
    Ok(Json(
        state.auth.set_roles(&actor(&a), id, &body.roles).await?,
    ))
}

pub(super) async fn unlock_user(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    a.authorize(&state, Action::UnlockUser, &Resource::Directory)
        .await?;
    state.auth.unlock_user(&actor(&a), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_user_tokens(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<UserId>,
) -> Result<Json<Vec<TokenDto>>, ApiError> {
    a.authorize(&state, Action::ListApiTokens, &Resource::Directory)
        .await?;
    let tokens = state.auth.list_api_tokens(id).await?;
    Ok(Json(tokens.into_iter().map(TokenDto::from).collect()))
}

pub(super) async fn revoke_token(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<ApiTokenId>,
) -> Result<StatusCode, ApiError> {
    a.authorize(&state, Action::RevokeApiToken, &Resource::Directory)
        .await?;
    state.auth.api_token(id).await?;
    state
        .auth
        .revoke_api_token(&a.principal, id, &a.client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
