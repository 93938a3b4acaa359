//! Queries on `destruction_demands`: one row per release, filled in step by step by the erase
//! job (plan, key erase, certificate) and by the recipient's attestation. Each step's update
//! is conditioned on the step before it being done and its own not yet, so a step that runs
//! twice (a retried job, two runners) changes nothing the second time.

use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{timestamp, Database, DbError};

/// A destruction demand as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandRow {
    /// The release.
    pub release: Uuid,
    /// A user id, or `system` (the DUA's end).
    pub demanded_by: String,
    /// When.
    pub demanded_at: OffsetDateTime,
    /// The day by which the recipient must attest destruction (ISO date).
    pub deadline: String,
    /// The director's reason.
    pub reason: String,
    /// The release-wide revocation made with the demand.
    pub revocation: Uuid,
    /// What the job will destroy, recorded before anything is erased (JSON).
    pub plan_json: Option<String>,
    /// When the release's wrapped identity was deleted.
    pub erased_at: Option<OffsetDateTime>,
    /// The access log's signed checkpoint at that moment.
    pub checkpoint: Option<String>,
    /// When every object was found deleted.
    pub deleted_at: Option<OffsetDateTime>,
    /// The signed certificate's body (canonical JSON).
    pub certificate_json: Option<String>,
    /// Its Ed25519 signature, base64.
    pub certificate_signature: Option<String>,
    /// The accepted attestation (JSON).
    pub attestation_json: Option<String>,
    /// Who submitted it.
    pub attested_by: Option<Uuid>,
    /// When.
    pub attested_at: Option<OffsetDateTime>,
    /// The last day a reminder was logged for an overdue demand.
    pub reminded_on: Option<String>,
}

impl DemandRow {
    /// Whether the server's side is done (the certificate is issued).
    pub fn certified(&self) -> bool {
        self.certificate_json.is_some()
    }
}

const COLUMNS: &str = "release_id, demanded_by, demanded_at, deadline, reason, revocation_id, \
     plan_json, erased_at, checkpoint, deleted_at, certificate_json, certificate_signature, \
     attestation_json, attested_by, attested_at, reminded_on";

fn uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Sqlx(sqlx::Error::Decode(Box::new(e))))
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<DemandRow, DbError> {
    let attested_by: Option<String> = row.try_get("attested_by")?;
    Ok(DemandRow {
        release: uuid(&row.try_get::<String, _>("release_id")?)?,
        demanded_by: row.try_get("demanded_by")?,
        demanded_at: timestamp::decode(&row.try_get::<String, _>("demanded_at")?)?,
        deadline: row.try_get("deadline")?,
        reason: row.try_get("reason")?,
        revocation: uuid(&row.try_get::<String, _>("revocation_id")?)?,
        plan_json: row.try_get("plan_json")?,
        erased_at: timestamp::decode_opt(row.try_get("erased_at")?)?,
        checkpoint: row.try_get("checkpoint")?,
        deleted_at: timestamp::decode_opt(row.try_get("deleted_at")?)?,
        certificate_json: row.try_get("certificate_json")?,
        certificate_signature: row.try_get("certificate_signature")?,
        attestation_json: row.try_get("attestation_json")?,
        attested_by: attested_by.as_deref().map(uuid).transpose()?,
        attested_at: timestamp::decode_opt(row.try_get("attested_at")?)?,
        reminded_on: row.try_get("reminded_on")?,
    })
}

/// Records a new demand in the caller's transaction; false when the release already has one.
pub async fn insert(tx: &mut AnyConnection, demand: &DemandRow) -> Result<bool, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO destruction_demands (release_id, demanded_by, demanded_at, deadline, \
         reason, revocation_id) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (release_id) DO NOTHING",
    )
    .bind(demand.release.to_string())
    .bind(&demand.demanded_by)
    .bind(timestamp::encode(demand.demanded_at)?)
    .bind(&demand.deadline)
    .bind(&demand.reason)
    .bind(demand.revocation.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The demand for `release`, if there is one.
pub async fn find(db: &Database, release: Uuid) -> Result<Option<DemandRow>, DbError> {
    let mut conn = db.pool().acquire().await?;
    find_in(&mut conn, release).await
}

/// [`find`] in the caller's transaction.
pub async fn find_in(
    conn: &mut AnyConnection,
    release: Uuid,
) -> Result<Option<DemandRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM destruction_demands WHERE release_id = $1"
    ))
    .bind(release.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every demand whose certificate is not issued yet (the erase job's work left).
pub async fn uncertified(db: &Database) -> Result<Vec<Uuid>, DbError> {
    let rows = sqlx::query(
        "SELECT release_id FROM destruction_demands WHERE certificate_json IS NULL \
         ORDER BY demanded_at",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| uuid(&r.try_get::<String, _>("release_id")?))
        .collect()
}

/// Demands past `today` (ISO date) with no attestation and no reminder logged today.
pub async fn overdue_unreminded(db: &Database, today: &str) -> Result<Vec<DemandRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM destruction_demands WHERE deadline < $1 \
         AND attestation_json IS NULL AND (reminded_on IS NULL OR reminded_on < $1) \
         ORDER BY deadline"
    ))
    .bind(today)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every demand, oldest first.
