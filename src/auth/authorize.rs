//! The one authorization function and the one table of which role may do what.
//!
//! Architecture invariant: every handler calls [`authorize`] before touching data, and anything
//! [`GRANTS`] does not grant is denied.

use crate::audit::Reason;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::release::Transition;
use crate::domain::role::Role;

use super::{Credential, Principal};

/// Something a principal may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See one's own account.
    ViewOwnAccount,
    /// End one's own session.
    EndOwnSession,
    /// Change one's own password.
    ChangeOwnPassword,
    /// List registered recipient keys.
    ListRecipientKeys,
    /// Register a recipient key.
    AddRecipientKey,
    /// Remove a recipient key.
    RemoveRecipientKey,
    /// List API tokens.
    ListApiTokens,
    /// Create an API token.
    CreateApiToken,
    /// Revoke an API token.
    RevokeApiToken,
    /// List organizations.
    ListOrganizations,
    /// Create an organization.
    CreateOrganization,
    /// List users.
    ListUsers,
    /// Create a user.
    CreateUser,
    /// Disable a user.
    DisableUser,
    /// Replace a user's roles.
    SetRoles,
    /// Lift a lockout.
    UnlockUser,
    /// See a release and its files.
    ReadRelease,
    /// Give a release final approval.
    ApproveRelease,
    /// File a data request for one's own organization.
    CreateRequest,
    /// List releases (each caller sees only what `ReadRelease` lets them read).
    ListReleases,
    /// Apply a lifecycle transition other than approval (which is `ApproveRelease`).
    TransitionRelease(Transition),
    /// Narrow a release's approved elements at review.
    NarrowRelease,
    /// Record the release subcommittee's decision.
    RecordCommitteeDecision,
    /// Amend an executed DUA.
    AmendDua,
    /// Read the server's public signing key.
    ReadSigningKey,
    /// Read the element catalog (datasets, elements, levels), to write a request.
    ReadCatalog,
    /// Start the extract job of a release in `dua_executed`.
    StartExtract,
    /// List jobs and see one job's state, progress and log.
    ReadJobs,
    /// Cancel a queued or running job.
    CancelJob,
    /// Queue a failed or cancelled job again.
    RetryJob,
    /// Download a file of an available release (decided on [`DownloadFacts`]).
    DownloadFile,
    /// Read the access log: review pages, exports and reports.
    ReviewAccessLog,
    /// Get the receipt (inclusion proof) of one access-log record.
    ReadLogReceipt,
    /// Revoke access for a user, an organization, a release or a file.
    RevokeAccess,
    /// Lift a revocation.
    LiftRevocation,
    /// List revocations.
    ListRevocations,
    /// See a release's destruction demand, its progress and its certificate.
    ReadDestruction,
    /// See who holds a release's data (the users an attestation must cover, their addresses)
    /// and the director's reason.
    ReadDestructionDetail,
    /// Submit the recipient's attestation of destruction.
    AttestDestruction,
    /// Submit a table meant for publication for review (seed 001 section 4.3 J).
    SubmitPublicationReview,
    /// Read every publication review.
    ReadPublicationReviews,
}

/// What an action is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Something that belongs to the user `owner` (their account, keys, tokens).
    OwnedBy(UserId),
    /// The directory of users and organizations as a whole.
    Directory,
    /// A release, described by the facts separation of duties needs.
    Release(&'a ReleaseFacts),
    /// The set of releases as a whole (lists are filtered to what the caller may read).
    Releases,
    /// The server's public keys.
    ServerKeys,
    /// The element catalog (public policy, no personal data).
    Catalog,
    /// The job queue as a whole (jobs carry no personal data and belong to no organization).
    Jobs,
    /// A file of a release, with the facts a download is decided on.
    Download(&'a DownloadFacts),
    /// The access log as a whole.
    AccessLog,
    /// The revocations as a whole.
    Revocations,
    /// One record of the access log, by who acted in it (`None`: the system or an anonymous
    /// caller); a user's own records are their receipts.
    LogRecord(Option<UserId>),
}

/// What a download is decided on, loaded for the file, the caller and the moment: the link
/// (whom it was issued to, the address it is bound to), the release (named recipients), its
/// status, the DUA in force and its terms, revocations, the caller's use of the file against
/// the DUA's limit, where the request comes from, and today's date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadFacts {
    /// The release the file belongs to.
    pub release: ReleaseFacts,
    /// Its lifecycle status.
    pub status: crate::domain::release::ReleaseStatus,
    /// The DUA in force, if any.
    pub dua: Option<crate::domain::dua::DuaTerms>,
    /// The user the download link was issued to (`None`: no link yet, asking for one).
    pub link_user: Option<UserId>,
    /// The client address the link is bound to, if it is.
    pub link_client: Option<std::net::IpAddr>,
    /// Whether a revocation in force covers the user, their organization, the release or the
    /// file.
    pub revoked: bool,
    /// The file's size in bytes.
    pub file_bytes: u64,
    /// Bytes of this file the caller has received or has in flight (ranges summed).
    pub used_bytes: u64,
    /// Bytes this request asks for (0 when asking for a link).
    pub requested_bytes: u64,
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
    /// Today (the injected clock's).
    pub today: time::Date,
}

