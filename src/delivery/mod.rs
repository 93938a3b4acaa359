//! Delivery: the files of a release, download links, the `/dl` stream with its ranges and its
//! count against the DUA's limit, and revocation with its signal.
//!
//! Where a download is decided, counted and cut:
//! - **Authorized** by `auth::authorize` (`Action::DownloadFile`) over [`DownloadFacts`] loaded
//!   here: the link's user and address, the release and its DUA, revocations in force, and the
//!   bytes the user already has of the file. Nothing in `src/http` decides.
//! - **Counted** in [`DeliveryService::start`]: in one transaction that locks the user's row
//!   for the file, the bytes already sent or in flight are summed, the request's range must
//!   fit in `limit x size`, the transfer's reservation is recorded and `download_started`
//!   commits; only then is the object opened. Ranges are summed, so resuming costs only the
//!   bytes still missing, and two concurrent starts see each other's reservation.
//! - **Cut** in [`Transfer::stream`]: the stream re-authorizes on every access signal that
//!   concerns it (a revocation's, in-process and, on PostgreSQL, from every replica by
//!   NOTIFY) and every `downloads.recheck_secs`, and ends the response mid-body when the
//!   answer is no; the outcome (`download_completed`, `download_aborted`, `download_cut`) and
//!   the bytes sent commit with the transfer's end.

pub mod range;
mod revocation;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

pub use revocation::RevocationRequest;

use crate::audit::{
    AccessEvent, Action as Logged, Actor, AuditLog, Client, Outcome, Reason, Target,
};
use crate::auth::authorize::DownloadFacts;
use crate::auth::tokens::{verify_download, DownloadClaims};
use crate::auth::{authorize, Action, Authenticator, Denied, Principal, Resource};
use crate::clock::SharedClock;
use crate::config::DownloadSettings;
use crate::db::downloads::{self, NewTransfer, RevocationScope, TransferState};
use crate::db::extracts::{self, ExtractFileRow};
use crate::db::signal::AccessSignals;
use crate::db::{Database, DbError};
use crate::domain::ids::UserId;
use crate::domain::release::ReleaseId;
use crate::release::service::{nobody_facts, ReleaseRecord};
use crate::release::{ReleaseService, ServiceError};
use crate::storage::{ObjectKey, SharedStore};
use range::{RangeError, RangeRequest};

/// Bytes read from the store per chunk of the response body: small while the client is slow
/// (a thousand slow readers hold a thousand chunks), doubling up to the largest while it keeps
/// up (fewer, larger reads and writes for a fast one).
const MIN_CHUNK_BYTES: usize = 64 * 1024;
/// See [`MIN_CHUNK_BYTES`].
const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes all streams of a process may hold in chunks larger than the smallest: fast clients
/// share it; when it is spent, every stream reads small chunks (bounded memory whatever the
/// number of clients: each holds at most a few small chunks).
const LARGE_CHUNK_BUDGET: usize = 32 * 1024 * 1024;
/// A client whose connection takes the next chunk within this time keeps up.
const FAST_CLIENT: Duration = Duration::from_millis(20);

/// The route a link is used on, for events about a link that names no file.
pub const DOWNLOAD_ROUTE: &str = "/dl/{token}";

/// What delivery can fail with; each maps to one status.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The link is not a valid link (401).
    #[error("invalid download link: {}", .0.as_str())]
    BadLink(Reason),
    /// Authorization refused (403, 410 or 429 by [`Denied::kind`]).
    #[error("{0}")]
    Denied(Denied),
    /// No such file (404).
    #[error("no such file")]
    NotFound,
    /// The `Range` header was refused (416).
    #[error("{0}")]
    Range(RangeError),
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The access log (or the store) could not be written or read: nothing was sent (503).
    #[error("{0} is unavailable; nothing was sent")]
    Unavailable(&'static str),
    /// The release service failed.
    #[error(transparent)]
    Release(#[from] ServiceError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<sqlx::Error> for DeliveryError {
    fn from(e: sqlx::Error) -> Self {
        DeliveryError::Database(DbError::Sqlx(e))
    }
}

impl From<crate::auth::AuthError> for DeliveryError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Forbidden(denied) => DeliveryError::Denied(denied),
            _ => DeliveryError::Unavailable("the access log"),
        }
    }
}

