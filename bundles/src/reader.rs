//! Streaming verifying reader: checks the signature, then every entry's path,
//! type, size and sha256 while it streams, handing each file to a sink.

use crate::decode::DecodedStream;
use crate::hasher::HashThread;
use crate::manifest::{
    BundleManifest, FileEntry, MANIFEST_PATH, MAX_MANIFEST_BYTES as MAX_MANIFEST,
    MAX_SIGNATURE_BYTES as MAX_SIGNATURE, SCHEMA_VERSION, SIGNATURE_PATH,
};
use crate::sign::TrustedKeys;
use crate::source::BundleSource;
use crate::tarfmt::{self, Parsed, BLOCK};
use crate::{safepath, Error, Result};
use sha2::{Digest, Sha256};
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
    let what = format!("bundle {}", src.display());
    let reader = src.reader()?;
    let decoder = zstd::stream::read::Decoder::with_buffer(std::io::BufReader::with_capacity(
        64 << 10,
        reader,
    ))
    .map_err(|e| Error::Invalid(format!("zstd: {e}")))?
    .single_frame();
    // The first frame holds only bundle.json and its signature; the limit
    // guards against a bundle whose first frame is something else.
    let mut first = Vec::new();
    decoder
        .take(MAX_MANIFEST + MAX_SIGNATURE + 4 * BLOCK as u64)
        .read_to_end(&mut first)
        .map_err(|e| match Error::from_io(&what, e) {
            Error::Io { source, .. } => {
                Error::verification(&what, format!("first zstd frame is unreadable: {source}"))
            }
            other => other,
        })?;
    let mut stream = DecodedStream::from_bytes(first, &what);
    let head = read_head(&mut stream, true)?;
    Ok(ManifestRead {
        manifest: head.manifest,
        bytes: head.bytes,
        signature: head.signature,
    })
}

/// Receives each verified-so-far content entry. `content` yields exactly
/// `entry.size` bytes; the reader hashes them as the sink reads, and fails the
/// whole run after the sink returns if the hash does not match, so sinks must
/// write to a staging area that is discarded on error. Read with a large
/// buffer (256 KiB or more): every read is a copy out of a decoded frame.
pub trait EntrySink {
    fn file(&mut self, entry: &FileEntry, content: &mut dyn Read) -> Result<()>;

    /// False when the sink ignores content: the reader then hashes the
    /// decoded buffers in place instead of copying them out (`file` is not called).
    fn wants_content(&self) -> bool {
        true
    }
}

/// Discards content (used by `bundle verify`).
pub struct NullSink;

impl EntrySink for NullSink {
    fn file(&mut self, _entry: &FileEntry, content: &mut dyn Read) -> Result<()> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match content.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::Error::io("<bundle>", e)),
            }
        }
    }

    fn wants_content(&self) -> bool {
        false
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
    match verify_stream(src, trust, sink) {
        Err(e) if e.is_verification() => {
            // With parts, a damaged part shows up first as a bad frame or
            // entry; name the part instead when one is wrong.
            match src.check_parts() {
                Err(Error::Verification { what, reason }) => Err(Error::verification(
                    what,
                    format!("{reason} (first seen as: {e})"),
                )),
                _ => Err(e),
            }
        }
        other => other,
    }
}

