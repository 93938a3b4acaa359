//! Queries on `releases`, `release_history`, `duas`, `dua_numbers`, `dua_users` and
//! `approval_letters`.
//!
//! Every change to a release is one transaction that first runs a compare-and-swap
//! (`UPDATE ... WHERE id = $ AND status = $expected AND revision = $seen`): of two concurrent
//! changes exactly one applies, and the other sees `None` and is refused.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::users::parse_id;
use super::{timestamp, Database, DbError};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::level::Level;
use crate::domain::release::{ReleaseId, ReleaseStatus};

/// A release as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    /// Its id.
    pub id: ReleaseId,
    /// The requesting organization.
    pub org_id: OrgId,
    /// The user who filed the request.
    pub requested_by: UserId,
    /// The level asked for.
    pub level: Level,
    /// Where it is in its lifecycle.
    pub status: ReleaseStatus,
    /// The validated request, as JSON (see `release::stored`).
    pub request_json: String,
    /// The approved element ids, as a JSON array.
    pub approved_elements: String,
    /// The subcommittee's recorded decision, as JSON.
    pub committee_json: Option<String>,
    /// The director who approved it.
    pub approved_by: Option<UserId>,
    /// When it was approved.
    pub approved_at: Option<OffsetDateTime>,
    /// The DUA version in force (0: no DUA yet).
    pub dua_version: i64,
    /// Bumped by every change; the compare-and-swap checks it.
    pub revision: i64,
    /// When the request was filed.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// One entry of a release's history: who changed what, when, and why (the free text lives
/// here, never in the access log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Position in the release's history, from 1.
    pub entry: i64,
    /// When.
    pub at: OffsetDateTime,
    /// `system` or a user id.
    pub actor: String,
    /// A transition name, or `requested`, `narrowed`, `committee_decision`, `dua_amended`.
    pub kind: String,
    /// Status before.
    pub from_status: ReleaseStatus,
    /// Status after.
    pub to_status: ReleaseStatus,
    /// The human reason, when one was given.
    pub reason: Option<String>,
}

/// One DUA version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuaRow {
    /// The release it governs.
    pub release_id: ReleaseId,
    /// Version, from 1.
    pub version: i64,
    /// `DUA-YYYY-NNNN`.
    pub number: String,
    /// First day, `YYYY-MM-DD`.
    pub effective: String,
    /// Last day, `YYYY-MM-DD`.
    pub expiry: String,
    /// The responsible person.
    pub responsible: UserId,
    /// The named authorized users.
    pub users: Vec<UserId>,
    /// Downloads per file.
    pub download_limit: i64,
    /// Allowed networks as a JSON array of CIDRs; empty means any.
    pub networks: String,
    /// Days after expiry by which destruction is due.
    pub destruction_days: i64,
    /// `system` or a user id.
    pub recorded_by: String,
    /// When this version was recorded.
    pub recorded_at: OffsetDateTime,
}

/// A signed approval letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterRow {
    /// The release.
    pub release_id: ReleaseId,
    /// The DUA version it states.
    pub dua_version: i64,
    /// The PDF, base64.
    pub pdf_base64: String,
    /// Hex Ed25519 signature over the PDF bytes.
    pub signature: String,
    /// Hex public key that verifies it.
    pub public_key: String,
    /// When it was issued.
    pub created_at: OffsetDateTime,
}

/// A change to apply with compare-and-swap, and the history entry that records it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The status the caller saw.
    pub expected: ReleaseStatus,
    /// The revision the caller saw.
    pub revision: i64,
    /// The new status (the same as `expected` for changes that are not transitions).
    pub to: ReleaseStatus,
    /// History kind.
    pub kind: &'a str,
    /// `system` or a user id.
    pub actor: String,
    /// The human reason.
    pub reason: Option<&'a str>,
    /// When.
    pub at: OffsetDateTime,
    /// New approved elements (JSON), if they change.
    pub approved_elements: Option<String>,
    /// New committee decision (JSON), if it changes.
    pub committee_json: Option<String>,
    /// The approving director, on approval.
    pub approved_by: Option<UserId>,
    /// A new DUA version to record (its version becomes the one in force).
    pub dua: Option<&'a DuaRow>,
    /// A new signed letter to store.
    pub letter: Option<&'a LetterRow>,
}

