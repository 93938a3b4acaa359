//! Destruction demands (seed 001 sections 3.3 K, 4.3 K): the executive director demands that a
//! release's data be destroyed (or the DUA's end does, where configured); the server erases its
//! own copies and issues a signed certificate; the DUA's responsible person attests, user by
//! user, that every copy the access log says was downloaded is gone. Both done, the release is
//! `destroyed`.
//!
//! - **Demand** ([`DestructionService::demand`]): one transaction moves the release to
//!   `destruction_demanded`, revokes all access to it (streams in flight are cut by the access
//!   signal), records the demand and queues the erase job, with their events.
//! - **Erase** ([`DestructionService::erase`], run by the durable job in `job.rs`): steps that
//!   each commit before the next starts and each do nothing when already done, so a job killed
//!   anywhere finishes on retry: record the plan (every object with its digest, the key ids);
//!   delete the wrapped release identity (the cryptographic erase) with the log's checkpoint of
//!   that moment; delete every object, every version; sign and store the certificate, built
//!   from those records only, so a retry issues the same one.
//! - **Attest** ([`DestructionService::attest`]): checked against who downloaded what.
//! - **Track** ([`DestructionService::tick`]): expiry, demands on expiry, resuming erase jobs,
//!   and a logged reminder (plus an optional hook command) for each demand past its deadline.

pub mod certificate;
pub mod job;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use self::certificate::{Certificate, ErasedObject, Plan, SignedCertificate, FORMAT, METHOD};
use crate::audit::sequencer::Sequencer;
use crate::audit::{
    review, AccessEvent, Action as Logged, AuditError, AuditLog, Client, Outcome, Reason, Target,
};
use crate::auth::{Action, AuthError, Authenticator, Resource};
use crate::clock::SharedClock;
use crate::config::ReleaseSettings;
use crate::crypto::signing::ServerSigner;
use crate::db::destruction::{self as rows, DemandRow};
use crate::db::downloads::{self, RevocationRow, RevocationScope};
use crate::db::signal::AccessSignals;
use crate::db::{extracts, users, Database, DbError};
use crate::domain::dua::MAX_DESTRUCTION_DAYS;
use crate::domain::release::{ReleaseId, ReleaseStatus, Transition};
use crate::jobs::{JobKind, JobQueue, QueueError};
use crate::release::{Caller, ReleaseRecord, ReleaseService, ServiceError};
use crate::storage::{KeyPrefix, ObjectKey, SharedStore, StoreError};

time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

/// Longest a reminder command may run.
const REMINDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest reason accepted, in characters.
const MAX_REASON_CHARS: usize = 2000;

/// Everything the destruction service can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum DestructionError {
    /// No such release (or the caller may not know it exists).
    #[error("no such release")]
    NotFound,
    /// The caller may not do this (the refusal is logged).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The release's files were never offered: nobody could hold its data.
    #[error("release {0} was never available: there is no delivered data to destroy")]
    NeverAvailable(ReleaseId),
    /// The release already has a destruction demand.
    #[error("destruction of release {0} has already been demanded")]
    AlreadyDemanded(ReleaseId),
    /// No demand exists yet.
    #[error("no destruction has been demanded for release {0}")]
    NoDemand(ReleaseId),
    /// The attestation was already accepted.
    #[error("the attestation of destruction for release {0} was already accepted")]
    AlreadyAttested(ReleaseId),
    /// The attestation does not match the access log.
    #[error("attestation refused: {0}")]
    Attestation(String),
    /// The certificate is not issued yet.
    #[error("the destruction certificate of release {0} is not issued yet; the erase job is still running")]
    NotCertified(ReleaseId),
    /// The release service refused (state, concurrency) or failed.
    #[error(transparent)]
    Release(#[from] ServiceError),
    /// Objects are still in the store after deletion (the job retries).
    #[error("{0} objects of the release remain in the store after deletion")]
    ObjectsRemain(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The access log could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Stored JSON does not parse back.
    #[error("stored destruction record is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for DestructionError {
    fn from(e: sqlx::Error) -> Self {
        DestructionError::Database(DbError::Sqlx(e))
    }
}

/// A demand as the director makes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemandRequest {
    /// Why, in the director's words (kept with the demand, never in the access log).
    #[serde(default)]
    pub reason: String,
    /// The last day for the recipient's attestation (required; checked after the caller is
    /// authorized, so a refusal does not depend on the body).
    #[serde(default, with = "iso_date::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub deadline: Option<Date>,
}

