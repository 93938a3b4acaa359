//! `Application::build(settings)` wires the database, object store, access log and HTTPS
//! listener; `run_until_stopped` serves until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::sequencer::{Sequencer, SequencerConfig};
use crate::audit::{AccessEvent, Action, Actor, AuditError, AuditLog, Outcome, Target};
use crate::auth::{AuthError, Authenticator};
use crate::clock::SharedClock;
use crate::config::{ConfigError, Settings, TlsMode};
use crate::crypto::master::{MasterIdentity, MasterKeyError};
use crate::crypto::signing::ServerSigner;
use crate::crypto::JwtKeyring;
use crate::db::{ConnectOptions, Database, DbError};
use crate::destruction::job::DestructionExecutor;
use crate::destruction::{DestructionDeps, DestructionService};
use crate::extract::job::ExtractExecutor;
use crate::extract::probe::SourceRowProbe;
use crate::extract::JobControl;
use crate::http::server::{self, ServeOptions};
use crate::http::tls::{self, CertResolver, LocalCa, TlsError};
use crate::http::{self as web, AppState};
use crate::jobs::{
    ExecutionError, Job, JobExecutor, JobKind, JobQueue, Lease, Runner, RunnerConfig,
};
use crate::policy::{FileType, Policy};
use crate::release::ReleaseService;
use crate::storage::{self, SharedStore, StoreError};