/// Filters for listing releases; all given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseFilter {
    /// Only these statuses (empty: any).
    pub statuses: Vec<ReleaseStatus>,
    /// Only this requesting organization.
    pub org: Option<OrgId>,
    /// Only this level.
    pub level: Option<Level>,
    /// Only what this recipient may read (the `OwnOrganization` and `NamedRecipient` scopes of
    /// `auth::authorize`): what they filed, their organization's requests not yet under a
    /// DUA, and releases whose DUA in force names them.
    pub visible_to: Option<(UserId, OrgId)>,
}

const RELEASE_COLUMNS: &str = "id, org_id, requested_by, level, status, request_json, \
     approved_elements, committee_json, approved_by, approved_at, dua_version, revision, \
     created_at, updated_at";

fn decode_error(e: impl std::error::Error + Send + Sync + 'static) -> DbError {
    DbError::Sqlx(sqlx::Error::Decode(Box::new(e)))
}

fn release_from_row(row: &AnyRow) -> Result<ReleaseRow, DbError> {
    let level: String = row.try_get("level")?;
    let status: String = row.try_get("status")?;
    let approved_by: Option<String> = row.try_get("approved_by")?;
    Ok(ReleaseRow {
        id: ReleaseId(parse_id(row, "id")?),
        org_id: OrgId(parse_id(row, "org_id")?),
        requested_by: UserId(parse_id(row, "requested_by")?),
        level: level.parse().map_err(decode_error)?,
        status: status.parse().map_err(decode_error)?,
        request_json: row.try_get("request_json")?,
        approved_elements: row.try_get("approved_elements")?,
        committee_json: row.try_get("committee_json")?,
        approved_by: approved_by
            .map(|t| t.parse().map(UserId).map_err(decode_error))
            .transpose()?,
        approved_at: timestamp::decode_opt(row.try_get("approved_at")?)?,
        dua_version: row.try_get("dua_version")?,
        revision: row.try_get("revision")?,
        created_at: timestamp::decode(&row.try_get::<String, _>("created_at")?)?,
        updated_at: timestamp::decode(&row.try_get::<String, _>("updated_at")?)?,
    })
}

/// Stores a new release (a draft) and its first history entry, in the caller's transaction.
pub async fn insert(
    tx: &mut AnyConnection,
    release: &ReleaseRow,
    actor: &str,
) -> Result<(), DbError> {
    let created = timestamp::encode(release.created_at)?;
    sqlx::query(
        "INSERT INTO releases (id, org_id, requested_by, level, status, request_json, \
         approved_elements, committee_json, approved_by, approved_at, dua_version, revision, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, 0, 0, $8, $8)",
    )
    .bind(release.id.to_string())
    .bind(release.org_id.to_string())
    .bind(release.requested_by.to_string())
    .bind(release.level.as_str())
    .bind(release.status.as_str())
    .bind(&release.request_json)
    .bind(&release.approved_elements)
    .bind(&created)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO release_history (release_id, entry, at, actor, kind, from_status, \
         to_status, reason) VALUES ($1, 1, $2, $3, 'requested', $4, $4, NULL)",
    )
    .bind(release.id.to_string())
    .bind(&created)
    .bind(actor)
    .bind(release.status.as_str())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The release with this id.
pub async fn find(db: &Database, id: ReleaseId) -> Result<Option<ReleaseRow>, DbError> {
    let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(release_from_row).transpose()
}

/// Releases matching `filter`, newest first.
pub async fn list(db: &Database, filter: &ReleaseFilter) -> Result<Vec<ReleaseRow>, DbError> {
    let mut clauses = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let next = |value: String, binds: &mut Vec<String>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    if !filter.statuses.is_empty() {
        let placeholders: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| next(s.as_str().to_owned(), &mut binds))
            .collect();
        clauses.push(format!("status IN ({})", placeholders.join(", ")));
    }
    if let Some(org) = filter.org {
        let p = next(org.to_string(), &mut binds);
        clauses.push(format!("org_id = {p}"));
    }
    if let Some(level) = filter.level {
        let p = next(level.as_str().to_owned(), &mut binds);
        clauses.push(format!("level = {p}"));
    }
    if let Some((user, org)) = filter.visible_to {
        let o = next(org.to_string(), &mut binds);
        let u = next(user.to_string(), &mut binds);
        clauses.push(format!(
            "(requested_by = {u} OR (org_id = {o} AND dua_version = 0) OR EXISTS \
             (SELECT 1 FROM dua_users du WHERE du.release_id = releases.id \
             AND du.version = releases.dua_version AND du.user_id = {u}))"
        ));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let sql =
        format!("SELECT {RELEASE_COLUMNS} FROM releases{where_sql} ORDER BY created_at DESC, id");
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(value.as_str());
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(release_from_row).collect()
}

