//! `ferry bundle unpack`: verify and extract a bundle in one streaming pass
//! into a staging directory inside the data dir, then move it into place.
//!
//! The bundle reader checks the signature, every path, size and sha256; this
//! module is the sink that writes what it hands over. Image blobs go to the
//! shared store (`blobs/sha256/`): one the store already has is read and
//! discarded (still hashed by the reader), never rewritten. Nothing outside
//! `.staging/` is touched until the reader returned Ok, so any failure leaves
//! the data dir as it was.

use crate::interrupt::{remove_on_interrupt, OnInterrupt, Removal};
use crate::store::{Store, StoreError, IMAGE_BLOB_PREFIX};
use crate::unpack_writer::{read_full, FileWriter};
use ferry_bundles::manifest::{MANIFEST_PATH, SIGNATURE_PATH};
use ferry_bundles::{read_manifest, verify_and_extract, BundleSource, EntrySink, FileEntry, Trust};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

/// Read and write size: large writes keep syscalls and page-cache churn low.
const BUF_SIZE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Verification failures keep the bundles error in the chain (exit code 3).
    #[error("verifying and extracting {bundle}")]
    Bundle {
        bundle: String,
        #[source]
        source: ferry_bundles::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize)]
pub struct UnpackReport {
    pub bundle: String,
    pub name: String,
    pub dir: PathBuf,
    /// sha256 of bundle.json, hex.
    pub manifest_sha256: String,
    /// Nothing was done: the same bundle.json is already unpacked and complete.
    pub already_unpacked: bool,
    pub files: u64,
    pub bytes: u64,
    /// Image blobs added to the shared store.
    pub blobs_new: u64,
    /// Image blobs the shared store already had.
    pub blobs_reused: u64,
    pub seconds: f64,
}

