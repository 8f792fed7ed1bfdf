use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct UnpackArgs {
    pub bundle: PathBuf,
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
}

pub fn run(args: UnpackArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("bundle unpack: not built yet")
}
