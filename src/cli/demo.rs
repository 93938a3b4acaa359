//! `steward demo [--dir DIR]`: Steward with its embedded defaults in a data directory of its
//! own, set up the way an evaluation needs it: an agency and a university, one user per role,
//! synthetic sources for every dataset, and a Level I and a Level III release taken through
//! request, review, subcommittee decision, approval, DUA and extract, every step through the
//! HTTPS API as the role that performs it. It then prints how to act as each user and the
//! `steward client fetch` command that downloads, verifies and decrypts the Level I extract,
//! writes the same facts to `DIR/demo.json`, and serves until Ctrl-C. Run again with the same
//! directory, it serves what it made.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::{Application, StartupError};
use crate::audit::Client;
use crate::auth::{By, LoginRequest, PresentedCredential};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::crypto::private_file;
use crate::domain::role::Role;
use crate::policy::FileType;
use crate::state::AppState;

/// Medical-claims rows of the synthetic sources (the other files scale from it).
const SOURCE_ROWS: u64 = 20_000;

/// The agency and the requesting organization.
const AGENCY: &str = "Agency";
const UNIVERSITY: &str = "State University";

/// Every user the demo makes: login name, organization, role.
const USERS: [(&str, &str, Role); 5] = [
    ("recipient", UNIVERSITY, Role::Recipient),
    ("privacy", AGENCY, Role::PrivacyOfficer),
    ("director", AGENCY, Role::ExecutiveDirector),
    ("it", AGENCY, Role::ItStaff),
    ("admin", AGENCY, Role::Admin),
];

/// What the demo made, as `demo.json` keeps it for scripts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoFacts {
    /// The server's URL.
    pub url: String,
    /// The CA certificate to trust.
    pub ca: PathBuf,
    /// One entry per user.
    pub users: Vec<DemoUser>,
    /// The Level I release (de-identified eligibility data).
    pub level_one_release: String,
    /// The Level III release (with direct identifiers).
    pub level_three_release: String,
    /// The recipient's age identity, to decrypt what they download.
    pub recipient_identity: PathBuf,
    /// The client settings (`client.json`) signed in as the recipient.
    pub client_config_dir: PathBuf,
    /// Where the fetch command writes the extract.
    pub extract_dir: PathBuf,
    /// The command that downloads, verifies and decrypts the Level I extract.
    pub fetch_command: String,
}

/// One user of the demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    /// What they do.
    pub role: String,
    /// Login name.
    pub username: String,
    /// Password (chosen by the demo; the one-time password is already changed).
    pub password: String,
    /// TOTP secret (base32, as an authenticator app takes it).
    pub totp_secret: String,
    /// An API token for `Authorization: Bearer`.
    pub api_token: String,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Steward could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// A setup step failed.
    #[error("demo setup: {0}")]
    Setup(String),
}

fn setup(what: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Setup(format!("{what}: {e}"))
}

/// The settings of a demo in `dir`: the embedded defaults, the data directory and the
/// synthetic sources.
pub fn demo_settings(config: Option<&Path>, dir: &Path) -> Result<Settings, DemoError> {
    let sources = dir.join("sources");
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.push(("STEWARD_DATA_DIR".into(), dir.display().to_string()));
    for file_type in FileType::ALL {
        env.push((
            format!(
                "STEWARD_EXTRACT__SOURCES__{}",
                file_type.as_str().to_ascii_uppercase()
            ),
            sources
                .join(format!("{}.csv", file_type.as_str()))
                .display()
                .to_string(),
        ));
    }
    Settings::load_from(config, env).map_err(|e| setup("settings", e))
}

