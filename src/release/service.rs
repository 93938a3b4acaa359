//! The release service: the one place a request is filed, a release moves through its
//! lifecycle, a subcommittee decision or DUA is recorded and an approval letter is issued.
//! The HTTP API, the CLI and the scheduled expiry all call it.
//!
//! Every change is: load, check (role through `auth::authorize`, the state machine, the
//! change's own rules), compare-and-swap in the database with a history entry that holds the
//! human reason, then one access-log event that references that entry.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use sqlx::AnyConnection;
use time::{Date, OffsetDateTime};

use super::letter::{render_approval_letter, LetterData, LetterElement};
use super::stored::{self, StoredError};
use crate::audit::{
    AccessEvent, Action as Logged, Actor, AuditError, AuditLog, Client, Outcome, Reason, Target,
};
use crate::auth::{authorize, Action, Denied, Principal, ReleaseFacts, Resource};
use crate::clock::SharedClock;
use crate::crypto::signing::ServerSigner;
use crate::db::releases::{self as rows, Change, DuaRow, HistoryRow, LetterRow, ReleaseRow};
use crate::db::{users, Database, DbError};
use crate::domain::committee::{self, CommitteeError, Decision};
use crate::domain::dua::{
    Amendment, Cidr, DownloadLimit, Dua, DuaError, DuaNumber, DuaTerms, Networks,
};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::level::Level;
use crate::domain::release::{IllegalTransition, ReleaseId, ReleaseStatus, Transition};
use crate::domain::request::{DataRequest, RequestError};
use crate::policy::{Catalog, ElementId, FileType, Policy};

/// Longest reason text accepted, in characters.
pub const MAX_REASON_CHARS: usize = 2_000;