fn verify_stream(
    src: &BundleSource,
    trust: &Trust,
    sink: &mut dyn EntrySink,
) -> Result<VerifiedBundle> {
    // Frame 0 alone first, its signature checked before the seek table is
    // read or any decoder starts: nothing else of an untrusted bundle is
    // looked at.
    let first = read_manifest(src)?;
    check_signature(src, trust, &first)?;
    let mut stream = DecodedStream::start(src)?;
    let head = read_head(&mut stream, false)?;
    // The full stream is read again from the start: it must carry the very
    // bytes just verified (the file may have changed in between).
    if head.bytes != first.bytes || head.signature != first.signature {
        return Err(Error::verification(
            format!("bundle {}", src.display()),
            "bundle.json changed while it was verified (is something writing the file?); copy the bundle again",
        ));
    }
    // Hashing runs beside the sink's writes; declared after the stream so
    // it stops first (it holds decode buffers).
    let hasher = sink
        .wants_content()
        .then(|| HashThread::start(stream.recycler()));
    let manifest = head.manifest;
    let mut seen = vec![false; manifest.files.len()];
    let mut prev: Option<String> = None;
    let mut next = head.next;
    while let Some((path, size, mode)) = next {
        check_entry(&manifest, &mut seen, prev.as_deref(), &path, size, mode)?;
        let index = manifest
            .files
            .binary_search_by(|f| f.path.as_str().cmp(&path))
            .map_err(|_| Error::verification(&path, "entry not listed in bundle.json"))?;
        copy_entry(&mut stream, hasher.as_ref(), &manifest.files[index], sink)?;
        prev = Some(path);
        next = next_entry(&mut stream)?;
    }
    end_of_archive(&mut stream)?;
    for (entry, seen) in manifest.files.iter().zip(&seen) {
        if !entry.in_base && !seen {
            return Err(Error::verification(
                &entry.path,
                "listed in bundle.json but missing from the bundle",
            ));
        }
    }
    let manifest_sha256 = hex::encode(Sha256::digest(&head.bytes));
    Ok(VerifiedBundle {
        manifest,
        manifest_bytes: head.bytes,
        signature: head.signature,
        manifest_sha256,
    })
}

/// The signature over bundle.json, as `trust` asks.
fn check_signature(src: &BundleSource, trust: &Trust, head: &ManifestRead) -> Result<()> {
    match trust {
        Trust::Keys(keys) => {
            let sig = head.signature.as_deref().ok_or_else(|| {
                Error::verification(
                    SIGNATURE_PATH,
                    "bundle is not signed (no bundle.json.minisig entry); refusing it without --insecure-skip-signature",
                )
            })?;
            keys.verify(&head.bytes, sig)
        }
        Trust::InsecureUnsigned => {
            tracing::warn!("{}: signature not checked (insecure mode)", src.display());
            Ok(())
        }
    }
}

/// The entry rules that need no content: listed, not in the base, no
/// duplicate, in order, size and mode as listed.
fn check_entry(
    manifest: &BundleManifest,
    seen: &mut [bool],
    prev: Option<&str>,
    path: &str,
    size: u64,
    mode: u32,
) -> Result<()> {
    safepath::check(path).map_err(|why| Error::verification(path, why))?;
    let Ok(index) = manifest
        .files
        .binary_search_by(|f| f.path.as_str().cmp(path))
    else {
        return Err(Error::verification(path, "entry not listed in bundle.json"));
    };
    let entry = &manifest.files[index];
    if seen[index] {
        return Err(Error::verification(path, "duplicate entry"));
    }
    seen[index] = true;
    if entry.in_base {
        return Err(Error::verification(
            path,
            "listed as in the base bundle but also carried in this one",
        ));
    }
    if prev.is_some_and(|p| p >= path) {
        return Err(Error::verification(path, "entries are not sorted by path"));
    }
    if size != entry.size {
        return Err(Error::verification(
            path,
            format!("tar says {size} bytes, bundle.json says {}", entry.size),
        ));
    }
    if mode & 0o7777 != entry.mode {
        return Err(Error::verification(
            path,
            format!(
                "mode {:o}, bundle.json says {:o}",
                mode & 0o7777,
                entry.mode
            ),
        ));
    }
    Ok(())
}

/// Hands the entry's content to the sink, hashing it (on `hasher` when
/// given, else in place), then checks the hash.
fn copy_entry(
    stream: &mut DecodedStream,
    hasher: Option<&HashThread>,
    entry: &FileEntry,
    sink: &mut dyn EntrySink,
) -> Result<()> {
    let mut content = EntryReader {
        stream,
        left: entry.size,
        hash: Sha256::new(),
        hasher,
        entry: &entry.path,
    };
    let result = if sink.wants_content() {
        sink.file(entry, &mut content)
    } else {
        Ok(())
    };
    // A stream error the sink saw as io::Error is reported as what it is.
    if let Some(e) = content.stream.stream_error() {
        return Err(in_entry(e, &entry.path));
    }
    result?;
    content.drain().map_err(|e| in_entry(e, &entry.path))?;
    let EntryReader {
        stream,
        hash,
        hasher,
        ..
    } = content;
    let actual = match hasher {
        Some(h) => h.finish()?,
        None => hex::encode(hash.finalize()),
    };
    if actual != entry.sha256 {
        return Err(Error::verification(
            &entry.path,
            format!(
                "sha256 is {actual}, bundle.json says {} (damaged or altered)",
                entry.sha256
            ),
        ));
    }
    skip_padding(stream, entry.size, &entry.path)
}

