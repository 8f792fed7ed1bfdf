//! ferry's own HTTP/1.1 connection loop. hyper cannot hand a socket to
//! sendfile(2), so blob GETs are answered here: the head is written, then the
//! bytes go from the page cache to the socket without passing through user
//! space. Every other request goes through `api::handle` like on HTTP/2. This
//! mirror is read-only, so requests carry no body: anything but GET and HEAD
//! is answered 405 and the connection closed. A connection that opens with
//! the HTTP/2 preface is handed to hyper.

use super::access;
use super::api::{self, BlobFile};
use super::blobsend;
use super::io::{Io, Rewind};
use super::server::State;
use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_HEADERS: usize = 100;
/// Read size for request heads (containerd's are about 500 bytes); the
/// buffer grows for larger heads and is freed while a connection idles.
const READ_BUF: usize = 1024;
/// Generated bodies (manifests, listings, errors) are collected before sending.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long a closing connection gets to take our FIN or TLS close_notify.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct ReqHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The client asked to close, or speaks HTTP/1.0.
    pub close: bool,
    /// Content-Length above 0 or Transfer-Encoding: the body is not read, so
    /// the connection cannot carry another request.
    pub has_body: bool,
}

#[derive(Debug)]
pub enum Parsed {
    Partial,
    H2,
    Request(ReqHead, usize),
    Bad(StatusCode, String),
}

/// Parses one request head from the start of `buf`.
pub fn parse(buf: &[u8], max_bytes: usize) -> Parsed {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Parsed::H2
        } else {
            Parsed::Partial
        };
    }
    let too_large = || {
        Parsed::Bad(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request head over {max_bytes} bytes or {MAX_HEADERS} header fields (--max-header-bytes)"),
        )
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_bytes => match to_head(&req) {
            Ok(head) => Parsed::Request(head, len),
            Err(msg) => Parsed::Bad(StatusCode::BAD_REQUEST, msg),
        },
        Ok(httparse::Status::Partial) if buf.len() <= max_bytes => Parsed::Partial,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => too_large(),
        Err(e) => Parsed::Bad(
            StatusCode::BAD_REQUEST,
            format!("malformed request head: {e}"),
        ),
    }
}

fn to_head(req: &httparse::Request<'_, '_>) -> Result<ReqHead, String> {
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|e| format!("invalid method: {e}"))?;
    let uri: Uri = req
        .path
        .unwrap_or("")
        .parse()
        .map_err(|e| format!("invalid request target: {e}"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| format!("invalid header name {:?}: {e}", h.name))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|e| format!("invalid value of header {:?}: {e}", h.name))?;
        headers.append(name, value);
    }
    let close = version == Version::HTTP_10
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"));
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    Ok(ReqHead {
        method,
        uri,
        version,
        headers,
        close,
        has_body,
    })
}

