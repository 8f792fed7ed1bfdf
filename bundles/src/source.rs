//! Where the bundle's bytes come from: one `.tar.zst` file, or split parts
//! described by `<name>.parts.json`, read in place in order.

use crate::Result;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum BundleSource {
    Single(PathBuf),
    /// `parts_json` lists the parts with size and sha256, plus the whole stream's sha256.
    Parts {
        parts_json: PathBuf,
        parts: Vec<PathBuf>,
    },
}

impl BundleSource {
    /// Accepts `x.tar.zst`, `x.parts.json`, or the first part `x.tar.zst.000`.
    pub fn open(path: &Path) -> Result<Self> {
        let _ = path;
        unimplemented!("BundleSource::open")
    }

    /// The compressed stream. For parts, each part is hashed as it is read and
    /// a mismatch is a verification error naming the part.
    pub fn reader(&self) -> Result<Box<dyn Read + Send>> {
        unimplemented!("BundleSource::reader")
    }

    /// Path shown to users.
    pub fn display(&self) -> String {
        match self {
            BundleSource::Single(p) => p.display().to_string(),
            BundleSource::Parts { parts_json, .. } => parts_json.display().to_string(),
        }
    }
}
