//! `ferry etcd backup` and `ferry etcd restore`.

use super::install::RunningCluster;
use clap::{Args, Subcommand};
use ferry_installer::install;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum EtcdCommand {
    /// Take a snapshot of the cluster's etcd and copy it to the deploy host.
    Backup(BackupArgs),
    /// Replace the cluster's etcd data with a snapshot (the guide's restore).
    Restore(RestoreArgs),
    /// Run on an etcd member's host by its timer (ETCD_BACKUP_SCHEDULE).
    #[command(hide = true)]
    SnapshotLocal(SnapshotLocalArgs),
}

/// A snapshot of the member at --endpoint into --dir, checked with
/// `snapshot status`, with its .sha256; the newest --keep are kept.
#[derive(Args)]
pub struct SnapshotLocalArgs {
    #[arg(long)]
    pub etcdctl: PathBuf,
    #[arg(long)]
    pub endpoint: String,
    #[arg(long)]
    pub cacert: PathBuf,
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub prefix: String,
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
}

/// The snapshot is checked (its .sha256 when one lies beside it, then
/// `snapshot status` on a member) and copied to every member. The control
/// plane stops on every master, then etcd on every member; each member
/// restores into a new data dir with the cluster token and its own name and
/// peer URL, the old dir kept aside as <dir>.before-restore-<time>; the
/// members start together and must all be healthy; the control plane
/// starts and every apiserver must answer /readyz. Refused without --yes
/// while etcd answers.
#[derive(Args)]
pub struct RestoreArgs {
    /// The snapshot (a file `ferry etcd backup` wrote, or any etcd snapshot).
    pub snapshot: PathBuf,
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// Restore although etcd answers: its data is replaced by the snapshot's.
    #[arg(long)]
    pub yes: bool,
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
        EtcdCommand::Restore(args) => restore(args),
        EtcdCommand::SnapshotLocal(args) => snapshot_local(args),
    }
}

fn snapshot_local(args: SnapshotLocalArgs) -> anyhow::Result<()> {
    let (path, pruned) = ferry_installer::deploy::etcd_backup::snapshot_local(
        &ferry_installer::deploy::etcd_backup::LocalSnapshot {
            etcdctl: args.etcdctl,
            endpoint: args.endpoint,
            cacert: args.cacert,
            cert: args.cert,
            key: args.key,
            dir: args.dir,
            prefix: args.prefix,
            keep: args.keep as usize,
        },
    )
    .map_err(anyhow::Error::msg)?;
    println!("etcd snapshot {}", path.display());
    for p in pruned {
        println!("removed the older snapshot {}", p.display());
    }
    Ok(())
}

fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(false)?;
    let done = install::etcd_restore(
        &args.cluster.data_dir,
        &bundle,
        &cluster,
        &args.cluster.ssh.access(),
        &ferry_installer::deploy::etcd_restore::RestoreOptions {
            snapshot: args.snapshot,
            yes: args.yes,
        },
    )?;
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
        return Ok(());
    }
    println!(
        "etcd restored from {} (revision {}) on {}; every member is healthy and every apiserver ready",
        done.snapshot.display(),
        done.revision,
        done.members.join(", ")
    );
    for d in &done.kept_aside {
        println!("kept aside: {d}");
    }
    Ok(())
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