/// A damaged frame found while reading an entry names that entry too
/// (part errors keep naming the part).
fn in_entry(e: Error, path: &str) -> Error {
    match e {
        Error::Verification { what, reason } if what.starts_with("bundle ") => {
            Error::verification(path, format!("{reason} ({what})"))
        }
        other => other,
    }
}

fn skip_padding(stream: &mut DecodedStream, size: u64, entry: &str) -> Result<()> {
    let mut pad = [0u8; BLOCK];
    let n = tarfmt::padding(size);
    stream.read_exact(&mut pad[..n], entry)
}

/// Exactly `left` bytes of one entry, hashed as they are read: on `hasher`
/// when there is one (the bytes are shared with it, not copied), else in
/// `hash` on this thread.
struct EntryReader<'a> {
    stream: &'a mut DecodedStream,
    left: u64,
    hash: Sha256,
    hasher: Option<&'a HashThread>,
    entry: &'a str,
}

impl EntryReader<'_> {
    fn drain(&mut self) -> Result<()> {
        while self.left > 0 {
            let want = usize::try_from(self.left).unwrap_or(usize::MAX);
            let got = match self.hasher {
                Some(h) => match self.stream.shared_chunk(want)? {
                    Some(c) => {
                        let n = c.range.len();
                        h.update(c)?;
                        Some(n)
                    }
                    None => None,
                },
                None => {
                    let hash = &mut self.hash;
                    self.stream.with_chunk(want, |c| {
                        hash.update(c);
                        c.len()
                    })?
                }
            };
            match got {
                Some(n) => self.left -= n as u64,
                None => return Err(self.truncated()),
            }
        }
        Ok(())
    }

    fn truncated(&self) -> Error {
        Error::verification(
            self.entry,
            format!(
                "{} is truncated: the stream ends inside this entry",
                self.stream.what()
            ),
        )
    }
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.hasher {
            Some(h) => match self.stream.shared_chunk(want).map_err(Error::into_io)? {
                Some(c) => {
                    let n = c.range.len();
                    buf[..n].copy_from_slice(c.bytes());
                    h.update(c).map_err(Error::into_io)?;
                    n
                }
                None => 0,
            },
            None => self
                .stream
                .read_some(&mut buf[..want])
                .map_err(Error::into_io)?,
        };
        if n == 0 {
            let e = self.truncated();
            // Record it so the caller reports it even if the sink hides it.
            let _ = self.stream.read_exact(&mut [0u8; 1], self.entry);
            return Err(e.into_io());
        }
        if self.hasher.is_none() {
            self.hash.update(&buf[..n]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// bundle.json, its signature (when present), and the entry after them.
struct Head {
    manifest: BundleManifest,
    bytes: Vec<u8>,
    signature: Option<String>,
    next: Option<(String, u64, u32)>,
}

/// `first_frame_only`: the stream is just the first frame, so it may end
/// after the signature.
fn read_head(stream: &mut DecodedStream, first_frame_only: bool) -> Result<Head> {
    let what = stream.what().to_string();
    let Some((path, size, _)) = next_entry(stream)? else {
        return Err(Error::verification(&what, "empty archive: no bundle.json"));
    };
    if path != MANIFEST_PATH {
        return Err(Error::verification(
            &path,
            "the first entry must be bundle.json",
        ));
    }
    if size > MAX_MANIFEST {
        return Err(Error::verification(
            MANIFEST_PATH,
            format!("{size} bytes is more than the {MAX_MANIFEST} bytes a manifest may have; the bundle is damaged or was not written by ferry"),
        ));
    }
    let bytes = read_small(stream, size, MANIFEST_PATH)?;
    let manifest = parse_manifest(&bytes)?;
    if first_frame_only && stream.at_end()? {
        return Ok(Head {
            manifest,
            bytes,
            signature: None,
            next: None,
        });
    }
    let mut next = next_entry(stream)?;
    let mut signature = None;
    if let Some((p, size, _)) = &next {
        if p == SIGNATURE_PATH && manifest.file(SIGNATURE_PATH).is_none() {
            if *size > MAX_SIGNATURE {
                return Err(Error::verification(
                    SIGNATURE_PATH,
                    format!("{size} bytes is more than the {MAX_SIGNATURE} bytes a minisign signature may have; the bundle is damaged or was not written by ferry"),
                ));
            }
            let sig = read_small(stream, *size, SIGNATURE_PATH)?;
            let text = String::from_utf8(sig)
                .map_err(|_| Error::verification(SIGNATURE_PATH, "not UTF-8 text"))?;
            signature = Some(text);
            if first_frame_only {
                return Ok(Head {
                    manifest,
                    bytes,
                    signature,
                    next: None,
                });
            }
            next = next_entry(stream)?;
        }
    }
    Ok(Head {
        manifest,
        bytes,
        signature,
        next,
    })
}

fn read_small(stream: &mut DecodedStream, size: u64, entry: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    stream.read_exact(&mut buf, entry)?;
    skip_padding(stream, size, entry)?;
    Ok(buf)
}

/// Parses bundle.json and checks what the reader relies on: schema, sorted
/// unique safe paths, hex digests, plain permission bits.
pub fn parse_manifest(bytes: &[u8]) -> Result<BundleManifest> {
    let m = BundleManifest::from_bytes(bytes)
        .map_err(|e| Error::verification(MANIFEST_PATH, format!("does not parse: {e}")))?;
    if m.schema != SCHEMA_VERSION {
        return Err(Error::verification(
            MANIFEST_PATH,
            format!("schema {} is not supported (this ferry reads schema {SCHEMA_VERSION}); use a matching ferry", m.schema),
        ));
    }
    let mut prev: Option<&str> = None;
    for f in &m.files {
        let bad = |why: &str| {
            Error::verification(format!("bundle.json file {}", f.path), why.to_string())
        };
        safepath::check(&f.path).map_err(bad)?;
        if prev.is_some_and(|p| p >= f.path.as_str()) {
            return Err(bad(
                "files are not sorted by path, or a path is listed twice",
            ));
        }
        if f.sha256.len() != 64
            || !f
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("sha256 is not 64 lowercase hex digits"));
        }
        if f.mode & !0o777 != 0 {
            return Err(bad("mode has bits beyond rwx (setuid, setgid or sticky)"));
        }
        if f.path == MANIFEST_PATH {
            return Err(bad("reserved name"));
        }
        prev = Some(&f.path);
    }
    Ok(m)
}