/// Why Steward could not start; each names the component at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The metrics listener could not start.
    #[error("{0}")]
    Metrics(String),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database is unreachable, or its schema is wrong.
    #[error("database: {0}")]
    Database(#[from] DbError),
    /// The object store is unreachable or unusable.
    #[error("object store {store}: {source}")]
    Storage {
        /// Which store.
        store: String,
        /// The error.
        source: StoreError,
    },
    /// The certificate could not be loaded or made.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The start-up event could not be logged; Steward does not serve unlogged.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The JWT keyring or the password hasher could not be set up.
    #[error("identity and access: {0}")]
    Auth(#[from] AuthError),
    /// The server's signing key could not be loaded or generated.
    #[error("signing key: {0}")]
    Signing(#[from] crate::crypto::signing::SigningError),
    /// The policy (catalog, dataset schemas, code lists) could not be loaded (boxed: its error
    /// is large and start-up errors travel by value).
    #[error("policy: {0}")]
    Policy(Box<crate::policy::PolicyError>),
    /// A configured extract source is unusable: it cannot be read, or its header lacks a
    /// column the dataset's schema lists.
    #[error("extract.sources.{dataset}: {problem}")]
    Source {
        /// The dataset.
        dataset: String,
        /// What is wrong (names and columns, never values).
        problem: String,
    },
    /// The master identity could not be loaded or made.
    #[error("master identity: {0}")]
    MasterKey(#[from] MasterKeyError),
    /// The shutdown signal handlers could not be installed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(std::io::Error),
}

/// A built, bound, not yet serving Steward.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    resolver: Arc<CertResolver>,
    local_ca: Option<LocalCa>,
}

impl Application {
    /// Connects to everything the settings name, migrates the database, loads or makes the
    /// certificate and binds the listener. Fails naming the first component that is unusable.
    pub async fn build(settings: Settings, clock: SharedClock) -> Result<Self, StartupError> {
        raise_open_file_limit();
        let state = build_state(settings, clock).await?;
        let settings = &state.settings;
        let (resolver, local_ca) = match settings.tls.mode {
            TlsMode::SelfSigned => {
                let (resolver, ca) = tls::self_signed(&settings.tls_dir())?;
                (resolver, Some(ca))
            }
            TlsMode::Files => {
                let (cert, key) = tls_files(settings)?;
                (CertResolver::from_files(cert, key)?, None)
            }
        };
        let resolver = Arc::new(resolver);
        let tls = tls::server_config(resolver.clone())?;
        let addr = settings.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            state,
            tls,
            resolver,
            local_ca,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients use; `localhost` matches the embedded certificate.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port())
    }

    /// The embedded CA, when the certificate is self-signed.
    pub fn local_ca(&self) -> Option<&LocalCa> {
        self.local_ca.as_ref()
    }

    /// Shared state, for tests and the job runner.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; in-flight requests then get the configured grace.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let state = self.state;
        let settings = state.settings.clone();
        state
            .audit
            .append(&AccessEvent::new(
                Actor::System,
                Action::ServerStarted,
                Target::Service,
                Outcome::Succeeded,
            ))
            .await?;
        if settings.tls.mode == TlsMode::Files {
            spawn_certificate_reloader(self.resolver.clone(), &settings)?;
        }
        // The scheduled release work (expiry, destruction demands on expiry, erase jobs
        // resumed, overdue reminders) and the access log's sequencer run beside the server and
        // stop with it.
        let expiry = tokio::spawn(state.destruction.clone().run_schedule());
        // Other replicas' revocations reach this process's streams (PostgreSQL only).
        let access_listener =
            tokio::spawn(state.delivery.signals().clone().listen(state.db.clone()));
        let (stop_sequencer, sequencer_stop) = tokio::sync::oneshot::channel::<()>();
        let sequencer = tokio::spawn(state.sequencer.clone().run(async {
            let _ = sequencer_stop.await;
        }));
        // In the embedded mode a job runner works beside the server; it stops once the server
        // has drained, and a job it was running is left to its lease (another runner retries).
        let (stop_runner, runner_stop) = tokio::sync::oneshot::channel::<()>();
        let runner = settings.jobs.run_in_serve.then(|| {
            let runner = extract_runner(&state, runner_owner("serve"));
            tokio::spawn(runner.run_until(async {
                let _ = runner_stop.await;
            }))
        });
        let options = ServeOptions {
            handshake_timeout: Duration::from_secs(settings.server.tls_handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(settings.server.header_read_timeout_secs),
            shutdown_grace: Duration::from_secs(settings.server.shutdown_grace_secs),
        };
        let audit = state.audit.clone();
        server::serve(
            self.listener,
            self.tls,
            web::router(state),
            options,
            shutdown,
        )
        .await;
        expiry.abort();
        access_listener.abort();
        // The receiver is gone only if the runner task already ended, which is fine.
        let _ = stop_runner.send(());
        if let Some(runner) = runner {
            if let Err(error) = runner.await {
                tracing::error!(%error, "job runner task failed");
            }
        }
        audit
            .append(&AccessEvent::new(
                Actor::System,
                Action::ServerStopped,
                Target::Service,
                Outcome::Succeeded,
            ))
            .await?;
        // The last round integrates the stop event too.
        let _ = stop_sequencer.send(());
        let _ = sequencer.await;
        Ok(())
    }
}

/// Everything Steward works with except the listener: the data directory (0700), the database
/// (connected and migrated), the object store (checked), the access log, identity and access,
/// the release service, the master identity and the job queue. `steward serve` and
/// `steward worker` share it.
pub async fn build_state(settings: Settings, clock: SharedClock) -> Result<AppState, StartupError> {
    // Everything that can be checked without touching the disk is, before anything is made.
    let policy = Arc::new(load_policy(&settings)?);
    check_sources(&settings, &policy, None)?;
    settings.check_policy_secrets()?;
    if let Some((key, path)) = settings.missing_configured_keys().into_iter().next() {
        return Err(StartupError::Config(ConfigError::Inconsistent {
            key,
            problem: format!(
                "{} does not exist (or holds no key); configured keys are never generated: make them with `steward keys init`",
                path.display()
            ),
        }));
    }
    create_private_dir(&settings.data_dir)?;
    let db = connect_database(&settings).await?;
    db.migrate().await?;
    let store = open_store(&settings).await?;
    {
        let (settings, policy, store) = (settings.clone(), policy.clone(), store.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            check_sources(&settings, &policy, Some((&store, &runtime)))
        })
        .await
        .map_err(|_| StartupError::Source {
            dataset: "*".into(),
            problem: "the source check stopped unexpectedly".into(),
        })??;
    }
    let audit = AuditLog::new(db.clone(), clock.clone());
    let auth = build_authenticator(&settings, &db, &audit, &clock).await?;
    let (signer, releases) = build_release_service(&settings, &db, &audit, &clock, &policy)?;
    let settings = Arc::new(settings);
    let releases = releases.with_row_probe(Arc::new(SourceRowProbe::new(
        settings.clone(),
        policy.clone(),
        store.clone(),
    )));
    let master = load_master(&settings)?;
    let jobs = JobQueue::new(db.clone(), clock.clone(), settings.queue_config());
    let sequencer = build_sequencer(&settings, &db, &clock, &signer);
    let signals = crate::db::signal::AccessSignals::new();
    let delivery = crate::delivery::DeliveryService::new(
        db.clone(),
        store.clone(),
        audit.clone(),
        clock.clone(),
        auth.clone(),
        releases.clone(),
        settings.downloads.clone(),
        signals.clone(),
    );
    let destruction = DestructionService::new(DestructionDeps {
        db: db.clone(),
        store: store.clone(),
        audit: audit.clone(),
        sequencer: sequencer.clone(),
        clock: clock.clone(),
        auth: auth.clone(),
        signer: signer.clone(),
        releases: releases.clone(),
        jobs: jobs.clone(),
        signals,
        settings: settings.releases.clone(),
    });
    let master = Arc::new(master);
    let publications = crate::disclosure::service::PublicationReviews::new(
        db.clone(),
        audit.clone(),
        clock.clone(),
        auth.clone(),
        releases.clone(),
        master.clone(),
    );
    Ok(AppState {
        delivery,
        destruction,
        publications,
        db,
        store,
        audit,
        sequencer,
        clock,
        auth,
        settings,
        signer,
        releases,
        master,
        jobs,
    })
}

