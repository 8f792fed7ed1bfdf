//! The signature trust flags shared by verify, unpack and install.

use anyhow::Context;
use clap::Args;
use ferry_bundles::{BundleSource, Trust, TrustedKeys};
use std::path::PathBuf;

/// Where trusted public keys live when no `--trust` is given.
pub const DEFAULT_TRUST_DIR: &str = "/etc/ferry/trusted/";

#[derive(Args)]
pub struct TrustArgs {
    /// Trusted public key file or directory of *.pub keys (default /etc/ferry/trusted/).
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// Accept a bundle without a valid signature (hashes are still checked).
    #[arg(long)]
    pub insecure_skip_signature: bool,
}

impl TrustArgs {
    /// The trust policy for `src`; warns on stderr when signatures are skipped.
    pub fn resolve(&self, src: &BundleSource) -> anyhow::Result<Trust> {
        if self.insecure_skip_signature {
            eprintln!(
                "warning: --insecure-skip-signature: the signature of {} is not checked",
                src.display()
            );
            return Ok(Trust::InsecureUnsigned);
        }
        let paths = if self.trust.is_empty() {
            vec![PathBuf::from(DEFAULT_TRUST_DIR)]
        } else {
            self.trust.clone()
        };
        let keys = TrustedKeys::load(&paths).context("loading trusted keys")?;
        Ok(Trust::Keys(keys))
    }
}