/// The next regular-file header (path, size, mode), or None at the first
/// zero block. Any other entry type is an error naming it.
fn next_entry(stream: &mut DecodedStream) -> Result<Option<(String, u64, u32)>> {
    let what = stream.what().to_string();
    let mut block = [0u8; BLOCK];
    if stream.at_end()? {
        return Err(Error::verification(
            &what,
            "truncated: the tar stream ends without an end-of-archive marker",
        ));
    }
    stream.read_exact(&mut block, "tar header")?;
    let mut pax_path = None;
    let parsed = match tarfmt::parse(&block)
        .map_err(|(name, why)| Error::verification(name, why))?
    {
        Parsed::Pax { size } => {
            let data = read_small(stream, size, "pax header")?;
            let path =
                tarfmt::pax_path(&data).map_err(|why| Error::verification("pax header", why))?;
            stream.read_exact(&mut block, &path)?;
            let p = tarfmt::parse(&block).map_err(|(_, why)| Error::verification(&path, why))?;
            pax_path = Some(path);
            p
        }
        p => p,
    };
    match (parsed, pax_path) {
        (Parsed::Zero, None) => Ok(None),
        (Parsed::File { path, size, mode }, pax) => Ok(Some((pax.unwrap_or(path), size, mode))),
        (_, Some(path)) => Err(Error::verification(
            path,
            "pax header not followed by a file header",
        )),
        (Parsed::Pax { .. }, None) => unreachable!("pax handled above"),
    }
}

/// After the first zero block: a second one, then nothing.
fn end_of_archive(stream: &mut DecodedStream) -> Result<()> {
    let what = stream.what().to_string();
    let mut block = [0u8; BLOCK];
    stream.read_exact(&mut block, "end-of-archive marker")?;
    if block.iter().any(|&b| b != 0) {
        return Err(Error::verification(&what, "damaged end-of-archive marker"));
    }
    if !stream.at_end()? {
        return Err(Error::verification(
            &what,
            "data after the end-of-archive marker",
        ));
    }
    Ok(())
}
