use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanArgs {
    #[arg(long)]
    pub inventory: PathBuf,
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub bundle: PathBuf,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("plan: not built yet")
}
