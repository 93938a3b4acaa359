//! Queries on `release_keys` and `extract_files`.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{timestamp, Database, DbError};
use crate::jobs::Lease;

/// A release's wrapped identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The public recipient (`age1...`), to check the unwrapped identity against.
    pub recipient: String,
    /// The identity, age-encrypted to the master identity.
    pub wrapped: Vec<u8>,
}

/// One recorded file of an extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractFileRow {
    /// The file's id: how links and the access log name it.
    pub id: Uuid,
    /// File name in the package.
    pub name: String,
    /// `data`, `approval_letter`, `data_dictionary` or `manifest`.
    pub kind: String,
    /// Where it is stored.
    pub object_key: String,
    /// Data rows, for data files.
    pub rows: Option<i64>,
    /// Plaintext size.
    pub plaintext_bytes: i64,
    /// Plaintext SHA-256, hex.
    pub plaintext_sha256: String,
    /// Stored size.
    pub ciphertext_bytes: i64,
    /// Stored SHA-256, hex.
    pub ciphertext_sha256: String,
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractStoreError {
    /// The job's lease is no longer held: another runner owns it, so nothing is recorded.
    #[error("lease on job {0} was lost; nothing recorded")]
    LeaseLost(Uuid),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<sqlx::Error> for ExtractStoreError {
    fn from(e: sqlx::Error) -> Self {
        ExtractStoreError::Database(DbError::Sqlx(e))
    }
}

/// The release's wrapped identity, if one was made.
pub async fn wrapped_key(db: &Database, release: Uuid) -> Result<Option<WrappedKey>, DbError> {
    let row = sqlx::query("SELECT recipient, wrapped_hex FROM release_keys WHERE release_id = $1")
        .bind(release.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| {
        let wrapped: String = r.try_get("wrapped_hex")?;
        Ok(WrappedKey {
            recipient: r.try_get("recipient")?,
            wrapped: hex::decode(wrapped)
                .map_err(|e| DbError::Sqlx(sqlx::Error::Decode(Box::new(e))))?,
        })
    })
    .transpose()
}

/// Stores a wrapped identity unless the release already has one; returns the one in force, so
/// two runners racing on a first job agree on the same identity.
pub async fn insert_wrapped_key(
    db: &Database,
    release: Uuid,
    key: &WrappedKey,
    now: time::OffsetDateTime,
) -> Result<WrappedKey, DbError> {
    sqlx::query(
        "INSERT INTO release_keys (release_id, recipient, wrapped_hex, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (release_id) DO NOTHING",
    )
    .bind(release.to_string())
    .bind(&key.recipient)
    .bind(hex::encode(&key.wrapped))
    .bind(timestamp::encode(now)?)
    .execute(db.pool())
    .await?;
    wrapped_key(db, release)
        .await?
        .ok_or_else(|| DbError::Sqlx(sqlx::Error::RowNotFound))
}

/// Records an extract's files in the caller's transaction, only while `lease` still holds its
/// job: the conditional update of the job row both proves the lease and, until commit, keeps
/// any other runner from taking the job over.
pub async fn record_files(
    tx: &mut AnyConnection,
    lease: &Lease,
    release: Uuid,
    files: &[ExtractFileRow],
    now: time::OffsetDateTime,
) -> Result<(), ExtractStoreError> {
    let now = timestamp::encode(now)?;
    let held = sqlx::query(
        "UPDATE jobs SET updated_at = $1 \
         WHERE id = $2 AND lease_owner = $3 AND attempts = $4 AND state = 'running'",
    )
    .bind(&now)
    .bind(lease.job_id.to_string())
    .bind(&lease.owner)
    .bind(lease.attempt)
    .execute(&mut *tx)
    .await?;
    if held.rows_affected() != 1 {
        return Err(ExtractStoreError::LeaseLost(lease.job_id));
    }
    for file in files {
        sqlx::query(
            "INSERT INTO extract_files (release_id, name, kind, object_key, job_id, rows_count, \
             plaintext_bytes, plaintext_sha256, ciphertext_bytes, ciphertext_sha256, created_at, \
             file_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(release.to_string())
        .bind(&file.name)
        .bind(&file.kind)
        .bind(&file.object_key)
        .bind(lease.job_id.to_string())
        .bind(file.rows)
        .bind(file.plaintext_bytes)
        .bind(&file.plaintext_sha256)
        .bind(file.ciphertext_bytes)
        .bind(&file.ciphertext_sha256)
        .bind(&now)
        .bind(file.id.to_string())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

const FILE_COLUMNS: &str = "file_id, name, kind, object_key, rows_count, plaintext_bytes, \
     plaintext_sha256, ciphertext_bytes, ciphertext_sha256";

/// The recorded files of a release, by name.
pub async fn files(db: &Database, release: Uuid) -> Result<Vec<ExtractFileRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {FILE_COLUMNS} FROM extract_files WHERE release_id = $1 ORDER BY name"
    ))
    .bind(release.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(file_row)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::Sqlx)
}

/// One recorded file by id, with the release it belongs to.
pub async fn file(db: &Database, id: Uuid) -> Result<Option<(Uuid, ExtractFileRow)>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT release_id, {FILE_COLUMNS} FROM extract_files WHERE file_id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let release: String = row.try_get("release_id")?;
    let release = Uuid::parse_str(&release).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some((release, file_row(&row)?)))
}

fn file_row(r: &sqlx::any::AnyRow) -> Result<ExtractFileRow, sqlx::Error> {
    let id: String = r.try_get("file_id")?;
    Ok(ExtractFileRow {
        id: Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        object_key: r.try_get("object_key")?,
        rows: r.try_get("rows_count")?,
        plaintext_bytes: r.try_get("plaintext_bytes")?,
        plaintext_sha256: r.try_get("plaintext_sha256")?,
        ciphertext_bytes: r.try_get("ciphertext_bytes")?,
        ciphertext_sha256: r.try_get("ciphertext_sha256")?,
    })
}
