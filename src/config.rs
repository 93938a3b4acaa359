//! Settings: embedded defaults (`config/default.toml`) <- `--config FILE` <- `STEWARD_*` env.
//!
//! Every struct refuses unknown keys, so a typo is an error naming the key and the file it came
//! from instead of a silently ignored setting. Secrets are `SecretString`; each may be given
//! inline or as a `*_file`, never both, and a secret file readable by group or others is refused.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The embedded defaults, compiled into the binary so a fresh machine needs no file.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override settings; `__` separates nesting levels.
const ENV_PREFIX: &str = "STEWARD_";

/// A configuration problem, always naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layered sources could not be merged into `Settings` (typo, wrong type, bad value).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The file given with `--config` does not exist or cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    File {
        /// The file named with `--config`.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A secret was given both inline and as a file.
    #[error("`{key}` and `{key}_file` are both set; give the secret one way only")]
    SecretTwice {
        /// Dotted key of the secret.
        key: String,
    },
    /// A secret file could not be read.
    #[error("cannot read secret file {path} for `{key}_file`: {source}")]
    SecretFile {
        /// Dotted key of the secret.
        key: String,
        /// The file named by `<key>_file`.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A secret file that group or others may read is refused: the secret may already be out.
    #[error("secret file {path} for `{key}_file` is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    SecretFileExposed {
        /// Dotted key of the secret.
        key: String,
        /// The file named by `<key>_file`.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Settings that parse but do not make sense together.
    #[error("invalid configuration: `{key}`: {problem}")]
    Inconsistent {
        /// Dotted key at fault.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Everything Steward can be configured with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory for the SQLite file, the local object store and the self-signed certificate.
    pub data_dir: PathBuf,
    /// The HTTPS listener.
    pub server: ServerSettings,
    /// The database.
    pub database: DatabaseSettings,
    /// The object store for encrypted extracts.
    pub storage: StorageSettings,
    /// Certificates.
    pub tls: TlsSettings,
    /// Logging.
    pub log: LogSettings,
    /// The level policy: catalog location and its secrets.
    pub policy: PolicySettings,
    /// Accounts, passwords, second factors, sessions and tokens.
    pub auth: AuthSettings,
    /// The release lifecycle: DUA expiry.
    pub releases: ReleaseSettings,
    /// The durable job queue and its runners.
    pub jobs: JobSettings,
    /// Extract jobs: where source datasets are.
    pub extract: ExtractSettings,
    /// Key files that live outside the database.
    pub keys: KeySettings,
    /// The access log's sequencer and signed checkpoints.
    pub audit: AuditSettings,
    /// Download links, streams and revocation.
    pub downloads: DownloadSettings,
    /// Prometheus metrics on a separate listener (off unless `listen` is set).
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// Prometheus metrics.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of the `/metrics` listener (plain HTTP: keep it on a private interface);
    /// unset, no metrics are served.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// Download links, streams and revocation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadSettings {
    /// Lifetime of a download link when the recipient asks for none, in seconds.
    pub link_ttl_secs: u64,
    /// Longest lifetime a recipient may ask for, in seconds.
    pub link_max_ttl_secs: u64,
    /// Every stream re-checks its authorization and records its progress this often, in
    /// seconds, whatever signal it did or did not receive.
    pub recheck_secs: u64,
}

/// The access log's sequencer and signed checkpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The log's name in its checkpoints (the C2SP origin line) and in the note key that signs
    /// them; unique per installation.
    pub origin: String,
    /// A signed checkpoint after this many new records...
    pub checkpoint_every: u64,
    /// ...or this many seconds after the last one, when any record is new.
    pub checkpoint_secs: u64,
    /// How often the sequencer looks for committed events, in milliseconds.
    pub sequencer_interval_ms: u64,
    /// Where every checkpoint is also written; empty means `data_dir/checkpoints`.
    #[serde(default)]
    pub export_dir: PathBuf,
    /// An event committed longer ago than this, in seconds, and still without a position fails
    /// `steward audit verify`.
    pub integration_deadline_secs: u64,
}

