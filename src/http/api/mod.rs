//! `/api/v1`: the JSON API. The router is built from [`ROUTES`], the one list of every route,
//! so the authorization matrix test can check that it covers them all.
//!
//! Architecture invariant: every handler here authenticates with [`Authed`] and calls
//! `auth::authorize` (through `Authenticator::check`) before touching data; bodies are parsed
//! only after that, so a denied caller learns nothing from validation errors.

mod access_log;
mod admin;
mod auth;
mod catalog;
mod destruction;
mod downloads;
mod jobs;
mod me;
pub mod openapi;
mod releases;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::audit::{Client, UserAgent};
use crate::auth::{Action, AuthError, Credential, PresentedCredential, Principal, Resource};

/// Cookie holding the browser session's access token.
pub const ACCESS_COOKIE: &str = "__Host-steward_access";
/// Cookie holding the browser session's refresh token.
pub const REFRESH_COOKIE: &str = "__Host-steward_refresh";
/// Cookie holding the browser session's CSRF token (readable by the page, unlike the others).
pub const CSRF_COOKIE: &str = "__Host-steward_csrf";
/// Header a cookie-authenticated state change must carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who may reach a route before its handler's own authorization decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the route checks a credential of its own (login, refresh).
    Public,
    /// A signed-in principal; the handler then calls `authorize`.
    Authenticated,
}

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Who may reach it.
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
    }
}

use Access::{Authenticated as Authn, Public};

/// Every API route. The router is built from this list and nothing else.
pub const ROUTES: &[RouteSpec] = &[
    route("POST", "/api/v1/auth/login", Public),
    route("POST", "/api/v1/auth/refresh", Public),
    route("POST", "/api/v1/auth/logout", Authn),
    route("GET", "/api/v1/me", Authn),
    route("PUT", "/api/v1/me/password", Authn),
    route("GET", "/api/v1/me/keys", Authn),
    route("POST", "/api/v1/me/keys", Authn),
    route("DELETE", "/api/v1/me/keys/{id}", Authn),
    route("GET", "/api/v1/me/tokens", Authn),
    route("POST", "/api/v1/me/tokens", Authn),
    route("DELETE", "/api/v1/me/tokens/{id}", Authn),
    route("GET", "/api/v1/admin/orgs", Authn),
    route("POST", "/api/v1/admin/orgs", Authn),
    route("GET", "/api/v1/admin/users", Authn),
    route("POST", "/api/v1/admin/users", Authn),
    route("POST", "/api/v1/admin/users/{id}/disable", Authn),
    route("PUT", "/api/v1/admin/users/{id}/roles", Authn),
    route("POST", "/api/v1/admin/users/{id}/unlock", Authn),
    route("GET", "/api/v1/admin/users/{id}/tokens", Authn),
    route("DELETE", "/api/v1/admin/tokens/{id}", Authn),
    route("POST", "/api/v1/requests", Authn),
    route("GET", "/api/v1/requests", Authn),
    route("GET", "/api/v1/releases", Authn),
    route("GET", "/api/v1/releases/{id}", Authn),
    route("GET", "/api/v1/releases/{id}/history", Authn),
    route("POST", "/api/v1/releases/{id}/submit", Authn),
    route("POST", "/api/v1/releases/{id}/review", Authn),
    route("POST", "/api/v1/releases/{id}/approve", Authn),
    route("POST", "/api/v1/releases/{id}/deny", Authn),
    route("POST", "/api/v1/releases/{id}/withdraw", Authn),
    route("POST", "/api/v1/releases/{id}/revoke", Authn),
    route("POST", "/api/v1/releases/{id}/destruction", Authn),
    route("GET", "/api/v1/releases/{id}/destruction", Authn),
    route(
        "GET",
        "/api/v1/releases/{id}/destruction/certificate",
        Authn,
    ),
    route(
        "GET",
        "/api/v1/releases/{id}/destruction/certificate.pdf",
        Authn,
    ),
    route(
        "POST",
        "/api/v1/releases/{id}/destruction/attestation",
        Authn,
    ),
    route("POST", "/api/v1/releases/{id}/publication-reviews", Authn),
    route("GET", "/api/v1/publication-reviews", Authn),
    route("PUT", "/api/v1/releases/{id}/elements", Authn),
    route("POST", "/api/v1/releases/{id}/committee", Authn),
    route("POST", "/api/v1/releases/{id}/dua", Authn),
    route("PUT", "/api/v1/releases/{id}/dua", Authn),
    route("GET", "/api/v1/releases/{id}/letter", Authn),
    route("GET", "/api/v1/releases/{id}/letter/signature", Authn),
    route("GET", "/api/v1/server/signing-key", Authn),
    route("GET", "/api/v1/catalog", Authn),
    route("GET", "/api/v1/openapi.json", Public),
    route("POST", "/api/v1/releases/{id}/extract", Authn),
    route("GET", "/api/v1/jobs", Authn),
    route("GET", "/api/v1/jobs/{id}", Authn),
    route("POST", "/api/v1/jobs/{id}/cancel", Authn),
    route("POST", "/api/v1/jobs/{id}/retry", Authn),
    route("GET", "/api/v1/access-log", Authn),
    route("GET", "/api/v1/access-log/{seq}/proof", Authn),
    route("GET", "/api/v1/access-log/checkpoint", Authn),
    route("GET", "/api/v1/access-log/consistency", Authn),
    route("GET", "/api/v1/access-log/reports/{name}", Authn),
    route("GET", "/api/v1/me/access-log", Authn),
    route("GET", "/api/v1/releases/{id}/files", Authn),
    route("POST", "/api/v1/files/{id}/links", Authn),
    route("GET", "/dl/{token}", Authn),
    route("POST", "/api/v1/revocations", Authn),
    route("GET", "/api/v1/revocations", Authn),
    route("POST", "/api/v1/revocations/{id}/lift", Authn),
];

