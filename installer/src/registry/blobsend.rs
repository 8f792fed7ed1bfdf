//! Sending a blob's bytes ([`BlobFile`]): sendfile(2) from the page cache
//! straight into a plain TCP socket, large reads written into TLS, or a
//! stream of chunks for an HTTP/2 body.
//!
//! File reads here are plain blocking reads on the async worker, as nginx
//! does: blobs are read sequentially and almost always from the page cache,
//! and a hop to the blocking pool per chunk costs more CPU than it saves.

use super::api::BlobFile;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Bytes per sendfile(2) call; the socket takes what fits in its buffer.
const SENDFILE_MAX: usize = 16 * 1024 * 1024;
/// Read size for TLS and HTTP/2: large reads, few wakeups, 16 TLS records each.
const READ_CHUNK: usize = 256 * 1024;

fn stalled(stall: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("client read nothing for {stall:?} (--idle-timeout)"),
    )
}

fn short_file(blob: &BlobFile) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "blob file ended before byte {}; the store was changed while serving, re-run ferry bundle unpack",
            blob.start + blob.len
        ),
    )
}

/// sendfile(2) refused the file before sending a byte (a filesystem that does
/// not support it): the caller falls back to [`copy`].
pub fn unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
}

/// sendfile(2) the blob's range into `sock`; gives up when the client takes
/// nothing for `stall`. Fails with `ErrorKind::Unsupported`, having sent
/// nothing, where the file's filesystem cannot sendfile.
pub async fn sendfile(sock: &TcpStream, blob: &BlobFile, stall: Duration) -> io::Result<()> {
    let (out, src) = (sock.as_raw_fd(), blob.file.as_raw_fd());
    let mut offset = blob.start as libc::off_t;
    let end = blob.start + blob.len;
    while (offset as u64) < end {
        let count = ((end - offset as u64) as usize).min(SENDFILE_MAX);
        // async_io waits for writability and retries on EAGAIN.
        let sent = tokio::time::timeout(
            stall,
            sock.async_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors stay open for the call (borrowed
                // above) and `offset` is a valid, exclusively borrowed off_t.
                let n = unsafe { libc::sendfile(out, src, &mut offset, count) };
                if n < 0 {
                    let err = io::Error::last_os_error();
                    let first = offset as u64 == blob.start;
                    Err(match err.raw_os_error() {
                        Some(libc::EINVAL | libc::ENOSYS) if first => {
                            io::Error::new(io::ErrorKind::Unsupported, err)
                        }
                        _ => err,
                    })
                } else {
                    Ok(n as usize)
                }
            }),
        )
        .await
        .map_err(|_| stalled(stall))??;
        if sent == 0 {
            return Err(short_file(blob));
        }
    }
    Ok(())
}

/// Reads the blob's range in large chunks and writes them to `out` (a TLS
/// stream); gives up when a write makes no progress for `stall`.
pub async fn copy<W: AsyncWrite + Unpin>(
    out: &mut W,
    blob: &BlobFile,
    stall: Duration,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK.min(blob.len as usize)];
    let mut offset = blob.start;
    let end = blob.start + blob.len;
    while offset < end {
        let want = ((end - offset) as usize).min(buf.len());
        let n = blob.file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(short_file(blob));
        }
        tokio::time::timeout(stall, out.write_all(&buf[..n]))
            .await
            .map_err(|_| stalled(stall))??;
        offset += n as u64;
    }
    tokio::time::timeout(stall, out.flush())
        .await
        .map_err(|_| stalled(stall))?
}

/// The blob as a streaming body (HTTP/2). `guard` lives until the last chunk
/// is taken or the stream is dropped: it marks the connection busy.
pub fn body<G: Send + 'static>(blob: BlobFile, guard: G) -> Body {
    let state = (blob, guard);
    Body::from_stream(futures::stream::unfold(state, |(mut blob, guard)| async {
        if blob.len == 0 {
            return None;
        }
        let want = (blob.len as usize).min(READ_CHUNK);
        let mut buf = BytesMut::zeroed(want);
        let chunk: io::Result<Bytes> = match blob.file.read_at(&mut buf, blob.start) {
            Ok(0) => Err(short_file(&blob)),
            Ok(n) => {
                buf.truncate(n);
                Ok(buf.freeze())
            }
            Err(e) => Err(e),
        };
        match chunk {
            Ok(c) => {
                blob.start += c.len() as u64;
                blob.len -= c.len() as u64;
                Some((Ok(c), (blob, guard)))
            }
            Err(e) => {
                blob.len = 0;
                Some((Err(e), (blob, guard)))
            }
        }
    }))
}
