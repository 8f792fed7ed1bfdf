//! `ferry drill master-failure [--host H]`: one master fails as a whole.
//! Its etcd member and control plane are killed (SIGKILL, no graceful
//! drain) and kept stopped, and its keepalived too when it holds the VIP. While it is down the drill times, from the
//! deploy host, how long until: another `[ex_lb]` host holds the VIP; the
//! remaining etcd members answer healthy (a quorum read); the API answers
//! `/readyz` through the VIP and through every node's local balancer. Then
//! the master is started again (etcd first) and must pass the masters'
//! gate (its `/readyz`, the VIP's, the controllers' leases). Refused when
//! the cluster is not healthy to begin with, or when the failure would
//! cost etcd its quorum or the VIP its last holder. A dated report goes to
//! the cluster dir (`drills/master-failure-<time>.json`).

use super::rolling::{self, Gate};
use super::{connect, etcdctl, DeployOptions, HostRun};
use crate::exec::{sh_quote, Executor};
use crate::plan::render::access::APISERVER_CHECK_DIR;
use crate::plan::{ClusterPlan, HostPlan, Role, Step};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the drill waits for each thing to answer with the master down.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

/// The unit of every node's local balancer.
const LOCAL_LB_UNIT: &str = "ferry-kube-lb.service";

#[derive(Debug, Clone, Serialize)]
pub struct MasterDrillReport {
    pub drill: &'static str,
    pub started: String,
    /// The master that was failed, and the units stopped on it.
    pub host: String,
    pub stopped_units: Vec<String>,
    /// Seconds killing and stopping them took; every timing below counts from its end.
    pub stop_seconds: f64,
    /// Whether the failed master held the VIP, and who held it after.
    pub held_vip: bool,
    pub vip_holder_after: Option<String>,
    /// Seconds after the stop until each answered; `problems` says why one did not.
    pub vip_moved_seconds: Option<f64>,
    pub etcd_quorum_seconds: Option<f64>,
    pub api_via_vip_seconds: Option<f64>,
    pub local_balancers: Vec<Answered>,
    /// Seconds from the restart until the master passed the masters' gate.
    pub recovered_seconds: Option<f64>,
    pub problems: Vec<String>,
    pub seconds: f64,
    pub passed: bool,
    /// Where this report was written.
    pub report: PathBuf,
}

/// When one host's check answered after the failure.
#[derive(Debug, Clone, Serialize)]
pub struct Answered {
    pub host: String,
    pub seconds: Option<f64>,
}

/// The connected hosts the drill uses.
struct Hosts {
    runs: Vec<HostRun>,
}

impl Hosts {
    async fn connect(plan: &ClusterPlan, opts: &DeployOptions) -> Result<Hosts, String> {
        let mut runs = Vec::new();
        for h in &plan.hosts {
            let run = connect(h, opts).await;
            if run.exec.is_none() {
                return Err(format!(
                    "{} is not reachable ({}); the drill needs every host (nothing was stopped)",
                    h.name,
                    run.error.clone().unwrap_or_default()
                ));
            }
            runs.push(run);
        }
        Ok(Hosts { runs })
    }

    fn get(&self, name: &str) -> &HostRun {
        self.runs
            .iter()
            .find(|r| r.plan.name == name)
            .expect("every planned host is connected")
    }

    fn exec(&self, name: &str) -> &Executor {
        self.get(name).exec.as_ref().expect("connected")
    }

    async fn close(self) {
        for r in self.runs {
            if let Some(Executor::Ssh(s)) = r.exec {
                s.close().await;
            }
        }
    }
}

pub async fn master_failure(
    plan: &ClusterPlan,
    opts: &DeployOptions,
    host: Option<&str>,
) -> Result<MasterDrillReport, String> {
    let hosts = Hosts::connect(plan, opts).await?;
    let result = drill(plan, &hosts, host).await;
    hosts.close().await;
    let report = result?;
    super::etcd_drill::write_report(&report.report, &report)?;
    Ok(report)
}

