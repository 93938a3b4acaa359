//! The application's state: the services every interface (HTTPS, CLI) and every job reaches,
//! built once by `app::build_state`. It belongs to the application, not to one interface, so
//! the extract job takes it from here rather than from `http`.

use std::sync::Arc;

use crate::audit::sequencer::Sequencer;
use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::crypto::signing::ServerSigner;
use crate::db::Database;
use crate::release::ReleaseService;
use crate::storage::SharedStore;

/// What every handler and job can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub db: Database,
    /// The object store.
    pub store: SharedStore,
    /// The access log.
    pub audit: AuditLog,
    /// The access log's sequencer (positions, chain, tree, checkpoints).
    pub sequencer: Sequencer,
    /// The injected clock.
    pub clock: SharedClock,
    /// Identity and access.
    pub auth: Authenticator,
    /// The effective settings.
    pub settings: Arc<Settings>,
    /// The server's Ed25519 signing key (letters, manifests).
    pub signer: ServerSigner,
    /// Requests, the release lifecycle and DUAs.
    pub releases: ReleaseService,
    /// The master identity wrapping every release identity.
    pub master: Arc<crate::crypto::master::MasterIdentity>,
    /// The durable job queue.
    pub jobs: crate::jobs::JobQueue,
    /// Files, download links, streams and revocations.
    pub delivery: crate::delivery::DeliveryService,
    /// Destruction demands, the erase job, certificates and attestations.
    pub destruction: crate::destruction::DestructionService,
    /// Reviews of tables recipients mean to publish.
    pub publications: crate::disclosure::service::PublicationReviews,
}
