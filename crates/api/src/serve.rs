//! The API's HTTP server: hyper's HTTP/1 connection loop rather than `axum::serve`, so that
//! every connection has a header deadline (a client that sends its request slowly, or
//! keeps a connection idle between requests, is cut off) and every request a deadline for
//! its whole handling, body included.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, warn};

use crate::{ApiState, router};

/// How long a client may take, per connection and per request (node.toml's `[api]`).
pub use entente_settings::api::HttpLimits;

async fn ended<E: std::fmt::Display>(conn: impl Future<Output = Result<(), E>>, peer: SocketAddr) {
    if let Err(e) = conn.await {
        debug!(%peer, error = %e, "API connection ended");
    }
}

/// What the API serves TLS with.
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// The API's TLS configuration from a PEM certificate chain and private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<TlsConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    Ok(Arc::new(config))
}

/// How long requests in flight may run on once `shutdown` is cancelled.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves until `shutdown` is cancelled, then lets requests in flight finish; over TLS
/// when `tls` is given (the handshake too must end within the header deadline).
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    limits: HttpLimits,
    tls: Option<TlsConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = router(state).layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                warn!(error = %e, "API connection not accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let Some(acceptor) = tls.clone() else {
            let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(ended(conn, peer));
            continue;
        };
        let (http, watcher) = (http.clone(), graceful.watcher());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    ended(conn, peer).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake too slow"),
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        warn!("API requests still running after {DRAIN:?} were cut off");
    }
    Ok(())
}
