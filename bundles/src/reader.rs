//! Streaming verifying reader: checks the signature, then every entry's path,
//! type, size and sha256 while it streams, handing each file to a sink.

use crate::manifest::{BundleManifest, FileEntry};
use crate::sign::TrustedKeys;
use crate::source::BundleSource;
use crate::Result;
use std::io::Read;

pub enum Trust {
    Keys(TrustedKeys),
    /// Explicit user choice (`--insecure-skip-signature`): no signature needed.
    InsecureUnsigned,
}

/// The manifest as read from the first frame, with its raw bytes and signature.
#[derive(Debug, Clone)]
pub struct ManifestRead {
    pub manifest: BundleManifest,
    pub bytes: Vec<u8>,
    pub signature: Option<String>,
}

/// Reads bundle.json (and its signature) without decompressing the rest.
/// Does not check the signature.
pub fn read_manifest(src: &BundleSource) -> Result<ManifestRead> {
    let _ = src;
    unimplemented!("read_manifest")
}

/// Receives each verified-so-far content entry. `content` yields exactly
/// `entry.size` bytes; the reader hashes them as the sink reads, and fails the
/// whole run after the sink returns if the hash does not match, so sinks must
/// write to a staging area that is discarded on error.
pub trait EntrySink {
    fn file(&mut self, entry: &FileEntry, content: &mut dyn Read) -> Result<()>;
}

/// Discards content (used by `bundle verify`).
pub struct NullSink;

impl EntrySink for NullSink {
    fn file(&mut self, _entry: &FileEntry, content: &mut dyn Read) -> Result<()> {
        std::io::copy(content, &mut std::io::sink())
            .map_err(|e| crate::Error::io("<bundle>", e))?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub manifest: BundleManifest,
    pub manifest_bytes: Vec<u8>,
    pub signature: Option<String>,
    /// sha256 of bundle.json bytes, hex.
    pub manifest_sha256: String,
}

/// Verify the signature, then stream, check and hand every entry to `sink`.
/// Any problem is `Error::Verification` naming the entry or part.
pub fn verify_and_extract(
    src: &BundleSource,
    trust: &Trust,
    sink: &mut dyn EntrySink,
) -> Result<VerifiedBundle> {
    let _ = (src, trust, sink);
    unimplemented!("verify_and_extract")
}