/// A file as offered to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// The recorded file.
    pub file: ExtractFileRow,
    /// Whole downloads the caller has left, when the DUA names them.
    pub downloads_left: Option<u64>,
}

/// A link issued to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLink {
    /// The signed link token (the last segment of `/dl/{token}`).
    pub token: String,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// The file it is for.
    pub file: ExtractFileRow,
    /// The address it is bound to, if it is.
    pub bound_to: Option<IpAddr>,
}

/// Files, links, streams and revocations.
#[derive(Clone)]
pub struct DeliveryService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DeliveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryService").finish_non_exhaustive()
    }
}

struct Inner {
    /// What is left of [`LARGE_CHUNK_BUDGET`], in units of [`MIN_CHUNK_BYTES`].
    large_chunks: Arc<tokio::sync::Semaphore>,
    db: Database,
    store: SharedStore,
    audit: AuditLog,
    clock: SharedClock,
    auth: Authenticator,
    releases: ReleaseService,
    settings: DownloadSettings,
    signals: AccessSignals,
}

/// What a request is about: the file and its release, loaded once.
struct Subject {
    file: ExtractFileRow,
    release: ReleaseRecord,
}

impl Subject {
    fn target(&self) -> Target {
        Target::File {
            id: self.file.id,
            release: self.release.row.id.0,
        }
    }

    fn size(&self) -> u64 {
        u64::try_from(self.file.ciphertext_bytes).unwrap_or(0)
    }
}

