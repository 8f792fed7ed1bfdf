//! `ferry node add` and `ferry node remove`.

use super::install::{print_progress, print_report, RunningCluster};
use clap::{Args, Subcommand};
use ferry_installer::deploy::remove::RemoveOptions;
use ferry_installer::install::{self, NodeAddRequest, NodeRemoveRequest};
use std::time::Duration;

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Add hosts that are already in the inventory to the running cluster.
    Add(AddArgs),
    /// Take hosts out of the running cluster (they are still in the inventory).
    Remove(RemoveArgs),
}

/// Name hosts the inventory still lists; take them out of it afterwards.
/// Refused before any change when etcd would lose its quorum. Nodes are
/// drained with the bundle's kubectl (PodDisruptionBudgets respected) and
/// deleted; etcd members are removed one at a time; the remaining hosts
/// are deployed without them (load balancers, etcd endpoints); on each
/// removed host ferry's units are stopped and disabled and every file
/// ferry recorded placing there is removed. Data directories (etcd,
/// containerd, kubelet, /var/lib/ferry) are kept unless --purge-data.
#[derive(Args)]
pub struct RemoveArgs {
    /// The hosts to remove (inventory names or addresses).
    #[arg(required = true)]
    pub hosts: Vec<String>,
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// Also remove the hosts' data directories.
    #[arg(long)]
    pub purge_data: bool,
    /// How long draining a node may take, in seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout: u64,
    /// Accept an even number of etcd members left.
    #[arg(long)]
    pub force: bool,
}

/// Edit the inventory first (as with kubeasz), then name the new hosts.
/// Preflight runs on every host; the new hosts get the baseline, binaries
/// and their roles; new etcd members join one at a time (`member add`,
/// then `--initial-cluster-state=existing`, healthy before the next);
/// running etcd members and apiservers that must change (new endpoints,
/// certificates with new SANs) restart one at a time; every load balancer
/// learns the new masters. Other hosts get only what concerns them.
#[derive(Args)]
pub struct AddArgs {
    /// The hosts to add (inventory names or addresses).
    #[arg(required = true)]
    pub hosts: Vec<String>,
    #[command(flatten)]
    pub cluster: RunningCluster,
    /// Accept an even number of etcd members (on the way from 3 to 5).
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Add(args) => add(args),
        NodeCommand::Remove(args) => remove(args),
    }
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(args.force)?;
    let request = NodeAddRequest {
        data_dir: args.cluster.data_dir.clone(),
        bundle,
        cluster,
        access: args.cluster.ssh.access(),
        hosts: args.hosts,
    };
    let json = args.cluster.json;
    let report = install::node_add(request, |event| {
        if !json {
            print_progress(event);
        }
    })?;
    print_report(&report, json)?;
    let unfinished: Vec<&str> = report
        .hosts
        .iter()
        .filter(|h| h.status != ferry_installer::deploy::Status::Ok)
        .map(|h| h.host.as_str())
        .collect();
    if !unfinished.is_empty() {
        anyhow::bail!(
            "{} of {} hosts did not finish: {} (see their logs above; fix and run ferry node add again)",
            unfinished.len(),
            report.hosts.len(),
            unfinished.join(", ")
        );
    }
    Ok(())
}

fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let (bundle, cluster) = args.cluster.inputs(args.force)?;
    let request = NodeRemoveRequest {
        data_dir: args.cluster.data_dir.clone(),
        bundle,
        cluster,
        access: args.cluster.ssh.access(),
        hosts: args.hosts,
        options: RemoveOptions {
            purge_data: args.purge_data,
            drain_timeout: Duration::from_secs(args.drain_timeout),
        },
    };
    let json = args.cluster.json;
    let report = install::node_remove(request, |event| {
        if !json {
            print_progress(event);
        }
    })?;
    if json {
        let removed: Vec<serde_json::Value> = report
            .removed
            .iter()
            .map(|(h, r)| match r {
                Ok(done) => serde_json::json!({"host": h, "removed": true, "detail": done}),
                Err(e) => serde_json::json!({"host": h, "removed": false, "detail": e}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"removed": removed, "rest": report.rest})
            )?
        );
    } else {
        print_report(&report.rest, false)?;
        for (h, r) in &report.removed {
            match r {
                Ok(done) => eprintln!("removed {h}: {done}"),
                Err(e) => eprintln!("removed {h} from the cluster, but: {e}"),
            }
        }
    }
    let failed: Vec<&str> = report
        .rest
        .hosts
        .iter()
        .filter(|h| h.status != ferry_installer::deploy::Status::Ok)
        .map(|h| h.host.as_str())
        .chain(
            report
                .removed
                .iter()
                .filter(|(_, r)| r.is_err())
                .map(|(h, _)| h.as_str()),
        )
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "not finished on: {} (see above; fix and run ferry node remove again)",
            failed.join(", ")
        );
    }
    if !json {
        eprintln!(
            "now take {} out of the inventory",
            report
                .removed
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