async fn drill(
    plan: &ClusterPlan,
    hosts: &Hosts,
    asked: Option<&str>,
) -> Result<MasterDrillReport, String> {
    healthy_first(plan, hosts).await?;
    let holder = vip_holder(plan, hosts).await?;
    let target = pick_master(plan, asked, holder.as_deref())?;
    let held_vip = holder.as_deref() == Some(target.name.as_str());
    refuse_lost_quorum_or_vip(plan, target, held_vip)?;
    let started = super::etcd_backup::utc_stamp()?;
    let clock = Instant::now();
    let units = failed_units(target, held_vip);
    let exec = hosts.exec(&target.name);
    exec.log().line(&format!(
        "--- drill master-failure: stopping {}",
        units.join(" ")
    ));
    let stop = Instant::now();
    // A failure, not a shutdown: every unit is killed at once (no graceful
    // drain), then stopped so that systemd does not restart it.
    // Timers have no process to kill; they are only stopped.
    let services: Vec<String> = units
        .iter()
        .filter(|u| u.ends_with(".service"))
        .cloned()
        .collect();
    let command = format!("systemctl stop {}", quoted(&units));
    let stopped = hosts
        .get(&target.name)
        .run_named(
            &format!(
                "systemctl kill --signal=SIGKILL {} 2>&1; {command} 2>&1",
                quoted(&services)
            ),
            None,
            &command,
        )
        .await;
    let stop_seconds = stop.elapsed().as_secs_f64();
    // Whatever happened, what may have stopped is brought back below.
    let mut problems: Vec<String> = stopped.err().into_iter().collect();
    let seen = watch_failover(plan, hosts, target, held_vip).await;
    problems.extend(seen.problems.iter().cloned());
    let recovered = recover(plan, hosts, target, &units).await;
    let recovered_seconds = match recovered {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let report = plan
        .cluster_dir
        .join("drills")
        .join(format!("master-failure-{started}.json"));
    Ok(MasterDrillReport {
        drill: "master-failure",
        started,
        host: target.name.clone(),
        stopped_units: units,
        stop_seconds,
        held_vip,
        vip_holder_after: seen.vip_holder,
        vip_moved_seconds: seen.vip_moved,
        etcd_quorum_seconds: seen.quorum,
        api_via_vip_seconds: seen.api_via_vip,
        local_balancers: seen.local_balancers,
        recovered_seconds,
        passed: problems.is_empty(),
        problems,
        seconds: clock.elapsed().as_secs_f64(),
        report,
    })
}

fn quoted(units: &[String]) -> String {
    units
        .iter()
        .map(|u| sh_quote(u))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every etcd member healthy and every apiserver ready, or the drill is refused.
async fn healthy_first(plan: &ClusterPlan, hosts: &Hosts) -> Result<(), String> {
    let refuse = |what: String| {
        format!("{what}; the drill runs only on a healthy cluster (nothing was stopped)")
    };
    for h in plan.hosts_with(Role::Etcd) {
        let ctl = etcdctl::Etcdctl::on(plan, h, &[etcdctl::client_endpoint(plan, h)])?;
        let health = format!("{} 2>&1", ctl.command(&["endpoint", "health"]));
        hosts
            .get(&h.name)
            .run_named(&health, None, "its etcd member is not healthy")
            .await
            .map_err(refuse)?;
    }
    for h in plan.hosts_with(Role::Master) {
        let own = format!("https://{}:{}", h.address, plan.apiserver_port);
        for endpoint in [own.as_str(), plan.apiserver_endpoint.as_str()] {
            let what = format!("{endpoint}/readyz is not ok");
            hosts
                .get(&h.name)
                .run_named(&readyz_within(endpoint, Duration::ZERO), None, &what)
                .await
                .map_err(refuse)?;
        }
    }
    Ok(())
}

/// The `[ex_lb]` host that holds the VIP now (None without a VIP).
async fn vip_holder(plan: &ClusterPlan, hosts: &Hosts) -> Result<Option<String>, String> {
    let Some(vip) = &plan.vip else {
        return Ok(None);
    };
    for h in plan.hosts_with(Role::ExLb) {
        let out = hosts
            .exec(&h.name)
            .run(&holds_vip_script(vip))
            .await
            .map_err(|e| e.to_string())?;
        if out.success() {
            return Ok(Some(h.name.clone()));
        }
    }
    Err(format!(
        "no [ex_lb] host holds the VIP {vip}; check keepalived there (journalctl -u keepalived); the drill runs only on a healthy cluster"
    ))
}

fn holds_vip_script(vip: &str) -> String {
    format!(
        "ip -o -4 addr show | grep -qF {}",
        sh_quote(&format!(" {vip}/"))
    )
}

/// `--host` (a master), else the master that holds the VIP, else the first.
fn pick_master<'a>(
    plan: &'a ClusterPlan,
    asked: Option<&str>,
    holder: Option<&str>,
) -> Result<&'a HostPlan, String> {
    let masters: Vec<&HostPlan> = plan.hosts_with(Role::Master).collect();
    if masters.len() < 2 {
        return Err(
            "the cluster has one master: its failure stops the API, there is nothing to drill"
                .into(),
        );
    }
    let Some(asked) = asked else {
        return Ok(holder
            .and_then(|h| masters.iter().find(|m| m.name == h))
            .unwrap_or(&masters[0]));
    };
    masters
        .into_iter()
        .find(|m| m.name == asked || m.inventory_host == asked || m.address == asked)
        .ok_or_else(|| {
            let names: Vec<&str> = plan
                .hosts_with(Role::Master)
                .map(|m| m.name.as_str())
                .collect();
            format!(
                "--host {asked} is not a master of the inventory; the masters are {}",
                names.join(", ")
            )
        })
}

