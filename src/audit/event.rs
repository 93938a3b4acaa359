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
}

impl Action {
    /// The stable name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ServerStarted => "server_started",
            Action::ServerStopped => "server_stopped",
            Action::SchemaMigrated => "schema_migrated",
            Action::OptOutImported => "optout_imported",
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
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Service => f.write_str("service"),
            Target::Schema(version) => write!(f, "schema:{version}"),
            Target::OptOutRegistry { in_file, added } => {
                write!(f, "optout_registry:in_file={in_file},added={added}")
            }
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
}