/// The durable job queue and its runners.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Whether `steward serve` also runs jobs (the embedded mode); production may run
    /// `steward worker` processes instead.
    pub run_in_serve: bool,
    /// Lease length: a runner that has not renewed its lease for this long loses the job.
    pub lease_secs: u64,
    /// How often a busy runner renews its lease (well under `lease_secs`).
    pub heartbeat_secs: u64,
    /// How often an idle runner looks for work.
    pub poll_secs: u64,
    /// Attempts before a job fails for good.
    pub max_attempts: i64,
    /// Back-off before the second attempt, doubled for each further one.
    pub backoff_base_secs: u64,
    /// Longest back-off.
    pub backoff_max_secs: u64,
}

/// Extract jobs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractSettings {
    /// Source file of each dataset, by file type (`med_claim = "/data/apcd/med_claim_2024.csv.zst"`);
    /// a value starting with `object:` names an object in the store instead of a path. Plain,
    /// `.gz` or `.zst` CSV.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, String>,
    /// Invalid source rows a dataset may drop (counted in the manifest) instead of failing the
    /// extract, by file type. Absent: none, the first invalid row fails the extract.
    #[serde(default)]
    pub invalid_rows: std::collections::BTreeMap<String, InvalidRowSettings>,
}

/// How many invalid rows one dataset may drop.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidRowSettings {
    /// Most rows dropped; 0 for no limit by count.
    #[serde(default)]
    pub max_rows: u64,
    /// Largest fraction (0 to 1) of the source's rows dropped; 0 for no limit by fraction.
    #[serde(default)]
    pub max_fraction: f64,
}

/// Key files that live outside the database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// The master age identity that wraps every release identity (0600); empty means
    /// `data_dir/keys/master.age`, generated on first start.
    pub master_identity_file: PathBuf,
    /// The server's Ed25519 signing key (manifests, letters, checkpoints, certificates);
    /// empty means `data_dir/keys/signing.key`, generated on first start. Replicas and
    /// workers share one (`steward keys init`), so that everything they sign verifies with the
    /// key any of them publishes.
    #[serde(default)]
    pub signing_key_file: PathBuf,
    /// Directory of the JWT signing keys; empty means `data_dir/keys/jwt`, with a key generated
    /// on first start. Replicas share one, so that a session from one is valid at the others.
    #[serde(default)]
    pub jwt_keys_dir: PathBuf,
}

/// The release lifecycle's scheduled work.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSettings {
    /// How often `serve` looks for releases past their DUA expiry, in seconds.
    pub expiry_check_secs: u64,
    /// Whether expiry also demands return or destruction of the data.
    pub destruction_demand_on_expiry: bool,
    /// A command run once a day for each destruction demand past its deadline without an
    /// attestation (with `STEWARD_RELEASE` and `STEWARD_DEADLINE` set), to send a reminder by
    /// the agency's own means; empty: the reminder is only the access-log event.
    pub destruction_reminder_command: String,
}

/// Accounts, passwords, second factors, sessions and tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `iss` of every token Steward signs, and the issuer shown by authenticator apps.
    pub issuer: String,
    /// Lifetime of an access token, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a sign-in session (and so of its refresh tokens), in seconds.
    pub session_ttl_secs: u64,
    /// Clock skew tolerated when checking `exp` and `nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// Shortest password accepted, in characters.
    pub password_min_length: usize,
    /// Argon2id memory cost, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Whether users holding only the recipient role must give a TOTP code too.
    pub require_totp_for_recipients: bool,
    /// Failed logins on one account before it is locked.
    pub max_failed_logins_per_account: u32,
    /// Failed logins from one client address before it is locked.
    pub max_failed_logins_per_address: u32,
    /// First lockout, in seconds; each further lockout doubles it.
    pub lockout_secs: u64,
    /// Longest lockout, in seconds.
    pub lockout_max_secs: u64,
    /// Lifetime of an API token when its creator names none, in days.
    pub api_token_default_ttl_days: u32,
    /// Longest lifetime an API token may be given, in days.
    pub api_token_max_ttl_days: u32,
    /// Requests without valid credentials from one client address logged one by one per
    /// minute; further ones are refused unjudged (429) and logged as one event with their count.
    pub refusals_logged_per_minute: u64,
}