/// The drill must leave etcd a quorum and the VIP another holder.
fn refuse_lost_quorum_or_vip(
    plan: &ClusterPlan,
    target: &HostPlan,
    held_vip: bool,
) -> Result<(), String> {
    let members = plan.hosts_with(Role::Etcd).count();
    if target.has(Role::Etcd) && (members - 1) * 2 <= members {
        return Err(format!(
            "{} is one of {members} etcd members: with it stopped the rest have no quorum, so the drill would stop the cluster",
            target.name
        ));
    }
    if held_vip && plan.hosts_with(Role::ExLb).count() < 2 {
        return Err(format!(
            "{} is the only [ex_lb] host: no other can take the VIP",
            target.name
        ));
    }
    Ok(())
}

/// What a master failure stops: its etcd member, its control plane, and
/// keepalived when it holds the VIP.
fn failed_units(target: &HostPlan, held_vip: bool) -> Vec<String> {
    let mut units: Vec<String> = [Step::ControlPlane, Step::Etcd]
        .iter()
        .flat_map(|step| target.services.iter().filter(move |s| s.step == *step))
        .map(|s| s.unit.clone())
        .collect();
    if held_vip {
        units.push("keepalived.service".into());
    }
    units
}

/// What was seen while the master was down.
#[derive(Default)]
struct Failover {
    vip_holder: Option<String>,
    vip_moved: Option<f64>,
    quorum: Option<f64>,
    api_via_vip: Option<f64>,
    local_balancers: Vec<Answered>,
    problems: Vec<String>,
}

/// Runs every check at once and records when each answered.
async fn watch_failover(
    plan: &ClusterPlan,
    hosts: &Hosts,
    target: &HostPlan,
    held_vip: bool,
) -> Failover {
    let since = Instant::now();
    let timed = |host: String, script: String| async move {
        let out = hosts.exec(&host).run(&script).await;
        let secs = since.elapsed().as_secs_f64();
        match out {
            Ok(o) if o.success() => (host, Ok(secs)),
            Ok(o) => (host, Err(o.stdout.trim().to_string())),
            Err(e) => (host, Err(e.to_string())),
        }
    };
    let other_master = plan
        .hosts_with(Role::Master)
        .find(|m| m.name != target.name)
        .expect("two masters at least");
    let vip_checks = plan
        .vip
        .iter()
        .filter(|_| held_vip)
        .flat_map(|vip| {
            plan.hosts_with(Role::ExLb)
                .filter(|h| h.name != target.name)
                .map(|h| timed(h.name.clone(), wait_script(&holds_vip_script(vip))))
        })
        .collect::<Vec<_>>();
    let quorum = quorum_check(plan, target).map(|(h, s)| timed(h, s));
    let api = timed(
        other_master.name.clone(),
        readyz_within(&plan.apiserver_endpoint, FAILOVER_LIMIT),
    );
    let balancers: Vec<_> = plan
        .hosts
        .iter()
        .filter(|h| h.name != target.name && h.services.iter().any(|s| s.unit == LOCAL_LB_UNIT))
        .map(|h| {
            timed(
                h.name.clone(),
                readyz_within(&plan.node_apiserver_endpoint, FAILOVER_LIMIT),
            )
        })
        .collect();
    let (vips, quorum, api, balancers) = futures::join!(
        futures::future::join_all(vip_checks),
        async {
            match quorum {
                Some(q) => Some(q.await),
                None => None,
            }
        },
        api,
        futures::future::join_all(balancers),
    );
    let mut seen = Failover::default();
    record_vip(&mut seen, plan, held_vip, vips);
    if let Some((host, r)) = quorum {
        match r {
            Ok(s) => seen.quorum = Some(s),
            Err(e) => seen.problems.push(format!(
                "etcd lost its quorum: the other members, asked from {host}: {e}"
            )),
        }
    }
    match api.1 {
        Ok(s) => seen.api_via_vip = Some(s),
        Err(e) => seen.problems.push(format!(
            "{}/readyz from {} did not answer ok: {e}",
            plan.apiserver_endpoint, api.0
        )),
    }
    for (host, r) in balancers {
        if let Err(e) = &r {
            seen.problems.push(format!(
                "{host}'s local balancer ({}/readyz) did not answer ok: {e}",
                plan.node_apiserver_endpoint
            ));
        }
        seen.local_balancers.push(Answered {
            host,
            seconds: r.ok(),
        });
    }
    seen
}

