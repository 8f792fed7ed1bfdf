//! `ferry node remove`: hosts leave the running cluster.
//!
//! Checked before anything changes: etcd keeps a quorum of healthy members
//! without the members leaving. Then, in order: nodes are drained (the
//! bundle's kubectl, PodDisruptionBudgets respected, bounded) and deleted;
//! etcd members are removed (`member remove`, the others healthy after
//! each) and the record updated; the remaining hosts are deployed as
//! planned without the leaving ones (load balancers, etcd endpoints,
//! certificates; running etcd members and apiservers one at a time); last,
//! on each leaving host, ferry's units are stopped and disabled and what the
//! record says ferry placed is removed. Data directories go only with
//! `--purge-data`.

use super::etcd_step::member_of;
use super::{connect, etcdctl, placed, DeployContext, DeployError, DeployOptions, DeployReport};
use crate::exec::{fan_out, sh_quote, Executor};
use crate::plan::etcd_members::{self, Member};
use crate::plan::{ClusterPlan, HostPlan, Role};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RemoveOptions {
    /// Also remove etcd's, containerd's and kubelet's data directories.
    pub purge_data: bool,
    /// How long a drain may take.
    pub drain_timeout: Duration,
}

/// What happened to each leaving host, and the deploy of the others.
#[derive(Debug)]
pub struct RemoveReport {
    /// (host, what was done or why not), one per leaving host.
    pub removed: Vec<(String, Result<String, String>)>,
    pub rest: DeployReport,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// Found before anything changed.
    #[error("{0}; nothing was changed")]
    Refused(String),
    /// A cluster-side step failed part way; what was done is named.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// Removes `gone` (hosts of `full`) from the cluster; `rest` is the plan
/// without them.
pub async fn remove(
    full: &ClusterPlan,
    rest: &ClusterPlan,
    ctx: &DeployContext,
    opts: &DeployOptions,
    gone: &[&HostPlan],
    remove_opts: &RemoveOptions,
) -> Result<RemoveReport, RemoveError> {
    let leaving: Vec<Member> = gone
        .iter()
        .filter_map(|h| member_of(full, h).cloned())
        .collect();
    let helpers = Helpers::connect(full, rest, opts).await?;
    if !leaving.is_empty() {
        helpers.check_quorum(full, &leaving).await?;
    }
    for h in gone.iter().filter(|h| h.has(Role::Node)) {
        helpers.drain(full, h, remove_opts.drain_timeout).await?;
    }
    let mut recorded: Vec<Member> = full
        .etcd_members
        .members
        .iter()
        .filter(|m| !full.etcd_members.is_joining(&m.name))
        .cloned()
        .collect();
    for m in &leaving {
        helpers.remove_member(full, m).await?;
        recorded.retain(|k| k != m);
        etcd_members::save(&full.cluster_dir, &recorded).map_err(|e| {
            RemoveError::Failed(format!(
                "etcd member {} was removed, but recording it failed: {e}",
                m.name
            ))
        })?;
    }
    helpers.close().await;
    let rest_report = super::deploy(rest, ctx, opts).await?;
    let removed = fan_out(gone.to_vec(), opts.forks, |h: &HostPlan| async move {
        (h.name.clone(), clean_host(full, h, opts, remove_opts).await)
    })
    .await;
    Ok(RemoveReport {
        removed,
        rest: rest_report,
    })
}

/// Connections to the first reachable master and etcd member that stay.
struct Helpers {
    master: Option<(HostPlan, Executor)>,
    member: Option<(HostPlan, Executor)>,
}

impl Helpers {
    async fn connect(
        full: &ClusterPlan,
        rest: &ClusterPlan,
        opts: &DeployOptions,
    ) -> Result<Helpers, RemoveError> {
        let staying = |h: &&HostPlan| rest.hosts.iter().any(|r| r.name == h.name);
        let mut master = None;
        for h in full
            .hosts
            .iter()
            .filter(staying)
            .filter(|h| h.has(Role::Master))
        {
            if let Some(e) = connect(h, opts).await.exec {
                master = Some((h.clone(), e));
                break;
            }
        }
        let mut member = None;
        for h in full
            .hosts
            .iter()
            .filter(staying)
            .filter(|h| member_of(full, h).is_some())
        {
            if let Some(e) = connect(h, opts).await.exec {
                member = Some((h.clone(), e));
                break;
            }
        }
        if master.is_none() {
            return Err(RemoveError::Refused(
                "no master that stays in the cluster is reachable".into(),
            ));
        }
        Ok(Helpers { master, member })
    }

