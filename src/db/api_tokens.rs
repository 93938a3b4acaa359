//! Queries on `api_tokens`: named, expiring, revocable tokens stored as SHA-256 hashes.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::users::parse_id;
use super::{timestamp, Database, DbError};
use crate::domain::ids::{ApiTokenId, UserId};
use crate::domain::role::Role;

/// An API token as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    /// Its id.
    pub id: ApiTokenId,
    /// Its owner.
    pub user_id: UserId,
    /// The owner's name for it.
    pub name: String,
    /// Roles it was scoped to when created (still limited by the owner's current roles).
    pub roles: Vec<Role>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, user_id, name, roles, created_at, expires_at, revoked_at";

/// Stores a new token under the hash of its secret.
pub async fn insert(
    conn: &mut AnyConnection,
    token: &ApiTokenRow,
    token_hash: &str,
) -> Result<(), DbError> {
    let roles: Vec<&str> = token.roles.iter().map(|r| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, roles, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.id.to_string())
    .bind(token.user_id.to_string())
    .bind(&token.name)
    .bind(token_hash)
    .bind(roles.join(","))
    .bind(timestamp::encode(token.created_at)?)
    .bind(timestamp::encode(token.expires_at)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The token whose secret hashes to `token_hash`.
pub async fn find_by_hash(db: &Database, token_hash: &str) -> Result<Option<ApiTokenRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1");
    let row = sqlx::query(&sql)
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The token with this id.
pub async fn find(db: &Database, id: ApiTokenId) -> Result<Option<ApiTokenRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A user's tokens, newest first.
pub async fn list_for_user(db: &Database, user: UserId) -> Result<Vec<ApiTokenRow>, DbError> {
    let sql =
        format!("SELECT {COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC");
    let rows = sqlx::query(&sql)
        .bind(user.to_string())
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a token; false if it was revoked already.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: ApiTokenId,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id.to_string())
            .bind(timestamp::encode(now)?)
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live token of a user; returns how many.
pub async fn revoke_all_of_user(
    conn: &mut AnyConnection,
    user: UserId,
    now: OffsetDateTime,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user.to_string())
    .bind(timestamp::encode(now)?)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

fn from_row(row: &AnyRow) -> Result<ApiTokenRow, DbError> {
    let roles: String = row.try_get("roles")?;
    let roles = roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<Role>()
                .map_err(|e| DbError::Sqlx(sqlx::Error::Decode(Box::new(e))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiTokenRow {
        id: parse_id(row, "id").map(ApiTokenId)?,
        user_id: parse_id(row, "user_id").map(UserId)?,
        name: row.try_get("name")?,
        roles,
        created_at: timestamp::decode(&row.try_get::<String, _>("created_at")?)?,
        expires_at: timestamp::decode(&row.try_get::<String, _>("expires_at")?)?,
        revoked_at: timestamp::decode_opt(row.try_get("revoked_at")?)?,
    })
}