impl DeliveryService {
    /// The service over the application's parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Database,
        store: SharedStore,
        audit: AuditLog,
        clock: SharedClock,
        auth: Authenticator,
        releases: ReleaseService,
        settings: DownloadSettings,
        signals: AccessSignals,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                large_chunks: Arc::new(tokio::sync::Semaphore::new(
                    LARGE_CHUNK_BUDGET / MIN_CHUNK_BYTES,
                )),
                db,
                store,
                audit,
                clock,
                auth,
                releases,
                settings,
                signals,
            }),
        }
    }

    /// The process's access signal.
    pub fn signals(&self) -> &AccessSignals {
        &self.inner.signals
    }

    /// The files of a release that `principal` may read, with the downloads they have left
    /// when the DUA names them. The read is logged.
    pub async fn files(
        &self,
        principal: &Principal,
        release: ReleaseId,
        route: &'static str,
        client: &Client,
    ) -> Result<Vec<FileOffer>, DeliveryError> {
        let inner = &self.inner;
        let record = inner.releases.record(release).await?;
        let facts = record
            .as_ref()
            .map_or_else(nobody_facts, ReleaseRecord::facts);
        inner
            .auth
            .check(
                principal,
                Action::ReadRelease,
                &Resource::Release(&facts),
                route,
                client,
            )
            .await?;
        let record = record.ok_or(DeliveryError::NotFound)?;
        if let Err(denied) = crate::auth::authorize::data_exists(record.row.status) {
            let target = Target::Release {
                id: release.0,
                entry: 0,
            };
            self.append(&refusal(principal, target, denied, client))
                .await?;
            return Err(DeliveryError::Denied(denied));
        }
        let files = extracts::files(&inner.db, release.0).await?;
        let named = facts.named_recipients.contains(&principal.user_id);
        let mut offers = Vec::with_capacity(files.len());
        for file in files {
            let downloads_left = if named {
                let subject = Subject {
                    file: file.clone(),
                    release: record.clone(),
                };
                let used = self.used_bytes(principal.user_id, file.id, None).await?;
                let facts = self
                    .facts(principal, &subject, client, None, used, 0)
                    .await?;
                Some(facts.downloads_left())
            } else {
                None
            };
            offers.push(FileOffer {
                file,
                downloads_left,
            });
        }
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::ReleaseRead,
            Target::Release {
                id: release.0,
                entry: 0,
            },
            Outcome::Succeeded,
        )
        .with_reason(Reason::new("files listed"))
        .with_client(client);
        self.append(&event).await?;
        Ok(offers)
    }

    /// Issues a download link for one file to `principal`, valid for `ttl_secs` (the default
    /// when `None`, at most the configured maximum) and bound to the caller's address when
    /// `bind_address`. Decided like a download, so a link is never issued that could not be
    /// used at this moment.
    pub async fn issue_link(
        &self,
        principal: &Principal,
        file: Uuid,
        ttl_secs: Option<u64>,
        bind_address: bool,
        client: &Client,
    ) -> Result<IssuedLink, DeliveryError> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let ttl = ttl_secs.unwrap_or(settings.link_ttl_secs);
        if ttl == 0 || ttl > settings.link_max_ttl_secs {
            return Err(DeliveryError::BadRequest(format!(
                "ttl_secs must be between 1 and {}",
                settings.link_max_ttl_secs
            )));
        }
        let bound_to = if bind_address {
            Some(client.addr.ok_or_else(|| {
                DeliveryError::BadRequest("the client address is unknown; cannot bind".into())
            })?)
        } else {
            None
        };
        let Some(subject) = self.subject(file).await? else {
            // Authorized against facts that match nobody, so an id that exists nowhere and a
            // file of someone else's release are refused alike.
            let nobody = DownloadFacts {
                release: nobody_facts(),
                status: crate::domain::release::ReleaseStatus::Draft,
                dua: None,
                link_user: None,
                link_client: None,
                revoked: false,
                file_bytes: 0,
                used_bytes: 0,
                requested_bytes: 0,
                client: client.addr,
                today: inner.clock.now().date(),
            };
            inner
                .auth
                .check(
                    principal,
                    Action::DownloadFile,
                    &Resource::Download(&nobody),
                    "/api/v1/files/{id}/links",
                    client,
                )
                .await?;
            unreachable!("facts that match nobody grant nothing");
        };
        let used = self.used_bytes(principal.user_id, file, None).await?;
        let facts = self
            .facts(principal, &subject, client, None, used, 0)
            .await?;
        if let Err(denied) = authorize(principal, Action::DownloadFile, &Resource::Download(&facts))
        {
            self.append(&refusal(principal, subject.target(), denied, client))
                .await?;
            return Err(DeliveryError::Denied(denied));
        }
        let now = inner.clock.now();
        let expires_at = now + Duration::from_secs(ttl);
        let claims = DownloadClaims::new(
            &inner.auth.settings().issuer,
            principal.user_id.0,
            file,
            subject.release.row.id.0,
            bound_to,
            now,
            expires_at,
        );
        let token = inner
            .auth
            .keyring()
            .sign(&claims)
            .map_err(|_| DeliveryError::Unavailable("the link signing key"))?;
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::DownloadLinkIssued,
            subject.target(),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.append(&event).await?;
        Ok(IssuedLink {
            token,
            expires_at,
            file: subject.file,
            bound_to,
        })
    }

    /// Starts a download: checks the link, authorizes, counts the range against the limit and
    /// commits `download_started` with the transfer's reservation; then opens the object. A
    /// refusal is logged with its reason; if that event or the start cannot be written,
    /// nothing is sent (503).
    pub async fn start(
        &self,
        principal: &Principal,
        token: &str,
        range: Option<&[u8]>,
        client: &Client,
    ) -> Result<Transfer, DeliveryError> {
        let inner = &self.inner;
        let auth_settings = inner.auth.settings();
        let now = inner.clock.now();
        let claims = match verify_download(
            inner.auth.keyring(),
            token,
            &auth_settings.issuer,
            now,
            auth_settings.jwt_leeway_secs,
        ) {
            Ok(claims) => claims,
            Err(rejected) => {
                let event = AccessEvent::new(
                    Actor::User(principal.user_id.0),
                    Logged::DownloadRefused,
                    Target::Route(DOWNLOAD_ROUTE),
                    Outcome::Denied,
                )
                .with_reason(rejected.0)
                .with_client(client);
                self.append(&event).await?;
                return Err(DeliveryError::BadLink(rejected.0));
            }
        };
        let link_user = Uuid::parse_str(&claims.sub)
            .map(UserId)
            .map_err(|_| DeliveryError::BadLink(Reason::new("malformed token")))?;
        let subject = match self.subject(claims.fid).await? {
            Some(subject) if subject.release.row.id.0 == claims.rel => subject,
            _ => {
                let event = AccessEvent::new(
                    Actor::User(principal.user_id.0),
                    Logged::DownloadRefused,
                    Target::Route(DOWNLOAD_ROUTE),
                    Outcome::Denied,
                )
                .with_reason(Reason::new("the file no longer exists"))
                .with_client(client);
                self.append(&event).await?;
                return Err(DeliveryError::NotFound);
            }
        };
        // Subscribed before the facts are read: a revocation that commits after this point
        // reaches the stream, one before it is in the facts.
        let signals = inner.signals.subscribe();
        let size = subject.size();
        let requested = RangeRequest::parse(range).and_then(|r| r.resolve(size));
        let (byte_range, partial) = match requested {
            Ok(ok) => (Some(ok.0), ok.1),
            Err(_) => (None, false),
        };
        let (offset, len) = byte_range.and_then(|r| r.resolve(size)).unwrap_or((0, 0));
        let link = Link {
            user: link_user,
            client: claims.cip,
        };

        // Everything but the bytes used is read before the transaction, which then needs no
        // second connection (a pool full of transactions waiting for one lock would wait for
        // ever); the bytes used are read under the lock of the user's row for the file.
        let mut facts = self
            .facts(principal, &subject, client, Some(link), 0, len)
            .await?;
        let mut tx = inner.db.begin_write().await?;
        downloads::lock_quota(&mut tx, principal.user_id.0, subject.file.id, now).await?;
        let fresh = now - self.stale_after();
        facts.used_bytes =
            downloads::used_bytes(&mut tx, principal.user_id.0, subject.file.id, fresh, None)
                .await?;
        let refused = match authorize(principal, Action::DownloadFile, &Resource::Download(&facts))
        {
            Err(denied) => Some((DeliveryError::Denied(denied), denied.0)),
            Ok(()) => requested.err().map(|e| {
                (
                    DeliveryError::Range(e),
                    Reason::new("the Range header was refused"),
                )
            }),
        };
        if let Some((error, reason)) = refused {
            drop(tx);
            let event = AccessEvent::new(
                Actor::User(principal.user_id.0),
                Logged::DownloadRefused,
                subject.target(),
                Outcome::Denied,
            )
            .with_reason(reason)
            .with_client(client);
            self.append(&event).await?;
            return Err(error);
        }
        let transfer = NewTransfer {
            id: Uuid::new_v4(),
            user: principal.user_id.0,
            file: subject.file.id,
            release: subject.release.row.id.0,
            start: offset,
            len,
        };
        downloads::insert_transfer(&mut tx, &transfer, now).await?;
        let started = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::DownloadStarted,
            subject.target(),
            Outcome::Granted,
        )
        .with_client(client);
        let committed = async {
            inner.audit.record(&mut tx, &started).await.ok()?;
            tx.commit().await.ok()
        };
        if committed.await.is_none() {
            return Err(DeliveryError::Unavailable("the access log"));
        }

        let key = ObjectKey::parse(&subject.file.object_key)
            .map_err(|_| DeliveryError::Unavailable("the object store"))?;
        let object = match inner.store.get(&key, byte_range).await {
            Ok(object) if object.offset == offset && object.len == len => object,
            outcome => {
                if let Err(error) = &outcome {
                    tracing::error!(%error, file = %subject.file.id, "cannot open a file to serve");
                }
                let failed = TransferEnd {
                    sent: 0,
                    state: TransferState::Aborted,
                    reason: Some(Reason::new("the object store could not serve the file")),
                };
                self.finish(&transfer, principal, &subject, client, failed)
                    .await;
                return Err(DeliveryError::Unavailable("the object store"));
            }
        };
        Ok(Transfer {
            service: self.clone(),
            context: TransferContext {
                principal: principal.clone(),
                client: client.clone(),
                link,
                record: transfer,
                subject,
                partial,
            },
            body: object.body,
            signals,
        })
    }

    fn stale_after(&self) -> Duration {
        // A transfer whose server stopped heartbeating for five intervals is dead; what it had
        // sent by its last heartbeat still counts.
        Duration::from_secs(self.inner.settings.recheck_secs.saturating_mul(5))
    }

    async fn used_bytes(
        &self,
        user: UserId,
        file: Uuid,
        except: Option<Uuid>,
    ) -> Result<u64, DeliveryError> {
        let fresh = self.inner.clock.now() - self.stale_after();
        let mut conn = self.inner.db.pool().acquire().await?;
        Ok(downloads::used_bytes(&mut conn, user.0, file, fresh, except).await?)
    }

    async fn subject(&self, file: Uuid) -> Result<Option<Subject>, DeliveryError> {
        let Some((release, file)) = extracts::file(&self.inner.db, file).await? else {
            return Ok(None);
        };
        let Some(release) = self.inner.releases.record(ReleaseId(release)).await? else {
            return Ok(None);
        };
        Ok(Some(Subject { file, release }))
    }

    /// The facts a download of `subject` by `principal` is decided on.
    async fn facts(
        &self,
        principal: &Principal,
        subject: &Subject,
        client: &Client,
        link: Option<Link>,
        used_bytes: u64,
        requested_bytes: u64,
    ) -> Result<DownloadFacts, DeliveryError> {
        let release = &subject.release;
        let scopes = [
            RevocationScope::User(principal.user_id.0),
            RevocationScope::Organization(principal.org_id.0),
            RevocationScope::Release(release.row.id.0),
            RevocationScope::File(subject.file.id),
        ];
        let revoked = downloads::revoked(&self.inner.db, &scopes).await?;
        let dua = release.dua_terms()?.map(|dua| dua.terms().clone());
        Ok(DownloadFacts {
            release: release.facts(),
            status: release.row.status,
            dua,
            link_user: link.map(|l| l.user),
            link_client: link.and_then(|l| l.client),
            revoked,
            file_bytes: subject.size(),
            used_bytes,
            requested_bytes,
            client: client.addr,
            today: self.inner.clock.now().date(),
        })
    }

    /// Whether a running transfer may go on: the same decision as its start, on facts read
    /// now, its own reservation left out of what is used.
    async fn still_allowed(
        &self,
        transfer: &TransferContext,
    ) -> Result<Result<(), Denied>, DeliveryError> {
        let Some(subject) = self.subject(transfer.subject.file.id).await? else {
            return Ok(Err(Denied::because(Reason::new(
                "the file no longer exists",
            ))));
        };
        let used = self
            .used_bytes(
                transfer.principal.user_id,
                subject.file.id,
                Some(transfer.record.id),
            )
            .await?;
        let facts = self
            .facts(
                &transfer.principal,
                &subject,
                &transfer.client,
                Some(transfer.link),
                used,
                transfer.record.len,
            )
            .await?;
        Ok(authorize(
            &transfer.principal,
            Action::DownloadFile,
            &Resource::Download(&facts),
        ))
    }

    /// Ends a transfer: its state and bytes with its event, in one transaction. A failure is
    /// logged; the transfer's stale heartbeat then counts what it had sent.
    async fn finish(
        &self,
        transfer: &NewTransfer,
        principal: &Principal,
        subject: &Subject,
        client: &Client,
        end: TransferEnd,
    ) {
        let (action, outcome) = match end.state {
            TransferState::Completed => (Logged::DownloadCompleted, Outcome::Succeeded),
            TransferState::Aborted => (Logged::DownloadAborted, Outcome::Failed),
            TransferState::Cut | TransferState::Running => (Logged::DownloadCut, Outcome::Denied),
        };
        let mut event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            action,
            subject.target(),
            outcome,
        )
        .with_client(client)
        .with_count(end.sent);
        event.reason = end.reason;
        let inner = &self.inner;
        let result: Result<(), DeliveryError> = async {
            let mut tx = inner.db.begin_write().await?;
            let now = inner.clock.now();
            downloads::finish_transfer(&mut tx, transfer.id, end.sent, end.state, now).await?;
            inner
                .audit
                .record(&mut tx, &event)
                .await
                .map_err(|_| DeliveryError::Unavailable("the access log"))?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::error!(%error, transfer = %transfer.id, "cannot record the end of a download");
        }
    }

    async fn append(&self, event: &AccessEvent) -> Result<(), DeliveryError> {
        self.inner
            .audit
            .append(event)
            .await
            .map(|_| ())
            .map_err(|_| DeliveryError::Unavailable("the access log"))
    }
}

