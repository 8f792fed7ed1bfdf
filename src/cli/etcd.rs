//! `ferry etcd backup`.

use super::install::RunningCluster;
use clap::{Args, Subcommand};
use ferry_installer::install;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum EtcdCommand {
    /// Take a snapshot of the cluster's etcd and copy it to the deploy host.
    Backup(BackupArgs),
}

/// The snapshot is taken over TLS on a healthy member (not the leader when
/// there is a choice), checked with `snapshot status`, copied (its sha256
/// compared with the member's) as <cluster>-rev<revision>-<UTC time>.db with
/// a .sha256 beside it, and removed from the member. Older backups of the
/// cluster beyond --keep are removed.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// Where the backups go (default: <cluster-dir>/backups).
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// How many backups of this cluster to keep, the newest.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
}

pub fn run(cmd: EtcdCommand) -> anyhow::Result<()> {
    match cmd {
        EtcdCommand::Backup(args) => backup(args),
    }
}

fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(false)?;
    let done = install::etcd_backup(
        &args.cluster.data_dir,
        &bundle,
        &cluster,
        &args.cluster.ssh.access(),
        args.to,
        args.keep as usize,
    )?;
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(());
    }
    println!(
        "etcd backup {} from {}: revision {}, {} keys, {} bytes, sha256 {}",
        done.path.display(),
        done.member,
        done.revision,
        done.keys,
        done.bytes,
        done.sha256
    );
    for p in &done.pruned {
        println!("removed the older backup {}", p.display());
    }
    Ok(())
}
