//! `steward client ...`: the recipient's side. Sign in once (the client keeps an API token,
//! 0600, in the user's config directory), list releases, and fetch a release: every file
//! through its own download link, resumed after any interruption (re-run the same command),
//! checked against the signed manifest and its SHA-256, with the access-log receipt of each
//! completed download kept beside it, and, given an age identity, decrypted to plaintext as it
//! streams.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::audit::proof;
use crate::extract::manifest;

/// Exit codes a script can rely on (also in `--help`).
pub mod exit {
    /// Every file fetched, verified (and decrypted when asked).
    pub const OK: u8 = 0;
    /// The transfer or the server failed; run the same command again to resume.
    pub const TRANSFER: u8 = 1;
    /// Bad arguments or local files (identity, output directory, not signed in).
    pub const USAGE: u8 = 2;
    /// A signature, a checksum or a receipt did not verify: do not use the files.
    pub const VERIFICATION: u8 = 3;
    /// The server refused (not signed in, not named by the DUA, revoked, limit reached,
    /// destroyed).
    pub const REFUSED: u8 = 4;
}

/// `steward client ...`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Sign in to a Steward server and keep an API token for the other client commands.
    #[command(
        after_help = "Examples:\n  steward client login --server https://steward.example.org\n  steward client login --server https://localhost:8443 --ca steward-data/tls/ca.pem --username alice\n  printf '%s\\n' \"$TOKEN\" | steward client login --server https://localhost:8443 --ca ca.pem --token-stdin\n\nThe password and the one-time code are asked for on the terminal (or read as two lines\nfrom standard input with --password-stdin).\n\nExit codes:\n  0  signed in\n  1  the server could not be reached\n  2  bad arguments\n  4  the server refused the credentials"
    )]
    Login {
        /// The server's base URL.
        #[arg(long)]
        server: String,
        /// A CA certificate (PEM) to trust instead of the public roots.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The user name (asked for when left out).
        #[arg(long)]
        username: Option<String>,
        /// Read the password and the one-time code as two lines of standard input.
        #[arg(long, conflicts_with = "token_stdin")]
        password_stdin: bool,
        /// Read an existing API token from standard input instead of signing in.
        #[arg(long)]
        token_stdin: bool,
        /// Directory for the client's settings (default: $XDG_CONFIG_HOME/steward or
        /// ~/.config/steward).
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
    },
    /// List the releases the signed-in user may see.
    #[command(
        after_help = "Examples:\n  steward client releases\n  steward client releases --json\n\nExit codes:\n  0  listed\n  1  the server could not be reached\n  2  not signed in\n  4  refused"
    )]
    Releases {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Directory for the client's settings.
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
    },
    /// Download every file of a release, resuming, verifying and (with --identity) decrypting.
    #[command(after_help = concat!("Examples:\n  steward client fetch 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --out extract/\n  steward client fetch 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --out extract/ --identity ~/.age/steward.txt\n  steward client fetch 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --out extract/ --json | jq -r '.files[].path'\n\nRun the same command again after an interruption: finished files are checked and kept,\na partial file (NAME.part) resumes where it stopped, and only missing bytes count against\nthe DUA's download limit. Beside each file: NAME.receipt.json, the access log's receipt\nof its download (check it with `steward client verify-receipt`), and access-log.key.\n\n", "Exit codes:\n  0  done\n  1  the transfer or the server failed; run the same command again to resume\n  2  bad arguments or local files (identity, output directory, not signed in)\n  3  a signature, checksum or receipt did not verify: do not use the files\n  4  the server refused (signed out, not named by the DUA, revoked, limit reached, destroyed)"))]
    Fetch {
        /// The release id.
        release: String,
        /// Directory to write the files into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// An age identity file: decrypt each file to plaintext beside it.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        /// Directory for the client's settings.
        #[arg(long, value_name = "DIR")]
        config_dir: Option<PathBuf>,
        /// At the end, print what was fetched as JSON (each file's name, kind, size, SHA-256,
        /// path and plaintext path) instead of a sentence; progress stays on standard error.
        #[arg(long)]
        json: bool,
    },
    /// Check a download receipt offline against the access log's key.
    #[command(
        after_help = "Example:\n  steward client verify-receipt extract/med_elig.csv.zst.age.receipt.json --key extract/access-log.key\n\nExit codes:\n  0  the receipt verifies\n  2  a file cannot be read or the key is malformed\n  3  the receipt does not verify"
    )]
    VerifyReceipt {
        /// The receipt file.
        file: PathBuf,
        /// The access log's verifier key, or a file holding it.
        #[arg(long)]
        key: String,
    },
}