/// Runs the demo in `dir` until Ctrl-C (or `shutdown`).
pub async fn run(
    config: Option<&Path>,
    dir: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| setup("data directory", e))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| setup("data directory", e))?;
    let facts_path = dir.join("demo.json");
    let existing: Option<DemoFacts> = match std::fs::read(&facts_path) {
        Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| setup("demo.json", e))?),
        Err(_) => None,
    };
    if existing.is_none() {
        if dir.join("sources").exists() {
            return Err(setup(
                "data directory",
                format!(
                    "{} holds a demo whose setup did not finish; remove it and run again",
                    dir.display()
                ),
            ));
        }
        println!("Writing synthetic sources for every dataset ...");
        crate::synth::generate(&dir.join("sources"), SOURCE_ROWS, 1)
            .map_err(|e| setup("synthetic sources", e))?;
    }
    let settings = demo_settings(config, &dir)?;
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    let url = app.url();
    let ca = app
        .local_ca()
        .map(|ca| ca.cert_path.clone())
        .ok_or_else(|| setup("TLS", "the demo needs the embedded self-signed certificate"))?;
    let state = app.state().clone();
    let server = tokio::spawn(app.run_until_stopped(shutdown));
    let facts = match existing {
        Some(facts) if facts.url == url && facts.ca == ca => facts,
        // Served again at another address (the port was taken, or the settings changed): the
        // facts and the recipient's client follow, so the printed command still works.
        Some(mut facts) => {
            facts.url = url.clone();
            facts.ca = ca.clone();
            point_client_at(&facts)?;
            let json = serde_json::to_vec_pretty(&facts).map_err(|e| setup("demo.json", e))?;
            private_file::replace(&facts_path, &json).map_err(|e| setup("demo.json", e))?;
            facts
        }
        None => {
            let facts = make(&state, &url, &ca, &dir).await?;
            let json = serde_json::to_string_pretty(&facts).map_err(|e| setup("demo.json", e))?;
            private_file::create_if_missing(&facts_path, || json)
                .map_err(|e| setup("demo.json", e))?;
            facts
        }
    };
    print_facts(&facts, &facts_path);
    match server.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(setup("server", e)),
    }
}

/// Rewrites the recipient's `client.json` with the demo's current address and CA file.
fn point_client_at(facts: &DemoFacts) -> Result<(), DemoError> {
    let path = facts.client_config_dir.join("client.json");
    // Deleted since (a signed-out recipient, say): made again with the recipient's token.
    let mut stored: serde_json::Value = match private_file::read(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| setup("client settings", e))?,
        Err(_) => {
            let recipient = facts.users.iter().find(|u| u.role == "recipient");
            json!({ "token": recipient.map(|u| u.api_token.clone()) })
        }
    };
    stored["server"] = json!(facts.url);
    stored["ca"] = json!(facts.ca);
    private_file::replace(&path, stored.to_string().as_bytes())
        .map_err(|e| setup("client settings", e))
}

/// Prints, for each role, how to act as that user, then the fetch commands.
fn print_facts(facts: &DemoFacts, facts_path: &Path) {
    println!();
    println!("Steward demo is listening on {}", facts.url);
    println!("CA certificate: {}", facts.ca.display());
    println!();
    for user in &facts.users {
        println!(
            "{:<18} user {:<10} password {}  TOTP secret {}",
            user.role, user.username, user.password, user.totp_secret
        );
        println!("{:<18} API token: {}", "", user.api_token);
    }
    println!();
    println!(
        "Level I release {} and Level III release {} are available.",
        facts.level_one_release, facts.level_three_release
    );
    println!("Download, verify and decrypt the Level I extract as the recipient:");
    println!();
    println!("  {}", facts.fetch_command);
    println!();
    println!("The same facts, for scripts: {}", facts_path.display());
    if let Some(dir) = facts_path.parent() {
        let steward = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "steward".to_owned());
        println!(
            "The other commands act on this demo with its data directory, e.g.: STEWARD_DATA_DIR={} {steward} audit verify",
            dir.display()
        );
    }
    println!("Ctrl-C stops the server; `steward demo --dir` with this directory serves it again.");
}

