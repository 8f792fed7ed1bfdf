//! One accepted connection: the TLS handshake (bounded by its timeout), then
//! HTTP/2 when ALPN chose it, else ferry's HTTP/1.1 loop (which itself hands
//! a plain connection opening with the HTTP/2 preface to hyper).

use super::io::Io;
use super::server::State;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return super::h1::serve(Io::Plain(stream), peer, state).await;
    };
    // Boxed, like HTTP/2 below: the task of a plain connection stays as small
    // as its HTTP/1.1 loop, which matters with thousands of idle clients.
    let Some(tls) = Box::pin(handshake(acceptor, stream, peer, &state)).await else {
        return;
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(super::h2::serve(tls, peer, state)).await
    } else {
        super::h1::serve(Io::Tls(Box::new(tls)), peer, state).await
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    state: &State,
) -> Option<TlsStream<TcpStream>> {
    let limit = state.limits.tls_handshake_timeout;
    let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
    tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::info!(%peer, "TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not done within {limit:?} (--tls-handshake-timeout); closed");
                None
            }
        },
        _ = state.shutdown.cancelled() => None,
    }
}