/// What `login` keeps.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    server: String,
    ca: Option<PathBuf>,
    token: String,
}

/// A failure, with the exit code it ends in.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

type Outcome<T> = Result<T, Failure>;

/// Runs a client command; returns the exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::VerifyReceipt { file, key } => verify_receipt(&file, &key),
        other => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(exit::TRANSFER, format!("cannot start the runtime: {e}")))
            .and_then(|runtime| runtime.block_on(run_async(other))),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run_async(command: ClientCommand) -> Outcome<()> {
    match command {
        ClientCommand::Login {
            server,
            ca,
            username,
            password_stdin,
            token_stdin,
            config_dir,
        } => {
            login(
                server,
                ca,
                username,
                password_stdin,
                token_stdin,
                config_dir,
            )
            .await
        }
        ClientCommand::Releases { json, config_dir } => releases(json, config_dir).await,
        ClientCommand::Fetch {
            release,
            out,
            identity,
            config_dir,
            json,
        } => fetch(&release, &out, identity.as_deref(), config_dir, json).await,
        ClientCommand::VerifyReceipt { .. } => unreachable!("handled without a runtime"),
    }
}

// ----- settings -----

fn config_dir(given: Option<PathBuf>) -> Outcome<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("steward"));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| fail(exit::USAGE, "HOME is not set; give --config-dir"))?;
    Ok(PathBuf::from(home).join(".config").join("steward"))
}

fn stored_path(dir: &Path) -> PathBuf {
    dir.join("client.json")
}

fn load(dir: Option<PathBuf>) -> Outcome<Stored> {
    let path = stored_path(&config_dir(dir)?);
    let text = std::fs::read(&path).map_err(|_| {
        fail(
            exit::USAGE,
            format!(
                "not signed in ({} is missing): run `steward client login` first",
                path.display()
            ),
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| fail(exit::USAGE, format!("{}: {e}", path.display())))
}

/// Writes the settings readable by the owner alone, replacing them whole.
fn save(dir: &Path, stored: &Stored) -> Outcome<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(exit::USAGE, format!("{}: {e}", dir.display())))?;
    let path = stored_path(dir);
    let bytes = serde_json::to_vec_pretty(stored).expect("settings serialize");
    crate::crypto::private_file::replace(&path, &bytes)
        .map_err(|e| fail(exit::USAGE, e.to_string()))?;
    Ok(path)
}

// ----- HTTP -----

struct Server {
    base: String,
    http: reqwest::Client,
    token: String,
}

fn http_client(ca: Option<&Path>) -> Outcome<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("steward-client/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca)
            .map_err(|e| fail(exit::USAGE, format!("--ca {}: {e}", ca.display())))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| fail(exit::USAGE, format!("--ca {}: {e}", ca.display())))?;
        builder = builder
            .add_root_certificate(certificate)
            .tls_built_in_root_certs(false);
    }
    builder
        .build()
        .map_err(|e| fail(exit::USAGE, format!("cannot make an HTTPS client: {e}")))
}

fn connect(stored: &Stored) -> Outcome<Server> {
    Ok(Server {
        base: stored.server.trim_end_matches('/').to_owned(),
        http: http_client(stored.ca.as_deref())?,
        token: stored.token.clone(),
    })
}

fn unreachable_server(e: reqwest::Error) -> Failure {
    fail(
        exit::TRANSFER,
        format!("the server could not be reached: {e}"),
    )
}

/// The error of a refused response, with the server's own message.
async fn refused(what: &str, response: reqwest::Response) -> Failure {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or("no message");
    let code = if status.is_server_error() {
        exit::TRANSFER
    } else if status.is_client_error() && status.as_u16() != 400 && status.as_u16() != 416 {
        exit::REFUSED
    } else {
        exit::TRANSFER
    };
    fail(code, format!("{what}: {status}: {message}"))
}

