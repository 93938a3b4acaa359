//! Session tokens: EdDSA JWTs with a `kid`, and the checks every presented token must pass,
//! each failure naming its reason. API-token secrets are here too.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::audit::Reason;
use crate::crypto::{random, JwtKeyring};

/// Audience of access tokens.
pub const ACCESS_AUDIENCE: &str = "steward-api";
/// Audience of refresh tokens.
pub const REFRESH_AUDIENCE: &str = "steward-refresh";
/// Prefix that marks an API token, so it is never mistaken for a JWT.
pub const API_TOKEN_PREFIX: &str = "stw_";

/// Which kind of session token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Short-lived bearer of the user's identity.
    Access,
    /// Single-use, exchanged for new tokens.
    Refresh,
}

impl TokenKind {
    fn audience(self) -> &'static str {
        match self {
            TokenKind::Access => ACCESS_AUDIENCE,
            TokenKind::Refresh => REFRESH_AUDIENCE,
        }
    }
}

/// The claims of every session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (`auth.issuer`).
    pub iss: String,
    /// Audience: access or refresh.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Access or refresh.
    pub typ: TokenKind,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Unique id, so two tokens issued in the same second differ.
    pub jti: String,
}

impl Claims {
    /// Claims for a new token of `kind`, valid from `now` for `ttl_secs`.
    pub fn new(
        issuer: &str,
        kind: TokenKind,
        user: uuid::Uuid,
        session: uuid::Uuid,
        now: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Self {
        let iat = now.unix_timestamp();
        Self {
            iss: issuer.to_owned(),
            aud: kind.audience().to_owned(),
            sub: user.to_string(),
            sid: session.to_string(),
            typ: kind,
            iat,
            nbf: iat,
            exp: expires.unix_timestamp(),
            jti: random::hex_secret::<16>(),
        }
    }
}

/// Why a token was refused: the phrase written to the access log and the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.as_str())]
pub struct TokenRejected(pub Reason);

const MALFORMED: Reason = Reason::new("malformed token");

/// Verifies a session token of `kind`: header first (alg pinned to EdDSA, a known `kid`, no
/// key-location headers), then the signature, then `typ`, `iss`, `aud`, `nbf` and `exp` against
/// the injected clock with `leeway_secs`.
pub fn verify(
    keyring: &JwtKeyring,
    token: &str,
    kind: TokenKind,
    issuer: &str,
    now: OffsetDateTime,
    leeway_secs: u64,
) -> Result<Claims, TokenRejected> {
    let reject = |text| TokenRejected(Reason::new(text));
    let claims: Claims = decode_checked(keyring, token)?;
    if claims.typ != kind {
        return Err(match kind {
            TokenKind::Access => reject("refresh token used as an access token"),
            TokenKind::Refresh => reject("access token used as a refresh token"),
        });
    }
    if claims.iss != issuer {
        return Err(reject("wrong issuer"));
    }
    if claims.aud != kind.audience() {
        return Err(reject("wrong audience"));
    }
    check_times(claims.nbf, claims.exp, now, leeway_secs)?;
    Ok(claims)
}

/// The header checks every token passes before its signature is looked at (alg pinned to
/// EdDSA, a known `kid`, no key-location or critical headers), then the signature and the
/// presence of the registered claims.
fn decode_checked<C: serde::de::DeserializeOwned>(
    keyring: &JwtKeyring,
    token: &str,
) -> Result<C, TokenRejected> {
    let reject = |text| TokenRejected(Reason::new(text));
    let header = token.split('.').next().ok_or(TokenRejected(MALFORMED))?;
    if token.split('.').count() != 3 {
        return Err(TokenRejected(MALFORMED));
    }
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenRejected(MALFORMED))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|_| TokenRejected(MALFORMED))?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    if alg.eq_ignore_ascii_case("none") {
        return Err(reject("unsigned token (alg none)"));
    }
    if alg != "EdDSA" {
        return Err(reject("algorithm not allowed"));
    }
    if ["jku", "jwk", "x5u", "x5c"]
        .iter()
        .any(|h| header.contains_key(*h))
    {
        return Err(reject("key-location header refused"));
    }
    if header.contains_key("crit") {
        return Err(reject("critical header extension refused"));
    }
    let kid = header
        .get("kid")
        .and_then(|k| k.as_str())
        .ok_or(reject("token has no key id"))?;
    let key = keyring.decoding_key(kid).ok_or(reject("unknown key id"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    // Time claims are checked by the caller against the injected clock, not the system clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<C>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => reject("bad signature"),
            _ => TokenRejected(MALFORMED),
        })
}

fn check_times(
    nbf: i64,
    exp: i64,
    now: OffsetDateTime,
    leeway_secs: u64,
) -> Result<(), TokenRejected> {
    let now = now.unix_timestamp();
    let leeway = i64::try_from(leeway_secs).unwrap_or(0);
    if nbf > now + leeway {
        return Err(TokenRejected(Reason::new("token not yet valid")));
    }
    if exp <= now - leeway {
        return Err(TokenRejected(Reason::new("token expired")));
    }
    Ok(())
}

/// Audience of download links.
pub const DOWNLOAD_AUDIENCE: &str = "download";

/// The claims of a download link: one user, one file of one release, a short life, and
/// optionally the one client address it may be used from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadClaims {
    /// Issuer (`auth.issuer`).
    pub iss: String,
    /// Always [`DOWNLOAD_AUDIENCE`].
    pub aud: String,
    /// The user the link was issued to.
    pub sub: String,
    /// The file.
    pub fid: uuid::Uuid,
    /// The release the file belongs to.
    pub rel: uuid::Uuid,
    /// The client address the link is bound to, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cip: Option<std::net::IpAddr>,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Unique id of the link.
    pub jti: String,
}

impl DownloadClaims {
    /// Claims for a link issued `now`, valid until `expires`.
    pub fn new(
        issuer: &str,
        user: uuid::Uuid,
        file: uuid::Uuid,
        release: uuid::Uuid,
        client: Option<std::net::IpAddr>,
        now: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Self {
        let iat = now.unix_timestamp();
        Self {
            iss: issuer.to_owned(),
            aud: DOWNLOAD_AUDIENCE.to_owned(),
            sub: user.to_string(),
            fid: file,
            rel: release,
            cip: client,
            iat,
            nbf: iat,
            exp: expires.unix_timestamp(),
            jti: random::hex_secret::<16>(),
        }
    }
}

/// Verifies a download link with the same header, signature and time checks as a session
/// token, then its issuer and audience (a session token is not a link, nor the reverse).
pub fn verify_download(
    keyring: &JwtKeyring,
    token: &str,
    issuer: &str,
    now: OffsetDateTime,
    leeway_secs: u64,
) -> Result<DownloadClaims, TokenRejected> {
    let claims: DownloadClaims = decode_checked(keyring, token)?;
    if claims.iss != issuer {
        return Err(TokenRejected(Reason::new("wrong issuer")));
    }
    if claims.aud != DOWNLOAD_AUDIENCE {
        return Err(TokenRejected(Reason::new("wrong audience")));
    }
    check_times(claims.nbf, claims.exp, now, leeway_secs)?;
    Ok(claims)
}

/// SHA-256 hex of a token: how refresh tokens, API tokens and CSRF tokens are stored. They are
/// random and long, so a fast hash is enough.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API-token secret: the prefix and 256 random bits.
pub fn generate_api_token() -> String {
    format!("{API_TOKEN_PREFIX}{}", random::hex_secret::<32>())
}

/// A new CSRF token for a browser session.
pub fn generate_csrf_token() -> String {
    random::hex_secret::<32>()
}
