//! Deterministic writer: tar (ustar/pax, fixed mtime/uid/gid/names) compressed
//! as independent zstd frames with a seek table in a trailing skippable frame.
//! bundle.json and its signature go first, in a frame of their own, so a
//! reader can inspect the manifest without decompressing the rest.

use crate::manifest::FileEntry;
use crate::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Uncompressed bytes per zstd frame (32 MiB by default).
    pub frame_size: usize,
    pub level: i32,
    /// Split the compressed stream into parts of at most this many bytes.
    pub split: Option<u64>,
    /// tar mtime for every entry (SOURCE_DATE_EPOCH or 0).
    pub mtime: u64,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            frame_size: 32 << 20,
            level: 3,
            split: None,
            mtime: 0,
        }
    }
}

/// One content file: its manifest entry and where its bytes are on disk.
#[derive(Debug, Clone)]
pub struct ContentSource {
    pub entry: FileEntry,
    pub source: PathBuf,
}

#[derive(Debug, Clone)]
pub struct WriteReport {
    /// The bundle file, or the parts followed by the parts.json.
    pub outputs: Vec<PathBuf>,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// Writes a bundle to `out` (or `out.000`... plus `<name>.parts.json` when split).
/// `contents` must match the manifest's files (sorted by path, no `in_base`).
pub fn write_bundle(
    out: &Path,
    manifest_bytes: &[u8],
    signature: Option<&str>,
    contents: &[ContentSource],
    opts: &WriteOptions,
) -> Result<WriteReport> {
    let _ = (out, manifest_bytes, signature, contents, opts);
    unimplemented!("write_bundle")
}
