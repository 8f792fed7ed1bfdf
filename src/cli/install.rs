use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct InstallArgs {
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub inventory: PathBuf,
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub inventory: PathBuf,
}

pub fn run_install(args: InstallArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("install: not built yet")
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("status: not built yet")
}