/// Applies `change`, in the caller's transaction, if the release is still at
/// `change.expected` and `change.revision`; returns the new history entry, or `None` when
/// another change got there first (the caller then rolls back).
pub async fn apply(
    tx: &mut AnyConnection,
    id: ReleaseId,
    change: &Change<'_>,
) -> Result<Option<i64>, DbError> {
    let at = timestamp::encode(change.at)?;
    let updated = sqlx::query(
        "UPDATE releases SET status = $1, updated_at = $2, revision = revision + 1, \
         approved_elements = COALESCE($3, approved_elements), \
         committee_json = COALESCE($4, committee_json), \
         approved_by = COALESCE($5, approved_by), \
         approved_at = COALESCE($6, approved_at), \
         dua_version = COALESCE($7, dua_version) \
         WHERE id = $8 AND status = $9 AND revision = $10",
    )
    .bind(change.to.as_str())
    .bind(&at)
    .bind(change.approved_elements.as_deref())
    .bind(change.committee_json.as_deref())
    .bind(change.approved_by.map(|u| u.to_string()))
    .bind(change.approved_by.map(|_| at.clone()))
    .bind(change.dua.map(|d| d.version))
    .bind(id.to_string())
    .bind(change.expected.as_str())
    .bind(change.revision)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(None);
    }
    let entry: i64 = sqlx::query(
        "SELECT COALESCE(MAX(entry), 0) + 1 AS next FROM release_history WHERE release_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&mut *tx)
    .await?
    .try_get("next")?;
    sqlx::query(
        "INSERT INTO release_history (release_id, entry, at, actor, kind, from_status, \
         to_status, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.to_string())
    .bind(entry)
    .bind(&at)
    .bind(&change.actor)
    .bind(change.kind)
    .bind(change.expected.as_str())
    .bind(change.to.as_str())
    .bind(change.reason)
    .execute(&mut *tx)
    .await?;
    if let Some(dua) = change.dua {
        if dua.version == 1 {
            sqlx::query("INSERT INTO dua_numbers (number, release_id) VALUES ($1, $2)")
                .bind(&dua.number)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO duas (release_id, version, number, effective, expiry, responsible, \
             download_limit, networks, destruction_days, recorded_by, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id.to_string())
        .bind(dua.version)
        .bind(&dua.number)
        .bind(&dua.effective)
        .bind(&dua.expiry)
        .bind(dua.responsible.to_string())
        .bind(dua.download_limit)
        .bind(&dua.networks)
        .bind(dua.destruction_days)
        .bind(&dua.recorded_by)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        for user in &dua.users {
            sqlx::query("INSERT INTO dua_users (release_id, version, user_id) VALUES ($1, $2, $3)")
                .bind(id.to_string())
                .bind(dua.version)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        }
    }
    if let Some(letter) = change.letter {
        sqlx::query(
            "INSERT INTO approval_letters (release_id, dua_version, pdf_base64, signature, \
             public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(letter.dua_version)
        .bind(&letter.pdf_base64)
        .bind(&letter.signature)
        .bind(&letter.public_key)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Some(entry))
}

/// The release's history, oldest first.
pub async fn history(db: &Database, id: ReleaseId) -> Result<Vec<HistoryRow>, DbError> {
    let rows = sqlx::query(
        "SELECT entry, at, actor, kind, from_status, to_status, reason FROM release_history \
         WHERE release_id = $1 ORDER BY entry",
    )
    .bind(id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let from: String = row.try_get("from_status")?;
            let to: String = row.try_get("to_status")?;
            Ok(HistoryRow {
                entry: row.try_get("entry")?,
                at: timestamp::decode(&row.try_get::<String, _>("at")?)?,
                actor: row.try_get("actor")?,
                kind: row.try_get("kind")?,
                from_status: from.parse().map_err(decode_error)?,
                to_status: to.parse().map_err(decode_error)?,
                reason: row.try_get("reason")?,
            })
        })
        .collect()
}

/// The DUA version `version` of a release.
pub async fn dua(db: &Database, id: ReleaseId, version: i64) -> Result<Option<DuaRow>, DbError> {
    let row = sqlx::query(
        "SELECT release_id, version, number, effective, expiry, responsible, download_limit, \
         networks, destruction_days, recorded_by, recorded_at FROM duas \
         WHERE release_id = $1 AND version = $2",
    )
    .bind(id.to_string())
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let users = sqlx::query(
        "SELECT user_id FROM dua_users WHERE release_id = $1 AND version = $2 ORDER BY user_id",
    )
    .bind(id.to_string())
    .bind(version)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| parse_id(r, "user_id").map(UserId))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(DuaRow {
        release_id: ReleaseId(parse_id(&row, "release_id")?),
        version: row.try_get("version")?,
        number: row.try_get("number")?,
        effective: row.try_get("effective")?,
        expiry: row.try_get("expiry")?,
        responsible: UserId(parse_id(&row, "responsible")?),
        users,
        download_limit: row.try_get("download_limit")?,
        networks: row.try_get("networks")?,
        destruction_days: row.try_get("destruction_days")?,
        recorded_by: row.try_get("recorded_by")?,
        recorded_at: timestamp::decode(&row.try_get::<String, _>("recorded_at")?)?,
    }))
}