    fn member(&self) -> Result<&(HostPlan, Executor), RemoveError> {
        self.member.as_ref().ok_or_else(|| {
            RemoveError::Refused("no etcd member that stays in the cluster is reachable".into())
        })
    }

    /// Enough healthy members stay for a quorum of the members that stay.
    async fn check_quorum(
        &self,
        full: &ClusterPlan,
        leaving: &[Member],
    ) -> Result<(), RemoveError> {
        let (host, exec) = self.member()?;
        let staying: Vec<&Member> = full
            .etcd_members
            .members
            .iter()
            .filter(|m| !leaving.contains(m))
            .collect();
        let endpoints: Vec<String> = staying.iter().map(|m| client_url(full, m)).collect();
        let ctl = etcdctl::Etcdctl::on(full, host, &endpoints).map_err(RemoveError::Refused)?;
        let out = exec
            .run(&format!("{} 2>&1", ctl.command(&["endpoint", "health"])))
            .await
            .map_err(|e| RemoveError::Refused(format!("etcd health from {}: {e}", host.name)))?;
        let healthy = out.stdout.matches("is healthy").count();
        let needed = staying.len() / 2 + 1;
        if healthy < needed {
            return Err(RemoveError::Refused(format!(
                "removing {} would leave {} etcd member(s) of which {healthy} answer healthy; a quorum needs {needed}: bring the others back first\n{}",
                leaving.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "),
                staying.len(),
                out.stdout.trim()
            )));
        }
        Ok(())
    }

    /// Drains and deletes `host`'s Node with the bundle's kubectl on a master.
    async fn drain(
        &self,
        full: &ClusterPlan,
        host: &HostPlan,
        timeout: Duration,
    ) -> Result<(), RemoveError> {
        let (master, exec) = self.master.as_ref().expect("checked at connect");
        let (kubeconfig, _) =
            super::addons::admin_kubeconfig(full, master).map_err(RemoveError::Refused)?;
        let kubectl = format!(
            "{} --kubeconfig={}",
            sh_quote(&full.bin_dir.join("kubectl").to_string_lossy()),
            sh_quote(&kubeconfig.to_string_lossy())
        );
        let name = sh_quote(&host.name);
        let script = format!(
            "{kubectl} drain {name} --ignore-daemonsets --delete-emptydir-data --timeout={}s 2>&1 && {kubectl} delete node {name} --ignore-not-found 2>&1",
            timeout.as_secs()
        );
        let out = exec
            .run_within(&script, None, timeout + Duration::from_secs(60))
            .await
            .map_err(|e| {
                RemoveError::Failed(format!("draining {} from {}: {e}", host.name, master.name))
            })?;
        exec.log().line(&format!(
            "node remove: drain {}: {}",
            host.name,
            out.stdout.trim()
        ));
        if !out.success() {
            return Err(RemoveError::Failed(format!(
                "draining {} (kubectl on {}) failed; nothing was removed: {}",
                host.name,
                master.name,
                out.stdout.trim()
            )));
        }
        Ok(())
    }

