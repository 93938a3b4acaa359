//! Issue 12, finding 6: clients that finish the TLS handshake and never finish their headers
//! held their connections for good; a few hundred made the server unreachable ("accept failed:
//! too many open files"). The server is started as a process with a low soft limit on open
//! files, as many systems set it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server, with its standard output kept open (it prints its banner there; a closed pipe
/// would fail its next line).
struct Running(
    Child,
    #[allow(dead_code)] BufReader<std::process::ChildStdout>,
);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `steward serve` under a soft limit of `soft_limit` open files and the given header deadline;
/// returns it and its port.
fn serve_with_file_limit(data_dir: &Path, soft_limit: u32, header_secs: u32) -> (Running, u16) {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -Sn {soft_limit} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command
        .env("RUST_LOG", "warn")
        .env("STEWARD_DATA_DIR", data_dir)
        .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0")
        .env(
            "STEWARD_SERVER__HEADER_READ_TIMEOUT_SECS",
            header_secs.to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("steward starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    // The rest of the banner: the CA path, its fingerprint, a curl line.
    for _ in 0..3 {
        reader.read_line(&mut String::new()).unwrap();
    }
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (Running(child, reader), port)
}

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// `count` clients that finish the handshake, send half a request and stop; those that got
/// through within `within`.
async fn slow_clients(
    ca: &Path,
    port: u16,
    count: usize,
    within: Duration,
) -> Vec<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(tls_config(ca));
    let slow = (0..count).map(|_| {
        let connector = connector.clone();
        async move {
            let attempt = async {
                let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                let mut tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .ok()?;
                tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                    .await
                    .ok()?;
                Some(tls)
            };
            tokio::time::timeout(within, attempt).await.ok().flatten()
        }
    });
    futures_util::future::join_all(slow)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_do_not_lock_others_out() {
    let dir = tempfile::tempdir().unwrap();
    // Under a soft limit of 200 descriptors, as many systems set it; the header deadline is
    // far off, so the 500 are all still held when the next client comes.
    let (_server, port) = serve_with_file_limit(dir.path(), 200, 60);
    let ca = dir.path().join("tls/ca.pem");
    let held = slow_clients(&ca, port, 500, Duration::from_secs(5)).await;
    assert_eq!(held.len(), 500, "every slow client got a connection");

    // Another client is served at once.
    let client = crate::helpers::client_trusting(&ca);
    let response = tokio::time::timeout(
        Duration::from_secs(1),
        client
            .get(format!("https://localhost:{port}/healthz"))
            .send(),
    )
    .await
    .expect("served within one second")
    .expect("served");
    assert_eq!(response.status(), 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_are_dropped_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve_with_file_limit(dir.path(), 1024, 2);
    let ca = dir.path().join("tls/ca.pem");
    let mut held = slow_clients(&ca, port, 20, Duration::from_secs(5)).await;
    assert_eq!(held.len(), 20);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut closed = 0;
    for tls in &mut held {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            // A 408 answer before the close is fine too.
            Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 408") => closed += 1,
            _ => {}
        }
    }
    assert_eq!(
        closed, 20,
        "slow clients are dropped after the header deadline"
    );
}
