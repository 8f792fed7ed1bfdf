//! `ferry upgrade`: from the bundle the cluster runs (`installed.json`) to
//! a newer one, or back (`--rollback`).
//!
//! The new bundle is verified and unpacked beside the old one (registry
//! hosts then serve both bundles' images). The move is checked against the
//! version-skew policy, every etcd member must answer healthy, and a
//! snapshot is taken before anything changes. Then the whole plan is
//! deployed with the new bundle: etcd members one at a time, masters one at
//! a time (each `/readyz` before the next), nodes in batches (cordon,
//! drain, upgrade, uncordon), addons. `upgrade.json` in the cluster dir
//! records from, to and the snapshot: a re-run after a failure or a kill
//! picks up where it stopped (what is done already has nothing to change),
//! and `--rollback` deploys the bundle it came from in the same order.

pub mod compat;
pub mod installed;
pub mod skew;

use crate::deploy::node_roll::NodeRoll;
use crate::deploy::{self, DeployReport};
use crate::install::{self, ClusterInputs, HostAccess, InstallError, InstallEvent};
use crate::plan::{ClusterPlan, Role};
use ferry_bundles::{BundleSource, Trust};
use installed::{Installed, Snapshot, UpgradeState};
use std::path::PathBuf;

pub struct UpgradeRequest {
    /// The newer bundle and the keys its signature must match; None with `--rollback`.
    pub bundle: Option<(BundleSource, Trust)>,
    pub data_dir: PathBuf,
    pub cluster: ClusterInputs,
    pub access: HostAccess,
    pub roll: NodeRoll,
    /// Print the order and change nothing.
    pub dry_run: bool,
    pub allow_downgrade: bool,
}

pub enum UpgradeOutcome {
    /// `--dry-run`: the order, one line per stage.
    DryRun {
        from: Installed,
        to: Installed,
        order: Vec<String>,
    },
    Done {
        from: Installed,
        to: Installed,
        snapshot: Option<Snapshot>,
        report: DeployReport,
    },
}

fn err(e: String) -> InstallError {
    InstallError::Nodes(e)
}

