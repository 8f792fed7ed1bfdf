//! Content-addressed cache (`~/.cache/ferry/` by default):
//!
//! ```text
//! blobs/sha256/<hex>        every file: binaries, archives, image blobs, manifests
//! checksums/<sha256(url)>   upstream checksum files, by upstream URL
//! extracted/<hex>.json      which member of tarball <hex> is which blob
//! tmp/<pid>.<random>        downloads in flight (hashed while written)
//! ```
//! A file enters `blobs/` only complete and verified: written to `tmp/`,
//! hashed while written, fsynced, then renamed. A build killed half way leaves
//! only temp files, which the next run removes.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$FERRY_CACHE_DIR` is handled by the CLI; this is the fallback:
    /// `$XDG_CACHE_HOME/ferry` or `~/.cache/ferry`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("ferry");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".cache/ferry")
    }

    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["blobs/sha256", "checksums", "extracted", "tmp"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        let cache = Cache {
            root: root.to_path_buf(),
        };
        cache.remove_stale_temp();
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    /// Size of the cached blob, if present.
    pub fn blob_size(&self, hex: &str) -> Option<u64> {
        std::fs::metadata(self.blob_path(hex))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    pub fn checksum_path(&self, upstream_url: &str) -> PathBuf {
        self.root
            .join("checksums")
            .join(hex::encode(Sha256::digest(upstream_url.as_bytes())))
    }

    pub fn extracted_index(&self, tar_hex: &str) -> PathBuf {
        self.root.join("extracted").join(format!("{tar_hex}.json"))
    }

    pub fn writer(&self) -> Result<BlobWriter> {
        let dir = self.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        Ok(BlobWriter {
            tmp,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Writes small bytes (manifests, indexes) as a blob; returns the hex digest.
    pub fn put_bytes(&self, data: &[u8]) -> Result<String> {
        let hex = hex::encode(Sha256::digest(data));
        if self.blob_size(&hex) == Some(data.len() as u64) {
            return Ok(hex);
        }
        let mut w = self.writer()?;
        w.write(data)?;
        w.commit(self, Some(&hex)).map_err(|e| match e {
            CommitError::Io(e) => *e,
            CommitError::Mismatch { .. } => {
                Error::Usage("cache: digest changed while writing".into())
            }
        })?;
        Ok(hex)
    }

    /// Atomically writes a small metadata file (not content addressed).
    pub fn put_meta(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!("{}.", std::process::id()))
            .tempfile_in(self.root.join("tmp"))
            .map_err(|e| Error::io(dir, e))?;
        tmp.write_all(data).map_err(|e| Error::io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(tmp.path(), e))?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }

    /// Temp files of builds that are no longer running.
    fn remove_stale_temp(&self) {
        let Ok(rd) = std::fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('.').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

pub enum CommitError {
    Io(Box<Error>),
    Mismatch { actual: String },
}

/// A blob being written: hashed as it is written.
pub struct BlobWriter {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.tmp
            .write_all(data)
            .map_err(|e| Error::io(self.tmp.path(), e))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the digest (when `expected` is given), fsyncs and renames into
    /// `blobs/`. On mismatch the temp file is removed. Returns (hex, size).
    pub fn commit(
        self,
        cache: &Cache,
        expected: Option<&str>,
    ) -> std::result::Result<(String, u64), CommitError> {
        let actual = hex::encode(self.hasher.finalize());
        if let Some(exp) = expected {
            if exp != actual {
                return Err(CommitError::Mismatch { actual });
            }
        }
        let dest = cache.blob_path(&actual);
        let path = self.tmp.path().to_path_buf();
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| CommitError::Io(Box::new(Error::io(&path, e))))?;
        self.tmp
            .persist(&dest)
            .map_err(|e| CommitError::Io(Box::new(Error::io(&dest, e.error))))?;
        Ok((actual, self.size))
    }
}