/// Verifies `src` against `trust` and unpacks it into `data_dir`.
pub fn unpack(
    src: &BundleSource,
    trust: &Trust,
    data_dir: &Path,
) -> Result<UnpackReport, UnpackError> {
    let started = Instant::now();
    let store = Store::open(data_dir);
    let bundle_err = |source| UnpackError::Bundle {
        bundle: src.display(),
        source,
    };

    if let Some(report) = already_unpacked(src, trust, &store).map_err(bundle_err)? {
        return Ok(UnpackReport {
            seconds: started.elapsed().as_secs_f64(),
            ..report
        });
    }

    // Until verification passed, only .staging/ (and a missing data dir) may be created.
    let created_data_dir = !data_dir.exists();
    let staging_root = store.staging_dir();
    std::fs::create_dir_all(&staging_root).map_err(|e| StoreError::io(&staging_root, e))?;
    // Held until the bundle is in place; declared before the staging guard,
    // so it is released after the guard cleaned up.
    let _lock = lock_exclusive(&staging_root)?;
    sweep_stale(&staging_root);
    let staging = Staging::new(&staging_root, created_data_dir.then(|| data_dir.to_owned()))?;
    let mut sink = StoreSink {
        store: &store,
        bundle_dir: staging.path.join("bundle"),
        blobs_dir: staging.path.join("blobs"),
        buf: vec![0u8; BUF_SIZE],
        writer: FileWriter::start(),
        last_dir: None,
        files: 0,
        bytes: 0,
        blobs_new: Vec::new(),
        blobs_reused: 0,
    };
    for dir in [&sink.bundle_dir, &sink.blobs_dir] {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    let verified = verify_and_extract(src, trust, &mut sink);
    let StoreSink {
        writer,
        bundle_dir: staged_bundle,
        blobs_dir: staged_blobs,
        files,
        bytes,
        blobs_new,
        blobs_reused,
        ..
    } = sink;
    // Every file is written (and every write error known) before anything moves.
    let written = writer.finish();
    let verified = verified.map_err(bundle_err)?;
    written.map_err(bundle_err)?;
    store.create_dirs()?;

    // Verified: write bundle.json (+ signature), flush everything once, move into place.
    let name = verified.manifest.name.clone();
    let target = store.bundle_dir(&name)?;
    write_file(&staged_bundle.join(MANIFEST_PATH), &verified.manifest_bytes)?;
    if let Some(sig) = &verified.signature {
        write_file(&staged_bundle.join(SIGNATURE_PATH), sig.as_bytes())?;
    }
    Store::record_trust(&staged_bundle, matches!(trust, Trust::Keys(_)))?;
    sync_filesystem(&staging.path)?;
    let blobs_dir = store.blobs_dir();
    for hex in &blobs_new {
        let from = staged_blobs.join(hex);
        let to = blobs_dir.join(hex);
        std::fs::rename(&from, &to).map_err(|e| StoreError::io(&to, e))?;
    }
    replace_dir(&staged_bundle, &target, &staging.path.join("previous"))?;
    for dir in [&blobs_dir, &store.bundles_dir()] {
        fsync_dir(dir)?;
    }
    let report = UnpackReport {
        bundle: src.display(),
        name,
        dir: target,
        manifest_sha256: verified.manifest_sha256,
        already_unpacked: false,
        files,
        bytes,
        blobs_new: blobs_new.len() as u64,
        blobs_reused,
        seconds: started.elapsed().as_secs_f64(),
    };
    drop(staging);
    Ok(report)
}

/// Same bundle.json already unpacked, signature valid, every file present with
/// its size: nothing to do. Reads only the bundle's first frame.
fn already_unpacked(
    src: &BundleSource,
    trust: &Trust,
    store: &Store,
) -> ferry_bundles::Result<Option<UnpackReport>> {
    let head = read_manifest(src)?;
    let name = &head.manifest.name;
    let Ok(existing) = store.manifest_bytes(name) else {
        return Ok(None);
    };
    let sha = hex::encode(Sha256::digest(&head.bytes));
    if hex::encode(Sha256::digest(&existing)) != sha {
        return Ok(None);
    }
    if let Trust::Keys(keys) = trust {
        let sig = head.signature.as_deref().ok_or_else(|| {
            ferry_bundles::Error::verification(
                SIGNATURE_PATH,
                "bundle is not signed (no bundle.json.minisig entry); refusing it without --insecure-skip-signature",
            )
        })?;
        keys.verify(&head.bytes, sig)?;
        // Checked now, even if an earlier unpack skipped it.
        if let Ok(dir) = store.bundle_dir(name) {
            Store::record_trust(&dir, true)
                .map_err(|e| ferry_bundles::Error::Invalid(e.to_string()))?;
        }
    }
    let mut files = 0;
    let mut bytes = 0;
    for f in head.manifest.files.iter().filter(|f| !f.in_base) {
        let Ok(path) = store.file_path(name, &f.path) else {
            return Ok(None);
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == f.size => {}
            _ => {
                tracing::info!(file = %path.display(), "unpacked copy incomplete; unpacking again");
                return Ok(None);
            }
        }
        files += 1;
        bytes += f.size;
    }
    let dir = store
        .bundle_dir(name)
        .map_err(|e| ferry_bundles::Error::Invalid(e.to_string()))?;
    Ok(Some(UnpackReport {
        bundle: src.display(),
        name: name.clone(),
        dir,
        manifest_sha256: sha,
        already_unpacked: true,
        files,
        bytes,
        blobs_new: 0,
        blobs_reused: 0,
        seconds: 0.0,
    }))
}

struct StoreSink<'a> {
    store: &'a Store,
    bundle_dir: PathBuf,
    blobs_dir: PathBuf,
    /// For reading (and dropping) blobs the store already has.
    buf: Vec<u8>,
    writer: FileWriter,
    /// Last directory created, so runs of files in one directory cost one mkdir.
    last_dir: Option<PathBuf>,
    files: u64,
    bytes: u64,
    /// Hex names of blobs staged for the shared store.
    blobs_new: Vec<String>,
    blobs_reused: u64,
}

impl EntrySink for StoreSink<'_> {
    fn file(&mut self, entry: &FileEntry, content: &mut dyn Read) -> ferry_bundles::Result<()> {
        if crate::interrupt::requested() {
            return Err(ferry_bundles::Error::Invalid("interrupted".into()));
        }
        self.files += 1;
        self.bytes += entry.size;
        if let Some(hex) = entry.path.strip_prefix(IMAGE_BLOB_PREFIX) {
            // The name is the content's digest; the reader checks the content against entry.sha256.
            if hex != entry.sha256 {
                return Err(ferry_bundles::Error::verification(
                    &entry.path,
                    format!(
                        "blob named {hex} but bundle.json lists sha256 {}",
                        entry.sha256
                    ),
                ));
            }
            let digest = format!("sha256:{hex}");
            if self.store.has_blob(&digest) {
                self.blobs_reused += 1;
                return discard(content, &mut self.buf, &entry.path);
            }
            let path = self.blobs_dir.join(hex);
            self.writer.copy(content, &path, entry.mode)?;
            self.blobs_new.push(hex.to_owned());
            return Ok(());
        }
        let rel = relative(&entry.path)?;
        let path = self.bundle_dir.join(rel);
        if let Some(parent) = path.parent() {
            if self.last_dir.as_deref() != Some(parent) {
                std::fs::create_dir_all(parent).map_err(|e| ferry_bundles::Error::io(parent, e))?;
                self.last_dir = Some(parent.to_owned());
            }
        }
        self.writer.copy(content, &path, entry.mode)
    }
}

