//! Queries on `download_quotas`, `download_transfers` and `revocations`: what a user has
//! received of a file, the transfers in flight, and the revocations in force.

use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{timestamp, Database, DbError};

/// How a transfer ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    /// Streaming.
    Running,
    /// Every byte of its range was sent.
    Completed,
    /// The client left before the end.
    Aborted,
    /// A revocation (or another change of the terms) cut it.
    Cut,
}

impl TransferState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Running => "running",
            TransferState::Completed => "completed",
            TransferState::Aborted => "aborted",
            TransferState::Cut => "cut",
        }
    }
}

/// A transfer as it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransfer {
    /// Its id.
    pub id: Uuid,
    /// Who receives it.
    pub user: Uuid,
    /// Which file.
    pub file: Uuid,
    /// Of which release.
    pub release: Uuid,
    /// First byte.
    pub start: u64,
    /// Bytes it will send (reserved against the limit while it runs).
    pub len: u64,
}

fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Locks the (user, file) row in the caller's transaction, creating it on first use, so that
/// of two transfers starting at once the second sees the first's reservation.
pub async fn lock_quota(
    tx: &mut AnyConnection,
    user: Uuid,
    file: Uuid,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let now = timestamp::encode(now)?;
    sqlx::query(
        "INSERT INTO download_quotas (user_id, file_id, locked_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, file_id) DO NOTHING",
    )
    .bind(user.to_string())
    .bind(file.to_string())
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    // An UPDATE takes the row lock on PostgreSQL; SQLite's writer already holds the database.
    sqlx::query("UPDATE download_quotas SET locked_at = $1 WHERE user_id = $2 AND file_id = $3")
        .bind(&now)
        .bind(user.to_string())
        .bind(file.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Bytes of `file` that `user` has received or has reserved: every ended transfer counts what
/// it sent; a running one counts its whole range while its heartbeat is at or after `fresh`,
/// and what it had sent once the heartbeat is older (its server died). `except` leaves one
/// transfer out (the one asking).
pub async fn used_bytes(
    conn: &mut AnyConnection,
    user: Uuid,
    file: Uuid,
    fresh: OffsetDateTime,
    except: Option<Uuid>,
) -> Result<u64, DbError> {
    let fresh = timestamp::encode(fresh)?;
    let row = sqlx::query(
        // PostgreSQL sums BIGINTs into NUMERIC: cast back, so both backends give an integer.
        "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'running' AND heartbeat_at >= $1 \
         THEN range_len ELSE sent END), 0) AS BIGINT) AS used \
         FROM download_transfers WHERE user_id = $2 AND file_id = $3 AND id <> $4",
    )
    .bind(&fresh)
    .bind(user.to_string())
    .bind(file.to_string())
    .bind(except.unwrap_or_else(Uuid::nil).to_string())
    .fetch_one(&mut *conn)
    .await?;
    let used: i64 = row.try_get("used")?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// Records a transfer that starts now, in the caller's transaction.
pub async fn insert_transfer(
    tx: &mut AnyConnection,
    transfer: &NewTransfer,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let now = timestamp::encode(now)?;
    sqlx::query(
        "INSERT INTO download_transfers (id, user_id, file_id, release_id, range_start, \
         range_len, sent, state, started_at, heartbeat_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, 'running', $7, $7)",
    )
    .bind(transfer.id.to_string())
    .bind(transfer.user.to_string())
    .bind(transfer.file.to_string())
    .bind(transfer.release.to_string())
    .bind(bigint(transfer.start))
    .bind(bigint(transfer.len))
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A running transfer's heartbeat: what it has sent so far.
pub async fn heartbeat(
    db: &Database,
    id: Uuid,
    sent: u64,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE download_transfers SET sent = $1, heartbeat_at = $2 \
         WHERE id = $3 AND state = 'running'",
    )
    .bind(bigint(sent))
    .bind(timestamp::encode(now)?)
    .bind(id.to_string())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Ends a transfer in the caller's transaction.
pub async fn finish_transfer(
    tx: &mut AnyConnection,
    id: Uuid,
    sent: u64,
    state: TransferState,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let now = timestamp::encode(now)?;
    sqlx::query(
        "UPDATE download_transfers SET sent = $1, state = $2, heartbeat_at = $3, ended_at = $3 \
         WHERE id = $4",
    )
    .bind(bigint(sent))
    .bind(state.as_str())
    .bind(&now)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What a revocation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationScope {
    /// Every download by one user.
    User(Uuid),
    /// Every download by anyone of one organization.
    Organization(Uuid),
    /// Every file of one release.
    Release(Uuid),
    /// One file.
    File(Uuid),
}

impl RevocationScope {
    /// The stored kind.
    pub fn kind(self) -> &'static str {
        match self {
            RevocationScope::User(_) => "user",
            RevocationScope::Organization(_) => "organization",
            RevocationScope::Release(_) => "release",
            RevocationScope::File(_) => "file",
        }
    }

    /// The id it names.
    pub fn id(self) -> Uuid {
        match self {
            RevocationScope::User(id)
            | RevocationScope::Organization(id)
            | RevocationScope::Release(id)
            | RevocationScope::File(id) => id,
        }
    }

    /// A scope from its kind and id, `None` for an unknown kind.
    pub fn from_parts(kind: &str, id: Uuid) -> Option<Self> {
        Some(match kind {
            "user" => RevocationScope::User(id),
            "organization" => RevocationScope::Organization(id),
            "release" => RevocationScope::Release(id),
            "file" => RevocationScope::File(id),
            _ => return None,
        })
    }
}

/// A stored revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    /// Its id.
    pub id: Uuid,
    /// What it covers.
    pub scope: RevocationScope,
    /// The director's reason.
    pub reason: String,
    /// Who made it: a user id, or `system` (the operator's shell).
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// Who lifted it, if anyone.
    pub lifted_by: Option<String>,
    /// When it was lifted.
    pub lifted_at: Option<OffsetDateTime>,
}

/// Records a revocation in the caller's transaction.
pub async fn insert_revocation(tx: &mut AnyConnection, row: &RevocationRow) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO revocations (id, scope_kind, scope_id, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(row.id.to_string())
    .bind(row.scope.kind())
    .bind(row.scope.id().to_string())
    .bind(&row.reason)
    .bind(&row.created_by)
    .bind(timestamp::encode(row.created_at)?)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Lifts a revocation in force; `false` when none with this id is in force.
pub async fn lift_revocation(
    tx: &mut AnyConnection,
    id: Uuid,
    by: &str,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE revocations SET lifted_by = $1, lifted_at = $2 WHERE id = $3 AND lifted_at IS NULL",
    )
    .bind(by)
    .bind(timestamp::encode(now)?)
    .bind(id.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

const REVOCATION_COLUMNS: &str =
    "id, scope_kind, scope_id, reason, created_by, created_at, lifted_by, lifted_at";

/// One revocation.
pub async fn revocation(db: &Database, id: Uuid) -> Result<Option<RevocationRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {REVOCATION_COLUMNS} FROM revocations WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(revocation_row).transpose()
}

/// Every revocation, newest first.
pub async fn revocations(db: &Database) -> Result<Vec<RevocationRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {REVOCATION_COLUMNS} FROM revocations ORDER BY created_at DESC, id"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(revocation_row).collect()
}

/// Whether a revocation in force covers any of `scopes`.
pub async fn revoked(db: &Database, scopes: &[RevocationScope]) -> Result<bool, DbError> {
    let mut sql =
        String::from("SELECT COUNT(*) AS n FROM revocations WHERE lifted_at IS NULL AND (");
    for i in 0..scopes.len() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str(&format!(
            "(scope_kind = ${} AND scope_id = ${})",
            2 * i + 1,
            2 * i + 2
        ));
    }
    sql.push(')');
    let mut query = sqlx::query(&sql);
    for scope in scopes {
        query = query.bind(scope.kind()).bind(scope.id().to_string());
    }
    let n: i64 = query.fetch_one(db.pool()).await?.try_get("n")?;
    Ok(n > 0)
}

fn revocation_row(r: &sqlx::any::AnyRow) -> Result<RevocationRow, DbError> {
    let uuid = |text: String| Uuid::parse_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)));
    let kind: String = r.try_get("scope_kind")?;
    let scope_id = uuid(r.try_get("scope_id")?)?;
    let scope = RevocationScope::from_parts(&kind, scope_id)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown revocation scope {kind}").into()))?;
    let lifted_at: Option<String> = r.try_get("lifted_at")?;
    Ok(RevocationRow {
        id: uuid(r.try_get("id")?)?,
        scope,
        reason: r.try_get("reason")?,
        created_by: r.try_get("created_by")?,
        created_at: timestamp::decode(&r.try_get::<String, _>("created_at")?)?,
        lifted_by: r.try_get("lifted_by")?,
        lifted_at: lifted_at.map(|t| timestamp::decode(&t)).transpose()?,
    })
}
