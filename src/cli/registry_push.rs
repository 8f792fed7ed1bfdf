use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PushArgs {
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
}

pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("registry push: not built yet")
}
