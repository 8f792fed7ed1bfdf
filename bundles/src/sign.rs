//! minisign (Ed25519) keys and signatures over bundle.json.
//! `minisign -Vm bundle.json -p key.pub` must verify what this writes.
//!
//! Secret keys are written unencrypted in minisign's own unencrypted layout
//! (KDF algorithm bytes zero, as `minisign -G -W` writes), so the stock tool
//! loads them without a password prompt, and keys made by `minisign -G -W`
//! load here. Password-protected keys load when FERRY_SIGN_KEY_PASSWORD is set.

use crate::manifest::BundleManifest;
use crate::{Error, Result};
use base64::Engine;
use minisign::{PublicKey, PublicKeyBox, SecretKey, SignatureBox};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Environment variable holding the password of an encrypted secret key.
pub const PASSWORD_ENV: &str = "FERRY_SIGN_KEY_PASSWORD";
const SIG_WHAT: &str = "bundle.json.minisig";

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn key_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

/// Key id as minisign prints it.
fn key_id(keynum: &[u8]) -> String {
    let mut le = [0u8; 8];
    le.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:016X}", u64::from_le_bytes(le))
}

/// Writes `<base>.pub` and `<base>.key` (unencrypted secret key, mode 0600).
/// Refuses to overwrite an existing key. Returns (public, secret) paths.
pub fn generate_keypair(base: &Path) -> Result<(PathBuf, PathBuf)> {
    let pub_path = with_suffix(base, ".pub");
    let key_path = with_suffix(base, ".key");
    for p in [&pub_path, &key_path] {
        if p.exists() {
            return Err(Error::Invalid(format!(
                "{} already exists; refusing to overwrite a key (remove it or choose another -o)",
                p.display()
            )));
        }
    }
    // An empty password computes the checksum and leaves the key unencrypted.
    let pair = minisign::KeyPair::generate_encrypted_keypair(Some(String::new()))
        .map_err(|e| Error::Invalid(format!("generating a key pair: {e}")))?;
    let mut raw = pair.sk.to_bytes();
    raw[2..4].copy_from_slice(&[0, 0]); // KDF "none": minisign's unencrypted layout
    let id = key_id(pair.pk.keynum());
    let secret = format!(
        "untrusted comment: minisign secret key {id} (unencrypted, ferry)\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
    let public = pair
        .pk
        .to_box()
        .map_err(|e| Error::Invalid(format!("encoding the public key: {e}")))?;

    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(|e| Error::io(&key_path, e))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&key_path, e))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&pub_path)
        .map_err(|e| Error::io(&pub_path, e))?;
    f.write_all(&public.to_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&pub_path, e))?;
    Ok((pub_path, key_path))
}

/// The trusted comment ferry signs: name, Kubernetes version and the sha256
/// of the exact bundle.json bytes (single line, as minisign requires).
pub fn trusted_comment(manifest: &BundleManifest, manifest_bytes: &[u8]) -> String {
    let clean = |s: &str| s.replace(['\n', '\r'], " ");
    format!(
        "ferry bundle name={} kubernetes={} sha256={}",
        clean(&manifest.name),
        clean(&manifest.kubernetes),
        hex::encode(Sha256::digest(manifest_bytes))
    )
}

pub struct SigningKey {
    sk: SecretKey,
    pk: PublicKey,
}

impl SigningKey {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let encoded = text
            .lines()
            .nth(1)
            .ok_or_else(|| key_error(path, "not a minisign secret key file"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| key_error(path, "not a minisign secret key file"))?;
        let sk = if raw.get(2..4) == Some(b"Sc") {
            let password = std::env::var(PASSWORD_ENV).map_err(|_| {
                key_error(
                    path,
                    format!("the key is password-protected; set {PASSWORD_ENV} or use an unencrypted key (ferry bundle keygen)"),
                )
            })?;
            SecretKey::from_box(text.into(), Some(password))
                .map_err(|e| key_error(path, format!("cannot load the secret key: {e}")))?
        } else {
            // Unencrypted (stock minisign leaves the checksum zero for these).
            SecretKey::from_bytes(&raw)
                .map_err(|e| key_error(path, format!("cannot load the secret key: {e}")))?
        };
        let pk = PublicKey::from_secret_key(&sk).map_err(|e| key_error(path, e))?;
        Ok(SigningKey { sk, pk })
    }

