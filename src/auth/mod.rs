//! Identity and access: passwords, TOTP, sessions, API tokens, recipient keys and the one
//! authorization function.
//!
//! Architecture invariant: every handler calls [`authorize`] before touching data; only
//! [`Authenticator::authenticate`] turns a credential into a [`Principal`].

pub mod authorize;
pub mod keys;
pub mod lockout;
pub mod password;
mod service;
pub mod tokens;
pub mod totp;

pub use authorize::{authorize, Action, Denied, ReleaseFacts, Resource};
pub use service::{
    Authenticator, By, IssuedSession, LoginRequest, NewAccount, PresentedCredential,
};

use crate::audit::{AuditError, Reason};
use crate::crypto::KeyringError;
use crate::db::DbError;
use crate::domain::ids::{ApiTokenId, OrgId, SessionId, UserId};
use crate::domain::role::Role;

/// Identity and access failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request's credentials are missing or were refused.
    #[error("authentication required: {}", .0.as_str())]
    Unauthenticated(Reason),
    /// A login failed; deliberately vague about which part was wrong.
    #[error("login failed: wrong user name, password or second factor")]
    LoginFailed,
    /// The password was right but the second factor is missing.
    #[error("a TOTP code (or a recovery code) is required")]
    SecondFactorRequired,
    /// The account or the client address is locked out.
    #[error("too many failed logins; try again in {retry_after_secs} seconds")]
    LockedOut {
        /// Seconds until the lock ends.
        retry_after_secs: u64,
    },
    /// Too many refused requests without valid credentials from one client address: further
    /// ones are refused unjudged and counted in one aggregated log event.
    #[error(
        "too many refused requests from this address; try again in {retry_after_secs} seconds"
    )]
    RateLimited {
        /// Seconds until the address's window ends.
        retry_after_secs: u64,
    },
    /// The principal may not do this.
    #[error("forbidden: {0}")]
    Forbidden(#[from] Denied),
    /// A cookie-authenticated state change without the session's CSRF token.
    #[error("missing or wrong X-CSRF-Token header for a cookie-authenticated request")]
    Csrf,
    /// The input is unacceptable; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with existing state; the text says how.
    #[error("{0}")]
    Conflict(String),
    /// The named thing does not exist.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The access log could not be written: nothing proceeds unlogged.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The keyring failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// How a principal proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A session's access token, from the `Authorization` header or the session cookie.
    Session {
        /// The session.
        session: SessionId,
        /// Whether it came in the cookie (then state changes need the CSRF token).
        via_cookie: bool,
    },
    /// An API token.
    ApiToken(ApiTokenId),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who.
    pub user_id: UserId,
    /// Their organization.
    pub org_id: OrgId,
    /// The roles in force for this request (an API token may carry fewer than the user holds):
    /// what grants an action.
    pub roles: Vec<Role>,
    /// Every role the user holds, whatever the credential carries: what separation of duties
    /// looks at, so that a token limited to one role cannot hide another.
    pub held_roles: Vec<Role>,
    /// The user still has the one-time password they were given: they may only change it.
    pub must_change_password: bool,
    /// How they proved it.
    pub credential: Credential,
}