/// Everything the release service can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No release has this id (or the caller may not know it exists).
    #[error("no such release")]
    NotFound,
    /// The release's filters (years, payers) select no row of a dataset's source: approving it
    /// would deliver an empty file.
    #[error(
        "the request's row filters select no row of dataset `{0}`; change the years or payers"
    )]
    NoRowsSelected(FileType),
    /// A dataset's source could not be read to check the filters against it.
    #[error("the source of dataset `{dataset}` could not be checked: {problem}")]
    SourceUnreadable {
        /// The dataset.
        dataset: FileType,
        /// What went wrong (Steward's own words, no values).
        problem: String,
    },
    /// The caller may not do this.
    #[error("forbidden: {}", .0 .0.as_str())]
    Forbidden(Denied),
    /// The request is invalid against the catalog.
    #[error("invalid request: {0}")]
    Request(#[from] RequestError),
    /// The transition is not allowed from the release's state.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The change is not allowed in the release's state.
    #[error("cannot {action} a release that is {status}; allowed only when it is {allowed}")]
    WrongState {
        /// What was attempted.
        action: &'static str,
        /// The current state.
        status: ReleaseStatus,
        /// The states that allow it.
        allowed: &'static str,
    },
    /// The subcommittee's record is malformed.
    #[error("invalid subcommittee decision: {0}")]
    BadDecision(CommitteeError),
    /// Level III approval without an approving subcommittee decision.
    #[error("{0}")]
    CommitteeRequired(CommitteeError),
    /// The DUA terms are invalid.
    #[error("invalid DUA: {0}")]
    Dua(#[from] DuaError),
    /// A user named by the DUA does not exist.
    #[error("invalid DUA: user {0} does not exist")]
    UnknownUser(UserId),
    /// A user named by the DUA belongs to another organization.
    #[error("invalid DUA: user {0} is not a user of the requesting organization")]
    UserOfOtherOrganization(UserId),
    /// A user named by the DUA is disabled.
    #[error("invalid DUA: user {0} is disabled")]
    UserDisabled(UserId),
    /// An authorized user has no registered recipient key, so nothing could be encrypted to
    /// them.
    #[error("invalid DUA: authorized user {0} has no registered recipient key")]
    UserWithoutKey(UserId),
    /// The DUA number belongs to another release.
    #[error("DUA number {0} is already used by another release")]
    DuaNumberTaken(DuaNumber),
    /// The reason text is unacceptable.
    #[error("reason: {0}")]
    BadReason(&'static str),
    /// Another change got there first.
    #[error("the release changed while this request was handled; reload it and try again")]
    Concurrent,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The access log could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Stored data does not parse back.
    #[error(transparent)]
    Stored(#[from] StoredError),
}

/// Who acts: a signed-in person, or the server (expiry).
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A person, with their roles.
    Person(&'a Principal),
    /// Steward itself.
    System,
}

impl Caller<'_> {
    /// Who acts, as the access log names them.
    pub fn actor(self) -> Actor {
        match self {
            Caller::Person(p) => Actor::User(p.user_id.0),
            Caller::System => Actor::System,
        }
    }

    /// Who acts, as history and revocations name them: a user id, or `system`.
    pub fn actor_text(self) -> String {
        match self {
            Caller::Person(p) => p.user_id.to_string(),
            Caller::System => "system".to_owned(),
        }
    }
}

/// A release with everything decided about it, parsed.
#[derive(Debug, Clone)]
pub struct ReleaseRecord {
    /// The stored row.
    pub row: ReleaseRow,
    /// The request as filed.
    pub request: DataRequest,
    /// The approved elements (what extraction obeys).
    pub approved: BTreeSet<ElementId>,
    /// The recorded subcommittee decision.
    pub committee: Option<Decision>,
    /// The DUA version in force.
    pub dua: Option<DuaRow>,
}

impl ReleaseRecord {
    /// The facts authorization decides on.
    pub fn facts(&self) -> ReleaseFacts {
        ReleaseFacts {
            release: Some(self.row.id.0),
            requesting_org: self.row.org_id,
            requested_by: self.row.requested_by,
            named_recipients: self
                .dua
                .as_ref()
                .map(|d| d.users.clone())
                .unwrap_or_default(),
            responsible: self.dua.as_ref().map(|d| d.responsible),
        }
    }

    /// The DUA in force as domain terms.
    pub fn dua_terms(&self) -> Result<Option<Dua>, ServiceError> {
        self.dua.as_ref().map(dua_from_row).transpose()
    }
}

/// Facts that match no real release: used to authorize a request for an id that does not
/// exist, so a caller who may not read a release cannot tell "absent" from "not yours".
pub fn nobody_facts() -> ReleaseFacts {
    ReleaseFacts {
        release: None,
        requesting_org: OrgId(uuid::Uuid::nil()),
        requested_by: UserId(uuid::Uuid::nil()),
        named_recipients: Vec::new(),
        responsible: None,
    }
}

/// The action `auth::authorize` decides for a transition.
pub fn action_for(transition: Transition) -> Action {
    match transition {
        Transition::Approve => Action::ApproveRelease,
        other => Action::TransitionRelease(other),
    }
}

/// Filters for [`ReleaseService::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only these statuses (empty: any).
    pub statuses: Vec<ReleaseStatus>,
    /// Only this organization.
    pub org: Option<OrgId>,
    /// Only this level.
    pub level: Option<Level>,
}

/// What expiry did to one release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// The release.
    pub id: ReleaseId,
    /// Where it ended up (`expired`).
    pub status: ReleaseStatus,
}

/// The release service.
#[derive(Debug, Clone)]
pub struct ReleaseService {
    db: Database,
    audit: AuditLog,
    clock: SharedClock,
    policy: Arc<Policy>,
    catalog: Arc<Catalog>,
    signer: ServerSigner,
    rows: Option<Arc<dyn RowProbe>>,
}

/// Answers, for a release about to be approved, whether its filters select any row of a
/// dataset's source, so that a release that would deliver nothing is refused at review rather
/// than discovered at extraction. `None` when the dataset has no source to look at yet.
#[async_trait::async_trait]
pub trait RowProbe: Send + Sync + std::fmt::Debug {
    /// Whether any source row of `file_type` is inside the filters of `record`.
    async fn selects_any_row(
        &self,
        record: &ReleaseRecord,
        file_type: FileType,
    ) -> Result<Option<bool>, String>;
}

fn check_reason(reason: Option<&str>) -> Result<Option<String>, ServiceError> {
    let Some(text) = reason.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::BadReason("longer than 2000 characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::BadReason(
            "control characters other than newline are not allowed",
        ));
    }
    Ok(Some(text.to_owned()))
}

const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

fn date_text(date: Date) -> Result<String, ServiceError> {
    date.format(DATE_FORMAT)
        .map_err(|e| ServiceError::Stored(StoredError::Value(e.to_string())))
}

fn parse_date(text: &str) -> Result<Date, ServiceError> {
    Date::parse(text, DATE_FORMAT)
        .map_err(|e| ServiceError::Stored(StoredError::Value(e.to_string())))
}