/// A refusal event for `principal` on `target`.
fn refusal(principal: &Principal, target: Target, denied: Denied, client: &Client) -> AccessEvent {
    AccessEvent::new(
        Actor::User(principal.user_id.0),
        Logged::DownloadRefused,
        target,
        Outcome::Denied,
    )
    .with_reason(denied.0)
    .with_client(client)
}

/// What a link binds a download to.
#[derive(Debug, Clone, Copy)]
struct Link {
    user: UserId,
    client: Option<IpAddr>,
}

/// How a transfer ended.
struct TransferEnd {
    sent: u64,
    state: TransferState,
    reason: Option<Reason>,
}

/// A download that passed every check and whose `download_started` event is committed.
pub struct Transfer {
    service: DeliveryService,
    context: TransferContext,
    body: crate::storage::ObjectBody,
    signals: broadcast::Receiver<RevocationScope>,
}

/// Who receives what, for re-checking and recording a transfer.
struct TransferContext {
    principal: Principal,
    client: Client,
    link: Link,
    record: NewTransfer,
    subject: Subject,
    partial: bool,
}

impl TransferContext {
    fn concerns(&self, scope: RevocationScope) -> bool {
        match scope {
            RevocationScope::User(id) => id == self.principal.user_id.0,
            RevocationScope::Organization(id) => id == self.principal.org_id.0,
            RevocationScope::Release(id) => id == self.record.release,
            RevocationScope::File(id) => id == self.record.file,
        }
    }
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.context;
        f.debug_struct("Transfer")
            .field("id", &c.record.id)
            .field("file", &c.subject.file.id)
            .field("offset", &c.record.start)
            .field("len", &c.record.len)
            .finish_non_exhaustive()
    }
}

