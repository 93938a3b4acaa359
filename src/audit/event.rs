//! What an access event may say. Every field is a closed enum, a typed id, or text checked on
//! construction, so no caller can put PHI, a token, a password or a key into the log: there is
//! no field that takes arbitrary text.

use std::fmt;
use std::net::IpAddr;

use uuid::Uuid;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// Steward itself (start-up, scheduled work, migrations).
    System,
    /// A signed-in user, by id.
    User(Uuid),
    /// A request that carried no credentials, or credentials that could not be verified.
    Anonymous,
}

impl Actor {
    /// The `actor_kind` column.
    pub fn kind(self) -> &'static str {
        match self {
            Actor::System => "system",
            Actor::User(_) => "user",
            Actor::Anonymous => "anonymous",
        }
    }

    /// The `actor_user` column.
    pub fn user(self) -> Option<Uuid> {
        match self {
            Actor::User(id) => Some(id),
            Actor::System | Actor::Anonymous => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("system"),
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// What was done or attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The server started serving.
    ServerStarted,
    /// The server stopped after a shutdown signal.
    ServerStopped,
    /// The database schema was migrated.
    SchemaMigrated,
    /// A file of opt-outs was imported into the registry.
    OptOutImported,
    /// The first administrator was created on an empty database.
    AdminBootstrapped,
    /// An organization was created.
    OrganizationCreated,
    /// A user account was created.
    UserCreated,
    /// A user account was disabled.
    UserDisabled,
    /// A user's roles were replaced.
    RolesChanged,
    /// An administrator lifted an account's lockout.
    AccountUnlocked,
    /// A login with password and second factor succeeded.
    LoginSucceeded,
    /// A login attempt failed.
    LoginFailed,
    /// Too many failed logins locked an account.
    AccountLockedOut,
    /// Too many failed logins locked a client address.
    AddressLockedOut,
    /// A refresh token was exchanged for new tokens.
    SessionRefreshed,
    /// An already used refresh token came back: its whole session was revoked.
    RefreshTokenReused,
    /// A session was ended by its user.
    LoggedOut,
    /// A request's credentials were checked (logged when refused).
    Authentication,
    /// An authorization decision (logged when denied).
    Authorization,
    /// An API token was created.
    ApiTokenCreated,
    /// An API token was revoked.
    ApiTokenRevoked,
    /// A recipient registered a public key.
    RecipientKeyAdded,
    /// A recipient removed a public key.
    RecipientKeyRemoved,
    /// A user changed their password.
    PasswordChanged,
    /// A data request was filed as a draft release.
    ReleaseRequested,
    /// A release moved through its lifecycle; the target names the history entry.
    ReleaseTransitioned,
    /// A reviewer narrowed a release's approved elements.
    ReleaseElementsNarrowed,
    /// A release, its history or its approval letter was read (the reason says which).
    ReleaseRead,
    /// The release subcommittee's decision was recorded.
    CommitteeDecisionRecorded,
    /// An executed DUA was amended (a new version).
    DuaAmended,
    /// An extract job was queued for a release.
    JobStarted,
    /// A job was cancelled (queued) or asked to stop (running).
    JobCancelled,
    /// A failed or cancelled job was queued again.
    JobRetried,
    /// The privacy officer read the access log (a page, an export or a report; the reason
    /// says which).
    AccessLogReviewed,
    /// A receipt (inclusion proof) of an access-log record was served.
    AccessLogProofServed,
    /// A download link was issued to a named user.
    DownloadLinkIssued,
    /// A download was refused before its first byte (the reason says why).
    DownloadRefused,
    /// A download passed every check; its first byte follows this event's commit.
    DownloadStarted,
    /// Every byte of the requested range was sent (bytes: how many).
    DownloadCompleted,
    /// The client left before the end (bytes: how many were sent).
    DownloadAborted,
    /// A revocation or another change of the terms cut the stream (bytes: how many were sent).
    DownloadCut,
    /// The executive director revoked access (a user, organization, release or file).
    AccessRevoked,
    /// The executive director lifted a revocation.
    RevocationLifted,
    /// Destruction of a release's data was demanded (by the director, or by the DUA's end).
    DestructionDemanded,
    /// The erase job recorded what it will destroy (objects, digests, key ids) before erasing anything.
    DestructionPlanned,
    /// The release's wrapped identity was deleted: its ciphertext can no longer be decrypted (cryptographic erase).
    ReleaseKeyErased,
    /// Every object of the release (every version) was deleted from the store.
    ReleaseObjectsDeleted,
    /// The server's destruction certificate was signed and issued.
    DestructionCertificateIssued,
    /// A destruction demand or its certificate was read.
    DestructionCertificateRead,
    /// The DUA's responsible person's attestation of destruction was accepted.
    DestructionAttested,
    /// An attestation of destruction was refused (the reason says why).
    DestructionAttestationRefused,
    /// A reminder: a destruction demand is past its deadline without an attestation.
    DestructionOverdue,
    /// A table meant for publication was reviewed (count: the problems found).
    PublicationReviewed,
    /// The publication reviews were read.
    PublicationReviewsRead,
}

impl Action {
    /// Every action, for parsing a filter and listing what may be filtered on.
    pub const ALL: &'static [Action] = &[
        Action::ServerStarted,
        Action::ServerStopped,
        Action::SchemaMigrated,
        Action::OptOutImported,
        Action::AdminBootstrapped,
        Action::OrganizationCreated,
        Action::UserCreated,
        Action::UserDisabled,
        Action::RolesChanged,
        Action::AccountUnlocked,
        Action::LoginSucceeded,
        Action::LoginFailed,
        Action::AccountLockedOut,
        Action::AddressLockedOut,
        Action::SessionRefreshed,
        Action::RefreshTokenReused,
        Action::LoggedOut,
        Action::Authentication,
        Action::Authorization,
        Action::ApiTokenCreated,
        Action::ApiTokenRevoked,
        Action::RecipientKeyAdded,
        Action::RecipientKeyRemoved,
        Action::PasswordChanged,
        Action::ReleaseRequested,
        Action::ReleaseTransitioned,
        Action::ReleaseElementsNarrowed,
        Action::ReleaseRead,
        Action::CommitteeDecisionRecorded,
        Action::DuaAmended,
        Action::JobStarted,
        Action::JobCancelled,
        Action::JobRetried,
        Action::AccessLogReviewed,
        Action::AccessLogProofServed,
        Action::DownloadLinkIssued,
        Action::DownloadRefused,
        Action::DownloadStarted,
        Action::DownloadCompleted,
        Action::DownloadAborted,
        Action::DownloadCut,
        Action::AccessRevoked,
        Action::RevocationLifted,
        Action::DestructionDemanded,
        Action::DestructionPlanned,
        Action::ReleaseKeyErased,
        Action::ReleaseObjectsDeleted,
        Action::DestructionCertificateIssued,
        Action::DestructionCertificateRead,
        Action::DestructionAttested,
        Action::DestructionAttestationRefused,
        Action::DestructionOverdue,
        Action::PublicationReviewed,
        Action::PublicationReviewsRead,
    ];

    /// The action stored under `name`, or `None` for a name that is none of them.
    pub fn parse(name: &str) -> Option<Action> {
        Self::ALL.iter().copied().find(|a| a.as_str() == name)
    }

    /// The stable name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ServerStarted => "server_started",
            Action::ServerStopped => "server_stopped",
            Action::SchemaMigrated => "schema_migrated",
            Action::OptOutImported => "optout_imported",
            Action::AdminBootstrapped => "admin_bootstrapped",
            Action::OrganizationCreated => "organization_created",
            Action::UserCreated => "user_created",
            Action::UserDisabled => "user_disabled",
            Action::RolesChanged => "roles_changed",
            Action::AccountUnlocked => "account_unlocked",
            Action::LoginSucceeded => "login_succeeded",
            Action::LoginFailed => "login_failed",
            Action::AccountLockedOut => "account_locked_out",
            Action::AddressLockedOut => "address_locked_out",
            Action::SessionRefreshed => "session_refreshed",
            Action::RefreshTokenReused => "refresh_token_reused",
            Action::LoggedOut => "logged_out",
            Action::Authentication => "authentication",
            Action::Authorization => "authorization",
            Action::ApiTokenCreated => "api_token_created",
            Action::ApiTokenRevoked => "api_token_revoked",
            Action::RecipientKeyAdded => "recipient_key_added",
            Action::RecipientKeyRemoved => "recipient_key_removed",
            Action::PasswordChanged => "password_changed",
            Action::ReleaseRequested => "release_requested",
            Action::ReleaseTransitioned => "release_transitioned",
            Action::ReleaseElementsNarrowed => "release_elements_narrowed",
            Action::ReleaseRead => "release_read",
            Action::CommitteeDecisionRecorded => "committee_decision_recorded",
            Action::DuaAmended => "dua_amended",
            Action::JobStarted => "job_started",
            Action::JobCancelled => "job_cancelled",
            Action::JobRetried => "job_retried",
            Action::AccessLogReviewed => "access_log_reviewed",
            Action::AccessLogProofServed => "access_log_proof_served",
            Action::DownloadLinkIssued => "download_link_issued",
            Action::DownloadRefused => "download_refused",
            Action::DownloadStarted => "download_started",
            Action::DownloadCompleted => "download_completed",
            Action::DownloadAborted => "download_aborted",
            Action::DownloadCut => "download_cut",
            Action::AccessRevoked => "access_revoked",
            Action::RevocationLifted => "revocation_lifted",
            Action::DestructionDemanded => "destruction_demanded",
            Action::DestructionPlanned => "destruction_planned",
            Action::ReleaseKeyErased => "release_key_erased",
            Action::ReleaseObjectsDeleted => "release_objects_deleted",
            Action::DestructionCertificateIssued => "destruction_certificate_issued",
            Action::DestructionCertificateRead => "destruction_certificate_read",
            Action::DestructionAttested => "destruction_attested",
            Action::DestructionAttestationRefused => "destruction_attestation_refused",
            Action::DestructionOverdue => "destruction_overdue",
            Action::PublicationReviewed => "publication_reviewed",
            Action::PublicationReviewsRead => "publication_reviews_read",
        }
    }
}