/// The release that holds DUA number `number`, if any.
pub async fn dua_number_owner(db: &Database, number: &str) -> Result<Option<ReleaseId>, DbError> {
    let row = sqlx::query("SELECT release_id FROM dua_numbers WHERE number = $1")
        .bind(number)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| parse_id(&r, "release_id").map(ReleaseId))
        .transpose()
}

/// The newest approval letter of a release.
pub async fn latest_letter(db: &Database, id: ReleaseId) -> Result<Option<LetterRow>, DbError> {
    let row = sqlx::query(
        "SELECT release_id, dua_version, pdf_base64, signature, public_key, created_at \
         FROM approval_letters WHERE release_id = $1 ORDER BY dua_version DESC LIMIT 1",
    )
    .bind(id.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok(LetterRow {
            release_id: ReleaseId(parse_id(&row, "release_id")?),
            dua_version: row.try_get("dua_version")?,
            pdf_base64: row.try_get("pdf_base64")?,
            signature: row.try_get("signature")?,
            public_key: row.try_get("public_key")?,
            created_at: timestamp::decode(&row.try_get::<String, _>("created_at")?)?,
        })
    })
    .transpose()
}

/// Releases whose DUA in force expired before `today` (`YYYY-MM-DD`) and that are still in a
/// state expiry applies to.
pub async fn due_for_expiry(db: &Database, today: &str) -> Result<Vec<ReleaseRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM releases r JOIN duas d ON d.release_id = r.id \
         AND d.version = r.dua_version \
         WHERE r.status IN ($1, $2, $3) AND d.expiry < $4 ORDER BY r.id",
        RELEASE_COLUMNS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(ReleaseStatus::DuaExecuted.as_str())
        .bind(ReleaseStatus::Extracting.as_str())
        .bind(ReleaseStatus::Available.as_str())
        .bind(today)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(release_from_row).collect()
}

/// A user's organization, whether it is disabled, and how many recipient keys it has
/// registered; `None` when no such user exists.
pub async fn user_standing(
    db: &Database,
    user: UserId,
) -> Result<Option<(OrgId, bool, i64)>, DbError> {
    let row = sqlx::query(
        "SELECT u.org_id AS org_id, u.disabled AS disabled, \
         (SELECT COUNT(*) FROM recipient_keys k WHERE k.user_id = u.id) AS keys \
         FROM users u WHERE u.id = $1",
    )
    .bind(user.to_string())
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok((
            OrgId(parse_id(&row, "org_id")?),
            row.try_get::<i64, _>("disabled")? != 0,
            row.try_get::<i64, _>("keys")?,
        ))
    })
    .transpose()
}