fn dua_from_row(row: &DuaRow) -> Result<Dua, ServiceError> {
    let cidrs: Vec<String> = serde_json::from_str(&row.networks).map_err(StoredError::from)?;
    let networks = if cidrs.is_empty() {
        Networks::Any
    } else {
        Networks::only(
            cidrs
                .iter()
                .map(|c| Cidr::parse(c))
                .collect::<Result<Vec<_>, _>>()?,
        )?
    };
    let terms = DuaTerms {
        number: DuaNumber::parse(&row.number)?,
        effective: parse_date(&row.effective)?,
        expiry: parse_date(&row.expiry)?,
        authorized_users: row.users.iter().copied().collect(),
        responsible: row.responsible,
        download_limit: DownloadLimit::new(u32::try_from(row.download_limit).unwrap_or(0))?,
        networks,
        destruction_days: u16::try_from(row.destruction_days).unwrap_or(u16::MAX),
    };
    let version = u32::try_from(row.version).map_err(|_| DuaError::BadVersion(0))?;
    Ok(Dua::restore(terms, version)?)
}

impl ReleaseService {
    /// Wires the service. The policy is the one loaded at start-up.
    pub fn new(
        db: Database,
        audit: AuditLog,
        clock: SharedClock,
        policy: Arc<Policy>,
        signer: ServerSigner,
    ) -> Self {
        Self {
            db,
            audit,
            clock,
            catalog: policy.catalog().clone(),
            policy,
            signer,
            rows: None,
        }
    }

    /// The service with a probe that checks, at approval, that the filters select some row.
    pub fn with_row_probe(mut self, probe: Arc<dyn RowProbe>) -> Self {
        self.rows = Some(probe);
        self
    }

    /// The policy (catalog, schemas, code lists) loaded at start-up.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The server's public signing key (hex), which verifies approval letters.
    pub fn signing_public_key(&self) -> String {
        self.signer.public_hex()
    }

    /// The element catalog requests are validated against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Logs a granted read of a release (`what`: the release, its history, its letter), so
    /// the access log answers who looked at it, not only who changed it.
    pub async fn log_read(
        &self,
        principal: &Principal,
        id: ReleaseId,
        what: Reason,
        client: &Client,
    ) -> Result<(), ServiceError> {
        let event = AccessEvent::new(
            Caller::Person(principal).actor(),
            Logged::ReleaseRead,
            // Entry 0: the release as a whole, not one history entry.
            Target::Release { id: id.0, entry: 0 },
            Outcome::Granted,
        )
        .with_reason(what)
        .with_client(client);
        self.audit.append(&event).await?;
        Ok(())
    }

    fn authorize(
        &self,
        caller: Caller<'_>,
        action: Action,
        facts: &ReleaseFacts,
    ) -> Result<(), ServiceError> {
        match caller {
            Caller::Person(p) => {
                authorize(p, action, &Resource::Release(facts)).map_err(ServiceError::Forbidden)
            }
            // The server acts only through transitions whose performers include it, checked by
            // the caller of this function.
            Caller::System => Ok(()),
        }
    }

    /// Files a request as a draft of the caller's organization, after checking it against the
    /// catalog.
    pub async fn create_request(
        &self,
        principal: &Principal,
        mut request: DataRequest,
        client: &Client,
    ) -> Result<ReleaseRecord, ServiceError> {
        authorize(principal, Action::CreateRequest, &Resource::Releases)
            .map_err(ServiceError::Forbidden)?;
        // A request is always filed for the caller's own organization, by the caller.
        request.organization = principal.org_id;
        request.contact = principal.user_id;
        let validated = request.validate(&self.catalog)?;
        let now = self.clock.now();
        let row = ReleaseRow {
            id: ReleaseId::new_random(),
            org_id: principal.org_id,
            requested_by: principal.user_id,
            level: request.level,
            status: ReleaseStatus::Draft,
            request_json: stored::request_to_json(&request)?,
            approved_elements: stored::elements_to_json(validated.elements())?,
            committee_json: None,
            approved_by: None,
            approved_at: None,
            dua_version: 0,
            revision: 0,
            created_at: now,
            updated_at: now,
        };
        let caller = Caller::Person(principal);
        let mut tx = self.db.begin_write().await.map_err(DbError::from)?;
        rows::insert(&mut tx, &row, &caller.actor_text()).await?;
        let event = AccessEvent::new(
            caller.actor(),
            Logged::ReleaseRequested,
            Target::Release {
                id: row.id.0,
                entry: 1,
            },
            Outcome::Succeeded,
        )
        .with_reason(Reason::new("request filed as a draft"))
        .with_client(client);
        self.audit.record(&mut tx, &event).await?;
        commit(tx).await?;
        self.record(row.id).await?.ok_or(ServiceError::NotFound)
    }

