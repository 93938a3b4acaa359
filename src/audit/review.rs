//! What the privacy officer reads: events filtered on their columns, a page at a time in a
//! stable order (commit order, keyset by event id), the same filters streamed for export, and
//! the reports. Who may read is decided by `auth::authorize`; every read is itself logged by
//! the caller.

use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    format_time, record_from_row, AccessRecord, Action, AuditError, Outcome, RECORD_COLUMNS,
};
use crate::db::Database;

/// Largest page a review may ask for.
pub const MAX_PAGE: i64 = 1000;

/// Page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 100;

/// A filter as it arrives (query string or command line), before it is checked.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    /// Release id.
    pub release: Option<String>,
    /// DUA number.
    pub dua: Option<String>,
    /// Acting user's id.
    pub user: Option<String>,
    /// Acting user's organization id.
    pub organization: Option<String>,
    /// Action name.
    pub action: Option<String>,
    /// Outcome name.
    pub outcome: Option<String>,
    /// Events at or after this RFC 3339 time.
    pub from: Option<String>,
    /// Events before this RFC 3339 time.
    pub to: Option<String>,
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: Option<String>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
}

/// A checked filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Events about this release.
    pub release: Option<Uuid>,
    /// Events under this DUA.
    pub dua: Option<String>,
    /// Events by this user.
    pub user: Option<Uuid>,
    /// Events by people of this organization.
    pub organization: Option<Uuid>,
    /// Events of this action.
    pub action: Option<Action>,
    /// Events with this outcome.
    pub outcome: Option<Outcome>,
    /// At or after (stored time format).
    pub from: Option<String>,
    /// Before (stored time format).
    pub to: Option<String>,
}

/// A page request: after which event, how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Events with id greater than this.
    pub after: i64,
    /// At most this many.
    pub limit: i64,
}

/// Why a filter is refused; each names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A parameter's value is not what it must be.
    #[error("`{param}`: {problem}")]
    Invalid {
        /// The parameter.
        param: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(param: &'static str, problem: impl Into<String>) -> FilterError {
    FilterError::Invalid {
        param,
        problem: problem.into(),
    }
}

fn parse_uuid(param: &'static str, value: &Option<String>) -> Result<Option<Uuid>, FilterError> {
    value
        .as_deref()
        .map(|v| Uuid::parse_str(v).map_err(|_| invalid(param, "not an id (a UUID)")))
        .transpose()
}

fn parse_time(param: &'static str, value: &Option<String>) -> Result<Option<String>, FilterError> {
    value
        .as_deref()
        .map(|v| {
            let t = OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| invalid(param, "not an RFC 3339 time (2026-01-31T00:00:00Z)"))?;
            format_time(t).map_err(|_| invalid(param, "out of range"))
        })
        .transpose()
}

impl RawFilter {
    /// Checks every parameter; nothing is read when one is wrong.
    pub fn check(&self) -> Result<(Filter, PageRequest), FilterError> {
        let action = self
            .action
            .as_deref()
            .map(|a| {
                Action::parse(a).ok_or_else(|| {
                    invalid(
                        "action",
                        format!("unknown action {a:?}; see `steward audit actions`"),
                    )
                })
            })
            .transpose()?;
        let outcome = self
            .outcome
            .as_deref()
            .map(|o| {
                Outcome::parse(o).ok_or_else(|| {
                    invalid(
                        "outcome",
                        format!("unknown outcome {o:?}: granted, denied, succeeded or failed"),
                    )
                })
            })
            .transpose()?;
        let dua = match self.dua.as_deref() {
            Some(d) if d.is_empty() || d.len() > 64 || d.chars().any(char::is_control) => {
                return Err(invalid("dua", "not a DUA number"))
            }
            other => other.map(str::to_owned),
        };
        let from = parse_time("from", &self.from)?;
        let to = parse_time("to", &self.to)?;
        if let (Some(f), Some(t)) = (&from, &to) {
            if f > t {
                return Err(invalid("to", "is before `from`"));
            }
        }
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => return Err(invalid("limit", format!("must be 1 to {MAX_PAGE}"))),
            },
        };
        let after = match self.cursor.as_deref() {
            None => 0,
            Some(c) => {
                parse_cursor(c).ok_or_else(|| invalid("cursor", "not a cursor this log gave"))?
            }
        };
        Ok((
            Filter {
                release: parse_uuid("release", &self.release)?,
                dua,
                user: parse_uuid("user", &self.user)?,
                organization: parse_uuid("organization", &self.organization)?,
                action,
                outcome,
                from,
                to,
            },
            PageRequest { after, limit },
        ))
    }
}

