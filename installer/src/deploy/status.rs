//! `ferry status`: per host, the plan's units and their state, etcd health
//! (on etcd hosts, over TLS with the cluster's certificates) and whether the
//! registry mirror(s) answer from that host with the cluster CA.

use super::{connect, DeployOptions, Status};
use crate::exec::{fan_out, sh_quote, Executor};
use crate::plan::{ClusterPlan, FileContent, HostPlan, Role};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct UnitState {
    pub unit: String,
    pub active: String,
    pub enabled: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub address: String,
    pub reachable: bool,
    pub error: Option<String>,
    pub units: Vec<UnitState>,
    /// `Some(true)` healthy, `Some(false)` not, None when the host is not an etcd member.
    pub etcd_healthy: Option<bool>,
    pub etcd_detail: Option<String>,
    /// (mirror, answered) for every mirror of the plan.
    pub mirrors: Vec<(String, bool)>,
}

impl HostStatus {
    pub fn healthy(&self) -> bool {
        self.reachable
            && self
                .units
                .iter()
                .all(|u| u.active == "active" || u.enabled == "-")
            && self.etcd_healthy != Some(false)
            && self.mirrors.iter().all(|(_, ok)| *ok)
    }
}

/// The CA file containerd uses for the mirror (from the plan's hosts.toml).
fn mirror_ca(host: &HostPlan) -> Option<String> {
    host.files.iter().find_map(|f| {
        if !f.path.to_string_lossy().ends_with("hosts.toml") {
            return None;
        }
        let FileContent::Inline(b) = &f.content else {
            return None;
        };
        String::from_utf8_lossy(b).lines().find_map(|l| {
            let l = l.trim();
            l.strip_prefix("ca = \"")
                .and_then(|r| r.strip_suffix('"'))
                .map(str::to_string)
        })
    })
}

async fn etcd_health(plan: &ClusterPlan, host: &HostPlan, exec: &Executor) -> (bool, String) {
    let endpoint = super::etcdctl::client_endpoint(plan, host);
    let ctl = match super::etcdctl::Etcdctl::on(plan, host, &[endpoint]) {
        Ok(c) => c,
        Err(e) => return (false, e),
    };
    match exec
        .run(&format!("{} 2>&1", ctl.command(&["endpoint", "health"])))
        .await
    {
        Ok(o) => (
            o.success() && o.stdout.contains("is healthy"),
            o.stdout.trim().to_string(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

async fn host_status(plan: &ClusterPlan, host: &HostPlan, opts: &DeployOptions) -> HostStatus {
    let run = connect(host, opts).await;
    let mut st = HostStatus {
        host: host.name.clone(),
        address: host.address.clone(),
        reachable: run.status == Status::Ok,
        error: run.error.clone(),
        units: Vec::new(),
        etcd_healthy: None,
        etcd_detail: None,
        mirrors: Vec::new(),
    };
    let Some(exec) = run.exec.as_ref() else {
        return st;
    };
    let container = exec
        .run("systemd-detect-virt -c")
        .await
        .is_ok_and(|o| o.success() && o.stdout.trim() != "none");
    for s in &host.services {
        if container && super::KERNEL_UNITS.contains(&s.unit.as_str()) {
            st.units.push(UnitState {
                unit: s.unit.clone(),
                active: "not run in a container".into(),
                enabled: "-".into(),
            });
            continue;
        }
        let u = sh_quote(&s.unit);
        let q = |what: &'static str| {
            let u = u.clone();
            async move {
                exec.run(&format!("systemctl {what} {u}"))
                    .await
                    .map(|o| o.stdout.trim().to_string())
                    .unwrap_or_else(|e| format!("unknown ({e})"))
            }
        };
        st.units.push(UnitState {
            unit: s.unit.clone(),
            active: q("is-active").await,
            enabled: q("is-enabled").await,
        });
    }
    if host.has(Role::Etcd) {
        let (ok, detail) = etcd_health(plan, host, exec).await;
        st.etcd_healthy = Some(ok);
        st.etcd_detail = Some(detail);
    }
    if host.has(Role::Master) || host.has(Role::Node) {
        let ca = mirror_ca(host);
        for m in &plan.registry_mirrors {
            let ca_arg = ca
                .as_deref()
                .map(|c| format!("--cacert {}", sh_quote(c)))
                .unwrap_or_default();
            let ok = exec
                .run(&format!(
                    "curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 {ca_arg} {}",
                    sh_quote(&format!("https://{m}/v2/"))
                ))
                .await
                .map(|o| o.stdout.trim() == "200")
                .unwrap_or(false);
            st.mirrors.push((m.clone(), ok));
        }
    }
    if let Some(Executor::Ssh(s)) = run.exec {
        s.close().await;
    }
    st
}

pub async fn status(plan: &ClusterPlan, opts: &DeployOptions) -> Vec<HostStatus> {
    fan_out(plan.hosts.iter().collect(), opts.forks, |h| {
        host_status(plan, h, opts)
    })
    .await
}

pub fn table(hosts: &[HostStatus]) -> String {
    let mut s = String::new();
    for h in hosts {
        let state = if !h.reachable {
            "UNREACHABLE"
        } else if h.healthy() {
            "ok"
        } else {
            "DEGRADED"
        };
        let _ = writeln!(s, "{} ({}): {state}", h.host, h.address);
        if let Some(e) = &h.error {
            let _ = writeln!(s, "  error: {e}");
        }
        for u in &h.units {
            let _ = writeln!(s, "  {:32} {:10} {}", u.unit, u.active, u.enabled);
        }
        if let Some(ok) = h.etcd_healthy {
            let _ = writeln!(s, "  etcd: {}", if ok { "healthy" } else { "UNHEALTHY" });
            if !ok {
                for l in h.etcd_detail.as_deref().unwrap_or_default().lines().take(3) {
                    let _ = writeln!(s, "    {l}");
                }
            }
        }
        for (m, ok) in &h.mirrors {
            let _ = writeln!(
                s,
                "  mirror {m}: {}",
                if *ok { "reachable" } else { "NOT REACHABLE" }
            );
        }
    }
    s
}
