//! `ferry drill`: the guide's drills, each leaving a dated report.

use super::install::RunningCluster;
use clap::{Args, Subcommand};
use ferry_installer::install;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DrillCommand {
    /// Restore a backup into a throwaway etcd and check it against the snapshot.
    EtcdRestore(EtcdRestoreArgs),
    /// Fail one master (etcd, control plane, keepalived when it holds the
    /// VIP), time the failover, and bring it back.
    MasterFailure(MasterFailureArgs),
}

/// One master's etcd member and control plane are stopped, and its
/// keepalived when it holds the VIP. The drill times how long until
/// another [ex_lb] host holds the VIP, the other etcd members answer
/// healthy (quorum), and the API answers /readyz through the VIP and
/// through every node's local balancer. Then the master is started again,
/// etcd first, and must be ready behind the VIP with the controllers'
/// leases held. Refused on a cluster that is not healthy, or when the
/// failure would cost etcd its quorum. The report goes to
/// <cluster-dir>/drills/. Exits 1 when the drill fails.
#[derive(Args)]
pub struct MasterFailureArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// The master to fail (default: the one holding the VIP, else the first).
    #[arg(long)]
    pub host: Option<String>,
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
        DrillCommand::MasterFailure(args) => master_failure(args),
    }
}

fn master_failure(args: MasterFailureArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(false)?;
    let r = install::drill_master_failure(
        &args.cluster.data_dir,
        &bundle,
        &cluster,
        &args.cluster.ssh.access(),
        args.host.as_deref(),
    )?;
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let secs = |s: Option<f64>| s.map_or("never".to_string(), |s| format!("{s:.1}s"));
        println!(
            "master-failure drill on {} ({}; stopping took {:.1}s):",
            r.host,
            r.stopped_units.join(" "),
            r.stop_seconds
        );
        if r.held_vip {
            println!(
                "  VIP moved to {} after {}",
                r.vip_holder_after.as_deref().unwrap_or("no host"),
                secs(r.vip_moved_seconds)
            );
        }
        println!(
            "  etcd quorum answered after {}",
            secs(r.etcd_quorum_seconds)
        );
        println!(
            "  API through the VIP answered after {}",
            secs(r.api_via_vip_seconds)
        );
        for b in &r.local_balancers {
            println!(
                "  API through {}'s local balancer answered after {}",
                b.host,
                secs(b.seconds)
            );
        }
        println!(
            "  {} ready again after {}",
            r.host,
            secs(r.recovered_seconds)
        );
        for p in &r.problems {
            println!("  problem: {p}");
        }
        println!(
            "{:.1}s: {}\nreport: {}",
            r.seconds,
            if r.passed { "passed" } else { "FAILED" },
            r.report.display()
        );
    }
    if !r.passed {
        anyhow::bail!(
            "the master-failure drill failed: see {}",
            r.report.display()
        );
    }
    Ok(())
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