/// How a recipient destroyed their copies (NIST SP 800-88 Rev. 1 categories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisposalMethod {
    /// Overwritten by standard read/write commands.
    Clear,
    /// Purged (block erase, overwrite of every sector).
    Purge,
    /// Cryptographic erase: the key of an encrypted volume destroyed.
    CryptographicErase,
    /// The media physically destroyed.
    Destroy,
}

/// One user's copies, as the responsible person attests them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserDisposal {
    /// The user who downloaded.
    pub user: Uuid,
    /// The day their copies were destroyed.
    #[serde(with = "iso_date")]
    #[schema(value_type = String, format = Date)]
    pub destroyed_on: Date,
    /// How.
    pub method: DisposalMethod,
}

/// The recipient's certificate of destruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// One entry per user who downloaded any file of the release.
    #[serde(default)]
    pub users: Vec<UserDisposal>,
    /// That every copy, backups included, is gone.
    #[serde(default)]
    pub all_copies_destroyed: bool,
}

/// One user who received data of the release, from the access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The user.
    pub user: String,
    /// The files they received bytes of.
    pub files: Vec<String>,
    /// Bytes received, all files.
    pub bytes_received: i64,
    /// Their last download event.
    pub last_at: String,
    /// Where the bytes went.
    pub client_addrs: Vec<String>,
}

/// A demand and its progress, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemandView {
    /// The release.
    pub release: Uuid,
    /// Its lifecycle status.
    pub status: ReleaseStatus,
    /// A user id or `system`.
    pub demanded_by: String,
    /// When.
    pub demanded_at: String,
    /// The attestation's deadline.
    pub deadline: String,
    /// The director's reason.
    pub reason: String,
    /// Whether the erase job recorded its plan.
    pub planned: bool,
    /// When the release identity was erased.
    pub key_erased_at: Option<String>,
    /// Whether the certificate is issued.
    pub certificate_issued: bool,
    /// Who attested, and when.
    pub attested_by: Option<Uuid>,
    /// See `attested_by`.
    pub attested_at: Option<String>,
    /// Past the deadline without an attestation.
    pub overdue: bool,
    /// The users the attestation must cover: everyone the access log shows receiving data.
    pub holders: Vec<Holder>,
}

/// Where the erase job is; [`DestructionService::erase`] can stop after one step (to show in
/// tests that a job killed there finishes on retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EraseStep {
    /// The plan is recorded.
    Planned,
    /// The release identity is deleted.
    KeyErased,
    /// Every object is deleted.
    ObjectsDeleted,
    /// The certificate is issued.
    Certified,
}

/// Demands, the erase job's steps, certificates and attestations.
#[derive(Debug, Clone)]
pub struct DestructionService {
    inner: Arc<DestructionDeps>,
}

/// The services destruction works through.
#[derive(Debug, Clone)]
pub struct DestructionDeps {
    /// The database.
    pub db: Database,
    /// The object store.
    pub store: SharedStore,
    /// The access log.
    pub audit: AuditLog,
    /// Its sequencer (for the checkpoint at the erase).
    pub sequencer: Sequencer,
    /// The clock.
    pub clock: SharedClock,
    /// Authorization with logged refusals.
    pub auth: Authenticator,
    /// The server's signing key.
    pub signer: ServerSigner,
    /// The release lifecycle.
    pub releases: ReleaseService,
    /// The job queue (the erase job).
    pub jobs: JobQueue,
    /// The access signal (streams cut on revocation).
    pub signals: AccessSignals,
    /// Expiry and demand settings.
    pub settings: ReleaseSettings,
}

/// The object key prefix of everything stored for a release.
fn release_prefix(release: Uuid) -> Result<KeyPrefix, DestructionError> {
    Ok(KeyPrefix::parse(&format!("releases/{release}/")).map_err(StoreError::from)?)
}