    /// `member remove` of `m`, then the staying members healthy.
    async fn remove_member(&self, full: &ClusterPlan, m: &Member) -> Result<(), RemoveError> {
        let (host, exec) = self.member()?;
        let ctl = etcdctl::Etcdctl::on(full, host, &[etcdctl::client_endpoint(full, host)])
            .map_err(RemoveError::Failed)?;
        let listed = exec
            .check(&ctl.command(&["member", "list"]))
            .await
            .map_err(|e| RemoveError::Failed(format!("etcd member list on {}: {e}", host.name)))?;
        if let Some(id) = member_id(&listed, &m.peer_url) {
            let out = exec
                .run(&ctl.reconfig_script(&["member", "remove", &id]))
                .await
                .map_err(|e| RemoveError::Failed(e.to_string()))?;
            if !out.success() {
                return Err(RemoveError::Failed(format!(
                    "etcd member remove {} ({id}) on {}: {}",
                    m.name,
                    host.name,
                    out.stdout.trim()
                )));
            }
            exec.log().line(&format!(
                "node remove: etcd member {} ({id}) removed",
                m.name
            ));
        }
        etcdctl::wait_member_healthy(full, host, exec)
            .await
            .map_err(RemoveError::Failed)
    }

    async fn close(self) {
        for (_, e) in [self.master, self.member].into_iter().flatten() {
            if let Executor::Ssh(s) = e {
                s.close().await;
            }
        }
    }
}

fn client_url(full: &ClusterPlan, m: &Member) -> String {
    full.hosts
        .iter()
        .find(|h| member_of(full, h).is_some_and(|x| x == m))
        .map(|h| etcdctl::client_endpoint(full, h))
        .unwrap_or_else(|| m.peer_url.replace(":2380", ":2379"))
}

/// The id (hex) of the member at `peer_url` in `member list` output.
fn member_id(listed: &str, peer_url: &str) -> Option<String> {
    listed.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(", ").collect();
        let peers = fields.get(3)?;
        peers
            .split(',')
            .any(|u| u == peer_url)
            .then(|| fields[0].trim().to_owned())
    })
}

/// Stops and disables ferry's units on `host` and removes what its record
/// (and the plan) say ferry placed; data dirs only with `purge_data`.
pub(super) async fn clean_host(
    full: &ClusterPlan,
    host: &HostPlan,
    opts: &DeployOptions,
    remove_opts: &RemoveOptions,
) -> Result<String, String> {
    let mut record = placed::load(&full.cluster_dir, &host.name)?;
    for step in crate::deploy::STEPS {
        record
            .files
            .extend(host.files_for(step).map(|f| f.path.clone()));
    }
    record
        .units
        .extend(host.services.iter().map(|s| s.unit.clone()));
    let run = connect(host, opts).await;
    let exec = run.exec.as_ref().ok_or_else(|| {
        format!(
            "{}: unreachable, so ferry's units and files stay on it ({}); it is out of the cluster",
            host.name,
            run.error.clone().unwrap_or_default()
        )
    })?;
    let data: Vec<PathBuf> = if remove_opts.purge_data {
        data_dirs(full, host)
    } else {
        Vec::new()
    };
    let out = exec
        .run(&cleanup_script(&record, &data))
        .await
        .map_err(|e| format!("{}: cleaning up: {e}", host.name))?;
    if !out.success() {
        return Err(format!(
            "{}: cleaning up failed: {}{}",
            host.name, out.stdout, out.stderr
        ));
    }
    placed::forget(&full.cluster_dir, &host.name)?;
    super::fingerprint::forget(&full.cluster_dir, &host.name)?;
    if let Executor::Ssh(s) = run.exec.expect("connected") {
        s.close().await;
    }
    Ok(format!(
        "{} units stopped and disabled, {} files and {} archives removed{}",
        record.units.len(),
        record.files.len(),
        record.archives.len(),
        if data.is_empty() {
            String::from("; data directories kept (--purge-data removes them)")
        } else {
            format!(
                "; data removed: {}",
                data.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    ))
}

/// The data directories of the components `host` ran.
fn data_dirs(full: &ClusterPlan, host: &HostPlan) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(super::REMOTE_DATA_DIR)];
    if member_of(full, host).is_some() {
        dirs.extend(full.data_dirs.etcd.iter().cloned());
    }
    if host.has(Role::Node) || host.has(Role::Master) {
        dirs.extend(full.data_dirs.kubelet.iter().cloned());
    }
    dirs.extend(full.data_dirs.containerd.iter().cloned());
    dirs
}

