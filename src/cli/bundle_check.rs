use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {
    /// Base path: writes BASE.pub and BASE.key.
    #[arg(short = 'o', long = "output")]
    pub base: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    pub bundle: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    /// Trusted public key file or directory of keys (default /etc/ferry/trusted/).
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// Accept a bundle without a valid signature.
    #[arg(long)]
    pub insecure_skip_signature: bool,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("bundle keygen: not built yet")
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("bundle inspect: not built yet")
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("bundle verify: not built yet")
}