fn rfc3339(t: OffsetDateTime) -> String {
    crate::db::timestamp::encode(t).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl DestructionService {
    /// The service over `deps`.
    pub fn new(deps: DestructionDeps) -> Self {
        Self {
            inner: Arc::new(deps),
        }
    }

    async fn record(&self, id: ReleaseId) -> Result<ReleaseRecord, DestructionError> {
        self.inner
            .releases
            .record(id)
            .await?
            .ok_or(DestructionError::NotFound)
    }

    /// Loads the release and authorizes a person for `action` on it (refusals logged); an id
    /// that matches no release is decided against facts that match nobody first, so "absent"
    /// and "not yours" answer alike. The server itself acts only where its callers say so.
    async fn load_checked(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        action: Action,
        route: &'static str,
        client: &Client,
    ) -> Result<ReleaseRecord, DestructionError> {
        let record = self.inner.releases.record(id).await?;
        if let Caller::Person(principal) = caller {
            let facts = record
                .as_ref()
                .map_or_else(crate::release::nobody_facts, ReleaseRecord::facts);
            self.inner
                .auth
                .check(principal, action, &Resource::Release(&facts), route, client)
                .await?;
        }
        record.ok_or(DestructionError::NotFound)
    }

    /// Demands destruction of a release: in one transaction the release moves to
    /// `destruction_demanded`, all access to it is revoked (streams in flight are cut), the
    /// demand is recorded and the erase job queued, each with its event.
    pub async fn demand(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        request: DemandRequest,
        route: &'static str,
        client: &Client,
    ) -> Result<DemandRow, DestructionError> {
        let inner = &self.inner;
        self.load_checked(
            caller,
            id,
            Action::TransitionRelease(Transition::DemandDestruction),
            route,
            client,
        )
        .await?;
        let reason = request.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(DestructionError::BadRequest(format!(
                "reason must be 1 to {MAX_REASON_CHARS} characters"
            )));
        }
        let now = inner.clock.now();
        let latest = now.date() + time::Duration::days(i64::from(MAX_DESTRUCTION_DAYS));
        let Some(deadline) = request.deadline else {
            return Err(DestructionError::BadRequest(
                "deadline (YYYY-MM-DD) is required".into(),
            ));
        };
        if deadline < now.date() || deadline > latest {
            return Err(DestructionError::BadRequest(format!(
                "deadline must be between today ({}) and {latest}",
                now.date()
            )));
        }
        if rows::find(&inner.db, id.0).await?.is_some() {
            return Err(DestructionError::AlreadyDemanded(id));
        }
        let prepared = inner
            .releases
            .prepare_transition(
                caller,
                id,
                Transition::DemandDestruction,
                Some("destruction demanded"),
            )
            .await?;
        let scope = RevocationScope::Release(id.0);
        let revocation = RevocationRow {
            id: Uuid::new_v4(),
            scope,
            reason: format!("destruction demanded: {reason}"),
            created_by: caller.actor_text(),
            created_at: now,
            lifted_by: None,
            lifted_at: None,
        };
        let demand = DemandRow {
            release: id.0,
            demanded_by: caller.actor_text(),
            demanded_at: now,
            deadline: deadline.to_string(),
            reason: reason.to_owned(),
            revocation: revocation.id,
            plan_json: None,
            erased_at: None,
            checkpoint: None,
            deleted_at: None,
            certificate_json: None,
            certificate_signature: None,
            attestation_json: None,
            attested_by: None,
            attested_at: None,
            reminded_on: None,
        };
        let mut tx = inner.db.begin_write().await?;
        if !rows::was_available(&mut tx, id.0).await? {
            return Err(DestructionError::NeverAvailable(id));
        }
        let entry = inner
            .releases
            .apply_transition(&mut tx, caller, &prepared, client)
            .await?;
        downloads::insert_revocation(&mut tx, &revocation).await?;
        let revoked = AccessEvent::new(
            caller.actor(),
            Logged::AccessRevoked,
            Target::Revocation {
                id: revocation.id,
                release: Some(id.0),
                file: None,
            },
            Outcome::Succeeded,
        )
        .with_reason(Reason::new("release: destruction demanded"))
        .with_client(client);
        inner.audit.record(&mut tx, &revoked).await?;
        AccessSignals::notify_in(inner.db.backend(), &mut tx, scope).await?;
        if !rows::insert(&mut tx, &demand).await? {
            return Err(DestructionError::AlreadyDemanded(id));
        }
        inner
            .jobs
            .enqueue_in(&mut tx, JobKind::Destroy, id.0)
            .await?;
        let demanded = AccessEvent::new(
            caller.actor(),
            Logged::DestructionDemanded,
            Target::Release { id: id.0, entry },
            Outcome::Succeeded,
        )
        .with_client(client);
        inner.audit.record(&mut tx, &demanded).await?;
        commit(tx).await?;
        inner.signals.raise(scope);
        Ok(demand)
    }

    /// The demand and its progress, with the users the attestation must cover.
    pub async fn view(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        route: &'static str,
        client: &Client,
    ) -> Result<DemandView, DestructionError> {
        let record = self
            .load_checked(caller, id, Action::ReadDestruction, route, client)
            .await?;
        let demand = self.reload(id).await?;
        // Who holds data, from where, and the director's reason are for the agency and the
        // DUA's responsible person, not for every member of the recipient organization.
        let detail = match caller {
            Caller::Person(principal) => crate::auth::authorize(
                principal,
                Action::ReadDestructionDetail,
                &Resource::Release(&record.facts()),
            )
            .is_ok(),
            Caller::System => true,
        };
        self.log_read(caller, id, client).await?;
        let today = self.inner.clock.now().date().to_string();
        Ok(DemandView {
            release: id.0,
            status: record.row.status,
            demanded_by: demand.demanded_by.clone(),
            demanded_at: rfc3339(demand.demanded_at),
            overdue: demand.attestation_json.is_none() && demand.deadline < today,
            deadline: demand.deadline.clone(),
            reason: if detail {
                demand.reason.clone()
            } else {
                String::new()
            },
            planned: demand.plan_json.is_some(),
            key_erased_at: demand.erased_at.map(rfc3339),
            certificate_issued: demand.certified(),
            attested_by: demand.attested_by,
            attested_at: demand.attested_at.map(rfc3339),
            holders: if detail {
                self.holders(id.0).await?
            } else {
                Vec::new()
            },
        })
    }

    /// The signed certificate, once issued; reading it is logged.
    pub async fn certificate(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        route: &'static str,
        client: &Client,
    ) -> Result<SignedCertificate, DestructionError> {
        self.load_checked(caller, id, Action::ReadDestruction, route, client)
            .await?;
        let demand = self.reload(id).await?;
        let (Some(body), Some(signature)) = (demand.certificate_json, demand.certificate_signature)
        else {
            return Err(DestructionError::NotCertified(id));
        };
        let certificate: Certificate =
            serde_json::from_str(&body).map_err(|e| DestructionError::Corrupt(e.to_string()))?;
        self.log_read(caller, id, client).await?;
        Ok(SignedCertificate {
            certificate,
            signature,
        })
    }

    /// Every user the access log shows receiving bytes of the release, with what and when.
    pub async fn holders(&self, release: Uuid) -> Result<Vec<Holder>, DestructionError> {
        let mut by_user: BTreeMap<String, Holder> = BTreeMap::new();
        for holding in review::holders(&self.inner.db, release).await? {
            let holder = by_user
                .entry(holding.user_id.clone())
                .or_insert_with(|| Holder {
                    user: holding.user_id.clone(),
                    files: Vec::new(),
                    bytes_received: 0,
                    last_at: String::new(),
                    client_addrs: Vec::new(),
                });
            holder.files.push(holding.file_id.clone());
            holder.bytes_received += holding.bytes_received;
            if holding.last_at > holder.last_at {
                holder.last_at = holding.last_at.clone();
            }
            for addr in holding.client_addrs.split(',').filter(|a| !a.is_empty()) {
                if !holder.client_addrs.iter().any(|a| a == addr) {
                    holder.client_addrs.push(addr.to_owned());
                }
            }
        }
        // A download that started and never logged its end (its server died mid-stream) may
        // have delivered bytes: its user holds data too.
        for (user, file, at) in rows::download_starts(&self.inner.db, release).await? {
            let holder = by_user.entry(user.clone()).or_insert_with(|| Holder {
                user,
                files: Vec::new(),
                bytes_received: 0,
                last_at: String::new(),
                client_addrs: Vec::new(),
            });
            if !holder.files.contains(&file) {
                holder.files.push(file);
            }
            if at > holder.last_at {
                holder.last_at = at;
            }
        }
        Ok(by_user.into_values().collect())
    }

    /// Runs the erase job's steps for `id` up to `stop_after` (all of them when `None`); each
    /// step already done is skipped, so this is also the retry.
    pub async fn erase(
        &self,
        id: ReleaseId,
        stop_after: Option<EraseStep>,
    ) -> Result<DemandRow, DestructionError> {
        let inner = &self.inner;
        let release = id.0;
        let stop = |step| stop_after.is_some_and(|s| s == step);
        let mut demand = rows::find(&inner.db, release)
            .await?
            .ok_or(DestructionError::NoDemand(id))?;
        if demand.certified() {
            return Ok(demand);
        }
        if demand.plan_json.is_none() {
            let plan = self.plan(release).await?;
            let json = serde_json::to_string(&plan)
                .map_err(|e| DestructionError::Corrupt(e.to_string()))?;
            let mut tx = inner.db.begin_write().await?;
            if rows::set_plan(&mut tx, release, &json).await? {
                let event = system_event(Logged::DestructionPlanned, release)
                    .with_count(plan.objects.len() as u64);
                inner.audit.record(&mut tx, &event).await?;
            }
            commit(tx).await?;
            demand = self.reload(id).await?;
        }
        if stop(EraseStep::Planned) {
            return Ok(demand);
        }
        if demand.erased_at.is_none() {
            // The checkpoint covers every event committed so far: the demand and the plan.
            inner.sequencer.integrate_all().await?;
            let checkpoint = inner.sequencer.checkpoint_now().await?.note;
            let mut tx = inner.db.begin_write().await?;
            rows::delete_release_key(&mut tx, release).await?;
            if rows::set_erased(&mut tx, release, inner.clock.now(), &checkpoint).await? {
                let event = system_event(Logged::ReleaseKeyErased, release);
                inner.audit.record(&mut tx, &event).await?;
            }
            commit(tx).await?;
            demand = self.reload(id).await?;
        }
        // Deleted rows must not linger in the database's files (see `Database::scrub`); on
        // every attempt, since one that died after the erase committed may not have run it.
        inner.db.scrub().await?;
        if stop(EraseStep::KeyErased) {
            return Ok(demand);
        }
        let plan = plan_of(&demand)?;
        if demand.deleted_at.is_none() {
            let deleted = self.delete_objects(release, &plan).await?;
            let mut tx = inner.db.begin_write().await?;
            if rows::set_deleted(&mut tx, release, inner.clock.now()).await? {
                let event =
                    system_event(Logged::ReleaseObjectsDeleted, release).with_count(deleted);
                inner.audit.record(&mut tx, &event).await?;
            }
            commit(tx).await?;
            demand = self.reload(id).await?;
        }
        if stop(EraseStep::ObjectsDeleted) {
            return Ok(demand);
        }
        let signed = self.compose(&demand, plan).sign(&inner.signer);
        let body = String::from_utf8(signed.certificate.canonical())
            .map_err(|e| DestructionError::Corrupt(e.to_string()))?;
        let confirm = self.prepare_confirm(id).await?;
        let mut tx = inner.db.begin_write().await?;
        if rows::set_certificate(&mut tx, release, &body, &signed.signature).await? {
            let event = system_event(Logged::DestructionCertificateIssued, release);
            inner.audit.record(&mut tx, &event).await?;
            self.confirm_if_complete(&mut tx, id, confirm).await?;
        }
        commit(tx).await?;
        self.reload(id).await
    }

    /// Logs that `caller` read the demand or its certificate.
    async fn log_read(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        client: &Client,
    ) -> Result<(), DestructionError> {
        let event = AccessEvent::new(
            caller.actor(),
            Logged::DestructionCertificateRead,
            Target::Release { id: id.0, entry: 0 },
            Outcome::Succeeded,
        )
        .with_client(client);
        self.inner.audit.append(&event).await?;
        Ok(())
    }

    /// The release's demand.
    async fn reload(&self, id: ReleaseId) -> Result<DemandRow, DestructionError> {
        rows::find(&self.inner.db, id.0)
            .await?
            .ok_or(DestructionError::NoDemand(id))
    }

    /// Everything the release has in the store (recorded extract files with their recorded
    /// digests; anything else under its prefix, hashed now) and its key ids.
    async fn plan(&self, release: Uuid) -> Result<Plan, DestructionError> {
        let inner = &self.inner;
        let mut objects: BTreeMap<String, ErasedObject> = BTreeMap::new();
        for file in extracts::files(&inner.db, release).await? {
            objects.insert(
                file.object_key.clone(),
                ErasedObject {
                    key: file.object_key,
                    sha256: file.ciphertext_sha256,
                    bytes: u64::try_from(file.ciphertext_bytes).unwrap_or(0),
                },
            );
        }
        for key in inner.store.stored_keys(&release_prefix(release)?).await? {
            if objects.contains_key(key.as_str()) {
                continue;
            }
            // A key hidden behind a delete marker has no current bytes to hash: it is listed
            // with the digest of nothing, and every version of it is deleted all the same.
            let (sha256, bytes) = match self.digest(&key).await {
                Ok(found) => found,
                Err(DestructionError::Store(StoreError::NotFound(_))) => {
                    (hex::encode(Sha256::digest([])), 0)
                }
                Err(e) => return Err(e),
            };
            objects.insert(
                key.as_str().to_owned(),
                ErasedObject {
                    key: key.as_str().to_owned(),
                    sha256,
                    bytes,
                },
            );
        }
        let keys = extracts::wrapped_key(&inner.db, release)
            .await?
            .map(|k| k.recipient)
            .into_iter()
            .collect();
        let record = self.record(ReleaseId(release)).await?;
        let organization = users::find_org(&inner.db, &record.row.org_id.to_string())
            .await?
            .map_or_else(|| record.row.org_id.to_string(), |o| o.name);
        Ok(Plan {
            organization,
            dua: record.dua.as_ref().map(|d| d.number.clone()),
            objects: objects.into_values().collect(),
            keys,
        })
    }

    /// SHA-256 and size of a stored object (ciphertext), streamed.
    async fn digest(&self, key: &ObjectKey) -> Result<(String, u64), DestructionError> {
        let mut object = self.inner.store.get(key, None).await?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = object
                .body
                .read(&mut buffer)
                .await
                .map_err(|source| StoreError::Body {
                    key: key.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            total += n as u64;
        }
        Ok((hex::encode(hasher.finalize()), total))
    }

    /// Deletes every planned object and anything else the store keeps under the release's
    /// prefix (every version and delete marker), aborts unfinished uploads, and checks that
    /// nothing is left; returns how many keys it found.
    async fn delete_objects(&self, release: Uuid, plan: &Plan) -> Result<u64, DestructionError> {
        let store = &self.inner.store;
        let prefix = release_prefix(release)?;
        let mut keys: BTreeSet<String> = plan.objects.iter().map(|o| o.key.clone()).collect();
        let found = store.stored_keys(&prefix).await?;
        keys.extend(found.iter().map(|k| k.as_str().to_owned()));
        for key in &keys {
            let key = ObjectKey::parse(key).map_err(StoreError::from)?;
            match store.delete(&key).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for upload in store.pending_uploads(&prefix).await? {
            store.abort_upload(&upload).await?;
        }
        let left = store.stored_keys(&prefix).await?;
        if !left.is_empty() {
            return Err(DestructionError::ObjectsRemain(left.len()));
        }
        Ok(found.len() as u64)
    }

    /// The certificate, from recorded facts only.
    fn compose(&self, demand: &DemandRow, plan: Plan) -> Certificate {
        Certificate {
            format: FORMAT.to_owned(),
            release: demand.release,
            organization: plan.organization,
            dua: plan.dua,
            demanded_by: demand.demanded_by.clone(),
            demanded_at: rfc3339(demand.demanded_at),
            deadline: demand.deadline.clone(),
            objects: plan.objects,
            keys_erased: plan.keys,
            method: METHOD.to_owned(),
            erased_at: demand.erased_at.map(rfc3339).unwrap_or_default(),
            performed_by: "Steward's erase job".to_owned(),
            log_checkpoint: demand.checkpoint.clone().unwrap_or_default(),
            signer: self.inner.signer.public_hex(),
        }
    }

    /// The `destroyed` transition, prepared while the release is `destruction_demanded`.
    async fn prepare_confirm(
        &self,
        id: ReleaseId,
    ) -> Result<Option<crate::release::PreparedTransition>, DestructionError> {
        match self
            .inner
            .releases
            .prepare_transition(
                Caller::System,
                id,
                Transition::ConfirmDestruction,
                Some("server erase certified and recipient attestation accepted"),
            )
            .await
        {
            Ok(prepared) => Ok(Some(prepared)),
            Err(ServiceError::Illegal(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// In the transaction that completed one side: when the other side is done too (read
    /// after this side's update, which holds the row), the release becomes `destroyed`.
    async fn confirm_if_complete(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: ReleaseId,
        prepared: Option<crate::release::PreparedTransition>,
    ) -> Result<(), DestructionError> {
        let demand = rows::find_in(tx, id.0)
            .await?
            .ok_or(DestructionError::NoDemand(id))?;
        if demand.certified() && demand.attestation_json.is_some() {
            if let Some(prepared) = prepared {
                self.inner
                    .releases
                    .apply_transition(tx, Caller::System, &prepared, &Client::default())
                    .await?;
            }
        }
        Ok(())
    }

    /// Accepts the responsible person's attestation when it covers exactly the users the
    /// access log shows receiving data, each after their last download; a refusal is logged
    /// with its reason and changes nothing.
    pub async fn attest(
        &self,
        caller: Caller<'_>,
        id: ReleaseId,
        attestation: Attestation,
        route: &'static str,
        client: &Client,
    ) -> Result<DemandRow, DestructionError> {
        let inner = &self.inner;
        self.load_checked(caller, id, Action::AttestDestruction, route, client)
            .await?;
        let Caller::Person(principal) = caller else {
            return Err(DestructionError::BadRequest(
                "only the DUA's responsible person attests destruction".into(),
            ));
        };
        let refuse = |reason: &'static str, message: String| async move {
            let event = AccessEvent::new(
                caller.actor(),
                Logged::DestructionAttestationRefused,
                Target::Release { id: id.0, entry: 0 },
                Outcome::Denied,
            )
            .with_reason(Reason::new(reason))
            .with_client(client);
            match inner.audit.append(&event).await {
                Ok(_) => DestructionError::Attestation(message),
                Err(e) => e.into(),
            }
        };
        let Some(demand) = rows::find(&inner.db, id.0).await? else {
            return Err(refuse(
                "no destruction demand",
                format!("no destruction has been demanded for release {id}"),
            )
            .await);
        };
        if demand.attestation_json.is_some() {
            return Err(DestructionError::AlreadyAttested(id));
        }
        if !attestation.all_copies_destroyed {
            return Err(refuse(
                "not every copy attested destroyed",
                "all_copies_destroyed must be true: every copy, backups included, must be gone"
                    .into(),
            )
            .await);
        }
        let today = inner.clock.now().date();
        let holders = self.holders(id.0).await?;
        let mut named = BTreeSet::new();
        for entry in &attestation.users {
            if !named.insert(entry.user) {
                return Err(refuse(
                    "a user named twice",
                    format!("user {} is named twice", entry.user),
                )
                .await);
            }
            let Some(holder) = holders.iter().find(|h| h.user == entry.user.to_string()) else {
                return Err(refuse(
                    "names a user who never downloaded",
                    format!(
                        "user {} never downloaded a file of release {id}, per the access log",
                        entry.user
                    ),
                )
                .await);
            };
            let last_download = holder.last_at.get(..10).unwrap_or_default();
            if entry.destroyed_on > today || entry.destroyed_on.to_string().as_str() < last_download
            {
                return Err(refuse(
                    "destruction date outside the possible range",
                    format!(
                        "user {}: destroyed_on {} must be between their last download ({last_download}) and today ({today})",
                        entry.user, entry.destroyed_on
                    ),
                )
                .await);
            }
        }
        let missing: Vec<&str> = holders
            .iter()
            .filter(|h| !named.iter().any(|u| u.to_string() == h.user))
            .map(|h| h.user.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(refuse(
                "omits a user who downloaded",
                format!(
                    "the access log shows downloads by {} not covered by the attestation",
                    missing.join(", ")
                ),
            )
            .await);
        }
        let json = serde_json::to_string(&attestation)
            .map_err(|e| DestructionError::Corrupt(e.to_string()))?;
        let confirm = self.prepare_confirm(id).await?;
        let mut tx = inner.db.begin_write().await?;
        if !rows::set_attestation(&mut tx, id.0, &json, principal.user_id.0, inner.clock.now())
            .await?
        {
            return Err(DestructionError::AlreadyAttested(id));
        }
        let event = AccessEvent::new(
            caller.actor(),
            Logged::DestructionAttested,
            Target::Release { id: id.0, entry: 0 },
            Outcome::Succeeded,
        )
        .with_count(attestation.users.len() as u64)
        .with_client(client);
        inner.audit.record(&mut tx, &event).await?;
        self.confirm_if_complete(&mut tx, id, confirm).await?;
        commit(tx).await?;
        self.reload(id).await
    }

    /// One round of the scheduled work: expire releases past their DUA, demand destruction of
    /// those (where configured), queue the erase job again for every uncertified demand whose
    /// job ended, and log a reminder for each demand past its deadline.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<TickReport, DestructionError> {
        let inner = &self.inner;
        let mut report = TickReport::default();
        for expired in inner.releases.expire_due(now).await? {
            report.expired.push(expired.id);
        }
        // Every expired release once offered and not yet demanded, not only those expired in
        // this round: a round that stopped between the two changes leaves it to the next.
        if inner.settings.destruction_demand_on_expiry {
            for release in rows::expired_without_demand(&inner.db).await? {
                let id = ReleaseId(release);
                let record = self.record(id).await?;
                let deadline = match record.dua_terms()? {
                    Some(dua) => dua.destruction_due(),
                    None => now.date(),
                }
                .max(now.date());
                let request = DemandRequest {
                    reason: "the DUA's term ended".into(),
                    deadline: Some(deadline),
                };
                match self
                    .demand(
                        Caller::System,
                        id,
                        request,
                        "scheduled expiry",
                        &Client::default(),
                    )
                    .await
                {
                    Ok(_) => report.demanded.push(id),
                    Err(
                        DestructionError::NeverAvailable(_)
                        | DestructionError::AlreadyDemanded(_)
                        | DestructionError::Release(
                            ServiceError::Concurrent | ServiceError::Illegal(_),
                        ),
                    ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for release in rows::uncertified(&inner.db).await? {
            match inner.jobs.enqueue(JobKind::Destroy, release).await {
                Ok(_) => report.resumed.push(ReleaseId(release)),
                Err(QueueError::AlreadyActive { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let today = now.date().to_string();
        for demand in rows::overdue_unreminded(&inner.db, &today).await? {
            let mut tx = inner.db.begin_write().await?;
            if rows::set_reminded(&mut tx, demand.release, &today).await? {
                let event = system_event(Logged::DestructionOverdue, demand.release)
                    .with_reason(Reason::new("destruction attestation past its deadline"));
                inner.audit.record(&mut tx, &event).await?;
                commit(tx).await?;
                report.reminded.push(ReleaseId(demand.release));
                self.run_reminder_hook(&demand).await;
            }
        }
        Ok(report)
    }

    /// Runs the configured reminder command for an overdue demand (e-mail or a ticket is the
    /// agency's choice); its failure is logged and does not stop the round.
    async fn run_reminder_hook(&self, demand: &DemandRow) {
        let command = self.inner.settings.destruction_reminder_command.trim();
        if command.is_empty() {
            return;
        }
        // Only what the reminder needs: none of the server's environment (its secrets) and
        // at most a minute, so a hung command cannot stall the scheduled round.
        let child = tokio::process::Command::new(command)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("STEWARD_RELEASE", demand.release.to_string())
            .env("STEWARD_DEADLINE", &demand.deadline)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(REMINDER_TIMEOUT, child).await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => {
                tracing::warn!(release = %demand.release, status = %s, "destruction reminder command failed")
            }
            Ok(Err(error)) => {
                tracing::warn!(release = %demand.release, %error, "destruction reminder command did not run")
            }
            Err(_) => {
                tracing::warn!(release = %demand.release, "destruction reminder command timed out and was killed")
            }
        }
    }

    /// Runs [`DestructionService::tick`] every `expiry_check_secs` until the task is dropped.
    pub async fn run_schedule(self) {
        let period = std::time::Duration::from_secs(self.inner.settings.expiry_check_secs.max(1));
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            match self.tick(self.inner.clock.now()).await {
                Ok(report) if !report.is_empty() => tracing::info!(
                    expired = report.expired.len(),
                    demanded = report.demanded.len(),
                    resumed = report.resumed.len(),
                    reminded = report.reminded.len(),
                    "scheduled release work done"
                ),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "scheduled release work failed"),
            }
        }
    }
}

/// What one scheduled round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Releases moved to `expired`.
    pub expired: Vec<ReleaseId>,
    /// Destruction demanded on expiry.
    pub demanded: Vec<ReleaseId>,
    /// Erase jobs queued again.
    pub resumed: Vec<ReleaseId>,
    /// Overdue demands reminded.
    pub reminded: Vec<ReleaseId>,
}

impl TickReport {
    /// Whether the round did nothing.
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty()
            && self.demanded.is_empty()
            && self.resumed.is_empty()
            && self.reminded.is_empty()
    }
}

/// An event of the server's own about a release (the erase job's steps, reminders).
fn system_event(action: Logged, release: Uuid) -> AccessEvent {
    AccessEvent::new(
        crate::audit::Actor::System,
        action,
        Target::Release {
            id: release,
            entry: 0,
        },
        Outcome::Succeeded,
    )
}

fn plan_of(demand: &DemandRow) -> Result<Plan, DestructionError> {
    let json = demand
        .plan_json
        .as_deref()
        .ok_or_else(|| DestructionError::Corrupt("no plan recorded".into()))?;
    serde_json::from_str(json).map_err(|e| DestructionError::Corrupt(e.to_string()))
}

async fn commit(tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<(), DestructionError> {
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) if crate::db::is_write_conflict(&e) => {
            Err(DestructionError::Release(ServiceError::Concurrent))
        }
        Err(e) => Err(e.into()),
    }
}
