//! `ferry etcd restore SNAPSHOT`, the guide's procedure: the snapshot is
//! checked (its `.sha256`, then `snapshot status` on a member), copied to
//! every member; the control plane stops on every master, then etcd on
//! every member; each member restores into a new data dir with the cluster
//! token and its own name and peer URL (the old dir is kept aside as
//! `<dir>.before-restore-<time>`); the members start together and must all
//! be healthy; then the control plane starts and every apiserver must
//! answer `/readyz`.

use super::etcd_step::member_of;
use super::{connect, etcdctl, rolling, DeployOptions, HostRun};
use crate::exec::{sh_quote, Executor, Source};
use crate::plan::{ClusterPlan, Role, Step};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub struct RestoreOptions {
    pub snapshot: PathBuf,
    /// Restore even though etcd answers (its data is replaced).
    pub yes: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot: PathBuf,
    pub revision: u64,
    pub members: Vec<String>,
    /// Each member's data dir as it was before, kept aside.
    pub kept_aside: Vec<String>,
}

/// Where members receive the snapshot.
const RESTORE_DIR: &str = "/var/lib/ferry/restore";

pub async fn restore(
    plan: &ClusterPlan,
    opts: &DeployOptions,
    r: &RestoreOptions,
) -> Result<RestoreReport, String> {
    let sha256 = check_local(&r.snapshot)?;
    let mut hosts = Vec::new();
    for h in plan
        .hosts
        .iter()
        .filter(|h| h.has(Role::Master) || member_of(plan, h).is_some())
    {
        let run = connect(h, opts).await;
        if run.exec.is_none() {
            return Err(format!(
                "{} is not reachable ({}): a restore needs every master and etcd member; nothing was changed",
                h.name,
                run.error.unwrap_or_default()
            ));
        }
        hosts.push(run);
    }
    if !r.yes {
        if let Some(answering) = answering_member(plan, &hosts).await {
            return Err(format!(
                "etcd answers on {answering}: a restore replaces the cluster's data with the snapshot's; pass --yes to do that; nothing was changed"
            ));
        }
    }
    let report = run_restore(plan, &hosts, &r.snapshot, &sha256).await;
    for run in hosts {
        if let Some(Executor::Ssh(s)) = run.exec {
            s.close().await;
        }
    }
    report
}

/// The snapshot exists and, when a `.sha256` lies beside it (as `ferry etcd
/// backup` writes), matches it; returns its sha256.
pub(super) fn check_local(snapshot: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(snapshot).map_err(|e| format!("{}: {e}", snapshot.display()))?;
    if !meta.is_file() || meta.len() == 0 {
        return Err(format!("{}: not a snapshot file", snapshot.display()));
    }
    let got =
        crate::exec::hash_file(snapshot).map_err(|e| format!("{}: {e}", snapshot.display()))?;
    let sums = PathBuf::from(format!("{}.sha256", snapshot.display()));
    if let Ok(text) = std::fs::read_to_string(&sums) {
        let want = text.split_whitespace().next().unwrap_or_default();
        if want != got {
            return Err(format!(
                "{}: sha256 {got}, but {} says {want}: the snapshot is damaged; nothing was changed",
                snapshot.display(),
                sums.display()
            ));
        }
    }
    Ok(got)
}

/// The first member whose etcd answers `endpoint health`, if any.
async fn answering_member(plan: &ClusterPlan, hosts: &[HostRun]) -> Option<String> {
    for run in hosts.iter().filter(|r| member_of(plan, &r.plan).is_some()) {
        let endpoint = etcdctl::client_endpoint(plan, &run.plan);
        let ctl = etcdctl::Etcdctl::on(plan, &run.plan, &[endpoint]).ok()?;
        let exec = run.exec.as_ref()?;
        let out = exec
            .run(&format!(
                "{} >/dev/null 2>&1",
                ctl.command(&["endpoint", "health"])
            ))
            .await;
        if out.is_ok_and(|o| o.success()) {
            return Some(run.plan.name.clone());
        }
    }
    None
}