/// Whether ferry placed `unit`'s unit file or a drop-in of it: then it is
/// ferry's to stop and disable. Units of the system or of OS packages that
/// ferry only configured keep running, without ferry's configuration.
fn ferry_unit(record: &placed::Placed, unit: &str) -> bool {
    let file = std::path::Path::new(crate::plan::render::SYSTEMD_DIR).join(unit);
    let dropins = std::path::Path::new(crate::plan::render::SYSTEMD_DIR).join(format!("{unit}.d"));
    record
        .files
        .iter()
        .any(|f| *f == file || f.starts_with(&dropins))
}

/// One script: units stopped and disabled, archive members, files, ferry's
/// copies removed, systemd reloaded, data dirs removed.
fn cleanup_script(record: &placed::Placed, data: &[PathBuf]) -> String {
    let q = |p: &std::path::Path| sh_quote(&p.to_string_lossy());
    let mut s = String::from("set -u\nfailed=0\n");
    let (own, others): (Vec<&String>, Vec<&String>) =
        record.units.iter().partition(|u| ferry_unit(record, u));
    for u in &own {
        let u = sh_quote(u);
        s.push_str(&format!(
            "systemctl disable --now {u} >/dev/null 2>&1 || systemctl stop {u} >/dev/null 2>&1 || true\n"
        ));
    }
    for a in &record.archives {
        // What unpacking wrote: the kept copy's members, with the same strip.
        s.push_str(&format!(
            "if [ -f {kept} ]; then tar -tf {kept} | while IFS= read -r m; do p=$(printf '%s' \"$m\" | cut -d/ -f{from}-); [ -n \"$p\" ] || continue; t={dest}/\"$p\"; if [ -f \"$t\" ] || [ -L \"$t\" ]; then rm -f -- \"$t\"; fi; done; fi\nrm -f -- {kept} {marker}\n",
            kept = q(&a.kept),
            marker = q(&a.marker),
            dest = q(&a.dest_dir),
            from = a.strip_components + 1,
        ));
    }
    for f in &record.files {
        s.push_str(&format!("rm -f -- {} || failed=1\n", q(f)));
    }
    s.push_str("systemctl daemon-reload || failed=1\n");
    // The system's own units ferry configured read their config again.
    for u in &others {
        s.push_str(&format!(
            "systemctl try-restart {} >/dev/null 2>&1 || true\n",
            sh_quote(u)
        ));
    }
    s.push_str(&format!(
        "rm -rf -- {}\n",
        sh_quote(super::apply::PENDING_DIR)
    ));
    // A data dir that is a mount point of its own (a disk for etcd or
    // containerd) is emptied, not removed.
    for d in data {
        s.push_str(&format!(
            "if mountpoint -q {d}; then find {d} -xdev -mindepth 1 -delete || failed=1; else rm -rf --one-file-system -- {d} || failed=1; fi\n",
            d = q(d)
        ));
        // What `ferry etcd restore` kept aside beside it is data too.
        s.push_str(&format!(
            "for a in {d}.before-restore-*; do if [ -e \"$a\" ]; then rm -rf --one-file-system -- \"$a\" || failed=1; fi; done\n",
            d = q(d)
        ));
    }
    s.push_str("exit $failed\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_id_is_read_by_its_peer_url() {
        let listed = "8e9e05c52164694d, started, etcd1, https://10.0.0.1:2380, https://10.0.0.1:2379, false\n\
                      91bc3c398fb3c146, started, etcd4, https://10.0.0.4:2380, https://10.0.0.4:2379, false\n";
        assert_eq!(
            member_id(listed, "https://10.0.0.4:2380").as_deref(),
            Some("91bc3c398fb3c146")
        );
        assert_eq!(member_id(listed, "https://10.0.0.44:2380"), None);
    }
}