/// The level policy's files and secrets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Dataset schema files replacing the shipped one of their file type
    /// (`med_claim = "/etc/steward/med_claim.toml"`); the rest stay as shipped.
    #[serde(default)]
    pub dataset_schemas: std::collections::BTreeMap<String, PathBuf>,
    /// Protected-category code-list files by category id (`hiv = "/etc/steward/hiv.toml"`),
    /// each defining that one category; it replaces the shipped one (or adds a new category).
    #[serde(default)]
    pub code_lists: std::collections::BTreeMap<String, PathBuf>,
    /// The population of each 3-digit ZIP area (`[population]`, `"021" = 1406829`), replacing
    /// the shipped table of seed 003; aggregate tables show a 3-digit ZIP only where more
    /// than 20,000 people live.
    #[serde(default)]
    pub zip3_population: Option<PathBuf>,
    /// Agency linkage secret keying replacement ids, inline.
    #[serde(default, serialize_with = "serialize_redacted")]
    pub linkage_secret: Option<SecretString>,
    /// Agency linkage secret, from a file.
    #[serde(default)]
    pub linkage_secret_file: Option<PathBuf>,
    /// Secret keying the opt-out registry's hashes, inline.
    #[serde(default, serialize_with = "serialize_redacted")]
    pub optout_secret: Option<SecretString>,
    /// Secret keying the opt-out registry's hashes, from a file.
    #[serde(default)]
    pub optout_secret_file: Option<PathBuf>,
}

/// The policy secrets, which are generated locally when not configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySecret {
    /// Keys replacement ids per recipient organization.
    Linkage,
    /// Keys the opt-out registry's hashes.
    OptOut,
}

impl PolicySecret {
    fn key(self) -> &'static str {
        match self {
            PolicySecret::Linkage => "policy.linkage_secret",
            PolicySecret::OptOut => "policy.optout_secret",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            PolicySecret::Linkage => "linkage.secret",
            PolicySecret::OptOut => "optout.secret",
        }
    }
}

/// The HTTPS listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to listen on (TLS only).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub request_body_limit_bytes: usize,
    /// Deadline for producing a response, in seconds.
    pub request_timeout_secs: u64,
    /// Deadline for a TLS handshake, in seconds.
    pub tls_handshake_timeout_secs: u64,
    /// Deadline for a request's headers once the connection is up (HTTP/1.1), in seconds: a
    /// client that never finishes them is dropped instead of holding a connection for good.
    pub header_read_timeout_secs: u64,
    /// How long in-flight requests may run on after a shutdown signal, in seconds.
    pub shutdown_grace_secs: u64,
}

/// The database.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://...` or `postgres://...`; empty means `steward.db` under the data directory.
    #[serde(serialize_with = "serialize_url_redacted")]
    pub url: String,
    /// PostgreSQL password, inline.
    #[serde(default, serialize_with = "serialize_redacted")]
    pub password: Option<SecretString>,
    /// PostgreSQL password, from a file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Pool size.
    pub max_connections: u32,
    /// SQLite lock wait, in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
}

// By hand: the URL may carry a password, which `Debug` output must not show.
impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url_password(&self.url))
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("max_connections", &self.max_connections)
            .field("sqlite_busy_timeout_ms", &self.sqlite_busy_timeout_ms)
            .finish()
    }
}

/// Which object store implementation holds the extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A local directory.
    Fs,
    /// An S3-compatible service.
    S3,
}

/// The object store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Which implementation to use.
    pub backend: StorageBackend,
    /// Multipart part size, in bytes.
    pub part_size_bytes: usize,
    /// Settings of the local directory store.
    pub fs: FsSettings,
    /// Settings of the S3 store; required when `backend = "s3"`.
    #[serde(default)]
    pub s3: Option<S3Settings>,
}

