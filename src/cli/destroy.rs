//! `ferry destroy`.

use super::install::RunningCluster;
use clap::Args;
use ferry_installer::deploy::placed;
use ferry_installer::install;

/// Takes the cluster off every host of the inventory: ferry's units are
/// stopped and disabled, every file ferry placed (as recorded in
/// <cluster-dir>/placed/) and every file of the archives it unpacked is
/// removed, and system units it only configured run again without its
/// configuration. etcd's, containerd's and kubelet's data and ferry's own
/// (the mirror's images, etcd snapshots on the hosts) are removed only with
/// --purge-data. The cluster dir (PKI, backups, drill reports) stays; OS
/// packages installed from the bundle stay. Without --yes, says what it
/// would remove and changes nothing.
#[derive(Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// Destroy the cluster (without it nothing is changed).
    #[arg(long)]
    pub yes: bool,
    /// Also remove etcd's, containerd's and kubelet's data and /var/lib/ferry on the hosts.
    #[arg(long)]
    pub purge_data: bool,
}

pub fn run(args: DestroyArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(true)?;
    if !args.yes {
        return refuse(&args, &bundle, &cluster);
    }
    let report = install::destroy(
        &args.cluster.data_dir,
        &bundle,
        &cluster,
        &args.cluster.ssh.access(),
        args.purge_data,
    )?;
    for (host, result) in &report.hosts {
        match result {
            Ok(what) => println!("{host}: {what}"),
            Err(e) => println!("{host}: FAILED: {e}"),
        }
    }
    for p in &report.forgotten {
        println!("removed {}", p.display());
    }
    if !report.ok() {
        anyhow::bail!(
            "ferry's units and files are still on the hosts named FAILED above; fix what is named and run ferry destroy again"
        );
    }
    Ok(())
}

/// What --yes would remove, from the records; nothing is changed.
fn refuse(
    args: &DestroyArgs,
    bundle: &str,
    cluster: &install::ClusterInputs,
) -> anyhow::Result<()> {
    let plan = install::plan_read_only(&args.cluster.data_dir, bundle, cluster)?;
    for h in &plan.hosts {
        let record = placed::load(&plan.cluster_dir, &h.name).map_err(anyhow::Error::msg)?;
        println!(
            "{}: {} units, {} files and {} archives ferry placed{}",
            h.name,
            record.units.len(),
            record.files.len(),
            record.archives.len(),
            if args.purge_data {
                ", and the data directories"
            } else {
                ""
            }
        );
    }
    anyhow::bail!(
        "ferry destroy removes the cluster {} from the {} hosts above; nothing was changed: run it again with --yes",
        plan.cluster_name,
        plan.hosts.len()
    )
}