/// The cursor after the event `id`.
pub fn cursor_after(id: i64) -> String {
    format!("e{id}")
}

fn parse_cursor(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('e')?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One page of records and the cursor of the next, if there may be more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The records, in commit order.
    pub records: Vec<AccessRecord>,
    /// Give this as `cursor` for the next page.
    pub next: Option<String>,
}

/// One page of the events the filter selects.
pub async fn page(
    db: &Database,
    filter: &Filter,
    request: PageRequest,
) -> Result<Page, AuditError> {
    let mut clauses = vec!["e.id > $1".to_owned()];
    let mut binds: Vec<String> = Vec::new();
    let mut add = |column: &str, op: &str, value: String| {
        binds.push(value);
        clauses.push(format!("e.{column} {op} ${}", binds.len() + 1));
    };
    if let Some(v) = filter.release {
        add("release_id", "=", v.to_string());
    }
    if let Some(v) = &filter.dua {
        add("dua_number", "=", v.clone());
    }
    if let Some(v) = filter.user {
        add("actor_user", "=", v.to_string());
    }
    if let Some(v) = filter.organization {
        add("actor_org", "=", v.to_string());
    }
    if let Some(v) = filter.action {
        add("action", "=", v.as_str().to_owned());
    }
    if let Some(v) = filter.outcome {
        add("outcome", "=", v.as_str().to_owned());
    }
    if let Some(v) = &filter.from {
        add("at", ">=", v.clone());
    }
    if let Some(v) = &filter.to {
        add("at", "<", v.clone());
    }
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM access_events e LEFT JOIN access_log l ON l.event_id = e.id \
         WHERE {} ORDER BY e.id LIMIT ${}",
        clauses.join(" AND "),
        binds.len() + 2
    );
    let mut query = sqlx::query(&sql).bind(request.after);
    for value in binds {
        query = query.bind(value);
    }
    let rows = query.bind(request.limit).fetch_all(db.pool()).await?;
    let records = rows
        .iter()
        .map(record_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = (records.len() as i64 == request.limit)
        .then(|| records.last().map(|r| cursor_after(r.id)))
        .flatten();
    Ok(Page { records, next })
}

/// Refused attempts over a period, counted by reason and client address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusalCount {
    /// Why they were refused.
    pub reason: Option<String>,
    /// From where.
    pub client_addr: Option<String>,
    /// How many (an aggregated refusal event counts for the refusals it stands for).
    pub count: i64,
}

/// Refused attempts (denied outcomes) at or after `from` and before `to`.
pub async fn refusals(
    db: &Database,
    from: &str,
    to: &str,
) -> Result<Vec<RefusalCount>, AuditError> {
    let rows = sqlx::query(
        "SELECT reason, client_addr, \
         CAST(SUM(CASE WHEN action = 'authentication' AND bytes IS NOT NULL THEN bytes ELSE 1 END) \
         AS BIGINT) AS n \
         FROM access_events WHERE outcome = 'denied' AND at >= $1 AND at < $2 \
         GROUP BY reason, client_addr ORDER BY n DESC, reason, client_addr",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RefusalCount {
                reason: row.try_get("reason")?,
                client_addr: row.try_get("client_addr")?,
                count: row.try_get("n")?,
            })
        })
        .collect()
}

/// A DUA that ends soon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExpiringDua {
    /// The release.
    pub release_id: String,
    /// The DUA.
    pub dua_number: String,
    /// Its last day.
    pub expiry: String,
    /// The recipient organization.
    pub organization: String,
    /// The release's status.
    pub status: String,
}

