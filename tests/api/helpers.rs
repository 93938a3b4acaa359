//! `spawn_app()` and friends: each test gets its own Steward on port 0 with a fresh data
//! directory, database (a SQLite file, or its own PostgreSQL database) and object store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::Connection;
use steward::app::Application;
use steward::clock::ManualClock;
use steward::config::Settings;
use steward::http::AppState;
use tokio::sync::oneshot;

use crate::s3_server::{self, S3Server};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Which object store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Fs,
    S3,
}

const POSTGRES_URL_VAR: &str = "STEWARD_TEST_POSTGRES_URL";
const REQUIRE_POSTGRES_VAR: &str = "STEWARD_TEST_REQUIRE_POSTGRES";

/// The PostgreSQL server tests may create databases on, or `None` (reported as skipped).
/// With `STEWARD_TEST_REQUIRE_POSTGRES=1` a missing server fails the test instead.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_POSTGRES_VAR).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set");
            }
            eprintln!("SKIPPED {test} on PostgreSQL: {POSTGRES_URL_VAR} is not set");
            None
        }
    }
}

/// Runs the test function once per database backend: `mod name { sqlite, postgres }`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_url(concat!(module_path!(), "::", stringify!($name))).is_some() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            }
        }
    )*};
}

/// Runs the test function once per object store: `mod name { fs, s3 }`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fs() {
                super::$name($crate::helpers::Store::Fs).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                super::$name($crate::helpers::Store::S3).await
            }
        }
    )*};
}

/// A database created for one test; dropped (forcibly) when the test ends.
pub struct TestDatabase {
    pub url: String,
    admin_url: Option<String>,
    name: String,
}

impl TestDatabase {
    pub async fn create(db: Db, data_dir: &Path) -> Self {
        match db {
            Db::Sqlite => Self {
                url: format!("sqlite://{}", data_dir.join("steward.db").display()),
                admin_url: None,
                name: String::new(),
            },
            Db::Postgres => {
                let admin_url =
                    postgres_url("TestDatabase::create").expect("checked by the caller");
                let name = format!("steward_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                Self {
                    url: format!("{base}/{name}"),
                    admin_url: Some(admin_url),
                    name,
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; use a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::AnyConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The object store a test app uses, and the server behind it when it is S3.
pub struct TestStore {
    pub env: Vec<(String, String)>,
    pub s3: Option<S3Server>,
}

impl TestStore {
    pub async fn create(store: Store, data_dir: &Path) -> Self {
        match store {
            Store::Fs => Self {
                env: vec![env("STORAGE__FS__ROOT", data_dir.join("objects").display())],
                s3: None,
            },
            Store::S3 => {
                let server = s3_server::spawn().await;
                Self {
                    env: vec![
                        env("STORAGE__BACKEND", "s3"),
                        env("STORAGE__S3__BUCKET", s3_server::BUCKET),
                        env("STORAGE__S3__REGION", "us-east-1"),
                        env("STORAGE__S3__ENDPOINT", &server.endpoint),
                        env("STORAGE__S3__FORCE_PATH_STYLE", "true"),
                        env("STORAGE__S3__ACCESS_KEY_ID", s3_server::ACCESS_KEY),
                        env("STORAGE__S3__SECRET_ACCESS_KEY", s3_server::SECRET_KEY),
                    ],
                    s3: Some(server),
                }
            }
        }
    }
}

fn env(key: &str, value: impl std::fmt::Display) -> (String, String) {
    (format!("STEWARD_{key}"), value.to_string())
}

/// A running Steward and everything a test needs to talk to it.
pub struct TestApp {
    /// `https://localhost:PORT`.
    pub url: String,
    /// A client that trusts the app's CA.
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub ca_path: PathBuf,
    pub port: u16,
    /// Directories a test's set-up made that must live as long as the app (its sources).
    pub dirs: Vec<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _store: TestStore,
    _db: TestDatabase,
    _data_dir: tempfile::TempDir,
}

/// Settings for a test app: port 0 and everything under `data_dir`, plus `extra` variables.
pub fn test_settings(data_dir: &Path, db_url: &str, extra: &[(String, String)]) -> Settings {
    let mut vars = vec![
        env("DATA_DIR", data_dir.display()),
        env("SERVER__LISTEN", "127.0.0.1:0"),
        env("SERVER__SHUTDOWN_GRACE_SECS", "5"),
        env("DATABASE__URL", db_url),
        env("DATABASE__MAX_CONNECTIONS", "5"),
        env("STORAGE__PART_SIZE_BYTES", 5 * 1024 * 1024),
        // Cheap password hashing: tests exercise the logic, not the (OWASP default) cost.
        env("AUTH__ARGON2_MEMORY_KIB", 64),
        env("AUTH__ARGON2_ITERATIONS", 1),
        // Tests probe many routes without credentials from one address; the flood limit has
        // its own test.
        env("AUTH__REFUSALS_LOGGED_PER_MINUTE", 100_000),
    ];
    vars.extend_from_slice(extra);
    Settings::load_from(None, vars).expect("test settings are valid")
}

/// Builds and starts a Steward on `db` with the local filesystem store.
pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, Store::Fs).await
}

/// Builds and starts a Steward on `db` and `store`.
pub async fn spawn_app_with(db: Db, store: Store) -> TestApp {
    spawn_app_configured(db, store, &[]).await
}

/// Builds and starts a Steward on `db` and `store` with extra `STEWARD_*` variables.
pub async fn spawn_app_configured(db: Db, store: Store, extra: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let test_db = TestDatabase::create(db, data_dir.path()).await;
    let test_store = TestStore::create(store, data_dir.path()).await;
    let mut vars = test_store.env.clone();
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = test_settings(data_dir.path(), &test_db.url, &vars);
    let clock = Arc::new(ManualClock::new(
        time::macros::datetime!(2026-03-01 12:00 UTC),
    ));
    let app = Application::build(settings, clock.clone())
        .await
        .expect("app builds");
    let port = app.port();
    let state = app.state().clone();
    let ca_path = app
        .local_ca()
        .expect("self-signed in tests")
        .cert_path
        .clone();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    TestApp {
        url: format!("https://localhost:{port}"),
        client: client_trusting(&ca_path),
        state,
        clock,
        ca_path,
        port,
        dirs: Vec::new(),
        shutdown: Some(tx),
        server: Some(server),
        _store: test_store,
        _db: test_db,
        _data_dir: data_dir,
    }
}

/// An HTTPS client that trusts only the CA at `ca_path`.
pub fn client_trusting(ca_path: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca_path).expect("CA file");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA parses"))
        .tls_built_in_root_certs(false)
        .https_only(true)
        .build()
        .expect("client builds")
}

impl TestApp {
    /// The `STEWARD_*` variables that point another process (a `steward worker`) at this app's
    /// data directory, database and object store.
    pub fn shared_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            env("DATA_DIR", self._data_dir.path().display()),
            env("DATABASE__URL", &self._db.url),
            env("STORAGE__PART_SIZE_BYTES", 5 * 1024 * 1024),
        ];
        vars.extend(self._store.env.iter().cloned());
        vars
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request completes")
    }