/// The access log's sequencer, signing checkpoints with the server's key under the configured
/// origin.
pub fn build_sequencer(
    settings: &Settings,
    db: &Database,
    clock: &SharedClock,
    signer: &ServerSigner,
) -> Sequencer {
    let audit = &settings.audit;
    Sequencer::new(
        db.clone(),
        clock.clone(),
        Arc::new(CheckpointSigner::new(&audit.origin, signer.signing_key())),
        SequencerConfig {
            batch: 5000,
            checkpoint_every: audit.checkpoint_every,
            checkpoint_interval: Duration::from_secs(audit.checkpoint_secs),
            interval: Duration::from_millis(audit.sequencer_interval_ms),
            export_dir: Some(settings.checkpoint_export_dir()),
        },
    )
}

/// The runner timing the settings ask for.
pub fn runner_config(settings: &Settings) -> RunnerConfig {
    RunnerConfig {
        poll_interval: Duration::from_secs(settings.jobs.poll_secs),
        heartbeat_interval: Duration::from_secs(settings.jobs.heartbeat_secs),
    }
}

/// A runner name unique to this process: `<role>-<host>-<pid>`. Leases are fenced on it, so
/// two processes must never share one.
pub fn runner_owner(role: &str) -> String {
    // Linux exposes the host name here; elsewhere the environment's guess is good enough, since
    // the process id already makes the name unique on one machine.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{role}-{host}-{}", std::process::id())
}

/// Hands each job to the executor of its kind.
struct JobKinds {
    extract: ExtractExecutor,
    destroy: DestructionExecutor,
}

impl JobKinds {
    fn executor(&self, kind: JobKind) -> &dyn JobExecutor {
        match kind {
            JobKind::Extract => &self.extract,
            JobKind::Destroy => &self.destroy,
        }
    }
}

#[async_trait::async_trait]
impl JobExecutor for JobKinds {
    async fn execute(
        &self,
        job: &Job,
        lease: &Lease,
        control: Arc<JobControl>,
    ) -> Result<(), ExecutionError> {
        self.executor(job.kind).execute(job, lease, control).await
    }

    async fn abandoned(&self, job: &Job) -> Result<(), ExecutionError> {
        self.executor(job.kind).abandoned(job).await
    }

