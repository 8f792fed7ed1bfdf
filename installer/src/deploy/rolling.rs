//! Steps whose hosts serve the cluster together (etcd members, apiservers)
//! never restart more than one running host at a time. In a new cluster
//! (no host of the step runs yet) the hosts start together; once any runs,
//! every host goes one at a time, the running ones first, then those
//! joining, each healthy again before the next is touched. When one does not come back,
//! the others are left as they are.

use super::{etcdctl, run_step_on_host, DeployContext, HostRun, Status};
use crate::exec::{fan_out, sh_quote, Executor};
use crate::plan::render::access::APISERVER_CHECK_DIR;
use crate::plan::{ClusterPlan, HostPlan, Step};
use std::time::Duration;

/// What says a restarted host serves again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Its etcd member answers `endpoint health`.
    EtcdMember,
    /// Its apiserver answers `/readyz` with `ok`, so does the endpoint
    /// clients use (the VIP), and the controller-manager and scheduler hold
    /// their leases again.
    Apiserver,
}

/// How long an apiserver may take to be ready after a restart.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `step` on the hosts at `todo` (indices into `runs`): those not
/// running in parallel, then those running one at a time behind `gate`.
pub(super) async fn run(
    step: Step,
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    todo: Vec<usize>,
    forks: usize,
    gate: Gate,
) -> Vec<String> {
    let running = running_hosts(step, runs, &todo, forks).await;
    let (mut roll, start): (Vec<usize>, Vec<usize>) = todo.into_iter().partition(|i| running[i]);
    if !roll.is_empty() {
        // A cluster that runs: hosts joining it (new masters) come one at a time too.
        roll.extend(start);
        return roll_one_at_a_time(step, plan, ctx, runs, &roll, gate).await;
    }
    start_together(step, plan, ctx, runs, &start, forks).await
}

/// Runs `step` on the hosts at `hosts` together, `forks` at a time.
pub(super) async fn start_together(
    step: Step,
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    hosts: &[usize],
    forks: usize,
) -> Vec<String> {
    fan_out(
        runs.iter_mut()
            .enumerate()
            .filter(|(i, _)| hosts.contains(i))
            .map(|(_, r)| r)
            .collect(),
        forks,
        |r: &mut HostRun| run_step_on_host(step, plan, ctx, r, false),
    )
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// Runs `step` on `hosts` in order; a host whose units restarted must pass
/// `gate` before the next starts. The first that fails stops the roll.
async fn roll_one_at_a_time(
    step: Step,
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    hosts: &[usize],
    gate: Gate,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut stopped_by: Option<String> = None;
    for &i in hosts {
        let r = &mut runs[i];
        if let Some(by) = &stopped_by {
            r.step = step.as_str().into();
            r.status = Status::Skipped;
            r.error = Some(format!(
                "skipped: {by} did not come back healthy, so no other running host was restarted"
            ));
            continue;
        }
        let before = r.restarted.len();
        notes.extend(run_step_on_host(step, plan, ctx, r, false).await);
        let restarted = r.restarted.len() > before;
        if r.ok() && restarted {
            if let Err(e) = pass_gate(plan, r, gate).await {
                r.fail(step.as_str(), e);
            }
        }
        if !r.ok() {
            stopped_by = Some(r.plan.name.clone());
        }
    }
    notes
}

/// Whether each host at `todo` runs every unit of `step` already.
pub(super) async fn running_hosts(
    step: Step,
    runs: &mut [HostRun],
    todo: &[usize],
    forks: usize,
) -> std::collections::BTreeMap<usize, bool> {
    let asked = fan_out(
        runs.iter_mut()
            .enumerate()
            .filter(|(i, _)| todo.contains(i))
            .collect(),
        forks,
        |(i, r): (usize, &mut HostRun)| async move { (i, units_active(step, r).await) },
    )
    .await;
    asked.into_iter().collect()
}

/// The units of `step` the host's plan runs, each quoted for a shell.
pub(super) fn step_units(host: &HostPlan, step: Step) -> Vec<String> {
    host.services
        .iter()
        .filter(|s| s.step == step)
        .map(|s| sh_quote(&s.unit))
        .collect()
}

async fn units_active(step: Step, r: &HostRun) -> bool {
    let units = step_units(&r.plan, step);
    let Ok(exec) = r.exec() else {
        return false;
    };
    if units.is_empty() {
        return false;
    }
    exec.run(&format!("systemctl is-active --quiet {}", units.join(" ")))
        .await
        .is_ok_and(|o| o.success())
}

/// Waits until `r`'s host serves again, as `gate` says.
pub(super) async fn pass_gate(plan: &ClusterPlan, r: &HostRun, gate: Gate) -> Result<(), String> {
    let exec = r.exec()?;
    exec.log().line(&format!(
        "--- waiting for {} on {} before the next host",
        match gate {
            Gate::EtcdMember => "its etcd member to be healthy",
            Gate::Apiserver => "its apiserver to be ready and the leases to be held",
        },
        r.plan.name
    ));
    match gate {
        Gate::EtcdMember => etcdctl::wait_member_healthy(plan, &r.plan, exec).await,
        Gate::Apiserver => {
            wait_apiserver_ready(plan, &r.plan, exec).await?;
            super::leases::wait_held(plan, &r.plan, exec).await
        }
    }
}

/// Waits until the master's apiserver answers `/readyz` with `ok`, then the
/// endpoint clients outside the nodes use (the VIP, through `[ex_lb]`), with
/// the health-check credentials the plan places on every master.
async fn wait_apiserver_ready(
    plan: &ClusterPlan,
    host: &HostPlan,
    exec: &Executor,
) -> Result<(), String> {
    let own = format!("https://{}:{}", host.address, plan.apiserver_port);
    for endpoint in [own.as_str(), plan.apiserver_endpoint.as_str()] {
        let out = exec
            .run(&readyz_script(endpoint))
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!(
                "apiserver on {} is not ready: {endpoint}/readyz: {}",
                host.name,
                out.stdout.trim()
            ));
        }
    }
    Ok(())
}

/// Polls `<endpoint>/readyz` until it says `ok`, for at most READY_TIMEOUT.
fn readyz_script(endpoint: &str) -> String {
    let dir = std::path::Path::new(APISERVER_CHECK_DIR);
    format!(
        "for i in $(seq 1 {polls}); do out=$(curl -sS --max-time 5 --cacert {ca} --cert {cert} {url} 2>&1) && [ \"$out\" = ok ] && exit 0; sleep 0.5; done; echo \"no ok within {secs}s: $out\"; exit 1",
        polls = READY_TIMEOUT.as_secs() * 2,
        ca = sh_quote(&dir.join("ca.pem").to_string_lossy()),
        cert = sh_quote(&dir.join("client.pem").to_string_lossy()),
        url = sh_quote(&format!("{endpoint}/readyz")),
        secs = READY_TIMEOUT.as_secs(),
    )
}