/// A large chunk's bytes with its share of the budget, returned when the bytes are dropped.
struct Budgeted {
    buffer: Vec<u8>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

/// A chunk of the body, or the error that ends it mid-file (a cut).
pub type BodyChunk = Result<Bytes, std::io::Error>;

impl Transfer {
    /// The file being sent.
    pub fn file(&self) -> &ExtractFileRow {
        &self.context.subject.file
    }

    /// The whole file's size.
    pub fn size(&self) -> u64 {
        self.context.subject.size()
    }

    /// First byte sent.
    pub fn offset(&self) -> u64 {
        self.context.record.start
    }

    /// Bytes that will be sent.
    pub fn len(&self) -> u64 {
        self.context.record.len
    }

    /// Whether nothing will be sent (never, for a started transfer: ranges select a byte).
    pub fn is_empty(&self) -> bool {
        self.context.record.len == 0
    }

    /// Whether the request asked for a range (answered 206).
    pub fn is_partial(&self) -> bool {
        self.context.partial
    }

    /// Streams the transfer: a task reads the object chunk by chunk into a channel of one
    /// chunk (so a slow client slows the read: back-pressure, bounded memory), watches the
    /// access signal and the re-check timer, and records how it ended.
    pub fn stream(self) -> mpsc::Receiver<BodyChunk> {
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(self.run(sender));
        receiver
    }

