//! The `steward` binary itself: what the README tells a user to run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn steward() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    // Only what each test sets: no STEWARD_* leaking in from the caller's shell.
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `steward serve` with `data_dir` and port 0 and returns it with its banner lines.
fn start_serve(data_dir: &Path, extra_env: &[(&str, &str)]) -> (Running, Vec<String>) {
    let mut command = steward();
    command
        .arg("serve")
        .env("STEWARD_DATA_DIR", data_dir)
        .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("steward starts");
    let stdout = child.stdout.take().unwrap();
    // Self-signed mode prints the URL, the CA path, its fingerprint and a curl line; with
    // configured files only the URL.
    let self_signed = !extra_env
        .iter()
        .any(|(k, v)| *k == "STEWARD_TLS__MODE" && *v == "files");
    let expected = if self_signed { 4 } else { 1 };
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stdout);
    while lines.len() < expected {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim_end().to_owned());
    }
    // The rest of standard output is drained, not dropped: a closed pipe would kill the
    // server at its next line.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (Running(child), lines)
}

fn banner_value<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
}

#[tokio::test]
async fn serve_with_embedded_defaults_prints_url_and_ca_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_serve(dir.path(), &[]);
    let url = banner_value(&lines, "Steward is listening on ").to_owned();
    let ca = banner_value(&lines, "CA certificate: ").to_owned();
    let fingerprint = banner_value(&lines, "CA SHA-256 fingerprint: ");
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    assert!(url.starts_with("https://localhost:"), "{url}");

    let client = crate::helpers::client_trusting(Path::new(&ca));
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let plain = reqwest::Client::new()
        .get(url.replace("https://", "http://") + "/")
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must fail"
    );

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(30));
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    assert!(dir.path().join("steward.db").exists());
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "steward did not exit in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_to_end(command: &mut Command) -> (bool, String, String) {
    let output = command.output().expect("steward runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn unreachable_database_fails_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run_to_end(
        steward()
            .arg("serve")
            .env("STEWARD_DATA_DIR", dir.path())
            .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0")
            .env(
                "STEWARD_DATABASE__URL",
                "postgres://steward:pw@127.0.0.1:1/steward",
            ),
    );
    assert!(!ok);
    assert!(
        stderr.contains("database") && stderr.contains("127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains(":pw@"), "password redacted: {stderr}");
}

// Multi-threaded: the in-process S3 server must keep answering while this thread waits on the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bucket_fails_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::s3_server::spawn().await;
    let (ok, _, stderr) = run_to_end(
        steward()
            .arg("serve")
            .env("STEWARD_DATA_DIR", dir.path())
            .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0")
            .env("STEWARD_STORAGE__BACKEND", "s3")
            .env("STEWARD_STORAGE__S3__BUCKET", "no-such-bucket")
            .env("STEWARD_STORAGE__S3__REGION", "us-east-1")
            .env("STEWARD_STORAGE__S3__ENDPOINT", &server.endpoint)
            .env("STEWARD_STORAGE__S3__FORCE_PATH_STYLE", "true")
            .env(
                "STEWARD_STORAGE__S3__ACCESS_KEY_ID",
                crate::s3_server::ACCESS_KEY,
            )
            .env(
                "STEWARD_STORAGE__S3__SECRET_ACCESS_KEY",
                crate::s3_server::SECRET_KEY,
            ),
    );
    assert!(!ok);
    assert!(stderr.contains("s3://no-such-bucket"), "{stderr}");
    assert!(!stderr.contains(crate::s3_server::SECRET_KEY), "{stderr}");
}

#[test]
fn config_typo_fails_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steward.toml");
    std::fs::write(&file, "[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let (ok, _, stderr) = run_to_end(
        steward()
            .arg("--config")
            .arg(&file)
            .args(["config", "check"]),
    );
    assert!(!ok);
    assert!(
        stderr.contains("listen_addr") && stderr.contains(&file.display().to_string()),
        "{stderr}"
    );
}