pub async fn all(db: &Database) -> Result<Vec<DemandRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM destruction_demands ORDER BY demanded_at"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Records the plan, once; false when one was already recorded.
pub async fn set_plan(tx: &mut AnyConnection, release: Uuid, plan: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE destruction_demands SET plan_json = $1 \
         WHERE release_id = $2 AND plan_json IS NULL",
    )
    .bind(plan)
    .bind(release.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the key erased (with the checkpoint of that moment), once, after the plan.
pub async fn set_erased(
    tx: &mut AnyConnection,
    release: Uuid,
    at: OffsetDateTime,
    checkpoint: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE destruction_demands SET erased_at = $1, checkpoint = $2 \
         WHERE release_id = $3 AND plan_json IS NOT NULL AND erased_at IS NULL",
    )
    .bind(timestamp::encode(at)?)
    .bind(checkpoint)
    .bind(release.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks every object deleted, once, after the erase.
pub async fn set_deleted(
    tx: &mut AnyConnection,
    release: Uuid,
    at: OffsetDateTime,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE destruction_demands SET deleted_at = $1 \
         WHERE release_id = $2 AND erased_at IS NOT NULL AND deleted_at IS NULL",
    )
    .bind(timestamp::encode(at)?)
    .bind(release.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the signed certificate, once, after the objects are deleted.
pub async fn set_certificate(
    tx: &mut AnyConnection,
    release: Uuid,
    body: &str,
    signature: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE destruction_demands SET certificate_json = $1, certificate_signature = $2 \
         WHERE release_id = $3 AND deleted_at IS NOT NULL AND certificate_json IS NULL",
    )
    .bind(body)
    .bind(signature)
    .bind(release.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the accepted attestation, once.
pub async fn set_attestation(
    tx: &mut AnyConnection,
    release: Uuid,
    attestation: &str,
    by: Uuid,
    at: OffsetDateTime,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE destruction_demands SET attestation_json = $1, attested_by = $2, \
         attested_at = $3 WHERE release_id = $4 AND attestation_json IS NULL",
    )
    .bind(attestation)
    .bind(by.to_string())
    .bind(timestamp::encode(at)?)
    .bind(release.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Notes that today's reminder for an overdue demand is logged; false when another replica
/// already did.
pub async fn set_reminded(
    tx: &mut AnyConnection,
    release: Uuid,
    today: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE destruction_demands SET reminded_on = $1 \
         WHERE release_id = $2 AND (reminded_on IS NULL OR reminded_on < $1)",
    )
    .bind(today)
    .bind(release.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the release's wrapped identity in the caller's transaction; returns the public
/// recipients (key ids) it held.
pub async fn delete_release_key(
    tx: &mut AnyConnection,
    release: Uuid,
) -> Result<Vec<String>, DbError> {
    let rows = sqlx::query("DELETE FROM release_keys WHERE release_id = $1 RETURNING recipient")
        .bind(release.to_string())
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("recipient").map_err(DbError::from))
        .collect()
}

/// Whether the release had ever reached `available` (its files were offered).
pub async fn was_available(conn: &mut AnyConnection, release: Uuid) -> Result<bool, DbError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM release_history WHERE release_id = $1 AND to_status = 'available'",
    )
    .bind(release.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Releases in `expired` whose files were offered once and that have no demand: those the
/// DUA's end must still demand destruction of (a round that expired them may have stopped
/// before its demand).
pub async fn expired_without_demand(db: &Database) -> Result<Vec<Uuid>, DbError> {
    let rows = sqlx::query(
        "SELECT r.id FROM releases r WHERE r.status = 'expired' \
         AND NOT EXISTS (SELECT 1 FROM destruction_demands x WHERE x.release_id = r.id) \
         AND EXISTS (SELECT 1 FROM release_history h WHERE h.release_id = r.id \
                     AND h.to_status = 'available') ORDER BY r.id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| uuid(&r.try_get::<String, _>("id")?))
        .collect()
}

/// Every (user, file) the access log shows a download of the release starting for, with the
/// last start: a transfer whose end was never logged (its server died mid-stream) may have
/// delivered bytes all the same.
pub async fn download_starts(
    db: &Database,
    release: Uuid,
) -> Result<Vec<(String, String, String)>, DbError> {
    let rows = sqlx::query(
        "SELECT actor_user, file_id, MAX(at) AS last_at FROM access_events \
         WHERE release_id = $1 AND action = 'download_started' \
         AND actor_user IS NOT NULL AND file_id IS NOT NULL \
         GROUP BY actor_user, file_id ORDER BY actor_user, file_id",
    )
    .bind(release.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("actor_user")?,
                r.try_get("file_id")?,
                r.try_get("last_at")?,
            ))
        })
        .collect()
}