/// DUAs in force whose expiry date is from `today` to `until` (ISO dates, inclusive).
pub async fn expiring_duas(
    db: &Database,
    today: &str,
    until: &str,
) -> Result<Vec<ExpiringDua>, AuditError> {
    let rows = sqlx::query(
        "SELECT r.id, d.number, d.expiry, r.org_id, r.status FROM releases r \
         JOIN duas d ON d.release_id = r.id AND d.version = r.dua_version \
         WHERE d.expiry >= $1 AND d.expiry <= $2 \
         AND r.status IN ('dua_executed', 'extracting', 'available') \
         ORDER BY d.expiry, d.number",
    )
    .bind(today)
    .bind(until)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ExpiringDua {
                release_id: row.try_get("id")?,
                dua_number: row.try_get("number")?,
                expiry: row.try_get("expiry")?,
                organization: row.try_get("org_id")?,
                status: row.try_get("status")?,
            })
        })
        .collect()
}

/// A destruction demand past its deadline without the recipient's attestation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OverdueDestruction {
    /// The release.
    pub release_id: String,
    /// Its DUA.
    pub dua_number: Option<String>,
    /// When destruction was demanded.
    pub demanded_at: String,
    /// The deadline for the attestation, an ISO date.
    pub deadline: String,
    /// The recipient organization.
    pub organization: String,
    /// Whether the server's own copies are already erased (its certificate issued).
    pub server_erased: bool,
}