    /// Stops the server the way SIGTERM does and waits for it to drain.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task ends cleanly");
        }
    }
}

/// A user created for a test, with the secrets only a test may keep.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: steward::domain::ids::UserId,
    pub username: String,
    pub password: String,
    /// Raw TOTP secret.
    pub totp_secret: Vec<u8>,
    pub recovery_codes: Vec<String>,
}

/// The tokens a login returned.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
}

/// Decodes RFC 4648 base32 (no padding), as in an `otpauth://` URI.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base32 digit") as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

impl TestApp {
    /// Creates (or finds) an organization by name.
    pub async fn org(&self, name: &str) -> steward::domain::ids::OrgId {
        if let Some(org) = self
            .state
            .auth
            .list_orgs()
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.name == name)
        {
            return org.id;
        }
        self.state
            .auth
            // "Agency" is the agency in every test: its people hold staff roles in force.
            .create_org(&steward::auth::By::system(), name, name == "Agency")
            .await
            .expect("org created")
            .id
    }

    /// Creates a user with `roles` in organization `org` (created if missing).
    pub async fn create_user(
        &self,
        username: &str,
        org: &str,
        roles: &[steward::domain::role::Role],
    ) -> TestUser {
        use secrecy::ExposeSecret;
        self.org(org).await;
        let account = self
            .state
            .auth
            .create_user(&steward::auth::By::system(), username, "", org, roles)
            .await
            .expect("user created");
        // Tests act as users who already chose their password; the one-time-password rule
        // has its own test (`auth_findings`).
        sqlx::query("UPDATE users SET must_change_password = 0 WHERE id = $1")
            .bind(account.user_id.to_string())
            .execute(self.state.db.pool())
            .await
            .expect("password chosen");
        let uri = account.totp_uri.expose_secret().to_owned();
        let secret = uri
            .split("secret=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .expect("otpauth URI has a secret");
        TestUser {
            id: account.user_id,
            username: username.to_owned(),
            password: account.password.expose_secret().to_owned(),
            totp_secret: base32_decode(secret),
            recovery_codes: account
                .recovery_codes
                .iter()
                .map(|c| c.expose_secret().to_owned())
                .collect(),
        }
    }

    /// The TOTP code of `user` at the app's current (manual) time.
    pub fn totp(&self, user: &TestUser) -> String {
        use steward::clock::Clock;
        steward::auth::totp::code_at(
            &user.totp_secret,
            steward::auth::totp::step_at(self.clock.now()),
        )
    }

    /// Posts JSON to `path`, with an optional bearer token.
    pub async fn post_json(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.url)).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request completes")
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request completes")
    }

    /// Logs `user` in with password and TOTP. Moves the clock to the next 30-second step first,
    /// because a TOTP code is accepted once.
    pub async fn login(&self, user: &TestUser) -> Session {
        self.clock.advance(time::Duration::seconds(30));
        let body = serde_json::json!({
            "username": user.username,
            "password": user.password,
            "totp": self.totp(user),
        });
        let response = self.post_json("/api/v1/auth/login", None, &body).await;
        assert_eq!(
            response.status(),
            200,
            "login of {} succeeds",
            user.username
        );
        let json: serde_json::Value = response.json().await.unwrap();
        Session {
            access_token: json["access_token"].as_str().unwrap().to_owned(),
            refresh_token: json["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Access-log records appended after sequence number `after`.
    pub async fn events_after(&self, after: i64) -> Vec<steward::audit::AccessRecord> {
        self.state
            .audit
            .records_after(after, 100_000)
            .await
            .unwrap()
    }

    /// The URL of the app's database, for `steward` commands run against it.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// The id of the newest access-log event.
    pub async fn last_seq(&self) -> i64 {
        self.events_after(0).await.last().map_or(0, |r| r.id)
    }
}
