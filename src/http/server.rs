//! The HTTPS accept loop: TLS handshake with a deadline, HTTP/1.1 or HTTP/2 per ALPN, the
//! peer address handed to handlers, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The most a connection buffers of a response it has not written yet (HTTP/1 write queue,
/// HTTP/2 send buffer per stream).
const CONNECTION_BUFFER_BYTES: usize = 128 * 1024;

/// Timing of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Deadline for a request's headers (HTTP/1.1) and the ping interval (HTTP/2).
    pub header_read_timeout: Duration,
    /// A handshake not finished by then is dropped, so idle sockets cannot pile up.
    pub handshake_timeout: Duration,
    /// How long in-flight requests may run after the shutdown signal.
    pub shutdown_grace: Duration,
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then lets open
/// connections finish for up to `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually EMFILE: pause instead of spinning, then keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls_stream =
                match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        // Plain HTTP, an old TLS version or a scanner: nothing to serve.
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let service = router.map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // A client that never finishes its headers (or goes silent on HTTP/2) is dropped
            // after the deadline instead of holding a connection and its file descriptor.
            // Each connection buffers at most this much of a response it has not yet written
            // (hyper's default is 400 KiB): a thousand slow readers stay a few hundred MiB.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout)
                .max_buf_size(CONNECTION_BUFFER_BYTES);
            builder
                .http2()
                .max_send_buf_size(CONNECTION_BUFFER_BYTES)
                .timer(TokioTimer::new())
                .keep_alive_interval(options.header_read_timeout)
                .keep_alive_timeout(options.header_read_timeout);
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(tls_stream),
                TowerToHyperService::new(service),
            );
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = options.shutdown_grace.as_secs(),
        "shutting down: draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}

/// Installs the Ctrl-C and SIGTERM handlers now and returns a future that resolves on either.
/// Installing before anything announces the process (a banner, a pid file) matters: a signal
/// that arrives before its handler exists kills the process without a graceful shutdown.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => tracing::info!("Ctrl-C received; shutting down"),
        }
    })
}

/// Type check helper: the peer address extension handlers read.
pub type PeerAddr = ConnectInfo<SocketAddr>;