impl Server {
    async fn get_json(&self, path: &str) -> Outcome<Value> {
        self.send_json(path, self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Outcome<Value> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send_json(path, request).await
    }

    /// Sends `request` with the token; the JSON answer, or the refusal as a failure.
    async fn send_json(&self, path: &str, request: reqwest::RequestBuilder) -> Outcome<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable_server)?;
        if !response.status().is_success() {
            return Err(refused(path, response).await);
        }
        response
            .json()
            .await
            .map_err(|e| fail(exit::TRANSFER, format!("{path}: {e}")))
    }
}

// ----- login and releases -----

fn read_line(prompt: &str, from_stdin: bool, secret: bool) -> Outcome<String> {
    let line = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| fail(exit::USAGE, format!("standard input: {e}")))?;
        line
    } else if secret {
        rpassword::prompt_password(prompt)
            .map_err(|e| fail(exit::USAGE, format!("cannot read from the terminal: {e}")))?
    } else {
        eprint!("{prompt}");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| fail(exit::USAGE, format!("standard input: {e}")))?;
        line
    };
    let line = line.trim().to_owned();
    if line.is_empty() {
        return Err(fail(
            exit::USAGE,
            format!("{} is empty", prompt.trim_end_matches(": ")),
        ));
    }
    Ok(line)
}

async fn login(
    server: String,
    ca: Option<PathBuf>,
    username: Option<String>,
    password_stdin: bool,
    token_stdin: bool,
    dir: Option<PathBuf>,
) -> Outcome<()> {
    if !server.starts_with("https://") {
        return Err(fail(exit::USAGE, "--server must be an https:// URL"));
    }
    let ca = ca
        .map(|ca| {
            std::fs::canonicalize(&ca)
                .map_err(|e| fail(exit::USAGE, format!("--ca {}: {e}", ca.display())))
        })
        .transpose()?;
    let http = http_client(ca.as_deref())?;
    let base = server.trim_end_matches('/').to_owned();
    let token = if token_stdin {
        read_line("API token: ", true, true)?
    } else {
        let username = match username {
            Some(name) => name,
            None => read_line("User name: ", password_stdin, false)?,
        };
        let password = read_line("Password: ", password_stdin, true)?;
        let totp = read_line("One-time code: ", password_stdin, true)?;
        let response = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password, "totp": totp}))
            .send()
            .await
            .map_err(unreachable_server)?;
        if !response.status().is_success() {
            return Err(refused("sign-in", response).await);
        }
        let session: Value = response
            .json()
            .await
            .map_err(|e| fail(exit::TRANSFER, format!("sign-in: {e}")))?;
        let access = session["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let session_server = Server {
            base: base.clone(),
            http: http.clone(),
            token: access,
        };
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
        let made = session_server
            .post_json(
                "/api/v1/me/tokens",
                &json!({"name": format!("steward client on {host}"), "expires_in_days": 30, "roles": ["recipient"]}),
            )
            .await?;
        // The session is not needed once the token exists.
        let _ = session_server
            .post_json("/api/v1/auth/logout", &json!({}))
            .await;
        made["token"]
            .as_str()
            .ok_or_else(|| fail(exit::TRANSFER, "the server made no token"))?
            .to_owned()
    };
    let stored = Stored {
        server: base,
        ca,
        token,
    };
    let me = connect(&stored)?.get_json("/api/v1/me").await?;
    let path = save(&config_dir(dir)?, &stored)?;
    println!(
        "signed in as {} at {}; settings in {}",
        me["username"].as_str().unwrap_or("?"),
        stored.server,
        path.display()
    );
    Ok(())
}

