//! `ferry drill`: the guide's drills, each leaving a dated report.

use super::install::RunningCluster;
use clap::{Args, Subcommand};
use ferry_installer::install;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DrillCommand {
    /// Restore a backup into a throwaway etcd and check it against the snapshot.
    EtcdRestore(EtcdRestoreArgs),
}

/// The newest backup in <cluster-dir>/backups (or --snapshot) is checked
/// against its .sha256, copied to a healthy member's host and restored into
/// a single-member etcd listening on unix sockets in a directory of its own
/// (the live cluster is only read). Its revision must equal the snapshot's,
/// it must serve its keys, and its hashkv at that revision must equal a
/// live member's while the cluster still has that revision; then it is
/// stopped and removed. The report goes to <cluster-dir>/drills/. Exits 1
/// when the drill fails.
#[derive(Args)]
pub struct EtcdRestoreArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// The snapshot to drill with (default: the newest backup).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
}

pub fn run(cmd: DrillCommand) -> anyhow::Result<()> {
    match cmd {
        DrillCommand::EtcdRestore(args) => etcd_restore(args),
    }
}

fn etcd_restore(args: EtcdRestoreArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(false)?;
    let report = install::drill_etcd_restore(
        &args.cluster.data_dir,
        &bundle,
        &cluster,
        &args.cluster.ssh.access(),
        args.snapshot,
    )?;
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "etcd restore drill on {} with {}: snapshot revision {}, restored revision {} ({} live keys), hashkv at that revision {} (restored {}), {:.1}s: {}\nreport: {}",
            report.host,
            report.snapshot.display(),
            report.snapshot_revision,
            report.restored_revision,
            report.live_keys,
            report.hash_compared,
            report.restored_hash,
            report.seconds,
            if report.passed { "passed" } else { "FAILED" },
            report.report.display()
        );
    }
    if !report.passed {
        anyhow::bail!(
            "the etcd restore drill failed: see {}",
            report.report.display()
        );
    }
    Ok(())
}
