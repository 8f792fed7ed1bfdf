//! `ferry destroy --yes [--purge-data]`: the cluster taken off every host
//! of the inventory. On each host, what `<cluster-dir>/placed/<host>.json`
//! records (and what the plan places) goes, exactly as `ferry node remove`
//! takes a host away: ferry's units stopped and disabled, its files and the
//! members of the archives it unpacked removed, the system units it only
//! configured restarted without its configuration. etcd's, containerd's
//! and kubelet's data and ferry's own (the mirror's images, snapshots) go
//! only with `--purge-data`; then the cluster dir's records of a running
//! cluster go too, so the next install starts a new cluster. The cluster
//! dir itself (PKI, backups, drill reports) always stays. OS packages
//! installed from the bundle stay: they belong to the distribution.

use super::remove::{clean_host, RemoveOptions};
use super::DeployOptions;
use crate::exec::fan_out;
use crate::plan::{ClusterPlan, HostPlan};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug)]
pub struct DestroyReport {
    /// (host, what was removed or why not), one per host.
    pub hosts: Vec<(String, Result<String, String>)>,
    /// The cluster dir's records removed (with `--purge-data`, when every host was cleaned).
    pub forgotten: Vec<PathBuf>,
}

impl DestroyReport {
    pub fn ok(&self) -> bool {
        self.hosts.iter().all(|(_, r)| r.is_ok())
    }
}

pub async fn destroy(plan: &ClusterPlan, opts: &DeployOptions, purge_data: bool) -> DestroyReport {
    let remove_opts = RemoveOptions {
        purge_data,
        drain_timeout: Duration::ZERO,
    };
    let hosts = fan_out(plan.hosts.iter().collect(), opts.forks, |h: &HostPlan| {
        let remove_opts = &remove_opts;
        async move { (h.name.clone(), clean_host(plan, h, opts, remove_opts).await) }
    })
    .await;
    let mut report = DestroyReport {
        hosts,
        forgotten: Vec::new(),
    };
    if purge_data && report.ok() {
        report.forgotten = forget_the_cluster(plan);
    }
    report
}

/// The records that say a cluster runs: what it runs, its last upgrade, its
/// etcd members (their data is gone).
fn forget_the_cluster(plan: &ClusterPlan) -> Vec<PathBuf> {
    let dir = &plan.cluster_dir;
    [
        crate::upgrade::installed::installed_path(dir),
        crate::upgrade::installed::state_path(dir),
        crate::plan::etcd_members::record_path(dir),
    ]
    .into_iter()
    .filter(|p| std::fs::remove_file(p).is_ok())
    .collect()
}
