//! Queries on `organizations`, `users`, `user_roles` and `recovery_codes`.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::{timestamp, Database, DbError};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::role::Role;

/// An organization as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    /// Its id.
    pub id: OrgId,
    /// Its unique name.
    pub name: String,
    /// Whether it is the agency, whose people alone may hold staff roles in force.
    pub agency: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A user as stored, with roles. Holds the password hash and TOTP secret: never serialize it.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Its id.
    pub id: UserId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// Unique login name.
    pub username: String,
    /// Name shown to people.
    pub display_name: String,
    /// PHC-format argon2id hash.
    pub password_hash: String,
    /// Hex TOTP secret, once enrolled.
    pub totp_secret: Option<String>,
    /// Last TOTP time step accepted (a code is accepted once).
    pub totp_last_step: i64,
    /// Disabled users cannot sign in or use any token.
    pub disabled: bool,
    /// The password is a one-time password: the user may only change it.
    pub must_change_password: bool,
    /// Failed logins since the last success or lockout.
    pub failed_logins: i64,
    /// Lockouts so far (each doubles the next one).
    pub lockouts: i64,
    /// Locked out until then.
    pub locked_until: Option<OffsetDateTime>,
    /// When the account was created.
    pub created_at: OffsetDateTime,
    /// Roles held, sorted.
    pub roles: Vec<Role>,
}

/// What a new user is made of.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Its id.
    pub id: UserId,
    /// Its organization.
    pub org_id: OrgId,
    /// Login name.
    pub username: &'a str,
    /// Name shown to people.
    pub display_name: &'a str,
    /// Argon2id hash.
    pub password_hash: &'a str,
    /// Hex TOTP secret.
    pub totp_secret: &'a str,
    /// Roles.
    pub roles: &'a [Role],
    /// Hashes of its recovery codes.
    pub recovery_code_hashes: &'a [String],
}

const USER_COLUMNS: &str = "id, org_id, username, display_name, password_hash, totp_secret, \
     totp_last_step, disabled, must_change_password, failed_logins, lockouts, locked_until, \
     created_at";

/// Creates an organization.
pub async fn insert_org(conn: &mut AnyConnection, org: &OrgRow) -> Result<(), DbError> {
    sqlx::query("INSERT INTO organizations (id, name, created_at, agency) VALUES ($1, $2, $3, $4)")
        .bind(org.id.to_string())
        .bind(&org.name)
        .bind(timestamp::encode(org.created_at)?)
        .bind(i64::from(org.agency))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every organization, by name.
pub async fn list_orgs(db: &Database) -> Result<Vec<OrgRow>, DbError> {
    let rows = sqlx::query("SELECT id, name, agency, created_at FROM organizations ORDER BY name")
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(org_from_row).collect()
}

/// The organization with this id or name.
pub async fn find_org(db: &Database, id_or_name: &str) -> Result<Option<OrgRow>, DbError> {
    let row = sqlx::query(
        "SELECT id, name, agency, created_at FROM organizations WHERE id = $1 OR name = $1",
    )
    .bind(id_or_name)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(org_from_row).transpose()
}

fn org_from_row(row: &AnyRow) -> Result<OrgRow, DbError> {
    Ok(OrgRow {
        id: parse_id(row, "id").map(OrgId)?,
        name: row.try_get("name")?,
        agency: row.try_get::<i64, _>("agency")? != 0,
        created_at: timestamp::decode(&row.try_get::<String, _>("created_at")?)?,
    })
}

/// Creates a user with its roles and recovery codes, in one transaction.
pub async fn insert_user(
    conn: &mut AnyConnection,
    user: &NewUser<'_>,
    now: OffsetDateTime,
) -> Result<(), DbError> {
    let now = timestamp::encode(now)?;
    sqlx::query(
        "INSERT INTO users (id, org_id, username, display_name, password_hash, totp_secret, \
         created_at, must_change_password) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)",
    )
    .bind(user.id.to_string())
    .bind(user.org_id.to_string())
    .bind(user.username)
    .bind(user.display_name)
    .bind(user.password_hash)
    .bind(user.totp_secret)
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    for role in user.roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(user.id.to_string())
            .bind(role.as_str())
            .execute(&mut *conn)
            .await?;
    }
    for hash in user.recovery_code_hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user.id.to_string())
            .bind(hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether any user holds the admin role (bootstrap refuses then).
pub async fn admin_exists(db: &Database) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM user_roles WHERE role = $1")
        .bind(Role::Admin.as_str())
        .fetch_one(db.pool())
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// The user with this login name.
pub async fn find_by_username(db: &Database, username: &str) -> Result<Option<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    let row = sqlx::query(&sql)
        .bind(username)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => Ok(Some(with_roles(db, user_from_row(&row)?).await?)),
        None => Ok(None),
    }
}

/// The user with this id.
pub async fn find_by_id(db: &Database, id: UserId) -> Result<Option<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(row) => Ok(Some(with_roles(db, user_from_row(&row)?).await?)),
        None => Ok(None),
    }
}

/// Every user, by login name.
pub async fn list(db: &Database) -> Result<Vec<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
    let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
    let roles = sqlx::query("SELECT user_id, role FROM user_roles")
        .fetch_all(db.pool())
        .await?;
    let mut users = rows
        .iter()
        .map(user_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    for row in &roles {
        let user_id: String = row.try_get("user_id")?;
        let role = parse_role(row)?;
        if let Some(user) = users.iter_mut().find(|u| u.id.to_string() == user_id) {
            user.roles.push(role);
        }
    }
    for user in &mut users {
        user.roles.sort();
    }
    Ok(users)
}