    /// Returns the full .minisig text with the given trusted comment.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String> {
        if trusted_comment.contains(['\n', '\r']) {
            return Err(Error::Invalid(
                "a trusted comment must be a single line".into(),
            ));
        }
        let untrusted = format!(
            "signature from ferry secret key {}",
            key_id(self.pk.keynum())
        );
        let sig = minisign::sign(
            Some(&self.pk),
            &self.sk,
            Cursor::new(data),
            Some(trusted_comment),
            Some(&untrusted),
        )
        .map_err(|e| Error::Invalid(format!("signing bundle.json: {e}")))?;
        Ok(sig.into_string())
    }

    /// The public half, as the text of a `.pub` file.
    pub fn public_key_text(&self) -> Result<String> {
        let b = self
            .pk
            .to_box()
            .map_err(|e| Error::Invalid(format!("encoding the public key: {e}")))?;
        Ok(b.into_string())
    }
}

pub struct TrustedKeys {
    keys: Vec<(PathBuf, PublicKey)>,
}

impl TrustedKeys {
    /// Each path is a minisign public key file or a directory of `*.pub` files.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut keys = Vec::new();
        for path in paths {
            let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                let mut files = Vec::new();
                for entry in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                    let entry = entry.map_err(|e| Error::io(path, e))?;
                    let p = entry.path();
                    if p.extension().is_some_and(|e| e == "pub") && p.is_file() {
                        files.push(p);
                    }
                }
                files.sort();
                for f in files {
                    keys.push((f.clone(), load_public(&f)?));
                }
            } else {
                keys.push((path.clone(), load_public(path)?));
            }
        }
        if keys.is_empty() {
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(Error::Invalid(format!(
                "no trusted public keys found in {}; pass --trust KEY.pub or put *.pub files there",
                list.join(", ")
            )));
        }
        Ok(TrustedKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Ok when `signature` (minisig text) is a valid signature of `data` by one of the keys.
    pub fn verify(&self, data: &[u8], signature: &str) -> Result<()> {
        let sig = SignatureBox::from_string(signature)
            .map_err(|e| Error::verification(SIG_WHAT, format!("malformed signature: {e}")))?;
        let id = key_id(sig.keynum());
        let Some((path, pk)) = self.keys.iter().find(|(_, pk)| pk.keynum() == sig.keynum()) else {
            let trusted: Vec<String> = self
                .keys
                .iter()
                .map(|(p, pk)| format!("{} ({})", key_id(pk.keynum()), p.display()))
                .collect();
            return Err(Error::verification(
                SIG_WHAT,
                format!(
                    "signed by key {id}, which is not trusted (trusted: {})",
                    trusted.join(", ")
                ),
            ));
        };
        minisign::verify(pk, &sig, Cursor::new(data), true, false, false).map_err(|e| {
            Error::verification(
                SIG_WHAT,
                format!(
                    "signature does not verify with {} ({id}): {e}",
                    path.display()
                ),
            )
        })?;
        // The comment is signed too; when it names a digest it must be this one.
        let comment = sig.trusted_comment().unwrap_or_default();
        if let Some(digest) = comment
            .split_whitespace()
            .find_map(|w| w.strip_prefix("sha256="))
        {
            let actual = hex::encode(Sha256::digest(data));
            if digest != actual {
                return Err(Error::verification(
                    SIG_WHAT,
                    format!("trusted comment names sha256 {digest} but bundle.json has {actual}"),
                ));
            }
        }
        Ok(())
    }
}

fn load_public(path: &Path) -> Result<PublicKey> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .map_err(|e| key_error(path, format!("not a minisign public key: {e}")))
}
