//! HTTP/2 connections (ALPN h2 over TLS, or the preface on plain TCP) through
//! hyper, with the stream, header and reset limits and keep-alive pings from
//! [`Limits`](super::limits::Limits), closed when idle for the idle timeout.

use super::access;
use super::api::{self, BlobFile};
use super::blobsend;
use super::server::State;
use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// After GOAWAY, how long streams in flight get before the socket is dropped.
const DRAIN: Duration = Duration::from_secs(10);

/// Requests in flight and when the last one ended. Pings and window updates
/// move bytes on an idle connection, so idleness is counted in requests.
struct Activity {
    inner: Mutex<(usize, Instant)>,
}

/// One request in flight, until its response body is sent or dropped.
struct Busy(Arc<Activity>);

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Instant)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.lock().0 += 1;
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let wait = {
                let (busy, since) = *self.lock();
                match idle.checked_sub(since.elapsed()) {
                    _ if busy > 0 => idle,
                    None => return,
                    Some(left) if left.is_zero() => return,
                    Some(left) => left,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.0 -= 1;
        g.1 = Instant::now();
    }
}

fn builder(state: &State) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let l = &state.limits;
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_streams)
        .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(l.h2_max_pending_resets);
    if !l.h2_keepalive_interval.is_zero() {
        b.keep_alive_interval(l.h2_keepalive_interval)
            .keep_alive_timeout(l.h2_keepalive_timeout);
    }
    b
}

async fn answer(
    state: Arc<State>,
    peer: SocketAddr,
    busy: Busy,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let catalog = state.catalog();
    let (method, uri) = (req.method(), req.uri());
    let resp = api::handle(&catalog, method, uri.path(), uri.query(), req.headers()).await;
    let (mut parts, body) = resp.into_parts();
    let body = match parts.extensions.remove::<BlobFile>() {
        Some(blob) => blobsend::body(blob, busy),
        None => body,
    };
    let line = access::Line {
        peer,
        method,
        uri,
        version: req.version(),
    };
    line.log(parts.status, &parts.headers, start);
    Ok(Response::from_parts(parts, body))
}

pub async fn serve<I>(io: I, peer: SocketAddr, state: Arc<State>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        inner: Mutex::new((0, Instant::now())),
    });
    let service = {
        let (state, activity) = (state.clone(), activity.clone());
        hyper::service::service_fn(move |req| answer(state.clone(), peer, activity.begin(), req))
    };
    let conn = builder(&state).serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "HTTP/2 connection: {e}");
            }
            return;
        }
        _ = activity.idle(state.limits.idle_timeout) => {
            tracing::debug!(%peer, "HTTP/2 connection idle for {:?}; closing", state.limits.idle_timeout);
        }
        _ = state.shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN, conn).await;
}