/// Status line and headers; adds Content-Length when the handler did not,
/// and `connection: close` when this is the last response.
pub fn encode_head(parts: &http::response::Parts, body_len: usize, keep: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {body_len}\r\n").as_bytes());
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

enum Next {
    Request(ReqHead),
    H2,
    Bad(StatusCode, String),
    Close,
}

struct Conn {
    io: Io,
    buf: BytesMut,
    peer: SocketAddr,
    state: Arc<State>,
}

/// Serves requests on `io` until the client closes, a timeout passes, a
/// response must be the last one, or the server shuts down.
pub async fn serve(io: Io, peer: SocketAddr, state: Arc<State>) {
    let limits = state.limits.clone();
    let mut c = Conn {
        io,
        buf: BytesMut::new(),
        peer,
        state,
    };
    // The first head must be complete within the header timeout of accept.
    let mut wait_until = Instant::now() + limits.header_read_timeout;
    let mut first = true;
    loop {
        match c.read_head(wait_until, first).await {
            Next::Request(req) => {
                // Boxed: an idle connection's task stays small.
                if !Box::pin(c.respond(req)).await {
                    break;
                }
            }
            Next::H2 => {
                let prefix = c.buf.split().freeze();
                let Conn { io, state, .. } = c;
                let h2 = super::h2::serve(Rewind::new(prefix, io), peer, state);
                return Box::pin(h2).await;
            }
            Next::Bad(status, msg) => {
                tracing::debug!(%peer, "bad request: {msg}");
                c.reject(status, &msg).await;
                break;
            }
            Next::Close => break,
        }
        first = false;
        if c.buf.is_empty() {
            c.buf = BytesMut::new();
        }
        wait_until = Instant::now() + limits.idle_timeout;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, c.io.shutdown()).await;
}

impl Conn {
    /// Waits until `wait_until` for a request to start (or, for the first
    /// request, to be complete); a started head must be complete within the
    /// header timeout of its first byte.
    async fn read_head(&mut self, wait_until: Instant, first: bool) -> Next {
        let Conn { io, buf, state, .. } = self;
        let limits = &state.limits;
        let mut deadline = if buf.is_empty() || first {
            wait_until
        } else {
            Instant::now() + limits.header_read_timeout
        };
        loop {
            if !buf.is_empty() {
                match parse(buf, limits.max_header_bytes) {
                    Parsed::Partial => {}
                    Parsed::H2 => return Next::H2,
                    Parsed::Request(head, n) => {
                        buf.advance(n);
                        return Next::Request(head);
                    }
                    Parsed::Bad(status, msg) => return Next::Bad(status, msg),
                }
            }
            let waiting = buf.is_empty();
            let read = async {
                if waiting {
                    // Idle sockets hold no buffer until bytes arrive.
                    io.readable().await?;
                }
                buf.reserve(READ_BUF);
                io.read_buf(buf).await
            };
            let n = tokio::select! {
                r = tokio::time::timeout_at(deadline.into(), read) => match r {
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) | Err(_) => return Next::Close,
                },
                _ = state.shutdown.cancelled(), if waiting => return Next::Close,
            };
            if n == 0 {
                return Next::Close;
            }
            if waiting && !first {
                deadline = Instant::now() + limits.header_read_timeout;
            }
        }
    }

    /// Answers one request; true when the connection may carry another.
    async fn respond(&mut self, req: ReqHead) -> bool {
        let start = Instant::now();
        let catalog = self.state.catalog();
        let path = req.uri.path();
        let resp = api::handle(&catalog, &req.method, path, req.uri.query(), &req.headers).await;
        let read_only = req.method == Method::GET || req.method == Method::HEAD;
        let keep = read_only && !req.close && !req.has_body && !self.state.shutdown.is_cancelled();
        let (mut parts, body) = resp.into_parts();
        let blob = parts.extensions.remove::<BlobFile>();
        let body = match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(peer = %self.peer, uri = %req.uri, "response body: {e}");
                return false;
            }
        };
        let head = encode_head(&parts, body.len(), keep);
        let sent = self.send(head, body, blob).await;
        let line = access::Line {
            peer: self.peer,
            method: &req.method,
            uri: &req.uri,
            version: req.version,
        };
        line.log(parts.status, &parts.headers, start);
        if let Err(e) = &sent {
            tracing::debug!(peer = %self.peer, uri = %req.uri, "sending the response: {e}");
        }
        keep && sent.is_ok()
    }

    async fn send(
        &mut self,
        mut head: Vec<u8>,
        body: Bytes,
        blob: Option<BlobFile>,
    ) -> std::io::Result<()> {
        let stall = self.state.limits.idle_timeout;
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("client read nothing for {stall:?} (--idle-timeout)"),
            )
        };
        // Small bodies go out with the head in one write.
        head.extend_from_slice(&body);
        tokio::time::timeout(stall, self.io.write_all(&head))
            .await
            .map_err(|_| timed_out())??;
        match (blob, &mut self.io) {
            (Some(blob), Io::Plain(sock)) => match blobsend::sendfile(sock, &blob, stall).await {
                // A filesystem without sendfile(2): the same bytes by read and write.
                Err(e) if blobsend::unsupported(&e) => blobsend::copy(sock, &blob, stall).await,
                other => other,
            },
            (Some(blob), Io::Tls(tls)) => blobsend::copy(tls.as_mut(), &blob, stall).await,
            (None, io) => tokio::time::timeout(stall, io.flush())
                .await
                .map_err(|_| timed_out())?,
        }
    }

    async fn reject(&mut self, status: StatusCode, msg: &str) {
        let resp = api::error(status, "UNSUPPORTED", msg);
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_default();
        let head = encode_head(&parts, body.len(), false);
        let _ = self.send(head, body, None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &[u8]) -> (ReqHead, usize) {
        match parse(raw, 1024) {
            Parsed::Request(h, n) => (h, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_heads_and_connection_semantics() {
        let raw =
            b"GET /v2/a/blobs/sha256:00?ns=x HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\nGET";
        let (h, n) = request(raw);
        assert_eq!(n, raw.len() - 3);
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.uri.path(), "/v2/a/blobs/sha256:00");
        assert_eq!(h.uri.query(), Some("ns=x"));
        assert_eq!(h.headers["range"], "bytes=0-1");
        assert!(!h.close && !h.has_body);
        let (h, _) = request(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(h.close);
        let (h, _) = request(b"GET / HTTP/1.0\r\n\r\n");
        assert!(h.close);
        let (h, _) = request(b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert!(h.has_body);
    }

    #[test]
    fn partial_preface_and_bad_heads() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHo", 1024),
            Parsed::Partial
        ));
        assert!(matches!(parse(b"PRI * HTTP/2", 1024), Parsed::Partial));
        assert!(matches!(parse(H2_PREFACE, 1024), Parsed::H2));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nX: y\r\n", 10),
            Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 1024),
            Parsed::Bad(StatusCode::BAD_REQUEST, _)
        ));
    }

    #[test]
    fn encodes_heads() {
        let mut resp = http::Response::new(());
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-1/9"),
        );
        let (parts, ()) = resp.into_parts();
        let head = String::from_utf8(encode_head(&parts, 2, false)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-1/9\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        );
    }
}