impl DownloadFacts {
    /// Complete downloads the DUA still allows this caller (what is left of the limit in whole
    /// files, counting bytes in flight as used).
    pub fn downloads_left(&self) -> u64 {
        let Some(dua) = &self.dua else { return 0 };
        let budget = u64::from(dua.download_limit.get()).saturating_mul(self.file_bytes);
        budget
            .saturating_sub(self.used_bytes)
            .checked_div(self.file_bytes)
            .unwrap_or(0)
    }
}

/// The facts about a release that decide who may see or approve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// The release, when it exists: denials are logged against it (never for an id that
    /// exists nowhere, which would say whether it does).
    pub release: Option<uuid::Uuid>,
    /// The organization that requested it.
    pub requesting_org: OrgId,
    /// The user who requested it.
    pub requested_by: UserId,
    /// Users the DUA names as authorized recipients.
    pub named_recipients: Vec<UserId>,
    /// The person the DUA makes responsible for compliance (and for attesting destruction).
    pub responsible: Option<UserId>,
}

/// How far a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only what the principal owns.
    Own,
    /// Only releases whose DUA names the principal.
    NamedRecipient,
    /// Requests of the principal's own organization: those the principal filed, and the
    /// organization's others until a DUA names who may receive the data.
    OwnOrganization,
    /// Releases of the principal's organization, whoever filed them.
    RequestingOrganization,
    /// Releases whose DUA makes the principal the responsible person.
    ResponsiblePerson,
    /// Anything.
    Any,
}

/// An access decision refused: the reason for the access log, and, when no role of the
/// principal grants the action, what would have (a role, or the condition on the release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied(pub Reason, pub Option<Needed>);

impl Denied {
    /// A refusal for `reason` alone.
    pub const fn because(reason: Reason) -> Self {
        Denied(reason, None)
    }
}

/// What would have granted a refused action: the action and the roles the principal holds
/// (by position in [`Role::ALL`]), so that the answer names the role or the condition needed,
/// never what exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed {
    action: Action,
    held: [bool; 5],
}

impl Needed {
    fn new(principal: &Principal, action: Action) -> Self {
        let mut held = [false; 5];
        for (i, role) in Role::ALL.iter().enumerate() {
            held[i] = principal.roles.contains(role);
        }
        Needed { action, held }
    }
}

fn scope_phrase(scope: Scope) -> &'static str {
    match scope {
        Scope::Own => "for the user's own account",
        Scope::NamedRecipient => "for releases whose DUA names the user",
        Scope::OwnOrganization | Scope::RequestingOrganization => {
            "for releases of the user's own organization"
        }
        Scope::ResponsiblePerson => "for releases whose DUA makes the user the responsible person",
        Scope::Any => "always",
    }
}

impl std::fmt::Display for Needed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grants: Vec<(Role, Scope)> = GRANTS
            .iter()
            .filter(|(_, a, _)| *a == self.action)
            .map(|&(r, _, s)| (r, s))
            .collect();
        let holds = |role: &Role| {
            Role::ALL
                .iter()
                .position(|r| r == role)
                .is_some_and(|i| self.held[i])
        };
        let mut scopes: Vec<&str> = grants
            .iter()
            .filter(|(r, _)| holds(r))
            .map(|&(_, s)| scope_phrase(s))
            .collect();
        scopes.dedup();
        if !scopes.is_empty() {
            return write!(
                f,
                "the user's role allows this only {}",
                scopes.join(" or ")
            );
        }
        let mut roles: Vec<&str> = grants.iter().map(|(r, _)| r.as_str()).collect();
        roles.sort_unstable();
        roles.dedup();
        if roles.is_empty() {
            write!(f, "no role may do this")
        } else {
            write!(f, "it needs the role {}", roles.join(" or "))
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.1 {
            Some(needed) => write!(f, "{}; {needed}", self.0.as_str()),
            None => write!(f, "{}", self.0.as_str()),
        }
    }
}