/// Replaces a user's password hash.
pub async fn set_password_hash(
    conn: &mut AnyConnection,
    id: UserId,
    hash: &str,
) -> Result<(), DbError> {
    // The user chose it: no longer a one-time password.
    sqlx::query("UPDATE users SET password_hash = $2, must_change_password = 0 WHERE id = $1")
        .bind(id.to_string())
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Replaces a user's stored TOTP seed (with its wrapped form).
pub async fn set_totp_secret(
    conn: &mut AnyConnection,
    id: UserId,
    stored: &str,
) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET totp_secret = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(stored)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Disables a user; returns false when there is no such user.
pub async fn disable(conn: &mut AnyConnection, id: UserId) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE users SET disabled = 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a user's roles.
pub async fn set_roles(
    conn: &mut AnyConnection,
    id: UserId,
    roles: &[Role],
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    for role in roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(role.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Counts a login attempt on the account before it is judged; returns (failed logins including
/// this one, lockouts so far, locked until).
pub async fn reserve_attempt(
    db: &Database,
    id: UserId,
) -> Result<(i64, i64, Option<OffsetDateTime>), DbError> {
    let row = sqlx::query(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 \
         RETURNING failed_logins, lockouts, locked_until",
    )
    .bind(id.to_string())
    .fetch_one(db.pool())
    .await?;
    Ok((
        row.try_get("failed_logins")?,
        row.try_get("lockouts")?,
        timestamp::decode_opt(row.try_get("locked_until")?)?,
    ))
}

/// Gives back an attempt refused unjudged.
pub async fn release_attempt(db: &Database, id: UserId) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET failed_logins = failed_logins - 1 WHERE id = $1 AND failed_logins > 0",
    )
    .bind(id.to_string())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Locks the account until `until(lockouts so far)` if its failed logins reached `limit`;
/// only one of several concurrent callers does it. Returns whether this call locked it.
pub async fn lock_if_reached(
    conn: &mut AnyConnection,
    id: UserId,
    limit: i64,
    now: OffsetDateTime,
    until: impl Fn(i64) -> OffsetDateTime,
) -> Result<bool, DbError> {
    let Some(user) = sqlx::query("SELECT failed_logins, lockouts FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(false);
    };
    let (failed_logins, lockouts): (i64, i64) =
        (user.try_get("failed_logins")?, user.try_get("lockouts")?);
    if failed_logins < limit {
        return Ok(false);
    }
    let locked = sqlx::query(
        "UPDATE users SET failed_logins = 0, lockouts = lockouts + 1, locked_until = $3 \
         WHERE id = $1 AND failed_logins >= $2 AND lockouts = $4 \
         AND (locked_until IS NULL OR locked_until <= $5)",
    )
    .bind(id.to_string())
    .bind(limit)
    .bind(timestamp::encode(until(lockouts))?)
    .bind(lockouts)
    .bind(timestamp::encode(now)?)
    .execute(&mut *conn)
    .await?;
    Ok(locked.rows_affected() == 1)
}

/// Clears failure counters and any lockout (after a success, or by an admin).
pub async fn clear_failures(conn: &mut AnyConnection, id: UserId) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE users SET failed_logins = 0, lockouts = 0, locked_until = NULL WHERE id = $1",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Accepts TOTP time step `step` only if it is later than the last accepted one, atomically, so
/// a code cannot be used twice even by two concurrent logins.
pub async fn claim_totp_step(db: &Database, id: UserId, step: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2")
            .bind(id.to_string())
            .bind(step)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks an unused recovery code as used; false when it does not exist or was used already.
pub async fn use_recovery_code(
    db: &Database,
    id: UserId,
    code_hash: &str,
    now: OffsetDateTime,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $3 \
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(id.to_string())
    .bind(code_hash)
    .bind(timestamp::encode(now)?)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn with_roles(db: &Database, mut user: UserRow) -> Result<UserRow, DbError> {
    let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
        .bind(user.id.to_string())
        .fetch_all(db.pool())
        .await?;
    user.roles = rows.iter().map(parse_role).collect::<Result<_, _>>()?;
    user.roles.sort();
    Ok(user)
}

fn user_from_row(row: &AnyRow) -> Result<UserRow, DbError> {
    Ok(UserRow {
        id: parse_id(row, "id").map(UserId)?,
        org_id: parse_id(row, "org_id").map(OrgId)?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        failed_logins: row.try_get("failed_logins")?,
        lockouts: row.try_get("lockouts")?,
        locked_until: timestamp::decode_opt(row.try_get("locked_until")?)?,
        created_at: timestamp::decode(&row.try_get::<String, _>("created_at")?)?,
        roles: Vec::new(),
    })
}

fn parse_role(row: &AnyRow) -> Result<Role, DbError> {
    let text: String = row.try_get("role")?;
    text.parse()
        .map_err(|e: crate::domain::role::ParseRoleError| {
            DbError::Sqlx(sqlx::Error::Decode(Box::new(e)))
        })
}

/// Reads a UUID stored as text.
pub(crate) fn parse_id(row: &AnyRow, column: &str) -> Result<uuid::Uuid, DbError> {
    let text: String = row.try_get(column)?;
    uuid::Uuid::parse_str(&text).map_err(|e| DbError::Sqlx(sqlx::Error::Decode(Box::new(e))))
}
