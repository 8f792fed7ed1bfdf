//! `ferry registry serve`: the accept loop (plain HTTP or rustls) with the
//! connection limits, catalog reload when bundles change, graceful shutdown.
//! Connections are served by `conn` (TLS handshake), `h1` and `h2`.

use super::catalog::{Catalog, CatalogError};
use super::limits::{ConnLimiter, Limits, RefusalLog};
use crate::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the bundles directory is checked for a newly unpacked bundle.
const RELOAD_POLL: Duration = Duration::from_secs(2);
/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Refused connections are logged at most once per client address this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Pending connections the kernel queues before accept (capped by somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// PEM certificate chain and private key; both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "listen on {addr}: {source}; stop whatever holds the address or pick another with --listen"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// What every connection shares.
pub struct State {
    store: Store,
    catalog: RwLock<Arc<Catalog>>,
    pub limits: Limits,
    /// Cancelled on SIGTERM/SIGINT: idle connections close, busy ones finish
    /// their response and close.
    pub shutdown: CancellationToken,
}

impl State {
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn reload(self: &Arc<Self>, why: &str) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || Catalog::load(&store)).await {
            Ok(Ok(catalog)) => {
                tracing::info!(
                    images = catalog.image_count(),
                    repositories = catalog.repositories().len(),
                    "catalog reloaded ({why})"
                );
                catalog.log_images();
                let mut slot = self.catalog.write().unwrap_or_else(|p| p.into_inner());
                *slot = Arc::new(catalog);
            }
            Ok(Err(err)) => {
                tracing::error!("catalog reload failed, still serving the previous one: {err}")
            }
            Err(err) => tracing::error!("catalog reload task failed: {err}"),
        }
    }
}

/// Binds, then serves until SIGTERM or SIGINT. `on_ready` gets the bound address
/// (useful with port 0).
pub async fn serve(
    opts: ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let store = Store::open(&opts.data_dir);
    let catalog = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || Catalog::load(&store))
            .await
            .map_err(|e| ServeError::Signal(std::io::Error::other(e)))??
    };
    tracing::info!(
        data_dir = %opts.data_dir.display(),
        images = catalog.image_count(),
        repositories = catalog.repositories().len(),
        "catalog loaded"
    );
    catalog.log_images();
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = listen(opts.listen)?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: opts.listen,
        source,
    })?;
    let state = Arc::new(State {
        store,
        catalog: RwLock::new(Arc::new(catalog)),
        limits: opts.limits,
        shutdown: CancellationToken::new(),
    });
    tracing::info!(%addr, tls = tls.is_some(), limits = ?state.limits, "registry mirror listening");
    on_ready(addr);

    tokio::spawn(watch_bundles(state.clone()));
    let limiter = ConnLimiter::new(
        state.limits.max_connections,
        state.limits.max_connections_per_ip,
    );
    accept_loop(&listener, &state, &limiter, tls).await?;
    drop(listener);
    state.shutdown.cancel();
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while limiter.active() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if limiter.active() > 0 {
        tracing::warn!(
            "{} connections still open after {SHUTDOWN_GRACE:?}; closing them",
            limiter.active()
        );
    }
    Ok(())
}

/// Accepts until SIGTERM or SIGINT; a connection over a limit is closed at once.
async fn accept_loop(
    listener: &TcpListener,
    state: &Arc<State>,
    limiter: &Arc<ConnLimiter>,
    tls: Option<TlsAcceptor>,
) -> Result<(), ServeError> {
    let refusals = RefusalLog::new(REFUSAL_LOG_INTERVAL);
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match limiter.try_acquire(peer.ip()) {
                    Ok(p) => p,
                    Err(why) => {
                        refusals.note(peer.ip(), why, &state.limits);
                        // Reset rather than FIN: no TIME_WAIT left behind per refusal.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        continue;
                    }
                };
                let (state, tls) = (state.clone(), tls.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    super::conn::serve(stream, peer, state, tls).await;
                });
            }
            _ = hup.recv() => state.reload("SIGHUP").await,
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
        }
    }
}

/// A listening socket with a backlog deep enough for a node fleet connecting at once.
fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let err = |source| ServeError::Listen { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, ServeError> {
    tokio::signal::unix::signal(kind).map_err(ServeError::Signal)
}

/// Polls bundles/ (its mtime changes when unpack renames a bundle into place)
/// and reloads the catalog when it changed.
async fn watch_bundles(state: Arc<State>) {
    let dir = state.store.bundles_dir();
    let mut last = mtime(&dir);
    loop {
        tokio::time::sleep(RELOAD_POLL).await;
        let now = mtime(&dir);
        if now != last {
            last = now;
            state.reload("bundles changed").await;
        }
    }
}

fn mtime(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|m| m.modified()).ok()
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let tls_err = |path: &Path, reason: String| ServeError::Tls {
        path: path.to_owned(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| tls_err(cert, e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(cert, "no certificate in the file".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| tls_err(key, e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err(key, format!("invalid PEM: {e}")))?
        .ok_or_else(|| tls_err(key, "no private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err(key, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