impl std::error::Error for Denied {}

const EVERY_ROLE: [Role; 5] = Role::ALL;

/// The table: which role may do which action, how far. Nothing else grants anything.
pub const GRANTS: &[(Role, Action, Scope)] = &[
    (Role::Recipient, Action::ListRecipientKeys, Scope::Own),
    (Role::Recipient, Action::AddRecipientKey, Scope::Own),
    (Role::Recipient, Action::RemoveRecipientKey, Scope::Own),
    (Role::Recipient, Action::ReadRelease, Scope::NamedRecipient),
    (Role::Recipient, Action::ReadRelease, Scope::OwnOrganization),
    (Role::Recipient, Action::CreateRequest, Scope::Any),
    (Role::Recipient, Action::ListReleases, Scope::Any),
    // Release transitions: this table is the only place that says which person may perform
    // which (the state machine only says which ones the server performs itself).
    // The applicant files and withdraws its own application (seed 001 section 3.2).
    (
        Role::Recipient,
        Action::TransitionRelease(Transition::Submit),
        Scope::OwnOrganization,
    ),
    (
        Role::Recipient,
        Action::TransitionRelease(Transition::Withdraw),
        Scope::OwnOrganization,
    ),
    (Role::ItStaff, Action::ListReleases, Scope::Any),
    // "IT processes the data extract" (seed 000 step 6).
    (
        Role::ItStaff,
        Action::TransitionRelease(Transition::StartExtraction),
        Scope::Any,
    ),
    (
        Role::ItStaff,
        Action::TransitionRelease(Transition::CancelExtraction),
        Scope::Any,
    ),
    (Role::ExecutiveDirector, Action::ListReleases, Scope::Any),
    // Review is done by the director "or designee" (seed 001 sections 6.2 C, 7.2 C); the
    // privacy officer is the designee for the compliance review (seed 000 steps 2-4). Denial
    // (seed 001 section 3.3 F) and final approval (`ApproveRelease`) are the director's alone;
    // the director signs the DUA, which the privacy officer may also record; the director stops
    // access (sections 3.3 K, 4.3 I) and directs destruction (section 4.3 K); the privacy
    // officer checks the recipients' certificates of destruction against the access log.
    (
        Role::ExecutiveDirector,
        Action::TransitionRelease(Transition::StartReview),
        Scope::Any,
    ),
    (
        Role::ExecutiveDirector,
        Action::TransitionRelease(Transition::Deny),
        Scope::Any,
    ),
    (
        Role::ExecutiveDirector,
        Action::TransitionRelease(Transition::ExecuteDua),
        Scope::Any,
    ),
    (
        Role::ExecutiveDirector,
        Action::TransitionRelease(Transition::Revoke),
        Scope::Any,
    ),
    (
        Role::ExecutiveDirector,
        Action::TransitionRelease(Transition::DemandDestruction),
        Scope::Any,
    ),
    (Role::ExecutiveDirector, Action::NarrowRelease, Scope::Any),
    (
        Role::ExecutiveDirector,
        Action::RecordCommitteeDecision,
        Scope::Any,
    ),
    (Role::ExecutiveDirector, Action::AmendDua, Scope::Any),
    (Role::PrivacyOfficer, Action::ListReleases, Scope::Any),
    (
        Role::PrivacyOfficer,
        Action::TransitionRelease(Transition::StartReview),
        Scope::Any,
    ),
    (
        Role::PrivacyOfficer,
        Action::TransitionRelease(Transition::ExecuteDua),
        Scope::Any,
    ),
    (Role::PrivacyOfficer, Action::NarrowRelease, Scope::Any),
    (Role::PrivacyOfficer, Action::AmendDua, Scope::Any),
    (Role::Recipient, Action::ReadSigningKey, Scope::Any),
    (Role::Recipient, Action::ReadCatalog, Scope::Any),
    (Role::ItStaff, Action::ReadCatalog, Scope::Any),
    (Role::ExecutiveDirector, Action::ReadCatalog, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadCatalog, Scope::Any),
    (Role::Admin, Action::ReadCatalog, Scope::Any),
    // Data leaves only to the people a DUA names, and only on its terms (`download_terms`).
    (Role::Recipient, Action::DownloadFile, Scope::NamedRecipient),
    (Role::ItStaff, Action::ReadSigningKey, Scope::Any),
    (Role::ExecutiveDirector, Action::ReadSigningKey, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadSigningKey, Scope::Any),
    (Role::Admin, Action::ReadSigningKey, Scope::Any),
    (Role::ItStaff, Action::ReadRelease, Scope::Any),
    (Role::ExecutiveDirector, Action::ReadRelease, Scope::Any),
    (Role::ExecutiveDirector, Action::ApproveRelease, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadRelease, Scope::Any),
    (Role::Admin, Action::ListApiTokens, Scope::Any),
    (Role::Admin, Action::RevokeApiToken, Scope::Any),
    (Role::Admin, Action::ListOrganizations, Scope::Any),
    (Role::Admin, Action::CreateOrganization, Scope::Any),
    (Role::Admin, Action::ListUsers, Scope::Any),
    (Role::Admin, Action::CreateUser, Scope::Any),
    (Role::Admin, Action::DisableUser, Scope::Any),
    (Role::Admin, Action::SetRoles, Scope::Any),
    (Role::Admin, Action::UnlockUser, Scope::Any),
    // Extract jobs: IT runs them; the privacy officer and administrators watch them.
    // Recipients never see jobs: their files are offered only once the release is available.
    (Role::ItStaff, Action::StartExtract, Scope::Any),
    (Role::ItStaff, Action::CancelJob, Scope::Any),
    (Role::ItStaff, Action::RetryJob, Scope::Any),
    (Role::ItStaff, Action::ReadJobs, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadJobs, Scope::Any),
    (Role::Admin, Action::ReadJobs, Scope::Any),
    // The access log is the privacy officer's to review; everyone gets receipts of their own
    // records (EVERY_ROLE_OWN), the privacy officer of any.
    (Role::PrivacyOfficer, Action::ReviewAccessLog, Scope::Any),
    // The director stops access (seed 001 sections 3.3 K, 4.3 I) and may lift the stop; the
    // privacy officer sees what is stopped.
    (Role::ExecutiveDirector, Action::RevokeAccess, Scope::Any),
    (Role::ExecutiveDirector, Action::LiftRevocation, Scope::Any),
    (Role::ExecutiveDirector, Action::ListRevocations, Scope::Any),
    (Role::PrivacyOfficer, Action::ListRevocations, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadLogReceipt, Scope::Any),
    // Destruction (seed 001 section 4.3 K): the director demands it (a transition, above) and
    // follows it; the privacy officer tracks it; the recipient organization gets the server's
    // certificate; only the DUA's responsible person attests the recipient's side.
    (Role::ExecutiveDirector, Action::ReadDestruction, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadDestruction, Scope::Any),
    (
        Role::Recipient,
        Action::ReadDestruction,
        Scope::RequestingOrganization,
    ),
    (
        Role::Recipient,
        Action::AttestDestruction,
        Scope::ResponsiblePerson,
    ),
    // Recipients send what they mean to publish before publishing it (seed 001 section 4.3 J);
    // the privacy officer sees every review.
    (
        Role::Recipient,
        Action::SubmitPublicationReview,
        Scope::NamedRecipient,
    ),
    (
        Role::PrivacyOfficer,
        Action::ReadPublicationReviews,
        Scope::Any,
    ),
    (
        Role::ExecutiveDirector,
        Action::ReadDestructionDetail,
        Scope::Any,
    ),
    (
        Role::PrivacyOfficer,
        Action::ReadDestructionDetail,
        Scope::Any,
    ),
    (
        Role::Recipient,
        Action::ReadDestructionDetail,
        Scope::ResponsiblePerson,
    ),
];

