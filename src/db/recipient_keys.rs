//! Queries on `recipient_keys`: the public keys extracts are encrypted to.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::users::parse_id;
use super::{timestamp, Database, DbError};
use crate::domain::ids::{RecipientKeyId, UserId};

/// A registered public key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientKeyRow {
    /// Its id.
    pub id: RecipientKeyId,
    /// Whose key.
    pub user_id: UserId,
    /// `age-x25519` or `ssh-ed25519`.
    pub kind: String,
    /// The public key, normalized.
    pub public_key: String,
    /// The owner's label for it.
    pub label: String,
    /// When it was registered.
    pub created_at: OffsetDateTime,
}

/// Registers a key; false when the user already has this exact key.
pub async fn insert(conn: &mut AnyConnection, key: &RecipientKeyRow) -> Result<bool, DbError> {
    let result = sqlx::query(
        "INSERT INTO recipient_keys (id, user_id, kind, public_key, label, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key.id.to_string())
    .bind(key.user_id.to_string())
    .bind(&key.kind)
    .bind(&key.public_key)
    .bind(&key.label)
    .bind(timestamp::encode(key.created_at)?)
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A user's keys, oldest first.
pub async fn list_for_user(db: &Database, user: UserId) -> Result<Vec<RecipientKeyRow>, DbError> {
    let rows = sqlx::query(
        "SELECT id, user_id, kind, public_key, label, created_at FROM recipient_keys \
         WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Removes one of a user's keys; false when the user has no key with this id.
pub async fn delete(
    conn: &mut AnyConnection,
    user: UserId,
    id: RecipientKeyId,
) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM recipient_keys WHERE id = $1 AND user_id = $2")
        .bind(id.to_string())
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

fn from_row(row: &AnyRow) -> Result<RecipientKeyRow, DbError> {
    Ok(RecipientKeyRow {
        id: parse_id(row, "id").map(RecipientKeyId)?,
        user_id: parse_id(row, "user_id").map(UserId)?,
        kind: row.try_get("kind")?,
        public_key: row.try_get("public_key")?,
        label: row.try_get("label")?,
        created_at: timestamp::decode(&row.try_get::<String, _>("created_at")?)?,
    })
}