    /// A release with its request, decision and DUA, or `None`.
    pub async fn record(&self, id: ReleaseId) -> Result<Option<ReleaseRecord>, ServiceError> {
        let Some(row) = rows::find(&self.db, id).await? else {
            return Ok(None);
        };
        Ok(Some(self.parse(row).await?))
    }

    async fn parse(&self, row: ReleaseRow) -> Result<ReleaseRecord, ServiceError> {
        let request = stored::request_from_json(&row.request_json)?;
        let approved = stored::elements_from_json(&row.approved_elements)?;
        let committee = row
            .committee_json
            .as_deref()
            .map(stored::decision_from_json)
            .transpose()?;
        let dua = if row.dua_version > 0 {
            rows::dua(&self.db, row.id, row.dua_version).await?
        } else {
            None
        };
        Ok(ReleaseRecord {
            row,
            request,
            approved,
            committee,
            dua,
        })
    }

    /// Releases matching `filter` that `caller` may read: recipients see what they filed,
    /// their organization's requests not yet under a DUA, and releases whose DUA names them;
    /// other readers see all.
    pub async fn list(
        &self,
        caller: Caller<'_>,
        filter: &ListFilter,
    ) -> Result<Vec<ReleaseRecord>, ServiceError> {
        let mut db_filter = rows::ReleaseFilter {
            statuses: filter.statuses.clone(),
            org: filter.org,
            level: filter.level,
            visible_to: None,
        };
        if let Caller::Person(p) = caller {
            authorize(p, Action::ListReleases, &Resource::Releases)
                .map_err(ServiceError::Forbidden)?;
            // Whoever may read any release (a grant of scope "any") sees everything; the rest
            // see what their organization filed or their DUA names.
            let reads_all =
                authorize(p, Action::ReadRelease, &Resource::Release(&nobody_facts())).is_ok();
            if !reads_all {
                db_filter.visible_to = Some((p.user_id, p.org_id));
            }
        }
        let mut out = Vec::new();
        for row in rows::list(&self.db, &db_filter).await? {
            out.push(self.parse(row).await?);
        }
        Ok(out)
    }

    /// The release's history, oldest first.
    pub async fn history(&self, id: ReleaseId) -> Result<Vec<HistoryRow>, ServiceError> {
        Ok(rows::history(&self.db, id).await?)
    }

    /// The newest signed approval letter.
    pub async fn letter(&self, id: ReleaseId) -> Result<Option<LetterRow>, ServiceError> {
        Ok(rows::latest_letter(&self.db, id).await?)
    }

    /// The PDF bytes of a stored letter.
    pub fn letter_pdf(letter: &LetterRow) -> Result<Vec<u8>, ServiceError> {
        base64::engine::general_purpose::STANDARD
            .decode(&letter.pdf_base64)
            .map_err(|e| ServiceError::Stored(StoredError::Value(e.to_string())))
    }

    async fn load(&self, id: ReleaseId) -> Result<ReleaseRecord, ServiceError> {
        self.record(id).await?.ok_or(ServiceError::NotFound)
    }

    /// Applies a lifecycle transition (not `execute_dua`, which needs the DUA terms: see
    /// [`ReleaseService::execute_dua`]). `reason` is kept in the release's history. The change
    /// and its access event commit together.
    pub async fn transition(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        transition: Transition,
        reason: Option<&str>,
        client: &Client,
    ) -> Result<ReleaseRecord, ServiceError> {
        let prepared = self
            .prepare_transition(caller, id, transition, reason)
            .await?;
        let mut tx = self.db.begin_write().await.map_err(DbError::from)?;
        self.apply_transition(&mut tx, caller, &prepared, client)
            .await?;
        commit(tx).await?;
        self.load(id).await
    }