    async fn sweep_orphans(&self) -> Result<u64, ExecutionError> {
        self.extract.sweep_orphans().await
    }
}

/// A job runner over the state's queue: extract and erase jobs.
pub fn extract_runner(state: &AppState, owner: String) -> Runner {
    let executor = Arc::new(JobKinds {
        extract: ExtractExecutor::new(state),
        destroy: DestructionExecutor::new(state.destruction.clone()),
    }) as Arc<dyn JobExecutor>;
    Runner::new(
        state.jobs.clone(),
        executor,
        owner,
        runner_config(&state.settings),
    )
}

/// Opens the JWT keyring under the data directory (generating its first key) and wires the
/// authenticator.
pub async fn build_authenticator(
    settings: &Settings,
    db: &Database,
    audit: &AuditLog,
    clock: &SharedClock,
) -> Result<Authenticator, StartupError> {
    let now = u64::try_from(clock.now().unix_timestamp()).unwrap_or(0);
    let keyring = JwtKeyring::open(&settings.jwt_keys_dir(), now).map_err(AuthError::from)?;
    Ok(Authenticator::new(
        db.clone(),
        audit.clone(),
        clock.clone(),
        &settings.auth,
        keyring,
        Arc::new(load_master(settings)?),
    )
    .await?)
}

/// The master identity: configured (it must exist), or the default one, made on first start.
pub fn load_master(settings: &Settings) -> Result<MasterIdentity, StartupError> {
    Ok(
        if settings.keys.master_identity_file.as_os_str().is_empty() {
            MasterIdentity::load_or_generate(&settings.master_identity_path())?
        } else {
            MasterIdentity::load(&settings.master_identity_path())?
        },
    )
}

/// The shipped policy with the configured overrides.
pub fn load_policy(settings: &Settings) -> Result<Policy, StartupError> {
    Policy::load(&settings.policy_overrides()).map_err(|e| StartupError::Policy(Box::new(e)))
}

/// Checks configured extract sources against their datasets' schemas. Without a store: the path
/// sources (before anything is created), returning the datasets whose source is an object and
/// so could not be checked yet. With the store (on a blocking thread): those object sources
/// only, the paths having been read already.
pub fn check_sources(
    settings: &Settings,
    policy: &Policy,
    store: Option<(&SharedStore, &tokio::runtime::Handle)>,
) -> Result<Vec<FileType>, StartupError> {
    let mut unchecked = Vec::new();
    for name in settings.extract.sources.keys() {
        let problem = |problem: String| StartupError::Source {
            dataset: name.clone(),
            problem,
        };
        // Keys were checked to be file types when the settings were loaded.
        let file_type: FileType = name.parse().map_err(|e| problem(format!("{e}")))?;
        let schema = policy
            .schema(file_type)
            .ok_or_else(|| problem("no dataset schema".into()))?;
        let location = crate::extract::job::dataset_source(settings, file_type)
            .map_err(|e| problem(e.to_string()))?;
        if store.is_some() && matches!(location, crate::extract::SourceLocation::Path(_)) {
            continue;
        }
        let checked = crate::extract::check_source(&location, schema, store)
            .map_err(|e| problem(e.to_string()))?;
        if !checked {
            unchecked.push(file_type);
        }
    }
    Ok(unchecked)
}

/// Loads the signing key (generated on first start) and wires the release service over the
/// policy loaded at start-up.
pub fn build_release_service(
    settings: &Settings,
    db: &Database,
    audit: &AuditLog,
    clock: &SharedClock,
    policy: &Arc<Policy>,
) -> Result<(ServerSigner, ReleaseService), StartupError> {
    let signer = ServerSigner::load_or_generate(&settings.signing_key_path())?;
    let releases = ReleaseService::new(
        db.clone(),
        audit.clone(),
        clock.clone(),
        policy.clone(),
        signer.clone(),
    );
    Ok((signer, releases))
}

