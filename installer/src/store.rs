//! The unpacked data directory (`--data-dir`, default `/var/lib/ferry`):
//!
//! ```text
//! <data-dir>/blobs/sha256/<hex>     shared content store of image blobs (all bundles share it)
//! <data-dir>/bundles/<name>/        bundle.json, bundle.json.minisig, bin/, archives/,
//!                                   manifests/, images/{oci-layout,index.json}
//! <data-dir>/.staging/              unpack work area (same filesystem, removed on failure)
//! ```
//!
//! A bundle's `images/blobs/sha256/<hex>` entries are not kept under its own
//! directory: they live once in the shared store. Use [`Store::file_path`] to
//! map any bundle path to where it is on disk.

use ferry_bundles::BundleManifest;
use std::path::{Path, PathBuf};

pub const BLOBS_DIR: &str = "blobs/sha256";
pub const BUNDLES_DIR: &str = "bundles";
pub const STAGING_DIR: &str = ".staging";
/// Prefix of image blob entries inside a bundle.
pub const IMAGE_BLOB_PREFIX: &str = "images/blobs/sha256/";

/// Beside an unpacked bundle.json: how its signature was trusted at unpack.
pub const TRUST_RECORD: &str = ".ferry-trust";
const TRUST_VERIFIED: &str = "signature verified";
const TRUST_SKIPPED: &str = "signature NOT checked (--insecure-skip-signature)";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The message carries the cause; it is not also a `source`, so a
    // printed chain does not repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: invalid bundle.json: {cause}")]
    Manifest {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    Digest(String),
    #[error("invalid bundle name {0:?}: expected letters, digits, '.', '_', '-'")]
    Name(String),
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A handle on the data dir; creates nothing (see [`Store::create_dirs`]).
    pub fn open(data_dir: impl Into<PathBuf>) -> Self {
        Store {
            root: data_dir.into(),
        }
    }

    /// Creates the data dir skeleton (blobs/sha256, bundles) if missing.
    pub fn create_dirs(&self) -> Result<(), StoreError> {
        for dir in [self.blobs_dir(), self.bundles_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.root.join(BUNDLES_DIR)
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    /// `<data-dir>/bundles/<name>`. The name comes from bundle.json, so it is checked.
    pub fn bundle_dir(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        Ok(self.bundles_dir().join(name))
    }

    /// `<data-dir>/blobs/sha256/<hex>` for `sha256:<hex>`.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        let hex = digest_hex(digest)?;
        Ok(self.blobs_dir().join(hex))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Names of the unpacked bundles (directories under bundles/ holding a bundle.json), sorted.
    pub fn bundles(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.bundles_dir();
        let read = match std::fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_name(&name).is_ok()
                && entry
                    .path()
                    .join(ferry_bundles::manifest::MANIFEST_PATH)
                    .is_file()
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Where the bundle's file `bundle_path` (as listed in bundle.json) is on disk:
    /// image blobs resolve to the shared store, everything else to the bundle dir.
    pub fn file_path(&self, bundle: &str, bundle_path: &str) -> Result<PathBuf, StoreError> {
        if let Some(hex) = bundle_path.strip_prefix(IMAGE_BLOB_PREFIX) {
            return self.blob_path(&format!("sha256:{hex}"));
        }
        Ok(self.bundle_dir(bundle)?.join(bundle_path))
    }

    /// The unpacked bundle's images/ directory (oci-layout and index.json; blobs are shared).
    pub fn images_dir(&self, bundle: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .bundle_dir(bundle)?
            .join(ferry_bundles::manifest::IMAGES_DIR))
    }

    /// Raw bytes of an unpacked bundle's bundle.json.
    pub fn manifest_bytes(&self, bundle: &str) -> Result<Vec<u8>, StoreError> {
        let path = self
            .bundle_dir(bundle)?
            .join(ferry_bundles::manifest::MANIFEST_PATH);
        // Bounded: the store is on disk where other hands may reach it.
        ferry_bundles::bounded::read_file(
            &path,
            ferry_bundles::manifest::MAX_MANIFEST_BYTES,
            ferry_bundles::manifest::MANIFEST_PATH,
        )
        .map_err(|e| StoreError::io(&path, std::io::Error::other(e.to_string())))
    }

    /// Whether the unpacked bundle's signature was checked when it was
    /// unpacked: `Some(false)` after `--insecure-skip-signature`, `None` for a
    /// bundle unpacked before the store kept this record.
    pub fn signature_checked(&self, bundle: &str) -> Option<bool> {
        let path = self.bundle_dir(bundle).ok()?.join(TRUST_RECORD);
        match std::fs::read_to_string(path).ok()?.trim() {
            TRUST_VERIFIED => Some(true),
            _ => Some(false),
        }
    }

    /// Records how the unpacked bundle `bundle_dir` was trusted.
    pub fn record_trust(bundle_dir: &Path, verified: bool) -> Result<(), StoreError> {
        let path = bundle_dir.join(TRUST_RECORD);
        let text = format!(
            "{}\n",
            if verified {
                TRUST_VERIFIED
            } else {
                TRUST_SKIPPED
            }
        );
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        std::fs::write(&path, text).map_err(|e| StoreError::io(&path, e))
    }

    /// An unpacked bundle's bundle.json, parsed.
    pub fn manifest(&self, bundle: &str) -> Result<BundleManifest, StoreError> {
        let bytes = self.manifest_bytes(bundle)?;
        BundleManifest::from_bytes(&bytes).map_err(|source| StoreError::Manifest {
            path: self
                .bundles_dir()
                .join(bundle)
                .join(ferry_bundles::manifest::MANIFEST_PATH),
            cause: source,
        })
    }
}

/// `sha256:<hex>` -> `<hex>`, checking the form (64 lowercase hex digits).
pub fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| StoreError::Digest(digest.to_owned()))?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(StoreError::Digest(digest.to_owned()))
    }
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Name(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn image_blobs_resolve_to_the_shared_store() {
        let store = Store::open("/data");
        let blob = store
            .file_path("prod", &format!("images/blobs/sha256/{HEX}"))
            .unwrap();
        assert_eq!(blob, PathBuf::from(format!("/data/blobs/sha256/{HEX}")));
        let index = store.file_path("prod", "images/index.json").unwrap();
        assert_eq!(index, PathBuf::from("/data/bundles/prod/images/index.json"));
    }

    #[test]
    fn rejects_bad_digests_and_names() {
        let store = Store::open("/data");
        assert!(store.blob_path("sha256:../../etc/passwd").is_err());
        assert!(store.blob_path(&format!("sha512:{HEX}")).is_err());
        assert!(store
            .blob_path(&format!("sha256:{}", HEX.to_uppercase()))
            .is_err());
        assert!(store.file_path("prod", "images/blobs/sha256/../x").is_err());
        assert!(store.bundle_dir("../etc").is_err());
        assert!(store.bundle_dir(".staging").is_err());
        assert!(store.bundle_dir("prod-1.29.6").is_ok());
    }

    #[test]
    fn lists_only_directories_with_a_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path());
        assert!(store.bundles().unwrap().is_empty());
        store.create_dirs().unwrap();
        std::fs::create_dir_all(store.bundles_dir().join("b")).unwrap();
        std::fs::write(store.bundles_dir().join("b/bundle.json"), "{}").unwrap();
        std::fs::create_dir_all(store.bundles_dir().join("a")).unwrap();
        std::fs::write(store.bundles_dir().join("a/bundle.json"), "{}").unwrap();
        std::fs::create_dir_all(store.bundles_dir().join("empty")).unwrap();
        assert_eq!(
            store.bundles().unwrap(),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }
}