/// Runs the upgrade (or rollback) `request` asks for.
pub fn upgrade(
    request: UpgradeRequest,
    mut on_event: impl FnMut(InstallEvent<'_>),
) -> Result<UpgradeOutcome, InstallError> {
    let cluster_dir = install::cluster_dir_of(&request.cluster)?;
    let current = installed::load_installed(&cluster_dir).map_err(err)?.ok_or_else(|| {
        err(format!(
            "{} does not exist: ferry records the bundle a cluster runs when an install finishes on every host; run ferry install first",
            installed::installed_path(&cluster_dir).display()
        ))
    })?;
    let state = installed::load_state(&cluster_dir).map_err(err)?;
    let rollback = request.bundle.is_none();
    let target = match &request.bundle {
        Some((source, trust)) => {
            let unpacked = install::unpack_bundle(source, trust, &request.data_dir)?;
            on_event(InstallEvent::Unpacked(&unpacked));
            unpacked.name.clone()
        }
        None => rollback_target(&state, &cluster_dir)?,
    };
    let bundle = install::open_bundle(&request.data_dir, &target)?;
    let to = Installed::of(&bundle.manifest);
    // A re-run of an unfinished upgrade to the same bundle resumes it.
    let resuming = state
        .as_ref()
        .filter(|s| !s.finished && s.to == to && !rollback);
    let from = resuming.map_or_else(|| current.clone(), |s| s.from.clone());
    skew::check(
        &from.versions().map_err(err)?,
        &to.versions().map_err(err)?,
        request.allow_downgrade || rollback,
    )
    .map_err(|e| err(format!("{} to {}: {e}", from.bundle, to.bundle)))?;
    let plan = install::plan_cluster(&request.cluster, &bundle, false)?;
    compat::check(&bundle.manifest, &plan.cni).map_err(err)?;
    install::refuse_joining_members(&plan)?;
    let mut options = install::deploy_options(&request.access, &plan, None);
    options.node_roll = Some(request.roll);
    if request.dry_run {
        let order = order(&plan, &request.roll);
        return Ok(UpgradeOutcome::DryRun { from, to, order });
    }
    on_event(InstallEvent::Deploying {
        plan: &plan,
        options: &options,
    });
    // The cluster runs `to` already: the run only converges (no snapshot,
    // and the record of the last upgrade stays for --rollback).
    let unchanged = from == to;
    let earlier = resuming.and_then(|s| s.snapshot.clone());
    let name = snapshot_name(&plan, &from, &to);
    let taken = install::block_on(deploy::before_upgrade::check_and_snapshot(
        &plan,
        &options,
        (earlier.is_none() && !unchanged).then_some(name.as_str()),
    ))?
    .map_err(|e| err(format!("before the upgrade (nothing was changed): {e}")))?;
    let snapshot = earlier.or_else(|| {
        taken.map(|t| Snapshot {
            host: t.host,
            path: t.path,
            revision: t.revision,
        })
    });
    let mut state = UpgradeState {
        from: from.clone(),
        to: to.clone(),
        snapshot: snapshot.clone(),
        finished: false,
    };
    if unchanged {
        let report = install::block_on(deploy::deploy(&plan, &bundle, &options))??;
        return Ok(UpgradeOutcome::Done {
            from,
            to,
            snapshot,
            report,
        });
    }
    installed::save_state(&cluster_dir, &state).map_err(err)?;
    let report = install::block_on(deploy::deploy(&plan, &bundle, &options))??;
    if report.ok() {
        installed::save_installed(&cluster_dir, &to).map_err(err)?;
        state.finished = true;
        installed::save_state(&cluster_dir, &state).map_err(err)?;
    }
    Ok(UpgradeOutcome::Done {
        from,
        to,
        snapshot,
        report,
    })
}

/// The bundle `--rollback` returns to: the one the last upgrade came from.
fn rollback_target(
    state: &Option<UpgradeState>,
    cluster_dir: &std::path::Path,
) -> Result<String, InstallError> {
    state
        .as_ref()
        .map(|s| s.from.bundle.clone())
        .ok_or_else(|| {
            err(format!(
                "--rollback: {} does not exist, so there is no upgrade to roll back",
                installed::state_path(cluster_dir).display()
            ))
        })
}

fn snapshot_name(plan: &ClusterPlan, from: &Installed, to: &Installed) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{}-before-{}-to-{}-{secs}",
        plan.cluster_name, from.kubernetes, to.kubernetes
    )
}

/// The roll's order, as `--dry-run` prints it.
pub fn order(plan: &ClusterPlan, roll: &NodeRoll) -> Vec<String> {
    let names = |hs: Vec<&str>| hs.join(", ");
    let members: Vec<&str> = plan
        .hosts
        .iter()
        .filter(|h| deploy::etcd_step::member_of(plan, h).is_some())
        .map(|h| h.name.as_str())
        .collect();
    let masters: Vec<&str> = plan
        .hosts
        .iter()
        .filter(|h| h.has(Role::Master))
        .map(|h| h.name.as_str())
        .collect();
    let nodes: Vec<usize> = (0..plan.hosts.len())
        .filter(|&i| plan.hosts[i].has(Role::Node))
        .collect();
    let batches: Vec<String> = deploy::node_roll::batches(&nodes, roll)
        .iter()
        .map(|b| {
            format!(
                "[{}]",
                names(b.iter().map(|&i| plan.hosts[i].name.as_str()).collect())
            )
        })
        .collect();
    vec![
        "0. every host, in parallel: baseline, binaries and configuration placed; containerd restarted where it changed (containers keep running); registry mirrors serve both bundles' images".into(),
        format!("1. etcd members, one at a time, each healthy before the next: {}", names(members)),
        format!("2. masters, one at a time, each /readyz (its own and the VIP's) and the controller-manager and scheduler leases held before the next: {}", names(masters)),
        format!("3. nodes in batches (cordon, drain, upgrade, uncordon): {}", batches.join(" ")),
        "4. addons, from the first master".into(),
    ]
}
