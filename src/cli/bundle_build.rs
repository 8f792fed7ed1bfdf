use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BuildArgs {
    /// Kubernetes version from the release catalog, e.g. 1.29.6.
    #[arg(long = "k8s")]
    pub kubernetes: String,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("bundle build: not built yet")
}
