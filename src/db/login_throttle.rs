//! Queries on `login_throttle`: failed logins per client address.

use sqlx::Row;
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
pub async fn put(db: &Database, addr: &str, state: &ThrottleRow) -> Result<(), DbError> {
    let locked_until = state.locked_until.map(timestamp::encode).transpose()?;
    sqlx::query(
        "INSERT INTO login_throttle (client_addr, failures, lockouts, locked_until) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (client_addr) DO UPDATE SET \
         failures = excluded.failures, lockouts = excluded.lockouts, \
         locked_until = excluded.locked_until",
    )
    .bind(addr)
    .bind(state.failures)
    .bind(state.lockouts)
    .bind(locked_until)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Forgets `addr`'s failures after a successful login.
pub async fn clear(db: &Database, addr: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM login_throttle WHERE client_addr = $1")
        .bind(addr)
        .execute(db.pool())
        .await?;
    Ok(())
}