/// Connects to the configured database (without migrating).
pub async fn connect_database(settings: &Settings) -> Result<Database, StartupError> {
    let options = ConnectOptions {
        max_connections: settings.database.max_connections,
        sqlite_busy_timeout: Duration::from_millis(settings.database.sqlite_busy_timeout_ms),
        password: settings.database_password()?,
    };
    Ok(Database::connect(&settings.database_url(), &options).await?)
}

/// Opens the configured object store and checks that it answers.
pub async fn open_store(settings: &Settings) -> Result<SharedStore, StartupError> {
    let store = storage::from_settings(settings)
        .await
        .map_err(|source| StartupError::Storage {
            store: settings.storage.backend_name(),
            source,
        })?;
    store
        .check()
        .await
        .map_err(|source| StartupError::Storage {
            store: store.describe(),
            source,
        })?;
    Ok(store)
}

fn tls_files(settings: &Settings) -> Result<(&Path, &Path), ConfigError> {
    match (&settings.tls.cert_file, &settings.tls.key_file) {
        (Some(cert), Some(key)) => Ok((cert, key)),
        _ => Err(ConfigError::Inconsistent {
            key: "tls.cert_file",
            problem: "mode \"files\" needs both cert_file and key_file".into(),
        }),
    }
}

/// On SIGHUP, reloads the configured certificate; a bad file keeps the old one in service.
fn spawn_certificate_reloader(
    resolver: Arc<CertResolver>,
    settings: &Settings,
) -> Result<(), StartupError> {
    let (cert, key) = tls_files(settings)?;
    let (cert, key) = (cert.to_owned(), key.to_owned());
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| {
            StartupError::Tls(TlsError::Io {
                op: "listen for SIGHUP to reload",
                path: cert.clone(),
                source,
            })
        })?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match resolver.reload(&cert, &key) {
                Ok(()) => tracing::info!(
                    cert = %cert.display(),
                    fingerprint = %resolver.fingerprint(),
                    "certificate reloaded"
                ),
                Err(error) => {
                    tracing::error!(%error, "certificate reload failed; keeping the old one")
                }
            }
        }
    });
    Ok(())
}

/// `steward keys init`: every key and secret replicas and workers must share, made in a new
/// directory (0700, each file 0600); prints the settings that name them.
pub fn init_keys(dir: &Path, clock: SharedClock) -> Result<(), StartupError> {
    if dir.exists() {
        return Err(StartupError::Config(ConfigError::Inconsistent {
            key: "--dir",
            problem: format!(
                "{} exists; keys are made only in a new directory",
                dir.display()
            ),
        }));
    }
    create_private_dir(dir)?;
    let master = dir.join("master.age");
    let signing = dir.join("signing.key");
    let jwt = dir.join("jwt");
    let (linkage, optout) = (dir.join("linkage.secret"), dir.join("optout.secret"));
    MasterIdentity::load_or_generate(&master)?;
    ServerSigner::load_or_generate(&signing)?;
    let now = u64::try_from(clock.now().unix_timestamp()).unwrap_or(0);
    JwtKeyring::open(&jwt, now).map_err(AuthError::from)?;
    crate::config::generate_secret_file("policy.linkage_secret", &linkage)?;
    crate::config::generate_secret_file("policy.optout_secret", &optout)?;
    println!(
        "# Keys made in {}; give every replica and worker these settings:",
        dir.display()
    );
    println!("[keys]");
    println!("master_identity_file = {:?}", master.display().to_string());
    println!("signing_key_file = {:?}", signing.display().to_string());
    println!("jwt_keys_dir = {:?}", jwt.display().to_string());
    println!("[policy]");
    println!("linkage_secret_file = {:?}", linkage.display().to_string());
    println!("optout_secret_file = {:?}", optout.display().to_string());
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every connection holds a descriptor,
/// and a default soft limit (often 1024, sometimes 256) let a few hundred clients that never
/// finish their headers make the server refuse everyone else.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
}

/// Creates `dir` readable by its owner only: it holds the database and keys.
fn create_private_dir(dir: &Path) -> Result<(), StartupError> {
    let error = |source| StartupError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(error)
}
