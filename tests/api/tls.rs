use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, Db};

fn client_config(
    app: &crate::helpers::TestApp,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&app.ca_path).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

async fn handshake(
    app: &crate::helpers::TestApp,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ProtocolVersion {
    let connector = tokio_rustls::TlsConnector::from(client_config(app, versions));
    let tcp = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake succeeds");
    stream.get_ref().1.protocol_version().unwrap()
}

#[tokio::test]
async fn tls12_and_tls13_are_accepted() {
    let app = spawn_app(Db::Sqlite).await;
    assert_eq!(
        handshake(&app, &[&rustls::version::TLS13]).await,
        rustls::ProtocolVersion::TLSv1_3
    );
    assert_eq!(
        handshake(&app, &[&rustls::version::TLS12]).await,
        rustls::ProtocolVersion::TLSv1_2
    );
}

#[tokio::test]
async fn plain_http_gets_no_http_answer() {
    let app = spawn_app(Db::Sqlite).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP must not be served: {answer:?}"
    );
    // rustls answers garbage with at most a TLS alert record (content type 0x15).
    assert!(answer.is_empty() || answer[0] == 0x15, "{answer:?}");
}

/// A TLS 1.1 ClientHello (no supported_versions extension), written out by hand because no
/// TLS library we link will still speak 1.1.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites of TLS 1.1
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls11_client_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(!answer.is_empty(), "the server answers with an alert");
    assert_eq!(
        answer[0], 0x15,
        "an alert record, not a ServerHello: {answer:?}"
    );
    assert_eq!(answer[5], 2, "a fatal alert: {answer:?}");
    // protocol_version (70), or handshake_failure (40) when no TLS 1.1 suite is shared.
    assert!(matches!(answer[6], 70 | 40), "refusal alert: {answer:?}");
}

#[tokio::test]
async fn certificate_is_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, first) = steward::http::tls::self_signed(dir.path()).unwrap();
    let (_, second) = steward::http::tls::self_signed(dir.path()).unwrap();
    assert_eq!(first.fingerprint, second.fingerprint);
    assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca-key.pem", "server-key.pem"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is private");
    }
}

#[tokio::test]
async fn certificate_reload_swaps_only_valid_pairs() {
    // Two self-signed sets stand in for an old and a renewed production certificate.
    let old = tempfile::tempdir().unwrap();
    let new = tempfile::tempdir().unwrap();
    steward::http::tls::self_signed(old.path()).unwrap();
    steward::http::tls::self_signed(new.path()).unwrap();
    let resolver = steward::http::tls::CertResolver::from_files(
        &old.path().join("server.pem"),
        &old.path().join("server-key.pem"),
    )
    .unwrap();
    let old_fingerprint = resolver.fingerprint();
    // A broken file keeps the old certificate in service.
    let bogus = old.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    assert!(resolver
        .reload(&bogus, &old.path().join("server-key.pem"))
        .is_err());
    assert_eq!(resolver.fingerprint(), old_fingerprint);
    resolver
        .reload(
            &new.path().join("server.pem"),
            &new.path().join("server-key.pem"),
        )
        .unwrap();
    let new_fingerprint = resolver.fingerprint();
    assert_ne!(new_fingerprint, old_fingerprint);
    // A key that does not match the certificate is refused.
    assert!(resolver
        .reload(
            &new.path().join("server.pem"),
            &old.path().join("server-key.pem")
        )
        .is_err());
    assert_eq!(resolver.fingerprint(), new_fingerprint);
}