/// The handler of a route in [`ROUTES`].
fn handler(spec: &RouteSpec) -> Option<MethodRouter<AppState>> {
    Some(match (spec.method, spec.path) {
        ("POST", "/api/v1/auth/login") => post(auth::login),
        ("POST", "/api/v1/auth/refresh") => post(auth::refresh),
        ("POST", "/api/v1/auth/logout") => post(auth::logout),
        ("GET", "/api/v1/me") => get(me::show),
        ("PUT", "/api/v1/me/password") => put(me::change_password),
        ("GET", "/api/v1/me/keys") => get(me::list_keys),
        ("POST", "/api/v1/me/keys") => post(me::add_key),
        ("DELETE", "/api/v1/me/keys/{id}") => delete(me::remove_key),
        ("GET", "/api/v1/me/tokens") => get(me::list_tokens),
        ("POST", "/api/v1/me/tokens") => post(me::create_token),
        ("DELETE", "/api/v1/me/tokens/{id}") => delete(me::revoke_token),
        ("GET", "/api/v1/admin/orgs") => get(admin::list_orgs),
        ("POST", "/api/v1/admin/orgs") => post(admin::create_org),
        ("GET", "/api/v1/admin/users") => get(admin::list_users),
        ("POST", "/api/v1/admin/users") => post(admin::create_user),
        ("POST", "/api/v1/admin/users/{id}/disable") => post(admin::disable_user),
        ("PUT", "/api/v1/admin/users/{id}/roles") => put(admin::set_roles),
        ("POST", "/api/v1/admin/users/{id}/unlock") => post(admin::unlock_user),
        ("GET", "/api/v1/admin/users/{id}/tokens") => get(admin::list_user_tokens),
        ("DELETE", "/api/v1/admin/tokens/{id}") => delete(admin::revoke_token),
        ("POST", "/api/v1/requests") => post(releases::create_request),
        ("GET", "/api/v1/requests") => get(releases::list_requests),
        ("GET", "/api/v1/releases") => get(releases::list_releases),
        ("GET", "/api/v1/releases/{id}") => get(releases::show),
        ("GET", "/api/v1/releases/{id}/history") => get(releases::history),
        ("POST", "/api/v1/releases/{id}/submit") => post(releases::submit),
        ("POST", "/api/v1/releases/{id}/review") => post(releases::review),
        ("POST", "/api/v1/releases/{id}/approve") => post(releases::approve),
        ("POST", "/api/v1/releases/{id}/deny") => post(releases::deny),
        ("POST", "/api/v1/releases/{id}/withdraw") => post(releases::withdraw),
        ("POST", "/api/v1/releases/{id}/revoke") => post(releases::revoke),
        ("POST", "/api/v1/releases/{id}/destruction") => post(destruction::demand),
        ("GET", "/api/v1/releases/{id}/destruction") => get(destruction::show),
        ("GET", "/api/v1/releases/{id}/destruction/certificate") => get(destruction::certificate),
        ("GET", "/api/v1/releases/{id}/destruction/certificate.pdf") => {
            get(destruction::certificate_pdf)
        }
        ("POST", "/api/v1/releases/{id}/destruction/attestation") => post(destruction::attest),
        ("POST", "/api/v1/releases/{id}/publication-reviews") => {
            post(destruction::submit_publication_review)
        }
        ("GET", "/api/v1/publication-reviews") => get(destruction::publication_reviews),
        ("PUT", "/api/v1/releases/{id}/elements") => put(releases::narrow),
        ("POST", "/api/v1/releases/{id}/committee") => post(releases::record_committee),
        ("POST", "/api/v1/releases/{id}/dua") => post(releases::execute_dua),
        ("PUT", "/api/v1/releases/{id}/dua") => put(releases::amend_dua),
        ("GET", "/api/v1/releases/{id}/letter") => get(releases::letter),
        ("GET", "/api/v1/releases/{id}/letter/signature") => get(releases::letter_signature),
        ("GET", "/api/v1/server/signing-key") => get(releases::signing_key),
        ("GET", "/api/v1/catalog") => get(catalog::show),
        ("GET", "/api/v1/openapi.json") => get(openapi::show),
        ("POST", "/api/v1/releases/{id}/extract") => post(jobs::start),
        ("GET", "/api/v1/jobs") => get(jobs::list),
        ("GET", "/api/v1/jobs/{id}") => get(jobs::show),
        ("POST", "/api/v1/jobs/{id}/cancel") => post(jobs::cancel),
        ("POST", "/api/v1/jobs/{id}/retry") => post(jobs::retry),
        ("GET", "/api/v1/access-log") => get(access_log::list),
        ("GET", "/api/v1/access-log/{seq}/proof") => get(access_log::receipt),
        ("GET", "/api/v1/access-log/checkpoint") => get(access_log::checkpoint),
        ("GET", "/api/v1/access-log/consistency") => get(access_log::consistency),
        ("GET", "/api/v1/access-log/reports/{name}") => get(access_log::report),
        ("GET", "/api/v1/me/access-log") => get(access_log::list_own),
        ("GET", "/api/v1/releases/{id}/files") => get(downloads::files),
        ("POST", "/api/v1/files/{id}/links") => post(downloads::create_link),
        ("GET", "/dl/{token}") => get(downloads::download),
        ("POST", "/api/v1/revocations") => post(downloads::revoke),
        ("GET", "/api/v1/revocations") => get(downloads::list_revocations),
        ("POST", "/api/v1/revocations/{id}/lift") => post(downloads::lift_revocation),
        _ => return None,
    })
}

