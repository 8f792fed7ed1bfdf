//! minisign (Ed25519) keys and signatures over bundle.json.
//! `minisign -Vm bundle.json -p key.pub` must verify what this writes.

use crate::Result;
use std::path::{Path, PathBuf};

/// Writes `<base>.pub` and `<base>.key` (unencrypted secret key, mode 0600).
/// Refuses to overwrite an existing key. Returns (public, secret) paths.
pub fn generate_keypair(base: &Path) -> Result<(PathBuf, PathBuf)> {
    let _ = base;
    unimplemented!("generate_keypair")
}

pub struct SigningKey {}

impl SigningKey {
    pub fn load(path: &Path) -> Result<Self> {
        let _ = path;
        unimplemented!("SigningKey::load")
    }

    /// Returns the full .minisig text with the given trusted comment.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String> {
        let _ = (data, trusted_comment);
        unimplemented!("SigningKey::sign")
    }
}

pub struct TrustedKeys {}

impl TrustedKeys {
    /// Each path is a minisign public key file or a directory of `*.pub` files.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let _ = paths;
        unimplemented!("TrustedKeys::load")
    }

    /// Ok when `signature` (minisig text) is a valid signature of `data` by one of the keys.
    pub fn verify(&self, data: &[u8], signature: &str) -> Result<()> {
        let _ = (data, signature);
        unimplemented!("TrustedKeys::verify")
    }
}