/// What every role may do to what it owns.
pub const EVERY_ROLE_OWN: &[Action] = &[
    Action::ViewOwnAccount,
    Action::EndOwnSession,
    Action::ChangeOwnPassword,
    Action::ListApiTokens,
    Action::CreateApiToken,
    Action::RevokeApiToken,
    Action::ReadLogReceipt,
];

/// Decides whether `principal` may do `action` to `resource`. Deny by default: only a row of
/// [`GRANTS`] (or [`EVERY_ROLE_OWN`]) whose scope covers the resource allows, and the
/// separation-of-duties rules then apply on top.
pub fn authorize(
    principal: &Principal,
    action: Action,
    resource: &Resource<'_>,
) -> Result<(), Denied> {
    // A one-time password is for choosing one's own, nothing else.
    if principal.must_change_password
        && !matches!(
            action,
            Action::ViewOwnAccount | Action::ChangeOwnPassword | Action::EndOwnSession
        )
    {
        return Err(Denied::because(Reason::new(
            "change the one-time password before anything else",
        )));
    }
    // A token minted by a token could outlive it (and any limit on it): only a person signed
    // in with a password and a second factor makes tokens.
    if action == Action::CreateApiToken && matches!(principal.credential, Credential::ApiToken(_)) {
        return Err(Denied::because(Reason::new(
            "API tokens cannot create API tokens; sign in to make one",
        )));
    }
    let granted = principal.roles.iter().any(|&role| {
        let own = EVERY_ROLE.contains(&role) && EVERY_ROLE_OWN.contains(&action);
        (own && in_scope(principal, Scope::Own, resource))
            || GRANTS
                .iter()
                .filter(|(r, a, _)| *r == role && *a == action)
                .any(|(_, _, scope)| in_scope(principal, *scope, resource))
    });
    if !granted {
        return Err(Denied(
            Reason::new("no role of the user grants this action"),
            Some(Needed::new(principal, action)),
        ));
    }
    if conflicts_with_own_request(action) {
        separation_of_duties(principal, action, resource)?;
    }
    if action == Action::SetRoles && *resource == Resource::OwnedBy(principal.user_id) {
        return Err(Denied::because(Reason::new(
            "nobody changes their own roles",
        )));
    }
    if let (Action::DownloadFile, Resource::Download(facts)) = (action, resource) {
        download_terms(principal, facts)?;
    }
    Ok(())
}

