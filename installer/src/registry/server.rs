//! `ferry registry serve`: the accept loop (plain HTTP or rustls), one access
//! log line per request, catalog reload when bundles change, graceful shutdown.

use super::api;
use super::catalog::{Catalog, CatalogError};
use crate::store::Store;
use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How often the bundles directory is checked for a newly unpacked bundle.
const RELOAD_POLL: Duration = Duration::from_secs(2);
/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// PEM certificate chain and private key; both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

struct State {
    store: Store,
    catalog: RwLock<Arc<Catalog>>,
}

impl State {
    fn catalog(&self) -> Arc<Catalog> {
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
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: opts.listen,
        source,
    })?;
    let state = Arc::new(State {
        store,
        catalog: RwLock::new(Arc::new(catalog)),
    });
    tracing::info!(%addr, tls = tls.is_some(), "registry mirror listening");
    on_ready(addr);

    tokio::spawn(watch_bundles(state.clone()));
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;

    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
                let _ = stream.set_nodelay(true);
                let service = service(state.clone(), peer);
                let builder = builder.clone();
                match &tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, "connection: {e}");
                            }
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let stream = match acceptor.accept(stream).await {
                                Ok(s) => s,
                                Err(e) => {
                                    tracing::info!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(%peer, "connection: {e}");
                            }
                        });
                    }
                }
            }
            _ = hup.recv() => state.reload("SIGHUP").await,
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, ServeError> {
    tokio::signal::unix::signal(kind).map_err(ServeError::Signal)
}

type ServiceFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>,
>;

fn service(
    state: Arc<State>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = std::convert::Infallible,
    Future = ServiceFuture,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        Box::pin(async move {
            let start = Instant::now();
            let catalog = state.catalog();
            let uri = req.uri().clone();
            let method = req.method().clone();
            let resp = api::handle(&catalog, &method, uri.path(), uri.query(), req.headers()).await;
            let bytes = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info!(
                target: "access",
                "{peer} \"{method} {uri} {:?}\" {} {bytes} {:.1}ms",
                req.version(),
                resp.status().as_u16(),
                start.elapsed().as_secs_f64() * 1000.0
            );
            Ok(resp)
        }) as ServiceFuture
    })
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