async fn releases(as_json: bool, dir: Option<PathBuf>) -> Outcome<()> {
    let server = connect(&load(dir)?)?;
    let list = server.get_json("/api/v1/releases").await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("JSON prints")
        );
        return Ok(());
    }
    println!("{:<36}  {:<5}  {:<20}  dua", "id", "level", "status");
    for release in list.as_array().into_iter().flatten() {
        println!(
            "{:<36}  {:<5}  {:<20}  {}",
            release["id"].as_str().unwrap_or("?"),
            release["level"].as_str().unwrap_or("?"),
            release["status"].as_str().unwrap_or("?"),
            release["dua"]["number"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}

// ----- fetch -----

/// A file of the release, as listed.
#[derive(Debug, Clone, Deserialize)]
struct Listed {
    id: String,
    name: String,
    kind: String,
    ciphertext_bytes: u64,
    ciphertext_sha256: String,
}

/// Attempts per file within one run before giving up (the next run resumes).
const ATTEMPTS: usize = 3;

async fn fetch(
    release: &str,
    out: &Path,
    identity: Option<&Path>,
    dir: Option<PathBuf>,
    as_json: bool,
) -> Outcome<()> {
    let server = connect(&load(dir)?)?;
    if uuid::Uuid::parse_str(release).is_err() {
        return Err(fail(
            exit::USAGE,
            format!("`{release}` is not a release id"),
        ));
    }
    // The identity is read before anything is downloaded, so a wrong path fails first.
    let identities = identity.map(read_identities).transpose()?;
    std::fs::create_dir_all(out)
        .map_err(|e| fail(exit::USAGE, format!("--out {}: {e}", out.display())))?;
    let listed: Vec<Listed> = serde_json::from_value(
        server
            .get_json(&format!("/api/v1/releases/{release}/files"))
            .await?,
    )
    .map_err(|e| fail(exit::TRANSFER, format!("the file list: {e}")))?;
    let manifest_file = listed
        .iter()
        .find(|f| f.kind == "manifest")
        .ok_or_else(|| fail(exit::VERIFICATION, "the release has no manifest"))?;
    let key = server.get_json("/api/v1/server/signing-key").await?;
    let key = key["public_key"].as_str().unwrap_or_default().to_owned();
    let log = server.get_json("/api/v1/access-log/checkpoint").await?;
    let log_key = log["verifier_key"].as_str().unwrap_or_default().to_owned();
    write_file(
        &out.join("access-log.key"),
        format!("{log_key}\n").as_bytes(),
    )?;

    let progress = MultiProgress::new();
    let total: u64 = listed.iter().map(|f| f.ciphertext_bytes).sum();
    let overall = progress.add(ProgressBar::new(total));
    overall.set_style(bar_style("all files"));
    // The manifest first: it says what every other file must be.
    let mut order: Vec<&Listed> = vec![manifest_file];
    order.extend(listed.iter().filter(|f| f.kind != "manifest"));
    let mut manifest: Option<manifest::Manifest> = None;
    let mut fetched = Vec::new();
    for file in order {
        let path = download(&server, release, file, out, &progress, &overall).await?;
        let mut plaintext = None;
        if file.kind == "manifest" {
            let bytes = std::fs::read(&path)
                .map_err(|e| fail(exit::USAGE, format!("{}: {e}", path.display())))?;
            manifest = Some(manifest::verify(&bytes, &key).map_err(|e| {
                fail(
                    exit::VERIFICATION,
                    format!("the manifest's signature does not verify with the server's key: {e}"),
                )
            })?);
        } else {
            let listed_in_manifest = manifest
                .as_ref()
                .and_then(|m| m.files.iter().find(|m| m.name == file.name))
                .ok_or_else(|| {
                    fail(
                        exit::VERIFICATION,
                        format!("{} is not in the signed manifest", file.name),
                    )
                })?;
            if listed_in_manifest.ciphertext.sha256 != file.ciphertext_sha256 {
                return Err(fail(
                    exit::VERIFICATION,
                    format!(
                        "{}: its SHA-256 differs from the signed manifest's",
                        file.name
                    ),
                ));
            }
            if let Some(identities) = &identities {
                plaintext = decrypt(&path, identities)?;
            }
        }
        fetched.push(json!({
            "name": file.name,
            "kind": file.kind,
            "ciphertext_bytes": file.ciphertext_bytes,
            "ciphertext_sha256": file.ciphertext_sha256,
            "path": path,
            "plaintext": plaintext,
        }));
    }
    overall.finish();
    if as_json {
        let summary = json!({ "release": release, "out": out, "verified": true, "files": fetched });
        println!("{summary:#}");
        return Ok(());
    }
    println!(
        "fetched {} files of release {release} into {} (verified against the signed manifest)",
        listed.len(),
        out.display()
    );
    Ok(())
}

fn bar_style(prefix: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{prefix:>20} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{eta}}"
    ))
    .expect("the template is valid")
    .progress_chars("=> ")
}

fn write_file(path: &Path, bytes: &[u8]) -> Outcome<()> {
    std::fs::write(path, bytes).map_err(|e| fail(exit::USAGE, format!("{}: {e}", path.display())))
}