    async fn run(self, sender: mpsc::Sender<BodyChunk>) {
        crate::metrics::download_stream(1.0);
        let _active = ActiveStream;
        let service = self.service.clone();
        let ctx = self.context;
        let mut body = self.body;
        let mut signals = self.signals;
        let recheck = Duration::from_secs(service.inner.settings.recheck_secs);
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + recheck, recheck);
        let mut sent: u64 = 0;
        let mut chunk_bytes = MIN_CHUNK_BYTES;
        let end = loop {
            if sent == ctx.record.len {
                // Every byte is handed to the connection; dropping the sender ends the body.
                break TransferEnd {
                    sent,
                    state: TransferState::Completed,
                    reason: None,
                };
            }
            let waiting_since = std::time::Instant::now();
            let mut recheck_now = false;
            tokio::select! {
                biased;
                signal = signals.recv() => {
                    recheck_now = match signal {
                        Ok(scope) => ctx.concerns(scope),
                        // Missed signals: re-check, one of them may have been ours.
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => false,
                    };
                }
                _ = timer.tick() => {
                    let now = service.inner.clock.now();
                    if let Err(error) = downloads::heartbeat(&service.inner.db, ctx.record.id, sent, now).await {
                        tracing::warn!(%error, "cannot record a download's progress");
                    }
                    recheck_now = true;
                }
                permit = sender.reserve() => {
                    let Ok(permit) = permit else {
                        break TransferEnd { sent, state: TransferState::Aborted, reason: None };
                    };
                    // A client that took the last chunk at once gets a larger one next; one
                    // that made the stream wait gets small ones (memory per slow reader).
                    chunk_bytes = if waiting_since.elapsed() < FAST_CLIENT {
                        (chunk_bytes * 2).min(MAX_CHUNK_BYTES)
                    } else {
                        MIN_CHUNK_BYTES
                    };
                    let mut want = usize::try_from(ctx.record.len - sent)
                        .unwrap_or(chunk_bytes)
                        .min(chunk_bytes);
                    // A large chunk holds its share of the budget until the connection has
                    // written it (the permit lives in the chunk's bytes).
                    let units = u32::try_from(want.div_ceil(MIN_CHUNK_BYTES)).unwrap_or(u32::MAX);
                    let budget = if want > MIN_CHUNK_BYTES {
                        service.inner.large_chunks.clone().try_acquire_many_owned(units).ok()
                    } else {
                        None
                    };
                    if want > MIN_CHUNK_BYTES && budget.is_none() {
                        want = MIN_CHUNK_BYTES;
                        chunk_bytes = MIN_CHUNK_BYTES;
                    }
                    // Read into a buffer of its own, handed over without a copy; nothing is held
                    // while the task waits for the connection.
                    let mut buffer = vec![0u8; want];
                    match body.read(&mut buffer).await {
                        Ok(0) => break TransferEnd {
                            sent,
                            state: TransferState::Aborted,
                            reason: Some(Reason::new("the stored object ended early")),
                        },
                        Ok(n) => {
                            buffer.truncate(n);
                            let chunk = match budget {
                                Some(permit) => Bytes::from_owner(Budgeted { buffer, _permit: permit }),
                                None => Bytes::from(buffer),
                            };
                            permit.send(Ok(chunk));
                            sent += n as u64;
                            crate::metrics::download_bytes(n as u64);
                        }
                        Err(error) => {
                            tracing::error!(%error, "reading a stored object failed mid-download");
                            permit.send(Err(error));
                            break TransferEnd {
                                sent,
                                state: TransferState::Aborted,
                                reason: Some(Reason::new("the object store failed mid-file")),
                            };
                        }
                    }
                }
            }
            if recheck_now {
                match service.still_allowed(&ctx).await {
                    Ok(Ok(())) => {}
                    Ok(Err(denied)) => {
                        let cut = std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            "access was revoked",
                        );
                        let _ = sender.try_send(Err(cut));
                        break TransferEnd {
                            sent,
                            state: TransferState::Cut,
                            reason: Some(denied.0),
                        };
                    }
                    Err(error) => {
                        // A re-check that cannot be made is not a yes: fail closed.
                        tracing::error!(%error, "cannot re-check a download; cutting it");
                        let _ = sender.try_send(Err(std::io::Error::other("re-check failed")));
                        break TransferEnd {
                            sent,
                            state: TransferState::Cut,
                            reason: Some(Reason::new("access could not be re-checked")),
                        };
                    }
                }
            }
        };
        drop(sender);
        service
            .finish(&ctx.record, &ctx.principal, &ctx.subject, &ctx.client, end)
            .await;
    }
}

/// Counts a download stream as active until dropped, however its task ends.
struct ActiveStream;

impl Drop for ActiveStream {
    fn drop(&mut self) {
        crate::metrics::download_stream(-1.0);
    }
}