/// Destruction demands whose deadline is before `today` and that have no attestation yet.
pub async fn overdue_destructions(
    db: &Database,
    today: time::Date,
) -> Result<Vec<OverdueDestruction>, AuditError> {
    let rows = sqlx::query(
        "SELECT r.id, d.number, r.org_id, x.demanded_at, x.deadline, \
         CAST(CASE WHEN x.certificate_json IS NULL THEN 0 ELSE 1 END AS BIGINT) AS erased \
         FROM destruction_demands x JOIN releases r ON r.id = x.release_id \
         LEFT JOIN duas d ON d.release_id = r.id AND d.version = r.dua_version \
         WHERE x.attestation_json IS NULL AND x.deadline < $1 ORDER BY x.deadline, r.id",
    )
    .bind(today.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OverdueDestruction {
                release_id: row.try_get("id")?,
                dua_number: row.try_get("number")?,
                demanded_at: row.try_get("demanded_at")?,
                deadline: row.try_get("deadline")?,
                organization: row.try_get("org_id")?,
                server_erased: row.try_get::<i64, _>("erased")? == 1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawFilter {
        RawFilter::default()
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases = [
            (
                RawFilter {
                    action: Some("approve_all".into()),
                    ..raw()
                },
                "action",
            ),
            (
                RawFilter {
                    outcome: Some("maybe".into()),
                    ..raw()
                },
                "outcome",
            ),
            (
                RawFilter {
                    from: Some("2026-02-01T00:00:00Z".into()),
                    to: Some("2026-01-01T00:00:00Z".into()),
                    ..raw()
                },
                "to",
            ),
            (
                RawFilter {
                    from: Some("yesterday".into()),
                    ..raw()
                },
                "from",
            ),
            (
                RawFilter {
                    limit: Some("0".into()),
                    ..raw()
                },
                "limit",
            ),
            (
                RawFilter {
                    limit: Some("1000000000".into()),
                    ..raw()
                },
                "limit",
            ),
            (
                RawFilter {
                    limit: Some("ten".into()),
                    ..raw()
                },
                "limit",
            ),
            (
                RawFilter {
                    cursor: Some("e".into()),
                    ..raw()
                },
                "cursor",
            ),
            (
                RawFilter {
                    cursor: Some("12".into()),
                    ..raw()
                },
                "cursor",
            ),
            (
                RawFilter {
                    cursor: Some("e-4".into()),
                    ..raw()
                },
                "cursor",
            ),
            (
                RawFilter {
                    release: Some("r1".into()),
                    ..raw()
                },
                "release",
            ),
            (
                RawFilter {
                    user: Some("' OR 1=1".into()),
                    ..raw()
                },
                "user",
            ),
        ];
        for (filter, param) in cases {
            match filter.check() {
                Err(FilterError::Invalid { param: p, .. }) => assert_eq!(p, param, "{filter:?}"),
                Ok(_) => panic!("{filter:?} accepted"),
            }
        }
    }

    #[test]
    fn a_good_filter_is_normalized() {
        let (filter, page) = RawFilter {
            action: Some("login_failed".into()),
            from: Some("2026-01-01T01:00:00+01:00".into()),
            limit: Some("5".into()),
            cursor: Some(cursor_after(41)),
            ..raw()
        }
        .check()
        .unwrap();
        assert_eq!(filter.action, Some(Action::LoginFailed));
        assert_eq!(filter.from.as_deref(), Some("2026-01-01T00:00:00.000000Z"));
        assert_eq!(
            page,
            PageRequest {
                after: 41,
                limit: 5
            }
        );
    }
}

/// What one user received of one file of a release, from the access log's download events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holding {
    /// The user.
    pub user_id: String,
    /// Their organization.
    pub organization: Option<String>,
    /// The file.
    pub file_id: String,
    /// The file's size.
    pub file_bytes: i64,
    /// Bytes sent to the user by every transfer that ended (completed, aborted or cut).
    pub bytes_received: i64,
    /// Whether the bytes received (ranges summed) cover the whole file at least once; when
    /// not, the user holds a partial download.
    pub whole: bool,
    /// Transfers that sent every byte of their range.
    pub completed_transfers: i64,
    /// First and last download event.
    pub first_at: String,
    /// See `first_at`.
    pub last_at: String,
    /// Client addresses the bytes went to, sorted, comma-separated.
    pub client_addrs: String,
}

/// Who holds data of `release`: every user the log shows receiving bytes of one of its files,
/// per file (for a destruction demand, the list of users whose copies must be attested).
pub async fn holders(db: &Database, release: uuid::Uuid) -> Result<Vec<Holding>, AuditError> {
    let rows = sqlx::query(
        "SELECT e.actor_user, MAX(e.actor_org) AS actor_org, e.file_id, \
         MAX(f.ciphertext_bytes) AS file_bytes, CAST(SUM(e.bytes) AS BIGINT) AS received, \
         CAST(SUM(CASE WHEN e.action = 'download_completed' THEN 1 ELSE 0 END) AS BIGINT) \
         AS completed, MIN(e.at) AS first_at, MAX(e.at) AS last_at \
         FROM access_events e LEFT JOIN extract_files f ON f.file_id = e.file_id \
         WHERE e.release_id = $1 AND e.file_id IS NOT NULL AND e.bytes > 0 \
         AND e.action IN ('download_completed', 'download_aborted', 'download_cut') \
         GROUP BY e.actor_user, e.file_id ORDER BY e.actor_user, e.file_id",
    )
    .bind(release.to_string())
    .fetch_all(db.pool())
    .await?;
    let mut holdings = Vec::with_capacity(rows.len());
    for row in &rows {
        let user: Option<String> = row.try_get("actor_user")?;
        let file: Option<String> = row.try_get("file_id")?;
        let (Some(user_id), Some(file_id)) = (user, file) else {
            continue;
        };
        // Addresses separately: string aggregation is spelled differently on each backend.
        let addrs = sqlx::query(
            "SELECT DISTINCT client_addr FROM access_events WHERE release_id = $1 \
             AND actor_user = $2 AND file_id = $3 AND client_addr IS NOT NULL \
             AND action IN ('download_completed', 'download_aborted', 'download_cut') \
             ORDER BY client_addr",
        )
        .bind(release.to_string())
        .bind(&user_id)
        .bind(&file_id)
        .fetch_all(db.pool())
        .await?;
        let client_addrs = addrs
            .iter()
            .map(|r| r.try_get::<String, _>("client_addr"))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let file_bytes: Option<i64> = row.try_get("file_bytes")?;
        let file_bytes = file_bytes.unwrap_or(0);
        let bytes_received: i64 = row.try_get("received")?;
        holdings.push(Holding {
            user_id,
            organization: row.try_get("actor_org")?,
            file_id,
            file_bytes,
            bytes_received,
            whole: file_bytes > 0 && bytes_received >= file_bytes,
            completed_transfers: row.try_get("completed")?,
            first_at: row.try_get("first_at")?,
            last_at: row.try_get("last_at")?,
            client_addrs,
        });
    }
    Ok(holdings)
}