/// The API routes, built from [`ROUTES`].
pub fn routes() -> Router<AppState> {
    ROUTES
        .iter()
        .fold(Router::new(), |router, spec| match handler(spec) {
            Some(method_router) => router.route(spec.path, method_router),
            None => {
                // Caught by the authorization matrix test: the route would answer 404.
                tracing::error!(
                    method = spec.method,
                    path = spec.path,
                    "route has no handler"
                );
                router
            }
        })
}

/// The route template of a request, as a `'static` string from [`ROUTES`].
fn route_of(parts: &Parts) -> &'static str {
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    ROUTES
        .iter()
        .find(|r| Some(r.path) == matched)
        .map_or("<unmatched>", |r| r.path)
}

/// Where the request came from, for the access log.
fn client_of(parts: &Parts) -> Client {
    Client {
        addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| UserAgent::from_header(v.as_bytes())),
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The request's client and route, for public routes.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Where it came from.
    pub client: Client,
    /// Its route template.
    pub route: &'static str,
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            client: client_of(parts),
            route: route_of(parts),
        })
    }
}

/// An authenticated request: the principal, where it came from and its route. Refusals are
/// logged by the authenticator and answered with 401.
#[derive(Debug, Clone)]
pub struct Authed {
    /// Who.
    pub principal: Principal,
    /// Where from.
    pub client: Client,
    /// Which route.
    pub route: &'static str,
}

impl Authed {
    /// Authorizes this caller for `action` on `resource` through the one authorization
    /// function; a denial is logged there and answered 403.
    pub async fn authorize(
        &self,
        state: &AppState,
        action: Action,
        resource: &Resource<'_>,
    ) -> Result<(), ApiError> {
        Ok(state
            .auth
            .check(&self.principal, action, resource, self.route, &self.client)
            .await?)
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let client = client_of(parts);
        let route = route_of(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(|t| SecretString::from(t.trim().to_owned()));
        let presented = match (bearer, cookie(&parts.headers, ACCESS_COOKIE)) {
            (Some(token), _) => PresentedCredential::Bearer(token),
            (None, Some(token)) => PresentedCredential::Cookie(SecretString::from(token)),
            (None, None) => PresentedCredential::None,
        };
        let principal = state.auth.authenticate(presented, route, &client).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Credential::Session {
            session,
            via_cookie: true,
        } = principal.credential
        {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !safe && !state.auth.csrf_matches(session, presented).await? {
                return Err(AuthError::Csrf.into());
            }
        }
        Ok(Self {
            principal,
            client,
            route,
        })
    }
}

/// Parses a JSON body, refusing unknown fields and naming what is wrong.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Formats a time for a response.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 9110 section 11.1), so `bearer` is the same credential, not none.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}