/// Makes the organizations, users, key and releases.
async fn make(state: &AppState, url: &str, ca: &Path, dir: &Path) -> Result<DemoFacts, DemoError> {
    let by = By::system();
    state
        .auth
        .create_org(&by, AGENCY, true)
        .await
        .map_err(|e| setup("organization", e))?;
    state
        .auth
        .create_org(&by, UNIVERSITY, false)
        .await
        .map_err(|e| setup("organization", e))?;
    let mut users = Vec::new();
    let mut ids = Vec::new();
    for (username, org, role) in USERS {
        let (user, id) = user(state, username, org, role).await?;
        users.push(user);
        ids.push(id);
    }
    let token = |name: &str| {
        users
            .iter()
            .find(|u| u.username == name)
            .map(|u| u.api_token.clone())
            .unwrap_or_default()
    };
    let api = Api::new(url, ca, dir)?;

    // The recipient's own key: extracts are encrypted to it.
    let identity = age::x25519::Identity::generate();
    let identity_path = dir.join("recipient-identity.txt");
    private_file::create_if_missing(&identity_path, || {
        format!("{}\n", identity.to_string().expose_secret())
    })
    .map_err(|e| setup("recipient identity", e))?;
    api.call(
        &token("recipient"),
        "POST",
        "/api/v1/me/keys",
        Some(json!({ "public_key": identity.to_public().to_string(), "label": "demo laptop" })),
    )
    .await?;

    let recipient_id = ids[0].clone();
    let year = time::OffsetDateTime::now_utc().year();
    let level_one = release(
        &api,
        &token,
        &level_one_request(),
        None,
        &recipient_id,
        &format!("DUA-{year}-9001"),
    )
    .await?;
    let level_three = release(
        &api,
        &token,
        &level_three_request(),
        Some(subcommittee()),
        &recipient_id,
        &format!("DUA-{year}-9003"),
    )
    .await?;
    for release in [&level_one, &level_three] {
        extract(&api, &token("it"), release).await?;
    }

    // The recipient's client, signed in with their API token.
    let client_dir = dir.join("client");
    let stored = json!({ "server": url, "ca": ca, "token": token("recipient") });
    private_file::create_if_missing(&client_dir.join("client.json"), || stored.to_string())
        .map_err(|e| setup("client settings", e))?;
    let extract_dir = dir.join("extract");
    // The running binary by its path, so the command works as printed from any directory.
    let steward = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "steward".to_owned());
    let fetch_command = format!(
        "{steward} client fetch {level_one} --out {} --identity {} --config-dir {}",
        extract_dir.display(),
        identity_path.display(),
        client_dir.display()
    );
    Ok(DemoFacts {
        url: url.to_owned(),
        ca: ca.to_owned(),
        users,
        level_one_release: level_one,
        level_three_release: level_three,
        recipient_identity: identity_path,
        client_config_dir: client_dir,
        extract_dir,
        fetch_command,
    })
}

/// Creates a user, signs in once with the one-time password and TOTP, chooses their
/// password and makes them an API token.
async fn user(
    state: &AppState,
    username: &str,
    org: &str,
    role: Role,
) -> Result<(DemoUser, String), DemoError> {
    let auth = &state.auth;
    let account = auth
        .create_user(&By::system(), username, "", org, &[role])
        .await
        .map_err(|e| setup("user", e))?;
    let uri = account.totp_uri.expose_secret().to_owned();
    let base32 = uri
        .split("secret=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap_or_default()
        .to_owned();
    let secret = crate::auth::totp::base32_decode(&base32)
        .ok_or_else(|| setup("user", "the TOTP URI holds no secret"))?;
    let code = crate::auth::totp::code_at(&secret, crate::auth::totp::step_at(state.clock.now()));
    let client = Client::default();
    let session = auth
        .login(
            LoginRequest {
                username: username.to_owned(),
                password: account.password.clone(),
                totp: Some(SecretString::from(code)),
                recovery_code: None,
            },
            &client,
        )
        .await
        .map_err(|e| setup("sign-in", e))?;
    let principal = || async {
        auth.authenticate(
            PresentedCredential::Bearer(session.access_token.clone()),
            "demo",
            &client,
        )
        .await
        .map_err(|e| setup("sign-in", e))
    };
    let password = crate::crypto::random::hex_secret::<12>();
    auth.change_password(
        &principal().await?,
        account.password.clone(),
        SecretString::from(password.clone()),
        &client,
    )
    .await
    .map_err(|e| setup("password", e))?;
    let (_, token) = auth
        .create_api_token(&principal().await?, "demo", Some(90), None, &client)
        .await
        .map_err(|e| setup("API token", e))?;
    Ok((
        DemoUser {
            role: role.as_str().to_owned(),
            username: username.to_owned(),
            password,
            totp_secret: base32,
            api_token: token.expose_secret().to_owned(),
        },
        account.user_id.to_string(),
    ))
}

/// The HTTPS API as the demo's users call it.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(url: &str, ca: &Path, _dir: &Path) -> Result<Self, DemoError> {
        let pem = std::fs::read(ca).map_err(|e| setup("CA certificate", e))?;
        let certificate =
            reqwest::Certificate::from_pem(&pem).map_err(|e| setup("CA certificate", e))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(certificate)
            .build()
            .map_err(|e| setup("HTTPS client", e))?;
        Ok(Self {
            base: url.to_owned(),
            http,
        })
    }

    /// `method path` with `token`; the JSON answer, or the server's error as the failure.
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, DemoError> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| setup(path, e))?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| setup(path, e))?;
        let status = response.status();
        let json: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(setup(path, format!("{status}: {json}")));
        }
        Ok(json)
    }
}