    /// Checks a transition against the release as it is now (reads only, outside any
    /// transaction), for [`ReleaseService::apply_transition`] to apply in the caller's
    /// transaction together with other state (a job queued, files published).
    pub async fn prepare_transition(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        transition: Transition,
        reason: Option<&str>,
    ) -> Result<PreparedTransition, ServiceError> {
        let reason = check_reason(reason)?;
        let record = self.load(id).await?;
        self.check_performer(caller, transition, &record)?;
        let to = record.row.status.apply(transition)?;
        let mut approved_by = None;
        match transition {
            Transition::ExecuteDua => {
                return Err(ServiceError::WrongState {
                    action: "execute a DUA without its terms for",
                    status: record.row.status,
                    allowed: "approved, with the DUA terms (POST /api/v1/releases/{id}/dua)",
                })
            }
            // Validation happens again at submission: the catalog may have changed since the
            // draft was written, and an element must be refused now, not at extraction.
            Transition::Submit => {
                record.request.validate(&self.catalog)?;
            }
            Transition::Approve => {
                let outcome = record
                    .committee
                    .as_ref()
                    .map(committee::decide)
                    .transpose()
                    .map_err(ServiceError::BadDecision)?;
                committee::check_approval_allowed(record.row.level, outcome.as_ref())
                    .map_err(ServiceError::CommitteeRequired)?;
                self.check_filters_select_rows(&record).await?;
                if let Caller::Person(p) = caller {
                    approved_by = Some(p.user_id);
                }
            }
            _ => {}
        }
        Ok(PreparedTransition {
            id,
            transition,
            expected: record.row.status,
            revision: record.row.revision,
            to,
            reason,
            approved_by,
        })
    }

    /// Applies a prepared transition and records its event in the caller's transaction;
    /// returns the history entry. Nothing is committed here, and nothing else is read: a
    /// release changed since it was prepared is [`ServiceError::Concurrent`].
    pub async fn apply_transition(
        &self,
        conn: &mut AnyConnection,
        caller: Caller<'_>,
        prepared: &PreparedTransition,
        client: &Client,
    ) -> Result<i64, ServiceError> {
        let change = Change {
            expected: prepared.expected,
            revision: prepared.revision,
            to: prepared.to,
            kind: prepared.transition.as_str(),
            actor: caller.actor_text(),
            reason: prepared.reason.as_deref(),
            at: self.clock.now(),
            approved_elements: None,
            committee_json: None,
            approved_by: prepared.approved_by,
            dua: None,
            letter: None,
        };
        self.apply_in(
            conn,
            prepared.id,
            &change,
            caller,
            Logged::ReleaseTransitioned,
            Reason::new(prepared.transition.as_str()),
            client,
        )
        .await
    }

    /// Refuses approval when the release's filters select no row of one of its datasets.
    async fn check_filters_select_rows(&self, record: &ReleaseRecord) -> Result<(), ServiceError> {
        let Some(probe) = &self.rows else {
            return Ok(());
        };
        for file_type in &record.request.datasets {
            match probe.selects_any_row(record, *file_type).await {
                Ok(Some(false)) => return Err(ServiceError::NoRowsSelected(*file_type)),
                Ok(_) => {}
                Err(problem) => {
                    return Err(ServiceError::SourceUnreadable {
                        dataset: *file_type,
                        problem,
                    })
                }
            }
        }
        Ok(())
    }

    fn check_performer(
        &self,
        caller: Caller<'_>,
        transition: Transition,
        record: &ReleaseRecord,
    ) -> Result<(), ServiceError> {
        match caller {
            Caller::Person(_) => self.authorize(caller, action_for(transition), &record.facts()),
            Caller::System if transition.system_performs() => Ok(()),
            Caller::System => Err(ServiceError::Forbidden(Denied::because(Reason::new(
                "only a person may perform this transition",
            )))),
        }
    }