/// What the action was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Steward service as a whole.
    Service,
    /// The database schema, at a version.
    Schema(i64),
    /// The opt-out registry, with the counts of one import (never its values).
    OptOutRegistry {
        /// Entries in the imported file.
        in_file: u64,
        /// Entries that were new to the registry.
        added: u64,
    },
    /// A user account.
    User(Uuid),
    /// A login attempt for a user name that matches no account (the name is not logged).
    UnknownAccount,
    /// An organization.
    Organization(Uuid),
    /// A sign-in session.
    Session(Uuid),
    /// An API token (its id, never its secret).
    ApiToken(Uuid),
    /// A recipient's public key (its id, never the key).
    RecipientKey(Uuid),
    /// An API route, by its template (never the concrete path, which may hold a token).
    Route(&'static str),
    /// A release, and the entry of its history table that holds the change and its reason.
    Release {
        /// The release.
        id: Uuid,
        /// The entry in `release_history`.
        entry: i64,
    },
    /// The access log itself (a review, an export, a report).
    AccessLog,
    /// One record of the access log, by position.
    LogRecord(i64),
    /// A file of an extract, with its release.
    File {
        /// The file.
        id: Uuid,
        /// The release it belongs to.
        release: Uuid,
    },
    /// A revocation, with the release or file it covers when it covers one.
    Revocation {
        /// The revocation.
        id: Uuid,
        /// The release it covers (or the file's release).
        release: Option<Uuid>,
        /// The file it covers.
        file: Option<Uuid>,
    },
    /// A durable job (extract), by id, with the release it works for.
    Job {
        /// The job.
        id: Uuid,
        /// The release the job builds.
        release: Uuid,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Service => f.write_str("service"),
            Target::Schema(version) => write!(f, "schema:{version}"),
            Target::OptOutRegistry { in_file, added } => {
                write!(f, "optout_registry:in_file={in_file},added={added}")
            }
            Target::User(id) => write!(f, "user:{id}"),
            Target::UnknownAccount => f.write_str("unknown_account"),
            Target::Organization(id) => write!(f, "organization:{id}"),
            Target::Session(id) => write!(f, "session:{id}"),
            Target::ApiToken(id) => write!(f, "api_token:{id}"),
            Target::RecipientKey(id) => write!(f, "recipient_key:{id}"),
            Target::Route(route) => write!(f, "route:{route}"),
            Target::Release { id, entry } => write!(f, "release:{id}#{entry}"),
            Target::Job { id, .. } => write!(f, "job:{id}"),
            Target::File { id, .. } => write!(f, "file:{id}"),
            Target::Revocation { id, .. } => write!(f, "revocation:{id}"),
            Target::AccessLog => f.write_str("access_log"),
            Target::LogRecord(seq) => write!(f, "access_log:{seq}"),
        }
    }
}

