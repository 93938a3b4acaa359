//! `/api/v1/auth/login|refresh|logout`: sessions as JSON for scripts and as cookies for the
//! browser console.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{
    cookie, parse_json, Authed, RequestContext, ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER,
    REFRESH_COOKIE,
};
use crate::auth::{Action, AuthError, IssuedSession, LoginRequest, Resource};
use crate::http::{ApiError, AppState};

/// `POST /api/v1/auth/login` body. `Debug` is not derived: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The user name.
    username: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// The current TOTP code (six digits); or give a recovery code.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    totp: Option<SecretString>,
    /// A single-use recovery code, in place of the TOTP code.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    recovery_code: Option<SecretString>,
}

/// `POST /api/v1/auth/refresh` body (absent when the refresh cookie is used).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    /// The refresh token from sign-in or the last refresh (single use).
    #[schema(value_type = String, format = Password)]
    refresh_token: SecretString,
}

/// The tokens of a session.
#[derive(Serialize)]
pub struct TokensDto {
    token_type: &'static str,
    access_token: String,
    expires_in: u64,
    refresh_token: String,
    session_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    user_id: String,
    session_id: String,
}

#[tracing::instrument(skip_all)]
pub(super) async fn login(
    State(state): State<AppState>,
    ctx: RequestContext,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: LoginBody = parse_json(&body)?;
    let issued = state
        .auth
        .login(
            LoginRequest {
                username: body.username,
                password: body.password,
                totp: body.totp,
                recovery_code: body.recovery_code,
            },
            &ctx.client,
        )
        .await?;
    Ok(session_response(issued))
}

#[tracing::instrument(skip_all)]
pub(super) async fn refresh(
    State(state): State<AppState>,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (token, csrf) = if body.is_empty() {
        // The browser console: the refresh cookie, with the double-submitted CSRF token, which
        // must also be the session's own (checked by the service).
        let token = cookie(&headers, REFRESH_COOKIE).ok_or_else(|| {
            ApiError::BadRequest("give refresh_token in the body or the refresh cookie".into())
        })?;
        let csrf_cookie = cookie(&headers, CSRF_COOKIE);
        let csrf_header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let Some(csrf) = csrf_header.filter(|h| csrf_cookie.as_deref() == Some(*h)) else {
            return Err(AuthError::Csrf.into());
        };
        (SecretString::from(token), Some(csrf.to_owned()))
    } else {
        (parse_json::<RefreshBody>(&body)?.refresh_token, None)
    };
    let issued = state
        .auth
        .refresh(&token, csrf.as_deref(), ctx.route, &ctx.client)
        .await?;
    Ok(session_response(issued))
}

#[tracing::instrument(skip_all)]
pub(super) async fn logout(
    State(state): State<AppState>,
    authed: Authed,
) -> Result<Response, ApiError> {
    let principal = &authed.principal;
    authed
        .authorize(
            &state,
            Action::EndOwnSession,
            &Resource::OwnedBy(principal.user_id),
        )
        .await?;
    state.auth.logout(principal, &authed.client).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
        append_cookie(
            &mut response,
            &format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
    }
    Ok(response)
}

fn session_response(issued: IssuedSession) -> Response {
    let access = issued.access_token.expose_secret().to_owned();
    let refresh = issued.refresh_token.expose_secret().to_owned();
    let csrf = issued
        .csrf_token
        .as_ref()
        .map(|c| c.expose_secret().to_owned());
    let mut response = Json(TokensDto {
        token_type: "Bearer",
        access_token: access.clone(),
        expires_in: issued.access_expires_in,
        refresh_token: refresh.clone(),
        session_expires_in: issued.session_expires_in,
        csrf_token: csrf.clone(),
        user_id: issued.user_id.to_string(),
        session_id: issued.session_id.to_string(),
    })
    .into_response();
    append_cookie(
        &mut response,
        &format!(
            "{ACCESS_COOKIE}={access}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            issued.access_expires_in
        ),
    );
    append_cookie(
        &mut response,
        &format!(
            "{REFRESH_COOKIE}={refresh}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            issued.session_expires_in
        ),
    );
    if let Some(csrf) = csrf {
        // Readable by the console's script, which echoes it in the X-CSRF-Token header.
        append_cookie(
            &mut response,
            &format!(
                "{CSRF_COOKIE}={csrf}; Path=/; Secure; SameSite=Strict; Max-Age={}",
                issued.session_expires_in
            ),
        );
    }
    response
}

fn append_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