#[test]
fn config_check_prints_effective_configuration_redacted() {
    let (ok, stdout, stderr) = run_to_end(steward().args(["config", "check"]).env(
        "STEWARD_DATABASE__URL",
        "postgres://steward:hunter2@db/steward",
    ));
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("[server]") && stdout.contains("listen = \"127.0.0.1:8443\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("postgres://steward:[redacted]@db/steward"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn migrate_command_migrates_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let (ok, stdout, stderr) =
        run_to_end(steward().arg("migrate").env("STEWARD_DATABASE__URL", &url));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("migrated from version 0"), "{stdout}");
    let (ok, stdout, _) = run_to_end(steward().arg("migrate").env("STEWARD_DATABASE__URL", &url));
    assert!(ok);
    assert!(stdout.contains("up to date"), "{stdout}");
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["config", "check", "--help"],
    ] {
        let (ok, stdout, _) = run_to_end(steward().args(args));
        assert!(ok, "{args:?}");
        assert!(stdout.contains("Example"), "{args:?}: {stdout}");
    }
}

#[tokio::test]
async fn configured_certificate_is_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    let new = dir.path().join("new");
    steward::http::tls::self_signed(&old).unwrap();
    steward::http::tls::self_signed(&new).unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    std::fs::copy(old.join("server.pem"), live.join("chain.pem")).unwrap();
    std::fs::copy(old.join("server-key.pem"), live.join("key.pem")).unwrap();
    let data = dir.path().join("data");
    let chain = live.join("chain.pem").display().to_string();
    let key = live.join("key.pem").display().to_string();
    let (mut child, lines) = start_serve(
        &data,
        &[
            ("STEWARD_TLS__MODE", "files"),
            ("STEWARD_TLS__CERT_FILE", &chain),
            ("STEWARD_TLS__KEY_FILE", &key),
        ],
    );
    let url = banner_value(&lines, "Steward is listening on ").to_owned();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();

    assert_eq!(served_fingerprint(port).await, leaf_fingerprint(&old));
    std::fs::copy(new.join("server.pem"), live.join("chain.pem")).unwrap();
    std::fs::copy(new.join("server-key.pem"), live.join("key.pem")).unwrap();
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut served = String::new();
    for _ in 0..100 {
        served = served_fingerprint(port).await;
        if served == leaf_fingerprint(&new) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served,
        leaf_fingerprint(&new),
        "SIGHUP swaps the certificate"
    );
    let _ = &mut child;
}

fn leaf_fingerprint(dir: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(dir.join("server.pem")).unwrap();
    steward::http::tls::fingerprint(&der)
}

/// Fingerprint of the certificate the server presents, whoever issued it.
async fn served_fingerprint(port: u16) -> String {
    #[derive(Debug)]
    struct AcceptAny;
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let stream = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    steward::http::tls::fingerprint(&certs[0])
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definitions() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_steward()") && bash.contains("demo"),
        "{bash}"
    );
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH steward"),
        "{}",
        &man[..200]
    );
    assert!(
        man.contains(".TH steward-demo"),
        "every command has its page"
    );
    assert!(man.contains("Exit codes"));
}

/// The Prometheus text served at `listen`.
async fn scrape(listen: &str) -> String {
    reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_listener_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (mut child, lines) = start_serve(dir.path(), &[("STEWARD_METRICS__LISTEN", &listen)]);
    let url = banner_value(&lines, "Steward is listening on ").to_owned();
    let ca = banner_value(&lines, "CA certificate: ").to_owned();
    let client = crate::helpers::client_trusting(Path::new(&ca));
    // The banner is printed once the port is bound; under load the first connection may
    // still race the accept loop's start, so readiness is polled.
    let mut ready = None;
    for _ in 0..50 {
        match client.get(format!("{url}/readyz")).send().await {
            Ok(response) => {
                ready = Some(response.status());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(ready, Some(reqwest::StatusCode::OK));
    let missing = client
        .get(format!("{url}/api/v1/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let text = scrape(&listen).await;
    assert!(
        text.contains("steward_http_requests_total{route=\"/readyz\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("status=\"404\""), "{text}");
    // The server's start is an access event of its own: appended, then integrated by the
    // sequencer within its round (polled: the round runs on its own timer).
    let mut text = text;
    for _ in 0..50 {
        if text.contains("steward_access_log_integration_lag_seconds_count") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = scrape(&listen).await;
    }
    assert!(
        text.contains("steward_access_log_append_lag_seconds_count"),
        "{text}"
    );
    assert!(
        text.contains("steward_access_log_integration_lag_seconds_count"),
        "{text}"
    );
    // The API's own listener does not serve them.
    let api = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(api.status(), 404);
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(wait_with_timeout(&mut child.0, Duration::from_secs(30)).success());
}