/// A Level I request for de-identified eligibility data.
pub fn level_one_request() -> Value {
    json!({
        "level": "I",
        "datasets": ["med_elig"],
        "elements": [
            { "element": "med_elig.member_gender" },
            { "element": "med_elig.member_state" },
            { "element": "med_elig.year" }
        ],
        "purpose": "Coverage trends by state",
        "ultimate_recipient": "State University health policy group",
        "security_measures": "Encrypted laptops, access limited to the named analysts",
        "publication_plan": "Aggregate tables only, no cell under 11",
        "filters": { "years": { "first": 2020, "last": 2023 } }
    })
}

/// A Level III request: a Level II and a Level III element, each with its reason.
pub fn level_three_request() -> Value {
    json!({
        "level": "III",
        "datasets": ["med_elig"],
        "elements": [
            { "element": "med_elig.member_gender" },
            { "element": "med_elig.member_zip", "reason": "Linkage to the cancer registry by ZIP" },
            { "element": "med_elig.member_last_name", "reason": "Linkage to the cancer registry by name" }
        ],
        "purpose": "Registry linkage study",
        "irb": { "board": "State University IRB", "protocol": "2026-017" },
        "ultimate_recipient": "State University cancer epidemiology unit",
        "security_measures": "Enclave without internet access",
        "publication_plan": "Peer-reviewed article, aggregate results only",
        "filters": { "years": { "first": 2021, "last": 2022 } }
    })
}

/// The subcommittee's decision on a Level III release: four affirmative votes.
fn subcommittee() -> Value {
    json!({
        "present": ["A", "B", "C", "D", "E"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "yes" }, { "member": "D", "vote": "yes" },
            { "member": "E", "vote": "no" }
        ],
        "reason": "Subcommittee meeting"
    })
}

/// Files `request` as the recipient and takes it to `dua_executed`, each step as its role.
async fn release(
    api: &Api,
    token: &impl Fn(&str) -> String,
    request: &Value,
    committee: Option<Value>,
    recipient: &str,
    dua_number: &str,
) -> Result<String, DemoError> {
    let created = api
        .call(
            &token("recipient"),
            "POST",
            "/api/v1/requests",
            Some(request.clone()),
        )
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let base = format!("/api/v1/releases/{id}");
    api.call(&token("recipient"), "POST", &format!("{base}/submit"), None)
        .await?;
    api.call(&token("privacy"), "POST", &format!("{base}/review"), None)
        .await?;
    if let Some(decision) = committee {
        api.call(
            &token("director"),
            "POST",
            &format!("{base}/committee"),
            Some(decision),
        )
        .await?;
    }
    api.call(&token("director"), "POST", &format!("{base}/approve"), None)
        .await?;
    let today = time::OffsetDateTime::now_utc().date();
    let dua = json!({
        "number": dua_number,
        "effective": today.to_string(),
        "expiry": (today + time::Duration::days(365)).to_string(),
        "authorized_users": [recipient],
        "responsible": recipient,
        "download_limit": 5,
        "destruction_days": 30
    });
    api.call(
        &token("director"),
        "POST",
        &format!("{base}/dua"),
        Some(dua),
    )
    .await?;
    Ok(id)
}

/// IT staff start the extract; the server's job runner builds it. Waits, showing progress.
async fn extract(api: &Api, it_token: &str, release: &str) -> Result<(), DemoError> {
    let job = api
        .call(
            it_token,
            "POST",
            &format!("/api/v1/releases/{release}/extract"),
            None,
        )
        .await?;
    let job_id = job["id"].as_str().unwrap_or_default().to_owned();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("extract of release {release}"));
    loop {
        let job = api
            .call(it_token, "GET", &format!("/api/v1/jobs/{job_id}"), None)
            .await?;
        bar.set_message(format!(
            "extract of release {release}: {} ({} rows)",
            job["state"].as_str().unwrap_or("?"),
            job["progress"]["rows"].as_u64().unwrap_or(0)
        ));
        bar.tick();
        match job["state"].as_str() {
            Some("succeeded") => break,
            Some("failed" | "cancelled") => {
                bar.abandon();
                return Err(setup("extract", format!("job {job_id}: {}", job["error"])));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    bar.finish_with_message(format!("extract of release {release}: available"));
    Ok(())
}