/// The first `[ex_lb]` host that took the VIP.
fn record_vip(
    seen: &mut Failover,
    plan: &ClusterPlan,
    held_vip: bool,
    vips: Vec<(String, Result<f64, String>)>,
) {
    if !held_vip {
        return;
    }
    let first = vips
        .into_iter()
        .filter_map(|(h, r)| r.ok().map(|s| (h, s)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match first {
        Some((h, s)) => {
            seen.vip_holder = Some(h);
            seen.vip_moved = Some(s);
        }
        None => seen.problems.push(format!(
            "no other [ex_lb] host took the VIP {} within {}s",
            plan.vip.as_deref().unwrap_or_default(),
            FAILOVER_LIMIT.as_secs()
        )),
    }
}

/// A surviving member's host and a script that waits until every other
/// member answers healthy (a health check is a quorum read).
fn quorum_check(plan: &ClusterPlan, target: &HostPlan) -> Option<(String, String)> {
    if !target.has(Role::Etcd) {
        return None;
    }
    let rest: Vec<&HostPlan> = plan
        .hosts_with(Role::Etcd)
        .filter(|h| h.name != target.name)
        .collect();
    let on = rest.first()?;
    let endpoints: Vec<String> = rest
        .iter()
        .map(|h| etcdctl::client_endpoint(plan, h))
        .collect();
    let ctl = etcdctl::Etcdctl::on(plan, on, &endpoints).ok()?;
    let script = wait_script(&format!(
        "{} >/dev/null 2>&1",
        ctl.command(&["endpoint", "health"])
    ));
    Some((on.name.clone(), script))
}

/// Polls `check` every 0.2s until it succeeds, for at most FAILOVER_LIMIT.
fn wait_script(check: &str) -> String {
    format!(
        "for i in $(seq 1 {polls}); do {check} && exit 0; sleep 0.2; done; echo 'not within {secs}s'; exit 1",
        polls = FAILOVER_LIMIT.as_secs() * 5,
        secs = FAILOVER_LIMIT.as_secs()
    )
}

/// Polls `<endpoint>/readyz` with the health-check credentials until it
/// says `ok`, every 0.2s for `limit` (zero: once).
fn readyz_within(endpoint: &str, limit: Duration) -> String {
    let dir = std::path::Path::new(APISERVER_CHECK_DIR);
    format!(
        "for i in $(seq 0 {polls}); do out=$(curl -sS --max-time 2 --cacert {ca} --cert {cert} {url} 2>&1) && [ \"$out\" = ok ] && exit 0; [ $i = {polls} ] || sleep 0.2; done; echo \"$out\"; exit 1",
        polls = limit.as_millis() / 200,
        ca = sh_quote(&dir.join("ca.pem").to_string_lossy()),
        cert = sh_quote(&dir.join("client.pem").to_string_lossy()),
        url = sh_quote(&format!("{endpoint}/readyz")),
    )
}

/// Starts what was stopped, etcd first, and waits for the masters' gate;
/// returns the seconds it took.
async fn recover(
    plan: &ClusterPlan,
    hosts: &Hosts,
    target: &HostPlan,
    units: &[String],
) -> Result<f64, String> {
    let started = Instant::now();
    let run = hosts.get(&target.name);
    let exec = hosts.exec(&target.name);
    let start = |units: Vec<String>| async move {
        if units.is_empty() {
            return Ok(());
        }
        let command = format!("systemctl start --no-block {}", quoted(&units));
        run.run_named(&format!("{command} 2>&1"), None, &command)
            .await
            .map(drop)
    };
    let of_step = |step: Step| -> Vec<String> {
        units
            .iter()
            .filter(|u| {
                target
                    .services
                    .iter()
                    .any(|s| s.step == step && &&s.unit == u)
            })
            .cloned()
            .collect()
    };
    let keepalived: Vec<String> = units
        .iter()
        .filter(|u| *u == "keepalived.service")
        .cloned()
        .collect();
    start(of_step(Step::Etcd)).await?;
    if target.has(Role::Etcd) {
        etcdctl::wait_member_healthy(plan, target, exec).await?;
    }
    start(of_step(Step::ControlPlane)).await?;
    rolling::pass_gate(plan, run, Gate::Apiserver).await?;
    start(keepalived).await?;
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readyz_check_of_zero_limit_asks_once() {
        let once = readyz_within("https://10.0.0.1:6443", Duration::ZERO);
        assert!(once.starts_with("for i in $(seq 0 0);"), "{once}");
        let polled = readyz_within("https://10.0.0.1:6443", Duration::from_secs(60));
        assert!(polled.contains("seq 0 300"), "{polled}");
        assert!(
            polled.contains(" https://10.0.0.1:6443/readyz "),
            "{polled}"
        );
    }

    #[test]
    fn the_vip_is_matched_whole() {
        let s = holds_vip_script("10.0.0.25");
        assert_eq!(s, "ip -o -4 addr show | grep -qF ' 10.0.0.25/'");
    }
}