    fn change<'a>(
        &self,
        caller: Caller<'_>,
        record: &ReleaseRecord,
        to: ReleaseStatus,
        kind: &'a str,
        reason: Option<&'a str>,
    ) -> Change<'a> {
        Change {
            expected: record.row.status,
            revision: record.row.revision,
            to,
            kind,
            actor: caller.actor_text(),
            reason,
            at: self.clock.now(),
            approved_elements: None,
            committee_json: None,
            approved_by: None,
            dua: None,
            letter: None,
        }
    }

    /// Applies `change` and records its event in the caller's transaction; returns the
    /// history entry.
    #[allow(clippy::too_many_arguments)]
    async fn apply_in(
        &self,
        conn: &mut AnyConnection,
        id: ReleaseId,
        change: &Change<'_>,
        caller: Caller<'_>,
        action: Logged,
        reason: Reason,
        client: &Client,
    ) -> Result<i64, ServiceError> {
        let entry = match rows::apply(conn, id, change).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Err(ServiceError::Concurrent),
            Err(DbError::Sqlx(e)) if crate::db::is_write_conflict(&e) => {
                return Err(ServiceError::Concurrent)
            }
            Err(e) => return Err(e.into()),
        };
        let event = AccessEvent::new(
            caller.actor(),
            action,
            Target::Release { id: id.0, entry },
            Outcome::Succeeded,
        )
        .with_reason(reason)
        .with_client(client);
        self.audit.record(conn, &event).await?;
        if change.expected == ReleaseStatus::Available {
            // Revoked, expired, destroyed or amended while files are offered: every stream of
            // the release re-checks once this commits, on every replica.
            crate::db::signal::AccessSignals::notify_in(
                self.db.backend(),
                conn,
                crate::db::downloads::RevocationScope::Release(id.0),
            )
            .await?;
        }
        Ok(entry)
    }

    /// Applies `change` with its event, in a transaction of its own.
    async fn apply(
        &self,
        id: ReleaseId,
        change: &Change<'_>,
        caller: Caller<'_>,
        action: Logged,
        reason: Reason,
        client: &Client,
    ) -> Result<i64, ServiceError> {
        let mut tx = self.db.begin_write().await.map_err(DbError::from)?;
        let entry = self
            .apply_in(&mut tx, id, change, caller, action, reason, client)
            .await?;
        commit(tx).await?;
        Ok(entry)
    }

    /// Narrows the approved elements at review: `elements` must be a non-empty subset of what
    /// is approved so far (never wider than the request).
    pub async fn narrow(
        &self,
        principal: &Principal,
        id: ReleaseId,
        elements: &BTreeSet<ElementId>,
        reason: Option<&str>,
        client: &Client,
    ) -> Result<ReleaseRecord, ServiceError> {
        let reason = check_reason(reason)?;
        let record = self.load(id).await?;
        let caller = Caller::Person(principal);
        self.authorize(caller, Action::NarrowRelease, &record.facts())?;
        if record.row.status != ReleaseStatus::InReview {
            return Err(ServiceError::WrongState {
                action: "narrow the elements of",
                status: record.row.status,
                allowed: "in_review",
            });
        }
        let validated = record.request.validate(&self.catalog)?;
        let current = validated.approve_all().narrow(&record.approved)?;
        if record.request.aggregate.is_some() && elements != validated.elements() {
            return Err(RequestError::AggregateNarrowed.into());
        }
        let narrowed = current.narrow(elements)?;
        let mut change = self.change(
            caller,
            &record,
            record.row.status,
            "narrowed",
            reason.as_deref(),
        );
        change.approved_elements = Some(stored::elements_to_json(narrowed.elements())?);
        self.apply(
            id,
            &change,
            caller,
            Logged::ReleaseElementsNarrowed,
            Reason::new("approved elements narrowed at review"),
            client,
        )
        .await?;
        self.load(id).await
    }

    /// Records the subcommittee's decision (seed 001 section 12); refused when the record
    /// does not make sense.
    pub async fn record_decision(
        &self,
        principal: &Principal,
        id: ReleaseId,
        decision: &Decision,
        reason: Option<&str>,
        client: &Client,
    ) -> Result<(ReleaseRecord, committee::Outcome), ServiceError> {
        let reason = check_reason(reason)?;
        let record = self.load(id).await?;
        let caller = Caller::Person(principal);
        self.authorize(caller, Action::RecordCommitteeDecision, &record.facts())?;
        if !matches!(
            record.row.status,
            ReleaseStatus::Submitted | ReleaseStatus::InReview
        ) {
            return Err(ServiceError::WrongState {
                action: "record a subcommittee decision for",
                status: record.row.status,
                allowed: "submitted or in_review",
            });
        }
        let outcome = committee::decide(decision).map_err(ServiceError::BadDecision)?;
        let mut change = self.change(
            caller,
            &record,
            record.row.status,
            "committee_decision",
            reason.as_deref(),
        );
        change.committee_json = Some(stored::decision_to_json(decision)?);
        self.apply(
            id,
            &change,
            caller,
            Logged::CommitteeDecisionRecorded,
            Reason::new(match outcome {
                committee::Outcome::Approved(_) => "subcommittee approved",
                committee::Outcome::NotApproved(_) => "subcommittee did not approve",
            }),
            client,
        )
        .await?;
        Ok((self.load(id).await?, outcome))
    }

    /// Checks every user a DUA names: a user of the requesting organization, enabled, and
    /// (for authorized users, who receive the files) with a registered recipient key.
    async fn check_dua_users(&self, org: OrgId, terms: &DuaTerms) -> Result<(), ServiceError> {
        let mut people: Vec<(UserId, bool)> =
            terms.authorized_users.iter().map(|u| (*u, true)).collect();
        if !terms.authorized_users.contains(&terms.responsible) {
            people.push((terms.responsible, false));
        }
        for (user, needs_key) in people {
            let (user_org, disabled, keys) = rows::user_standing(&self.db, user)
                .await?
                .ok_or(ServiceError::UnknownUser(user))?;
            if user_org != org {
                return Err(ServiceError::UserOfOtherOrganization(user));
            }
            if disabled {
                return Err(ServiceError::UserDisabled(user));
            }
            if needs_key && keys == 0 {
                return Err(ServiceError::UserWithoutKey(user));
            }
        }
        Ok(())
    }

    fn dua_row(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        dua: &Dua,
    ) -> Result<DuaRow, ServiceError> {
        let terms = dua.terms();
        let networks: Vec<String> = match &terms.networks {
            Networks::Any => Vec::new(),
            Networks::Only(set) => set.iter().map(ToString::to_string).collect(),
        };
        Ok(DuaRow {
            release_id: id,
            version: i64::from(dua.version()),
            number: terms.number.as_str().to_owned(),
            effective: date_text(terms.effective)?,
            expiry: date_text(terms.expiry)?,
            responsible: terms.responsible,
            users: terms.authorized_users.iter().copied().collect(),
            download_limit: i64::from(terms.download_limit.get()),
            networks: serde_json::to_string(&networks).map_err(StoredError::from)?,
            destruction_days: i64::from(terms.destruction_days),
            recorded_by: caller.actor_text(),
            recorded_at: self.clock.now(),
        })
    }

    /// Renders and signs the approval letter for `dua`.
    async fn issue_letter(
        &self,
        record: &ReleaseRecord,
        dua: &Dua,
    ) -> Result<LetterRow, ServiceError> {
        let org = users::find_org(&self.db, &record.row.org_id.to_string())
            .await?
            .map_or_else(|| record.row.org_id.to_string(), |o| o.name);
        let director = match record.row.approved_by {
            Some(id) => users::find_by_id(&self.db, id).await?.map_or_else(
                || id.to_string(),
                |u| {
                    if u.display_name.trim().is_empty() {
                        u.username
                    } else {
                        u.display_name
                    }
                },
            ),
            None => "Executive Director".to_owned(),
        };
        let approved_on = record
            .row
            .approved_at
            .unwrap_or_else(|| self.clock.now())
            .date();
        let datasets: BTreeSet<_> = record.approved.iter().map(ElementId::file_type).collect();
        let data = LetterData {
            release_id: record.row.id,
            organization: org,
            level: record.row.level,
            datasets: datasets.into_iter().collect(),
            elements: record
                .approved
                .iter()
                .map(|id| LetterElement {
                    id: id.clone(),
                    name: self
                        .catalog
                        .get(id)
                        .map_or_else(|| id.to_string(), |e| e.name.clone()),
                })
                .collect(),
            dua_number: dua.number().clone(),
            dua_effective: dua.terms().effective,
            dua_expiry: dua.terms().expiry,
            approved_on,
            director_name: director,
        };
        let pdf = render_approval_letter(&data);
        Ok(LetterRow {
            release_id: record.row.id,
            dua_version: i64::from(dua.version()),
            signature: self.signer.sign_hex(&pdf),
            public_key: self.signer.public_hex(),
            pdf_base64: base64::engine::general_purpose::STANDARD.encode(&pdf),
            created_at: self.clock.now(),
        })
    }

    /// Records the executed DUA (`approved -> dua_executed`) and issues the signed approval
    /// letter, which needs the DUA number and term.
    pub async fn execute_dua(
        &self,
        principal: &Principal,
        id: ReleaseId,
        terms: DuaTerms,
        reason: Option<&str>,
        client: &Client,
    ) -> Result<ReleaseRecord, ServiceError> {
        let reason = check_reason(reason)?;
        let record = self.load(id).await?;
        let caller = Caller::Person(principal);
        self.check_performer(caller, Transition::ExecuteDua, &record)?;
        let to = record.row.status.apply(Transition::ExecuteDua)?;
        let dua = Dua::execute(terms)?;
        self.check_dua_users(record.row.org_id, dua.terms()).await?;
        if let Some(owner) = rows::dua_number_owner(&self.db, dua.number().as_str()).await? {
            if owner != id {
                return Err(ServiceError::DuaNumberTaken(dua.number().clone()));
            }
        }
        let dua_row = self.dua_row(caller, id, &dua)?;
        let letter = self.issue_letter(&record, &dua).await?;
        let mut change = self.change(
            caller,
            &record,
            to,
            Transition::ExecuteDua.as_str(),
            reason.as_deref(),
        );
        change.dua = Some(&dua_row);
        change.letter = Some(&letter);
        let applied = self
            .apply(
                id,
                &change,
                caller,
                Logged::ReleaseTransitioned,
                Reason::new(Transition::ExecuteDua.as_str()),
                client,
            )
            .await;
        match applied {
            // The unique number index lost a race with another release.
            Err(ServiceError::Concurrent)
                if rows::dua_number_owner(&self.db, dua.number().as_str())
                    .await?
                    .is_some_and(|owner| owner != id) =>
            {
                return Err(ServiceError::DuaNumberTaken(dua.number().clone()))
            }
            other => other?,
        };
        self.load(id).await
    }

    /// Amends the executed DUA: a new version, recorded in the history and the access log,
    /// with a new signed letter (the term may have changed).
    pub async fn amend_dua(
        &self,
        principal: &Principal,
        id: ReleaseId,
        amendment: &Amendment,
        reason: Option<&str>,
        client: &Client,
    ) -> Result<ReleaseRecord, ServiceError> {
        let reason = check_reason(reason)?;
        let record = self.load(id).await?;
        let caller = Caller::Person(principal);
        self.authorize(caller, Action::AmendDua, &record.facts())?;
        let current = match (record.row.status, record.dua_terms()?) {
            (
                ReleaseStatus::DuaExecuted | ReleaseStatus::Extracting | ReleaseStatus::Available,
                Some(dua),
            ) => dua,
            (status, _) => {
                return Err(ServiceError::WrongState {
                    action: "amend the DUA of",
                    status,
                    allowed: "dua_executed, extracting or available",
                })
            }
        };
        let amended = current.amend(amendment)?;
        self.check_dua_users(record.row.org_id, amended.terms())
            .await?;
        let dua_row = self.dua_row(caller, id, &amended)?;
        let letter = self.issue_letter(&record, &amended).await?;
        let mut change = self.change(
            caller,
            &record,
            record.row.status,
            "dua_amended",
            reason.as_deref(),
        );
        change.dua = Some(&dua_row);
        change.letter = Some(&letter);
        self.apply(
            id,
            &change,
            caller,
            Logged::DuaAmended,
            Reason::new("DUA amended: new version"),
            client,
        )
        .await?;
        self.load(id).await
    }

    /// Moves every release whose DUA expired before `now`'s date to `expired` (the destruction
    /// service then demands destruction where configured). Releases changed concurrently are
    /// left for the next run.
    pub async fn expire_due(&self, now: OffsetDateTime) -> Result<Vec<Expired>, ServiceError> {
        let today = date_text(now.date())?;
        let mut done = Vec::new();
        let client = Client::default();
        for row in rows::due_for_expiry(&self.db, &today).await? {
            let id = row.id;
            let status = match self
                .transition(Caller::System, id, Transition::Expire, None, &client)
                .await
            {
                Ok(record) => record.row.status,
                Err(ServiceError::Concurrent | ServiceError::Illegal(_)) => continue,
                Err(e) => return Err(e),
            };
            done.push(Expired { id, status });
        }
        Ok(done)
    }
}

/// A transition checked against the release as it was read, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTransition {
    id: ReleaseId,
    transition: Transition,
    expected: ReleaseStatus,
    revision: i64,
    to: ReleaseStatus,
    reason: Option<String>,
    approved_by: Option<UserId>,
}

/// Commits a change's transaction; losing a write race at commit is a concurrent change.
async fn commit(tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<(), ServiceError> {
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) if crate::db::is_write_conflict(&e) => Err(ServiceError::Concurrent),
        Err(e) => Err(DbError::from(e).into()),
    }
}
