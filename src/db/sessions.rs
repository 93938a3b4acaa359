//! Queries on `sessions` and `refresh_tokens`: one session per login, and the chain of refresh
//! tokens rotated from it (stored as hashes).

use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::users::parse_id;
use super::{timestamp, Database, DbError};
use crate::domain::ids::{SessionId, UserId};

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Its id (the refresh-token family).
    pub id: SessionId,
    /// Whose session.
    pub user_id: UserId,
    /// SHA-256 hex of the session's CSRF token.
    pub csrf_hash: String,
    /// Absolute end of the session.
    pub expires_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// What became of a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshUse {
    /// It was current; it is now used and may not come back.
    Fresh(SessionId),
    /// It had been used before: a stolen copy or a replay.
    Reused(SessionId),
    /// Steward never issued it (or it belongs to a deleted session).
    Unknown,
}

/// Creates a session with its first refresh token.
pub async fn insert(
    conn: &mut AnyConnection,
    session: &SessionRow,
    refresh_hash: &str,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let now = timestamp::encode(now)?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, csrf_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session.id.to_string())
    .bind(session.user_id.to_string())
    .bind(&session.csrf_hash)
    .bind(&now)
    .bind(timestamp::encode(session.expires_at)?)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(refresh_hash)
    .bind(session.id.to_string())
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The session with this id.
pub async fn find(db: &Database, id: SessionId) -> Result<Option<SessionRow>, DbError> {
    let row = sqlx::query(
        "SELECT id, user_id, csrf_hash, expires_at, revoked_at FROM sessions WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(SessionRow {
        id: parse_id(&row, "id").map(SessionId)?,
        user_id: parse_id(&row, "user_id").map(UserId)?,
        csrf_hash: row.try_get("csrf_hash")?,
        expires_at: timestamp::decode(&row.try_get::<String, _>("expires_at")?)?,
        revoked_at: timestamp::decode_opt(row.try_get("revoked_at")?)?,
    }))
}

/// Marks a refresh token used, atomically: of two concurrent uses only one is `Fresh`.
pub async fn use_refresh_token(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<RefreshUse, DbError> {
    let row = sqlx::query("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(RefreshUse::Unknown);
    };
    let session = parse_id(&row, "session_id").map(SessionId)?;
    let done = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(token_hash)
    .bind(timestamp::encode(now)?)
    .execute(&mut *conn)
    .await?;
    Ok(if done.rows_affected() == 1 {
        RefreshUse::Fresh(session)
    } else {
        RefreshUse::Reused(session)
    })
}

/// Adds the next refresh token of a session.
pub async fn add_refresh_token(
    conn: &mut AnyConnection,
    session: SessionId,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(session.to_string())
    .bind(timestamp::encode(now)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes a session (and so every token of its family); false if it was revoked already.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: SessionId,
    reason: &'static str,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id.to_string())
    .bind(timestamp::encode(now)?)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live session of a user but `keep` (the one that asked, when any); returns how
/// many were revoked.
pub async fn revoke_all_of_user(
    conn: &mut AnyConnection,
    user: UserId,
    keep: Option<SessionId>,
    reason: &'static str,
    now: OffsetDateTime,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL AND id <> $4",
    )
    .bind(user.to_string())
    .bind(timestamp::encode(now)?)
    .bind(reason)
    .bind(keep.map(|k| k.to_string()).unwrap_or_default())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