async fn run_restore(
    plan: &ClusterPlan,
    hosts: &[HostRun],
    snapshot: &Path,
    sha256: &str,
) -> Result<RestoreReport, String> {
    let members: Vec<&HostRun> = hosts
        .iter()
        .filter(|r| member_of(plan, &r.plan).is_some())
        .collect();
    let remote = format!("{RESTORE_DIR}/{sha256}.db");
    for m in &members {
        upload(m, snapshot, &remote, sha256).await?;
    }
    let revision = snapshot_revision(plan, members[0], &remote).await?;
    for run in hosts {
        systemctl(run, "stop", Step::ControlPlane).await?;
    }
    for m in &members {
        systemctl(m, "stop", Step::Etcd).await?;
    }
    let stamp = super::etcd_backup::utc_stamp()?;
    // Every member restores beside its data first; only when all did are
    // the old dirs swapped out. Else etcd and the control plane start again
    // on the data they had.
    let mut staged = Vec::new();
    for m in &members {
        match stage_member(plan, m, &remote, &stamp).await {
            Ok(s) => staged.push(s),
            Err(e) => {
                for m in &members {
                    let _ = start_no_block(m, Step::Etcd).await;
                }
                for run in hosts {
                    let _ = systemctl(run, "start", Step::ControlPlane).await;
                }
                return Err(format!(
                    "{e}; no member's data was replaced, etcd and the control plane were started again"
                ));
            }
        }
    }
    let mut kept_aside = Vec::new();
    for (m, s) in members.iter().zip(&staged) {
        swap_in(m, s).await?;
        kept_aside.extend(s.aside.iter().cloned());
    }
    for m in &members {
        start_no_block(m, Step::Etcd).await?;
    }
    for m in &members {
        let exec = m.exec.as_ref().ok_or("not connected")?;
        etcdctl::wait_member_healthy(plan, &m.plan, exec).await?;
    }
    for run in hosts.iter().filter(|r| r.plan.has(Role::Master)) {
        systemctl(run, "start", Step::ControlPlane).await?;
        rolling::pass_gate(plan, run, rolling::Gate::Apiserver).await?;
    }
    for m in &members {
        let exec = m.exec.as_ref().ok_or("not connected")?;
        let _ = exec.run(&format!("rm -f -- {}", sh_quote(&remote))).await;
    }
    Ok(RestoreReport {
        snapshot: snapshot.to_path_buf(),
        revision,
        members: members.iter().map(|m| m.plan.name.clone()).collect(),
        kept_aside,
    })
}

/// Streams the snapshot to `remote` on the member and checks its sha256 there.
async fn upload(m: &HostRun, snapshot: &Path, remote: &str, sha256: &str) -> Result<(), String> {
    let script = format!(
        "set -e; umask 077; mkdir -p {dir}; cat > {tmp}; test \"$(sha256sum < {tmp} | cut -d' ' -f1)\" = {sha}; mv -f {tmp} {dst}",
        dir = sh_quote(RESTORE_DIR),
        tmp = sh_quote(&format!("{remote}.partial")),
        dst = sh_quote(remote),
        sha = sh_quote(sha256),
    );
    let input = Source::File(snapshot.to_path_buf());
    m.run_named(
        &script,
        Some(&input),
        "copying the snapshot failed (sha256 differs or the disk is full)",
    )
    .await
    .map(drop)
    .map_err(|e| format!("{e}; nothing was changed"))
}

/// `snapshot status` of the copy on `m`: etcd reads it whole; its revision.
async fn snapshot_revision(plan: &ClusterPlan, m: &HostRun, remote: &str) -> Result<u64, String> {
    let script = format!(
        "{}snapshot_tool snapshot status {} -w json 2>&1",
        super::etcdctl::snapshot_tool(plan),
        sh_quote(remote)
    );
    let what = "etcd does not read the snapshot";
    let out = m
        .run_named(&script, None, what)
        .await
        .map_err(|e| format!("{e}; nothing was changed"))?;
    out.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<super::before_upgrade::SnapshotStatus>(l.trim()).ok())
        .map(|s| s.revision)
        .ok_or_else(|| {
            format!(
                "{}: {what}: {}; nothing was changed",
                m.plan.name,
                out.trim()
            )
        })
}