/// A target as the structured columns of `access_events`: its kind, its own id (or detail),
/// and the release it concerns, so the privacy officer can filter on each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetColumns {
    /// `service`, `schema`, `user`, `release`, `job`, ...
    pub kind: &'static str,
    /// The target's own id or detail, as code-formatted text.
    pub id: Option<String>,
    /// The release the event concerns.
    pub release: Option<Uuid>,
    /// The release history entry that holds the change and its reason.
    pub history_entry: Option<i64>,
    /// The extract file the event concerns.
    pub file: Option<Uuid>,
}

impl Target {
    /// The target's columns.
    pub fn columns(&self) -> TargetColumns {
        let own = |kind, id: &Uuid| TargetColumns {
            kind,
            id: Some(id.to_string()),
            ..TargetColumns::default()
        };
        match self {
            Target::Service => TargetColumns {
                kind: "service",
                ..TargetColumns::default()
            },
            Target::Schema(version) => TargetColumns {
                kind: "schema",
                id: Some(version.to_string()),
                ..TargetColumns::default()
            },
            Target::OptOutRegistry { in_file, added } => TargetColumns {
                kind: "optout_registry",
                id: Some(format!("in_file={in_file},added={added}")),
                ..TargetColumns::default()
            },
            Target::User(id) => own("user", id),
            Target::UnknownAccount => TargetColumns {
                kind: "unknown_account",
                ..TargetColumns::default()
            },
            Target::Organization(id) => own("organization", id),
            Target::Session(id) => own("session", id),
            Target::ApiToken(id) => own("api_token", id),
            Target::RecipientKey(id) => own("recipient_key", id),
            Target::Route(route) => TargetColumns {
                kind: "route",
                id: Some((*route).to_owned()),
                ..TargetColumns::default()
            },
            Target::Release { id, entry } => TargetColumns {
                kind: "release",
                id: Some(id.to_string()),
                release: Some(*id),
                history_entry: Some(*entry),
                file: None,
            },
            Target::AccessLog => TargetColumns {
                kind: "access_log",
                ..TargetColumns::default()
            },
            Target::LogRecord(seq) => TargetColumns {
                kind: "access_log",
                id: Some(seq.to_string()),
                ..TargetColumns::default()
            },
            Target::File { id, release } => TargetColumns {
                kind: "file",
                id: Some(id.to_string()),
                release: Some(*release),
                file: Some(*id),
                ..TargetColumns::default()
            },
            Target::Revocation { id, release, file } => TargetColumns {
                kind: "revocation",
                id: Some(id.to_string()),
                release: *release,
                file: *file,
                ..TargetColumns::default()
            },
            Target::Job { id, release } => TargetColumns {
                kind: "job",
                id: Some(id.to_string()),
                release: Some(*release),
                ..TargetColumns::default()
            },
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An access decision that allowed the request.
    Granted,
    /// An access decision that refused the request.
    Denied,
    /// An operation that completed.
    Succeeded,
    /// An operation that failed.
    Failed,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: &'static [Outcome] = &[
        Outcome::Granted,
        Outcome::Denied,
        Outcome::Succeeded,
        Outcome::Failed,
    ];

    /// The outcome stored under `name`, or `None`.
    pub fn parse(name: &str) -> Option<Outcome> {
        Self::ALL.iter().copied().find(|o| o.as_str() == name)
    }

    /// The stable name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Denied => "denied",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

/// Why: a fixed phrase from the code, never text that came from a request or a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(&'static str);

impl Reason {
    /// A reason phrase; `'static` so only text written in the code can become one.
    pub const fn new(text: &'static str) -> Self {
        Self(text)
    }

    /// The phrase.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// A `User-Agent` header reduced to printable ASCII and a bounded length, so a client cannot
/// smuggle control characters or a megabyte of text into the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(String);

impl UserAgent {
    /// Longest user agent kept, in characters.
    pub const MAX_LEN: usize = 200;

    /// Sanitizes a header value: non-printable bytes become `?`, the rest is cut at `MAX_LEN`.
    pub fn from_header(raw: &[u8]) -> Self {
        let text = raw
            .iter()
            .take(Self::MAX_LEN)
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        Self(text)
    }

    /// The sanitized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Client {
    /// The peer address of the connection.
    pub addr: Option<IpAddr>,
    /// The sanitized `User-Agent`.
    pub user_agent: Option<UserAgent>,
}

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// Who acted.
    pub actor: Actor,
    /// What was done.
    pub action: Action,
    /// To what.
    pub target: Target,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it needs saying (always for a denial).
    pub reason: Option<Reason>,
    /// Where the request came from, for request-driven events.
    pub client: Client,
    /// Bytes transferred, for downloads.
    pub bytes: Option<u64>,
}

impl AccessEvent {
    /// An event with no reason, client or byte count; set those fields as needed.
    pub fn new(actor: Actor, action: Action, target: Target, outcome: Outcome) -> Self {
        Self {
            actor,
            action,
            target,
            outcome,
            reason: None,
            client: Client::default(),
            bytes: None,
        }
    }

    /// The same event with a reason.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The same event with a count (bytes for a download; refusals for an aggregated denial).
    pub fn with_count(mut self, count: u64) -> Self {
        self.bytes = Some(count);
        self
    }

    /// The same event, from the client that made the request.
    pub fn with_client(mut self, client: &Client) -> Self {
        self.client = client.clone();
        self
    }
}
