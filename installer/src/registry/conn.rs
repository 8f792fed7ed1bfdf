//! One accepted connection: the TLS handshake (bounded by its timeout), then
//! HTTP/2 when ALPN chose it, else ferry's HTTP/1.1 loop (which itself hands
//! a plain connection opening with the HTTP/2 preface to hyper).

use super::io::Io;
use super::server::State;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
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
    let limit = state.limits.tls_handshake_timeout;
    let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not done within {limit:?} (--tls-handshake-timeout); closed");
                return;
            }
        },
        _ = state.shutdown.cancelled() => return,
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        super::h2::serve(tls, peer, state).await
    } else {
        super::h1::serve(Io::Tls(Box::new(tls)), peer, state).await
    }
}