/// Refusals of a download that are not a plain 403: the data is gone (410) or the limit is
/// reached (429). The reason decides the status, so the handler decides nothing.
pub const RELEASE_DESTROYED: Reason = Reason::new("the release's data has been destroyed");
/// See [`RELEASE_DESTROYED`]: from the demand on, the release's data is being destroyed.
pub const RELEASE_DESTRUCTION_DEMANDED: Reason =
    Reason::new("destruction of the release's data has been demanded");
/// See [`RELEASE_DESTROYED`].
pub const DOWNLOAD_LIMIT_REACHED: Reason =
    Reason::new("the DUA's download limit for this file is reached");

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    /// Not allowed (403).
    Forbidden,
    /// The data no longer exists (410).
    Gone,
    /// The DUA's download limit is reached (429).
    LimitReached,
}

impl Denied {
    /// How this refusal is answered.
    pub fn kind(&self) -> DenialKind {
        match self.0 {
            r if r == RELEASE_DESTROYED || r == RELEASE_DESTRUCTION_DEMANDED => DenialKind::Gone,
            r if r == DOWNLOAD_LIMIT_REACHED => DenialKind::LimitReached,
            _ => DenialKind::Forbidden,
        }
    }
}

/// Whether a release's data still exists to be offered: from the destruction demand on it is
/// gone (410), for a download and for the list of its files alike.
pub fn data_exists(status: crate::domain::release::ReleaseStatus) -> Result<(), Denied> {
    use crate::domain::release::ReleaseStatus;
    match status {
        ReleaseStatus::Destroyed => Err(Denied::because(RELEASE_DESTROYED)),
        ReleaseStatus::DestructionDemanded => Err(Denied::because(RELEASE_DESTRUCTION_DEMANDED)),
        _ => Ok(()),
    }
}