/// `systemctl VERB` the units of `step` the host's plan runs.
async fn systemctl(run: &HostRun, verb: &str, step: Step) -> Result<(), String> {
    let units = rolling::step_units(&run.plan, step);
    if units.is_empty() {
        return Ok(());
    }
    let command = format!("systemctl {verb} {}", units.join(" "));
    run.run_named(&format!("{command} 2>&1"), None, &command)
        .await
        .map(drop)
}

/// Starts etcd without waiting: a member is only ready once a quorum runs.
async fn start_no_block(run: &HostRun, step: Step) -> Result<(), String> {
    systemctl(run, "start --no-block", step).await
}

/// Restores the snapshot on `m` into new dirs (`<dir>.restoring`) beside
/// the ones etcd uses, which stay untouched.
async fn stage_member(
    plan: &ClusterPlan,
    m: &HostRun,
    remote: &str,
    stamp: &str,
) -> Result<Staged, String> {
    let member = member_of(plan, &m.plan).ok_or("not an etcd member")?;
    let initial_cluster: Vec<String> = plan
        .etcd_members
        .members
        .iter()
        .map(|x| format!("{}={}", x.name, x.peer_url))
        .collect();
    let data = plan
        .data_dirs
        .etcd
        .first()
        .map(|d| d.to_string_lossy().into_owned())
        .ok_or("the plan names no etcd data dir")?
        .clone();
    let mut restore = vec![
        format!("--name={}", member.name),
        format!("--initial-cluster={}", initial_cluster.join(",")),
        format!("--initial-cluster-token={}-etcd", plan.cluster_name),
        format!("--initial-advertise-peer-urls={}", member.peer_url),
        format!("--data-dir={data}.restoring"),
    ];
    // A WAL dir inside the data dir (kubeasz's /var/lib/etcd/wal) moves with
    // it; one elsewhere is restored and swapped on its own.
    let mut dirs = vec![data.clone()];
    if let Some(wal) = plan.data_dirs.etcd.get(1).map(|d| d.to_string_lossy()) {
        match wal.strip_prefix(&format!("{data}/")) {
            Some(inside) => restore.push(format!("--wal-dir={data}.restoring/{inside}")),
            None => {
                restore.push(format!("--wal-dir={wal}.restoring"));
                dirs.push(wal.into_owned());
            }
        }
    }
    let quoted: Vec<String> = restore.iter().map(|a| sh_quote(a)).collect();
    let mut swap = String::new();
    let mut aside = Vec::new();
    for d in &dirs {
        let old = format!("{d}.before-restore-{stamp}");
        swap += &format!(
            "if [ -e {d} ]; then mv -T {d} {old}; fi; mv -T {new} {d}; ",
            d = sh_quote(d),
            old = sh_quote(&old),
            new = sh_quote(&format!("{d}.restoring"))
        );
        aside.push(format!("{}:{old}", m.plan.name));
    }
    let clean: Vec<String> = dirs
        .iter()
        .map(|d| sh_quote(&format!("{d}.restoring")))
        .collect();
    let script = format!(
        "{tool}set -e; rm -rf {clean}; out=$(snapshot_tool snapshot restore {snap} {args} 2>&1) || {{ rm -rf {clean}; echo \"$out\" | tail -n 5; exit 1; }}",
        clean = clean.join(" "),
        tool = super::etcdctl::snapshot_tool(plan),
        snap = sh_quote(remote),
        args = quoted.join(" "),
    );
    m.run_named(&script, None, "snapshot restore failed")
        .await?;
    Ok(Staged { swap, aside })
}

/// A member's restored dirs, ready: the script that swaps them in, and
/// where the old ones go.
struct Staged {
    swap: String,
    aside: Vec<String>,
}

/// Puts `staged`'s dirs in place on `m`, the old ones aside.
async fn swap_in(m: &HostRun, staged: &Staged) -> Result<(), String> {
    let script = format!("set -e; {}", staged.swap);
    m.run_named(
        &script,
        None,
        "putting the restored data dir in place failed",
    )
    .await
    .map(drop)
}
