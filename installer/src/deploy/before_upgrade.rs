//! Before an upgrade changes anything: every etcd member answers healthy,
//! and a snapshot is taken on a member that is not the leader (when there
//! is a choice) and checked with `snapshot status`.

use super::etcd_step::member_of;
use super::{connect, etcdctl, DeployOptions};
use crate::exec::{sh_quote, Executor};
use crate::plan::{ClusterPlan, HostPlan};
use std::path::PathBuf;

/// Where members keep the snapshots ferry takes.
pub const SNAPSHOT_DIR: &str = "/var/lib/ferry/snapshots";

/// A snapshot on a member.
#[derive(Debug, Clone)]
pub struct TakenSnapshot {
    pub host: String,
    pub path: PathBuf,
    pub revision: u64,
}

/// An etcd member as a survey found it: its connection (None when it could
/// not be reached) and Ok(whether it leads) or what is wrong with it.
pub(super) struct Surveyed {
    pub host: HostPlan,
    pub exec: Option<Executor>,
    pub state: Result<bool, String>,
}

/// Checks etcd's health and, when `name` is given, takes a snapshot named
/// `<name>.db` on a member; returns it.
pub async fn check_and_snapshot(
    plan: &ClusterPlan,
    opts: &DeployOptions,
    name: Option<&str>,
) -> Result<Option<TakenSnapshot>, String> {
    let members = survey(plan, opts).await?;
    let result = async {
        if let Some(problem) = members.iter().find_map(|m| m.state.as_ref().err()) {
            return Err(format!(
                "{problem}; every member must be healthy before ferry changes the cluster"
            ));
        }
        let Some(name) = name else {
            return Ok(None);
        };
        let pick = pick_member(&members).ok_or("no etcd member answers")?;
        Ok(Some(snapshot(plan, pick, name).await?.0))
    }
    .await;
    close(members).await;
    result
}

/// The member a snapshot is best taken on: a healthy one that does not
/// lead when there is a choice (its snapshot costs the cluster least).
pub(super) fn pick_member(members: &[Surveyed]) -> Option<&Surveyed> {
    let healthy = || {
        members
            .iter()
            .filter(|m| m.exec.is_some() && m.state.is_ok())
    };
    healthy()
        .find(|m| m.state == Ok(false))
        .or_else(|| healthy().next())
}

pub(super) async fn close(members: Vec<Surveyed>) {
    for m in members {
        if let Some(Executor::Ssh(s)) = m.exec {
            s.close().await;
        }
    }
}

/// Connects to every member of the plan and asks each for its status.
pub(super) async fn survey(
    plan: &ClusterPlan,
    opts: &DeployOptions,
) -> Result<Vec<Surveyed>, String> {
    let mut members = Vec::new();
    for h in plan.hosts.iter().filter(|h| member_of(plan, h).is_some()) {
        let run = connect(h, opts).await;
        let state = match &run.exec {
            Some(exec) => member_status(plan, h, exec).await,
            None => Err(format!(
                "etcd member on {} is not reachable ({})",
                h.name,
                run.error.clone().unwrap_or_default()
            )),
        };
        members.push(Surveyed {
            host: h.clone(),
            exec: run.exec,
            state,
        });
    }
    if members.is_empty() {
        return Err("the plan has no etcd member".into());
    }
    Ok(members)
}

/// Whether the member on `host` leads; an error names it when it is not healthy.
async fn member_status(
    plan: &ClusterPlan,
    host: &HostPlan,
    exec: &Executor,
) -> Result<bool, String> {
    let endpoint = etcdctl::client_endpoint(plan, host);
    let ctl = etcdctl::Etcdctl::on(plan, host, &[endpoint])?;
    let out = exec
        .run(&format!("{} 2>&1", ctl.command(&["endpoint", "status"])))
        .await
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!(
            "etcd member on {} is not healthy: {}",
            host.name,
            out.stdout.trim()
        ));
    }
    // endpoint, id, version, db size, is leader, is learner, ...
    Ok(out
        .stdout
        .lines()
        .next()
        .and_then(|l| l.split(", ").nth(4))
        .is_some_and(|f| f.trim() == "true"))
}

/// What `snapshot status` says of a snapshot.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SnapshotStatus {
    pub hash: u64,
    pub revision: u64,
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// Takes `<SNAPSHOT_DIR>/<name>.db` on `m` over TLS and checks it with `snapshot status`.
pub(super) async fn snapshot(
    plan: &ClusterPlan,
    m: &Surveyed,
    name: &str,
) -> Result<(TakenSnapshot, SnapshotStatus), String> {
    let exec = m.exec.as_ref().ok_or("the member is not reachable")?;
    let path = PathBuf::from(SNAPSHOT_DIR).join(format!("{name}.db"));
    let endpoint = etcdctl::client_endpoint(plan, &m.host);
    let ctl = etcdctl::Etcdctl::on(plan, &m.host, &[endpoint])?;
    let p = path.to_string_lossy().into_owned();
    let script = format!(
        "{tool}set -e; umask 077; mkdir -p {dir}; {save} >/dev/null 2>&1 || {{ {save} 2>&1 | tail -n 5; exit 1; }}; snapshot_tool snapshot status {file} -w json",
        tool = etcdctl::snapshot_tool(plan),
        dir = sh_quote(SNAPSHOT_DIR),
        save = ctl.command(&["snapshot", "save", &p]),
        file = sh_quote(&p),
    );
    let out = exec
        .run(&script)
        .await
        .map_err(|e| format!("etcd snapshot on {}: {e}", m.host.name))?;
    if !out.success() {
        return Err(format!(
            "etcd snapshot on {} failed: {}{}",
            m.host.name,
            out.stdout.trim(),
            out.stderr.trim()
        ));
    }
    let status: SnapshotStatus = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .ok_or_else(|| {
            format!(
                "etcd snapshot {p} on {}: snapshot status printed no status: {}",
                m.host.name,
                out.stdout.trim()
            )
        })?;
    exec.log().line(&format!(
        "etcd snapshot {p} at revision {} ({} keys)",
        status.revision, status.total_key
    ));
    Ok((
        TakenSnapshot {
            host: m.host.name.clone(),
            path,
            revision: status.revision,
        },
        status,
    ))
}
