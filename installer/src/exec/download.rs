//! Copying a file from a host to the deploy host: streamed through one
//! buffer (memory does not grow with the file) and hashed on the way.

use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What a download wrote: its size and sha256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
}

/// Writes everything `from` yields to a new file at `to` (fsynced), hashing it.
pub(super) async fn copy_hashing(
    mut from: impl AsyncRead + Unpin,
    to: &Path,
) -> std::io::Result<Downloaded> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).await?;
        bytes += n as u64;
    }
    file.sync_all().await?;
    Ok(Downloaded {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}
