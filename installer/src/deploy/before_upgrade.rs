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

struct Member {
    host: HostPlan,
    exec: Executor,
}

/// Checks etcd's health and, when `name` is given, takes a snapshot named
/// `<name>.db` on a member; returns it.
pub async fn check_and_snapshot(
    plan: &ClusterPlan,
    opts: &DeployOptions,
    name: Option<&str>,
) -> Result<Option<TakenSnapshot>, String> {
    let members = connect_members(plan, opts).await?;
    let statuses = member_statuses(plan, &members).await?;
    let result = match name {
        Some(name) => {
            // Not the leader when there is a choice: its snapshot costs the
            // cluster least.
            let pick = statuses.iter().position(|leader| !leader).unwrap_or(0);
            Some(snapshot(plan, &members[pick], name).await?)
        }
        None => None,
    };
    for m in members {
        if let Executor::Ssh(s) = m.exec {
            s.close().await;
        }
    }
    Ok(result)
}

async fn connect_members(plan: &ClusterPlan, opts: &DeployOptions) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    for h in plan.hosts.iter().filter(|h| member_of(plan, h).is_some()) {
        let run = connect(h, opts).await;
        let exec = run.exec.ok_or_else(|| {
            format!(
                "etcd member on {} is not reachable ({}): every member must be healthy before an upgrade",
                h.name,
                run.error.unwrap_or_default()
            )
        })?;
        members.push(Member {
            host: h.clone(),
            exec,
        });
    }
    if members.is_empty() {
        return Err("the plan has no etcd member".into());
    }
    Ok(members)
}

/// Whether each member is the leader; an unhealthy member is an error naming it.
async fn member_statuses(plan: &ClusterPlan, members: &[Member]) -> Result<Vec<bool>, String> {
    let mut leaders = Vec::new();
    for m in members {
        let endpoint = etcdctl::client_endpoint(plan, &m.host);
        let ctl = etcdctl::Etcdctl::on(plan, &m.host, &[endpoint])?;
        let out = m
            .exec
            .run(&format!("{} 2>&1", ctl.command(&["endpoint", "status"])))
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!(
                "etcd member on {} is not healthy: {}; every member must be healthy before an upgrade",
                m.host.name,
                out.stdout.trim()
            ));
        }
        // endpoint, id, version, db size, is leader, is learner, ...
        let leader = out
            .stdout
            .lines()
            .next()
            .and_then(|l| l.split(", ").nth(4))
            .is_some_and(|f| f.trim() == "true");
        leaders.push(leader);
    }
    Ok(leaders)
}

async fn snapshot(plan: &ClusterPlan, m: &Member, name: &str) -> Result<TakenSnapshot, String> {
    let path = PathBuf::from(SNAPSHOT_DIR).join(format!("{name}.db"));
    let endpoint = etcdctl::client_endpoint(plan, &m.host);
    let ctl = etcdctl::Etcdctl::on(plan, &m.host, &[endpoint])?;
    let p = path.to_string_lossy().into_owned();
    let script = format!(
        "set -e; umask 077; mkdir -p {dir}; {save} >/dev/null 2>&1 || {{ {save} 2>&1 | tail -n 5; exit 1; }}; {status}",
        dir = sh_quote(SNAPSHOT_DIR),
        save = ctl.command(&["snapshot", "save", &p]),
        status = ctl.command(&["snapshot", "status", &p, "-w", "simple"]),
    );
    let out = m
        .exec
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
    // hash, revision, total keys, total size
    let revision = out
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "etcd snapshot {p} on {}: snapshot status printed no revision: {}",
                m.host.name,
                out.stdout.trim()
            )
        })?;
    m.exec.log().line(&format!(
        "upgrade: etcd snapshot {p} at revision {revision}"
    ));
    Ok(TakenSnapshot {
        host: m.host.name.clone(),
        path,
        revision,
    })
}