/// The terms of one download (seed 001 sections 3.3 G-K, 4.3), in the order the caller is
/// told about them: the link is the caller's and used from its address; the release's data
/// exists and is available; nothing revoked; a DUA is in force today; the client is inside its
/// networks; and the bytes asked for fit in what the limit leaves.
fn download_terms(principal: &Principal, facts: &DownloadFacts) -> Result<(), Denied> {
    use crate::domain::release::ReleaseStatus;
    let deny = |text| Err(Denied::because(Reason::new(text)));
    if facts
        .link_user
        .is_some_and(|user| user != principal.user_id)
    {
        return deny("the download link was issued to another user");
    }
    if facts.link_client.is_some() && facts.link_client != facts.client {
        return deny("the download link is bound to another client address");
    }
    data_exists(facts.status)?;
    if facts.status != ReleaseStatus::Available {
        return deny("the release is not available for download");
    }
    if facts.revoked {
        return deny("access is revoked");
    }
    let Some(dua) = &facts.dua else {
        return deny("the release has no DUA in force");
    };
    if facts.today < dua.effective {
        return deny("the DUA is not in force yet");
    }
    if facts.today > dua.expiry {
        return deny("the DUA has expired");
    }
    let inside = match &dua.networks {
        crate::domain::dua::Networks::Any => true,
        restricted => facts.client.is_some_and(|ip| restricted.allows(ip)),
    };
    if !inside {
        return deny("the client address is outside the DUA's allowed networks");
    }
    let budget = u64::from(dua.download_limit.get()).saturating_mul(facts.file_bytes);
    let wanted = facts
        .used_bytes
        .saturating_add(facts.requested_bytes.max(1));
    if wanted > budget {
        return Err(Denied::because(DOWNLOAD_LIMIT_REACHED));
    }
    Ok(())
}

/// The decisions about a release that its requester and their organization may not take:
/// review, the subcommittee's record, approval, denial, the DUA, revocation and destruction.
fn conflicts_with_own_request(action: Action) -> bool {
    matches!(
        action,
        Action::ApproveRelease
            | Action::NarrowRelease
            | Action::RecordCommitteeDecision
            | Action::AmendDua
            | Action::TransitionRelease(
                Transition::StartReview
                    | Transition::Deny
                    | Transition::ExecuteDua
                    | Transition::Revoke
                    | Transition::DemandDestruction
                    | Transition::ConfirmDestruction
            )
    )
}

fn in_scope(principal: &Principal, scope: Scope, resource: &Resource<'_>) -> bool {
    match (scope, resource) {
        (Scope::Any, _) => true,
        (Scope::Own, Resource::OwnedBy(owner)) => *owner == principal.user_id,
        (Scope::Own, Resource::LogRecord(actor)) => *actor == Some(principal.user_id),
        (Scope::NamedRecipient, Resource::Release(facts)) => {
            facts.named_recipients.contains(&principal.user_id)
        }
        (Scope::NamedRecipient, Resource::Download(facts)) => {
            facts.release.named_recipients.contains(&principal.user_id)
        }
        (Scope::OwnOrganization, Resource::Release(facts)) => {
            facts.requested_by == principal.user_id
                || (facts.requesting_org == principal.org_id && facts.named_recipients.is_empty())
        }
        (Scope::RequestingOrganization, Resource::Release(facts)) => {
            facts.requesting_org == principal.org_id
        }
        (Scope::ResponsiblePerson, Resource::Release(facts)) => {
            facts.responsible == Some(principal.user_id)
        }
        (
            Scope::Own
            | Scope::NamedRecipient
            | Scope::OwnOrganization
            | Scope::RequestingOrganization
            | Scope::ResponsiblePerson,
            _,
        ) => false,
    }
}

/// Separation of duties, over every role the user holds (not only those a token carries).
fn separation_of_duties(
    principal: &Principal,
    action: Action,
    resource: &Resource<'_>,
) -> Result<(), Denied> {
    let approving = action == Action::ApproveRelease;
    if approving && principal.held_roles.contains(&Role::ItStaff) {
        return Err(Denied::because(Reason::new(
            "IT staff cannot approve releases",
        )));
    }
    let Resource::Release(facts) = resource else {
        return Err(Denied::because(Reason::new(
            "only releases can be decided on",
        )));
    };
    if facts.requested_by == principal.user_id {
        return Err(Denied::because(Reason::new(if approving {
            "nobody approves a release they requested"
        } else {
            "nobody decides on a release they requested"
        })));
    }
    if facts.requesting_org == principal.org_id {
        return Err(Denied::because(Reason::new(if approving {
            "nobody approves a release their own organization requested"
        } else {
            "nobody decides on a release their own organization requested"
        })));
    }
    Ok(())
}