/// The local directory store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FsSettings {
    /// Root directory; empty means `objects/` under the data directory.
    pub root: PathBuf,
}

/// An S3-compatible store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Bucket holding every object Steward writes.
    pub bucket: String,
    /// Signing region.
    pub region: String,
    /// Endpoint URL; absent for AWS S3 itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted stores.
    #[serde(default)]
    pub force_path_style: bool,
    /// Access key id; absent (with the secret) to use the standard AWS credential chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key, inline.
    #[serde(default, serialize_with = "serialize_redacted")]
    pub secret_access_key: Option<SecretString>,
    /// Secret access key, from a file.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
}

/// Where the server certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Generate a CA and a localhost certificate on first start.
    SelfSigned,
    /// Load the configured chain and key; reload them on SIGHUP.
    Files,
}

/// Certificates.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Where the certificate comes from.
    pub mode: TlsMode,
    /// PEM chain, leaf first (mode `files`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (mode `files`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// A `tracing` filter directive.
    pub filter: String,
}

impl Settings {
    /// Loads defaults, then `file` if given, then `STEWARD_*` variables from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given explicitly so tests stay hermetic.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            // Check the file ourselves: figment would silently skip a missing one. The absolute
            // path makes figment's messages name the file unambiguously.
            let absolute = std::fs::canonicalize(path).map_err(|source| ConfigError::File {
                path: path.to_owned(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(absolute));
        }
        figment = figment.merge(env_provider(env));
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(render_figment_error(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: cross-field rules and secrets given twice.
    fn validate(&self) -> Result<(), ConfigError> {
        if !crate::audit::checkpoint::is_valid_origin(&self.audit.origin) {
            return Err(ConfigError::Inconsistent {
                key: "audit.origin",
                problem: "must be printable ASCII without spaces or `+`, such as \"steward.example.org/access-log\"".into(),
            });
        }
        let downloads = &self.downloads;
        if downloads.link_ttl_secs == 0
            || downloads.recheck_secs == 0
            || downloads.link_ttl_secs > downloads.link_max_ttl_secs
            || downloads.link_max_ttl_secs > 86_400
        {
            return Err(ConfigError::Inconsistent {
                key: "downloads",
                problem: "link_ttl_secs and recheck_secs must be positive, link_ttl_secs at most \
                          link_max_ttl_secs, and link_max_ttl_secs at most 86400 (a day)"
                    .into(),
            });
        }
        if self.audit.checkpoint_every == 0
            || self.audit.checkpoint_secs == 0
            || self.audit.sequencer_interval_ms == 0
        {
            return Err(ConfigError::Inconsistent {
                key: "audit",
                problem:
                    "checkpoint_every, checkpoint_secs and sequencer_interval_ms must be at least 1"
                        .into(),
            });
        }
        check_single_source(
            "database.password",
            &self.database.password,
            &self.database.password_file,
        )?;
        check_single_source(
            PolicySecret::Linkage.key(),
            &self.policy.linkage_secret,
            &self.policy.linkage_secret_file,
        )?;
        check_single_source(
            PolicySecret::OptOut.key(),
            &self.policy.optout_secret,
            &self.policy.optout_secret_file,
        )?;
        if self.storage.backend == StorageBackend::S3 {
            let Some(s3) = &self.storage.s3 else {
                return Err(ConfigError::Inconsistent {
                    key: "storage.s3",
                    problem: "backend is \"s3\" but the [storage.s3] table is missing".into(),
                });
            };
            if s3.bucket.is_empty() {
                return Err(ConfigError::Inconsistent {
                    key: "storage.s3.bucket",
                    problem: "must not be empty".into(),
                });
            }
            check_single_source(
                "storage.s3.secret_access_key",
                &s3.secret_access_key,
                &s3.secret_access_key_file,
            )?;
            let has_secret = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
            if s3.access_key_id.is_some() != has_secret {
                return Err(ConfigError::Inconsistent {
                    key: "storage.s3.access_key_id",
                    problem: "give both the access key id and its secret, or neither (standard AWS chain)".into(),
                });
            }
        }
        // S3 refuses parts under 5 MiB (except the last), so a smaller size would fail late.
        if self.storage.part_size_bytes < 5 * 1024 * 1024 {
            return Err(ConfigError::Inconsistent {
                key: "storage.part_size_bytes",
                problem: "must be at least 5242880 (5 MiB)".into(),
            });
        }
        if self.tls.mode == TlsMode::Files
            && (self.tls.cert_file.is_none() || self.tls.key_file.is_none())
        {
            return Err(ConfigError::Inconsistent {
                key: "tls.cert_file",
                problem: "mode \"files\" needs both cert_file and key_file".into(),
            });
        }
        if self.auth.password_min_length < 8 {
            return Err(ConfigError::Inconsistent {
                key: "auth.password_min_length",
                problem: "must be at least 8".into(),
            });
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.session_ttl_secs == 0 {
            return Err(ConfigError::Inconsistent {
                key: "auth.access_token_ttl_secs",
                problem: "token and session lifetimes must be at least 1 second".into(),
            });
        }
        if self.auth.api_token_default_ttl_days > self.auth.api_token_max_ttl_days {
            return Err(ConfigError::Inconsistent {
                key: "auth.api_token_default_ttl_days",
                problem: "must not exceed auth.api_token_max_ttl_days".into(),
            });
        }
        if self.jobs.heartbeat_secs == 0 || self.jobs.heartbeat_secs * 2 > self.jobs.lease_secs {
            return Err(ConfigError::Inconsistent {
                key: "jobs.heartbeat_secs",
                problem: "must be at least 1 and at most half of jobs.lease_secs".into(),
            });
        }
        if self.jobs.max_attempts < 1 || self.jobs.poll_secs == 0 {
            return Err(ConfigError::Inconsistent {
                key: "jobs.max_attempts",
                problem: "max_attempts and poll_secs must be at least 1".into(),
            });
        }
        if let Some(unknown) = self
            .extract
            .sources
            .keys()
            .find(|k| k.parse::<crate::policy::FileType>().is_err())
        {
            return Err(ConfigError::Inconsistent {
                key: "extract.sources",
                problem: format!("{unknown:?} is not a file type (med_claim, med_elig, ...)"),
            });
        }
        let file_type_keys = [
            (
                "extract.invalid_rows",
                self.extract.invalid_rows.keys().collect::<Vec<_>>(),
            ),
            (
                "policy.dataset_schemas",
                self.policy.dataset_schemas.keys().collect(),
            ),
        ];
        for (key, names) in file_type_keys {
            if let Some(unknown) = names
                .into_iter()
                .find(|k| k.parse::<crate::policy::FileType>().is_err())
            {
                return Err(ConfigError::Inconsistent {
                    key,
                    problem: format!("{unknown:?} is not a file type (med_claim, med_elig, ...)"),
                });
            }
        }
        if let Some((name, _)) = self
            .extract
            .invalid_rows
            .iter()
            .find(|(_, t)| !(0.0..=1.0).contains(&t.max_fraction))
        {
            return Err(ConfigError::Inconsistent {
                key: "extract.invalid_rows",
                problem: format!("{name}: max_fraction must be between 0 and 1"),
            });
        }
        if self.releases.expiry_check_secs == 0 {
            return Err(ConfigError::Inconsistent {
                key: "releases.expiry_check_secs",
                problem: "must be at least 1".into(),
            });
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Inconsistent {
                key: "database.max_connections",
                problem: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The agency's replacements for parts of the shipped policy.
    pub fn policy_overrides(&self) -> crate::policy::PolicyOverrides {
        crate::policy::PolicyOverrides {
            // File types were checked when the settings were loaded.
            dataset_schemas: self
                .policy
                .dataset_schemas
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect(),
            code_lists: self.policy.code_lists.clone(),
            zip3_population: self.policy.zip3_population.clone(),
        }
    }

    /// The invalid-row tolerance of one dataset.
    pub fn invalid_row_tolerance(
        &self,
        file_type: crate::policy::FileType,
    ) -> crate::extract::InvalidRowTolerance {
        let t = self
            .extract
            .invalid_rows
            .get(file_type.as_str())
            .copied()
            .unwrap_or_default();
        crate::extract::InvalidRowTolerance {
            max_rows: t.max_rows,
            max_fraction: t.max_fraction,
        }
    }

    /// The database URL, with the empty default resolved to a file under the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("steward.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// Root of the local object store.
    pub fn fs_store_root(&self) -> PathBuf {
        if self.storage.fs.root.as_os_str().is_empty() {
            self.data_dir.join("objects")
        } else {
            self.storage.fs.root.clone()
        }
    }

    /// Directory of the JWT signing keys (0700, each key a 0600 file).
    pub fn jwt_keys_dir(&self) -> PathBuf {
        if self.keys.jwt_keys_dir.as_os_str().is_empty() {
            self.data_dir.join("keys").join("jwt")
        } else {
            self.keys.jwt_keys_dir.clone()
        }
    }

    /// The master identity file (0600).
    pub fn master_identity_path(&self) -> PathBuf {
        if self.keys.master_identity_file.as_os_str().is_empty() {
            self.data_dir.join("keys").join("master.age")
        } else {
            self.keys.master_identity_file.clone()
        }
    }

    /// The job queue's timing.
    pub fn queue_config(&self) -> crate::jobs::QueueConfig {
        use std::time::Duration;
        crate::jobs::QueueConfig {
            lease: Duration::from_secs(self.jobs.lease_secs),
            max_attempts: self.jobs.max_attempts,
            backoff_base: Duration::from_secs(self.jobs.backoff_base_secs),
            backoff_max: Duration::from_secs(self.jobs.backoff_max_secs),
        }
    }

    /// The directory every signed checkpoint is also written to.
    pub fn checkpoint_export_dir(&self) -> PathBuf {
        if self.audit.export_dir.as_os_str().is_empty() {
            self.data_dir.join("checkpoints")
        } else {
            self.audit.export_dir.clone()
        }
    }

    /// The server's Ed25519 signing key file.
    pub fn signing_key_path(&self) -> PathBuf {
        if self.keys.signing_key_file.as_os_str().is_empty() {
            self.data_dir.join("keys").join("signing.key")
        } else {
            self.keys.signing_key_file.clone()
        }
    }

    /// Configured key files (master, signing, JWT) that do not exist. Steward generates keys
    /// only at their default places: a configured key that is missing is a wrong path or an
    /// unmounted secret, and a fresh key would not match the other replicas'.
    pub fn missing_configured_keys(&self) -> Vec<(&'static str, PathBuf)> {
        let jwt_missing = |dir: &std::path::Path| {
            std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
        };
        [
            (
                "keys.master_identity_file",
                &self.keys.master_identity_file,
                false,
            ),
            ("keys.signing_key_file", &self.keys.signing_key_file, false),
            ("keys.jwt_keys_dir", &self.keys.jwt_keys_dir, true),
        ]
        .into_iter()
        .filter(|(_, path, _)| !path.as_os_str().is_empty())
        .filter(|(_, path, dir)| {
            if *dir {
                jwt_missing(path)
            } else {
                !path.exists()
            }
        })
        .map(|(key, path, _)| (key, path.clone()))
        .collect()
    }

    /// Directory of the self-signed certificate and its CA.
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    /// A policy secret: as configured, or else the one generated (0600) under
    /// `data_dir/keys` on first use, so the embedded mode needs no setup. Production
    /// configures it, so every replica and worker uses the same one.
    pub fn policy_secret(&self, which: PolicySecret) -> Result<SecretString, ConfigError> {
        let (inline, file) = match which {
            PolicySecret::Linkage => (
                &self.policy.linkage_secret,
                &self.policy.linkage_secret_file,
            ),
            PolicySecret::OptOut => (&self.policy.optout_secret, &self.policy.optout_secret_file),
        };
        if let Some(secret) = resolve_secret(which.key(), inline, file)? {
            return Ok(secret);
        }
        let path = self.data_dir.join("keys").join(which.file_name());
        if !path.exists() {
            generate_secret_file(which.key(), &path)?;
        }
        read_secret_file(which.key(), &path)
    }

    /// Checks every configured policy secret (inline or file) as the jobs will use it:
    /// readable, owner-only, and at least 32 bytes. Generated ones are made right on first
    /// use and are not checked here, so nothing is created.
    pub fn check_policy_secrets(&self) -> Result<(), ConfigError> {
        for which in [PolicySecret::Linkage, PolicySecret::OptOut] {
            let (inline, file) = match which {
                PolicySecret::Linkage => (
                    &self.policy.linkage_secret,
                    &self.policy.linkage_secret_file,
                ),
                PolicySecret::OptOut => {
                    (&self.policy.optout_secret, &self.policy.optout_secret_file)
                }
            };
            if let Some(secret) = resolve_secret(which.key(), inline, file)? {
                if secret.expose_secret().len() < crate::policy::linkage::MIN_SECRET_LEN {
                    return Err(ConfigError::Inconsistent {
                        key: which.key(),
                        problem: format!(
                            "must be at least {} bytes",
                            crate::policy::linkage::MIN_SECRET_LEN
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The PostgreSQL password, from whichever source was configured.
    pub fn database_password(&self) -> Result<Option<SecretString>, ConfigError> {
        resolve_secret(
            "database.password",
            &self.database.password,
            &self.database.password_file,
        )
    }

    /// The effective configuration as TOML, secrets replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        // Serializing plain structs of strings and numbers into TOML cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

impl StorageSettings {
    /// The backend's name, for messages.
    pub fn backend_name(&self) -> String {
        match self.backend {
            StorageBackend::Fs => "fs".into(),
            StorageBackend::S3 => "s3".into(),
        }
    }
}

impl S3Settings {
    /// The secret access key, from whichever source was configured.
    pub fn secret_access_key(&self) -> Result<Option<SecretString>, ConfigError> {
        resolve_secret(
            "storage.s3.secret_access_key",
            &self.secret_access_key,
            &self.secret_access_key_file,
        )
    }
}

/// `STEWARD_SERVER__LISTEN` -> `server.listen`; the test harness's own variables are not settings.
fn env_provider(env: impl IntoIterator<Item = (String, String)>) -> EnvProvider {
    let mut root = figment::value::Dict::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        if rest.starts_with("test_") || rest == "config" || rest == "log" {
            continue;
        }
        let path: Vec<&str> = rest.split("__").collect();
        insert_env_value(&mut root, &path, &value);
    }
    EnvProvider(root)
}

/// The `STEWARD_*` variables as a figment source, named so that errors say where a bad value
/// came from.
struct EnvProvider(figment::value::Dict);

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("the STEWARD_* environment variables")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.0.clone()))
    }
}

/// Places an environment value at its dotted path, parsing it like a TOML value when it is one
/// (so numbers and booleans keep their type) and as a string otherwise.
fn insert_env_value(dict: &mut figment::value::Dict, path: &[&str], value: &str) {
    use figment::value::Value;
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        let parsed = value
            .parse::<Value>()
            .ok()
            .filter(|v| !matches!(v, Value::Dict(..) | Value::Array(..)))
            .unwrap_or_else(|| Value::from(value.to_owned()));
        dict.insert((*first).to_owned(), parsed);
        return;
    }
    let entry = dict
        .entry((*first).to_owned())
        .or_insert_with(|| Value::from(figment::value::Dict::new()));
    if let Value::Dict(_, inner) = entry {
        insert_env_value(inner, rest, value);
    }
}

/// Joins every error figment collected, each naming its key and source.
fn render_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            // Written out here rather than with figment's Display, which shows file paths
            // relative to the working directory and keys prefixed with its profile name.
            let mut text = e.kind.to_string();
            if !e.path.is_empty() {
                text.push_str(&format!(" for key \"{}\"", e.path.join(".")));
            }
            match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(figment::Source::File(path)) => {
                    text.push_str(&format!(" in {}", path.display()))
                }
                Some(_) | None => {
                    if let Some(m) = &e.metadata {
                        text.push_str(&format!(" in {}", m.name));
                    }
                }
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn check_single_source(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if inline.is_some() && file.is_some() {
        return Err(ConfigError::SecretTwice { key: key.into() });
    }
    Ok(())
}

/// Reads a secret given inline or as a file, refusing a file that others may read.
pub fn resolve_secret(
    key: &str,
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<Option<SecretString>, ConfigError> {
    check_single_source(key, inline, file)?;
    if let Some(secret) = inline {
        return Ok(Some(secret.clone()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    read_secret_file(key, path).map(Some)
}

/// Writes 32 random bytes, hex-encoded, to a new owner-only file.
/// Writes 32 random bytes (hex) to a new 0600 file, never over an existing one.
pub(crate) fn generate_secret_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source| ConfigError::SecretFile {
        key: key.into(),
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // create_new: two processes starting at once must not overwrite each other's secret.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(hex::encode(bytes).as_bytes())
                .map_err(io_error)?;
            file.sync_all().map_err(io_error)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

/// Reads a secret file after checking that only its owner can read it.
pub fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let io_error = |source| ConfigError::SecretFile {
        key: key.into(),
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(io_error)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretFileExposed {
            key: key.into(),
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_error)?;
    // Editors and `echo` add a final newline that is not part of the secret.
    Ok(SecretString::from(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

fn serialize_redacted<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("[redacted]"),
        None => serializer.serialize_none(),
    }
}

fn serialize_url_redacted<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url_password(url))
}

/// `postgres://user:secret@host/db` -> `postgres://user:[redacted]@host/db`.
pub fn redact_url_password(url: &str) -> String {
    // A password may also travel as a query parameter (`?password=...`, libpq style).
    let (url, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(redact_query_password(query))),
        None => (url, None),
    };
    let redacted = redact_userinfo_password(url);
    match query {
        Some(query) => format!("{redacted}?{query}"),
        None => redacted,
    }
}

/// `password=...` parameters of a query string, redacted.
fn redact_query_password(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                format!("{key}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_userinfo_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// A secret shown in logs and `Debug` output: never its value.
pub struct Redacted<'a>(pub &'a SecretString);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.expose_secret().len();
        write!(f, "[redacted, {len} chars]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn embedded_defaults_load() {
        let s = Settings::load_from(None, no_env()).unwrap();
        assert_eq!(s.storage.backend, StorageBackend::Fs);
        assert_eq!(s.tls.mode, TlsMode::SelfSigned);
        assert!(s.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn env_overrides_nested_keys_and_keeps_types() {
        let env = vec![
            ("STEWARD_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
            ("STEWARD_DATABASE__MAX_CONNECTIONS".into(), "3".into()),
            ("STEWARD_TEST_POSTGRES_URL".into(), "ignored".into()),
            ("OTHER".into(), "ignored".into()),
        ];
        let s = Settings::load_from(None, env).unwrap();
        assert_eq!(s.server.listen.port(), 0);
        assert_eq!(s.database.max_connections, 3);
    }

    #[test]
    fn env_typo_is_named() {
        let env = vec![("STEWARD_SERVER__LISTNE".into(), "x".into())];
        let err = Settings::load_from(None, env).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn redacts_url_password() {
        assert_eq!(
            redact_url_password("postgres://u:p@h:5432/db"),
            "postgres://u:[redacted]@h:5432/db"
        );
        assert_eq!(
            redact_url_password("postgres://u@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(
            redact_url_password("sqlite:///tmp/x.db"),
            "sqlite:///tmp/x.db"
        );
        // Issue 12, finding 12: a password in the query string was printed.
        assert_eq!(
            redact_url_password("postgres://u@h/db?sslmode=require&password=hunter2&x=1"),
            "postgres://u@h/db?sslmode=require&password=[redacted]&x=1"
        );
        assert_eq!(
            redact_url_password("postgres://u:p@h/db?PASSWORD=q"),
            "postgres://u:[redacted]@h/db?PASSWORD=[redacted]"
        );
    }
}