fn sha256_of(path: &Path) -> Outcome<String> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| fail(exit::USAGE, format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| fail(exit::USAGE, format!("{}: {e}", path.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Downloads one file into `out/NAME` (through `NAME.part`, resumed when present), checks its
/// SHA-256 and keeps its receipt; a file already complete and correct is kept as it is.
async fn download(
    server: &Server,
    release: &str,
    file: &Listed,
    out: &Path,
    progress: &MultiProgress,
    overall: &ProgressBar,
) -> Outcome<PathBuf> {
    let name = safe_name(&file.name)?;
    let path = out.join(name);
    if path.exists() && sha256_of(&path)? == file.ciphertext_sha256 {
        overall.inc(file.ciphertext_bytes);
        return Ok(path);
    }
    let partial = out.join(format!("{name}.part"));
    let bar = progress.add(ProgressBar::new(file.ciphertext_bytes));
    bar.set_style(bar_style(&short(name)));
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        match transfer(server, file, &partial, &bar, overall).await {
            Ok(()) => {
                last_error = None;
                break;
            }
            Err(failure) if failure.code == exit::TRANSFER => {
                last_error = Some(failure);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(failure) => return Err(failure),
        }
    }
    if let Some(failure) = last_error {
        return Err(fail(
            exit::TRANSFER,
            format!(
                "{} stopped ({}); run the same command again to resume",
                file.name, failure.message
            ),
        ));
    }
    bar.finish();
    if sha256_of(&partial)? != file.ciphertext_sha256 {
        // A corrupt partial file would fail again on resume: start it over next time.
        let _ = std::fs::remove_file(&partial);
        return Err(fail(
            exit::VERIFICATION,
            format!(
                "{}: its SHA-256 differs from the server's; removed",
                file.name
            ),
        ));
    }
    std::fs::rename(&partial, &path)
        .map_err(|e| fail(exit::USAGE, format!("{}: {e}", path.display())))?;
    keep_receipt(
        server,
        release,
        file,
        &out.join(format!("{name}.receipt.json")),
    )
    .await?;
    Ok(path)
}

/// One attempt: a new link, then the bytes from where the partial file ends.
async fn transfer(
    server: &Server,
    file: &Listed,
    partial: &Path,
    bar: &ProgressBar,
    overall: &ProgressBar,
) -> Outcome<()> {
    use tokio::io::AsyncWriteExt;
    let have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    bar.set_position(have);
    if have >= file.ciphertext_bytes {
        return Ok(());
    }
    let link = server
        .post_json(&format!("/api/v1/files/{}/links", file.id), &json!({}))
        .await?;
    let url = link["url"]
        .as_str()
        .ok_or_else(|| fail(exit::TRANSFER, "the server gave no link"))?;
    let mut request = server
        .http
        .get(format!("{}{url}", server.base))
        .bearer_auth(&server.token);
    if have > 0 {
        request = request.header("range", format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(unreachable_server)?;
    let expected = if have > 0 { 206 } else { 200 };
    if response.status().as_u16() != expected {
        return Err(refused(&file.name, response).await);
    }
    let mut output = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .await
        .map_err(|e| fail(exit::USAGE, format!("{}: {e}", partial.display())))?;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                output
                    .write_all(&bytes)
                    .await
                    .map_err(|e| fail(exit::USAGE, format!("{}: {e}", partial.display())))?;
                bar.inc(bytes.len() as u64);
                overall.inc(bytes.len() as u64);
            }
            Ok(None) => break,
            Err(e) => {
                let _ = output.flush().await;
                return Err(fail(exit::TRANSFER, format!("the connection broke: {e}")));
            }
        }
    }
    output
        .flush()
        .await
        .map_err(|e| fail(exit::USAGE, format!("{}: {e}", partial.display())))?;
    let now = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    if now != file.ciphertext_bytes {
        return Err(fail(
            exit::TRANSFER,
            format!(
                "the stream ended at {now} of {} bytes",
                file.ciphertext_bytes
            ),
        ));
    }
    Ok(())
}

/// The receipt of the download that completed the file: the newest `download_completed`
/// record of this user for the file, once the log has given it a position.
async fn keep_receipt(server: &Server, release: &str, file: &Listed, path: &Path) -> Outcome<()> {
    for _ in 0..100 {
        let page = server
            .get_json(&format!(
                "/api/v1/me/access-log?release={release}&action=download_completed&limit=1000"
            ))
            .await?;
        let seq = page["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["file_id"].as_str() == Some(file.id.as_str()))
            .filter_map(|r| r["seq"].as_i64())
            .max();
        if let Some(seq) = seq {
            let response = server
                .http
                .get(format!("{}/api/v1/access-log/{seq}/proof", server.base))
                .bearer_auth(&server.token)
                .send()
                .await
                .map_err(unreachable_server)?;
            if !response.status().is_success() {
                return Err(refused("the receipt", response).await);
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| fail(exit::TRANSFER, format!("the receipt: {e}")))?;
            return write_file(path, &bytes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(fail(
        exit::TRANSFER,
        format!(
            "{}: the access log has not recorded its download yet",
            file.name
        ),
    ))
}

/// A name the server made, refused if it could leave the output directory.
fn safe_name(name: &str) -> Outcome<&str> {
    let fine = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(name)
    } else {
        Err(fail(
            exit::VERIFICATION,
            format!("the server named a file {name:?}"),
        ))
    }
}

fn short(name: &str) -> String {
    name.chars().take(20).collect()
}

fn read_identities(path: &Path) -> Outcome<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let bad = |e: &dyn std::fmt::Display| {
        fail(exit::USAGE, format!("--identity {}: {e}", path.display()))
    };
    age::IdentityFile::from_file(path.display().to_string())
        .map_err(|e| bad(&e))?
        .into_identities()
        .map_err(|e| bad(&e))
}

/// Decrypts `NAME.age` to `NAME` (and `NAME.zst.age` to `NAME`, decompressed), streaming,
/// through a `.part` file renamed only when complete.
/// Decrypts an age file beside itself; returns the plaintext's path (`None` for a file that is
/// not encrypted, such as the approval letter).
fn decrypt(
    path: &Path,
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> Outcome<Option<PathBuf>> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(plain) = name.strip_suffix(".age") else {
        return Ok(None);
    };
    let (plain, compressed) = match plain.strip_suffix(".zst") {
        Some(stripped) => (stripped, true),
        None => (plain, false),
    };
    let target = path.with_file_name(plain);
    let partial = path.with_file_name(format!("{plain}.part"));
    let local = |e: &dyn std::fmt::Display| fail(exit::USAGE, format!("{}: {e}", target.display()));
    let input = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| local(&e))?);
    let decryptor = age::Decryptor::new_buffered(input)
        .map_err(|e| fail(exit::VERIFICATION, format!("{name}: not an age file: {e}")))?;
    let reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            fail(
                exit::USAGE,
                format!("{name}: the identity does not decrypt it: {e}"),
            )
        })?;
    let mut output =
        std::io::BufWriter::new(std::fs::File::create(&partial).map_err(|e| local(&e))?);
    let copied = if compressed {
        let mut decoder = zstd::stream::read::Decoder::new(reader).map_err(|e| local(&e))?;
        std::io::copy(&mut decoder, &mut output)
    } else {
        let mut reader = reader;
        std::io::copy(&mut reader, &mut output)
    };
    copied.map_err(|e| {
        fail(
            exit::VERIFICATION,
            format!("{name}: decryption failed: {e}"),
        )
    })?;
    output.flush().map_err(|e| local(&e))?;
    std::fs::rename(&partial, &target).map_err(|e| local(&e))?;
    Ok(Some(target))
}

fn verify_receipt(file: &Path, key: &str) -> Outcome<()> {
    let key = if key.contains('+') && !Path::new(key).exists() {
        key.trim().to_owned()
    } else {
        std::fs::read_to_string(key)
            .map_err(|e| fail(exit::USAGE, format!("--key {key}: {e}")))?
            .trim()
            .to_owned()
    };
    let receipt =
        std::fs::read(file).map_err(|e| fail(exit::USAGE, format!("{}: {e}", file.display())))?;
    match proof::check_receipt(&receipt, None, &key) {
        Ok(checked) => {
            println!(
                "receipt verified: record {} is in {}, a tree of {} records",
                checked.seq, checked.origin, checked.tree_size
            );
            Ok(())
        }
        Err(proof::ReceiptError::Checkpoint(crate::audit::checkpoint::CheckpointError::BadKey)) => {
            Err(fail(exit::USAGE, "--key is not a verifier key"))
        }
        Err(error) => Err(fail(
            exit::VERIFICATION,
            format!("receipt refused: {error}"),
        )),
    }
}