/// Defence in depth: the reader already rejects unsafe paths.
fn relative(path: &str) -> ferry_bundles::Result<&Path> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Ok(p)
    } else {
        Err(ferry_bundles::Error::verification(path, "unsafe path"))
    }
}

fn discard(content: &mut dyn Read, buf: &mut [u8], what: &str) -> ferry_bundles::Result<()> {
    while read_full(content, buf).map_err(|e| ferry_bundles::Error::io(what, e))? > 0 {}
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    f.write_all(data).map_err(|e| StoreError::io(path, e))
}

/// One syncfs for everything written (instead of an fsync per file).
fn sync_filesystem(dir: &Path) -> Result<(), StoreError> {
    let f = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    // SAFETY: syncfs on an open descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    if rc != 0 {
        return Err(StoreError::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Puts `new` at `target`. An existing target (same name, other bundle.json)
/// is swapped out atomically (renameat2 RENAME_EXCHANGE) and then removed.
fn replace_dir(new: &Path, target: &Path, previous: &Path) -> Result<(), StoreError> {
    if std::fs::symlink_metadata(target).is_err() {
        return std::fs::rename(new, target).map_err(|e| StoreError::io(target, e));
    }
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|e| StoreError::io(p, std::io::Error::other(e)))
    };
    let (cnew, ctarget) = (c(new)?, c(target)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them relative to the cwd.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cnew.as_ptr(),
            libc::AT_FDCWD,
            ctarget.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        // No RENAME_EXCHANGE (old kernel or filesystem): move aside, then rename.
        std::fs::rename(target, previous).map_err(|e| StoreError::io(target, e))?;
        return std::fs::rename(new, target).map_err(|e| StoreError::io(target, e));
    }
    // `new` now holds the old bundle; the staging guard removes it.
    Ok(())
}

/// One unpack at a time per data dir: an exclusive lock on `.staging`
/// itself (no file is added to the data dir), refused at once when taken.
fn lock_exclusive(staging_root: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(staging_root).map_err(|e| StoreError::io(staging_root, e))?;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        let why = if e.kind() == std::io::ErrorKind::WouldBlock {
            std::io::Error::other(
                "another ferry unpack or install is unpacking into this data dir; wait for it to finish",
            )
        } else {
            e
        };
        return Err(StoreError::io(staging_root, why));
    }
    Ok(dir)
}

/// What earlier unpacks left in `.staging` when they were killed: with the
/// lock held, nothing there belongs to a live unpack.
fn sweep_stale(staging_root: &Path) {
    let Ok(entries) = std::fs::read_dir(staging_root) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        tracing::info!(dir = %path.display(), "removing what an interrupted unpack left");
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(err) = removed {
            tracing::warn!(dir = %path.display(), "could not remove: {err}");
        }
    }
}

/// `.staging/<random>`; removed on drop, whether the unpack succeeded or not.
struct Staging {
    path: PathBuf,
    /// The data dir when this unpack created it: removed again if still empty.
    created: Option<PathBuf>,
    /// The same removals if the process is interrupted (Ctrl-C) instead.
    _on_interrupt: Vec<OnInterrupt>,
}

impl Staging {
    fn new(root: &Path, created: Option<PathBuf>) -> Result<Staging, StoreError> {
        // Registered before it exists: an interrupt at any moment after
        // this finds it (one unpack at a time holds the lock, so the name
        // is this unpack's own).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = root.join(format!("unpack-{}-{nanos:09}", std::process::id()));
        let mut on_interrupt = vec![
            remove_on_interrupt(&path, Removal::Tree),
            remove_on_interrupt(root, Removal::IfEmpty),
        ];
        if let Some(data_dir) = &created {
            on_interrupt.push(remove_on_interrupt(data_dir, Removal::IfEmpty));
        }
        std::fs::create_dir(&path).map_err(|e| StoreError::io(&path, e))?;
        Ok(Staging {
            path,
            created,
            _on_interrupt: on_interrupt,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), "could not remove the staging directory: {e}");
        }
        // Leave no empty .staging behind either (ignored if another unpack uses it).
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        if let Some(data_dir) = &self.created {
            let _ = std::fs::remove_dir(data_dir);
        }
    }
}
