//! Queries on `optout_keys`: the opt-out registry holds keyed hashes only.

use sqlx::Row;

use super::{Database, DbError};
use crate::policy::{OptOutError, OptOutKey};

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OptOutStoreError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A stored hash is malformed (the table was written by something else).
    #[error("opt-out registry holds a malformed entry: {0}")]
    Corrupt(#[from] OptOutError),
}

impl From<sqlx::Error> for OptOutStoreError {
    fn from(e: sqlx::Error) -> Self {
        OptOutStoreError::Database(DbError::Sqlx(e))
    }
}

/// Adds `keys` in the caller's transaction (all or none); returns how many were new.
pub async fn insert_keys(
    tx: &mut sqlx::AnyConnection,
    keys: &[OptOutKey],
    imported_at: &str,
    import_id: &str,
) -> Result<u64, OptOutStoreError> {
    let mut added = 0;
    for key in keys {
        let result = sqlx::query(
            "INSERT INTO optout_keys (key_hash, imported_at, import_id) VALUES ($1, $2, $3) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key.to_hex())
        .bind(imported_at)
        .bind(import_id)
        .execute(&mut *tx)
        .await?;
        added += result.rows_affected();
    }
    Ok(added)
}

/// Every key in the registry, for a Level III extract to consult.
pub async fn all_keys(db: &Database) -> Result<Vec<OptOutKey>, OptOutStoreError> {
    let rows = sqlx::query("SELECT key_hash FROM optout_keys ORDER BY key_hash")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| {
            let hex: String = row.try_get("key_hash")?;
            Ok(OptOutKey::from_hex(&hex)?)
        })
        .collect()
}
