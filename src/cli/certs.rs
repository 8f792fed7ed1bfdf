//! `ferry certs check`.

use super::install::RunningCluster;
use clap::{Args, Subcommand};
use ferry_installer::deploy::certs;
use ferry_installer::install;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Every certificate on every host: expiry, days left, and whether the
    /// host's copy is the cluster dir's.
    Check(CheckArgs),
}

/// Reads every certificate ferry placed (the .pem certificates and the
/// client certificates in kubeconfigs; never a key) on every host. Exits 1
/// when any expires within 30 days, differs from the cluster dir's, or
/// cannot be read.
#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(false)?;
    let rows = install::certs_check(
        &args.cluster.data_dir,
        &bundle,
        &cluster,
        &args.cluster.ssh.access(),
    )?;
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", certs::table(&rows));
    }
    let renew = rows.iter().filter(|r| r.needs_renewal()).count();
    if renew > 0 {
        anyhow::bail!(
            "{renew} of {} certificate(s) need attention: expiring within {} days, differing from the cluster dir, or unreadable",
            rows.len(),
            certs::WARN_DAYS
        );
    }
    Ok(())
}
