//! Queries on `login_throttle`: failed logins per client address.

use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::{timestamp, Database, DbError};

/// The failure state of one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleRow {
    /// Failures since the last lockout or success.
    pub failures: i64,
    /// Lockouts so far.
    pub lockouts: i64,
    /// Locked until then.
    pub locked_until: Option<OffsetDateTime>,
}

/// The state of `addr` (all zero when it never failed).
pub async fn get(db: &Database, addr: &str) -> Result<ThrottleRow, DbError> {
    let row = sqlx::query(
        "SELECT failures, lockouts, locked_until FROM login_throttle WHERE client_addr = $1",
    )
    .bind(addr)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(ThrottleRow::default());
    };
    Ok(ThrottleRow {
        failures: row.try_get("failures")?,
        lockouts: row.try_get("lockouts")?,
        locked_until: timestamp::decode_opt(row.try_get("locked_until")?)?,
    })
}

/// Stores the new state of `addr`.
/// Counts an attempt before it is judged (so parallel attempts cannot all be judged against
/// the same count) and returns the state including it.
pub async fn reserve(db: &Database, key: &str) -> Result<ThrottleRow, DbError> {
    let row = sqlx::query(
        "INSERT INTO login_throttle (client_addr, failures, lockouts, locked_until) \
         VALUES ($1, 1, 0, NULL) ON CONFLICT (client_addr) DO UPDATE SET \
         failures = login_throttle.failures + 1 \
         RETURNING failures, lockouts, locked_until",
    )
    .bind(key)
    .fetch_one(db.pool())
    .await?;
    Ok(ThrottleRow {
        failures: row.try_get("failures")?,
        lockouts: row.try_get("lockouts")?,
        locked_until: timestamp::decode_opt(row.try_get("locked_until")?)?,
    })
}

/// Gives back an attempt that was not a failure (or was refused unjudged).
pub async fn release(db: &Database, key: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE login_throttle SET failures = failures - 1 WHERE client_addr = $1 AND failures > 0",
    )
    .bind(key)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Locks `key` until `until` if its failures reached `limit`, starting the next round; only
/// one of several concurrent callers does it. Returns whether this call locked it.
pub async fn lock_if_reached(
    conn: &mut AnyConnection,
    key: &str,
    limit: i64,
    now: OffsetDateTime,
    until: impl Fn(i64) -> OffsetDateTime,
) -> Result<bool, DbError> {
    let Some(row) =
        sqlx::query("SELECT failures, lockouts FROM login_throttle WHERE client_addr = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(false);
    };
    let (failures, lockouts): (i64, i64) = (row.try_get("failures")?, row.try_get("lockouts")?);
    if failures < limit {
        return Ok(false);
    }
    // Not while locked: attempts refused during a lock are counted for a moment before they
    // are given back, and must not lock it again.
    let locked = sqlx::query(
        "UPDATE login_throttle SET failures = 0, lockouts = lockouts + 1, locked_until = $3 \
         WHERE client_addr = $1 AND failures >= $2 AND lockouts = $4 \
         AND (locked_until IS NULL OR locked_until <= $5)",
    )
    .bind(key)
    .bind(limit)
    .bind(timestamp::encode(until(lockouts))?)
    .bind(lockouts)
    .bind(timestamp::encode(now)?)
    .execute(&mut *conn)
    .await?;
    Ok(locked.rows_affected() == 1)
}
