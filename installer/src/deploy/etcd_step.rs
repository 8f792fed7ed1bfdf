//! The etcd step. Before the first members start, the cluster dir records
//! them (plan/etcd_members.rs), so later runs know the cluster exists.
//! Recorded members roll one at a time when they run already. Members
//! joining a running cluster go one at a time, in inventory order: `member
//! add` on a running member, then their unit (`--initial-cluster-state=
//! existing`), then they must answer healthy before they are recorded and
//! the next one joins.

use super::rolling::{self, Gate};
use super::{etcdctl, run_step_on_host, DeployContext, HostRun, Status};
use crate::plan::etcd_members::{self, Member};
use crate::plan::{ClusterPlan, HostPlan, Step};

/// The member `host` runs: the one whose peer URL is at its address.
pub fn member_of<'p>(plan: &'p ClusterPlan, host: &HostPlan) -> Option<&'p Member> {
    plan.etcd_members
        .members
        .iter()
        .find(|m| peer_host(&m.peer_url) == Some(host.address.as_str()))
}

fn peer_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let (host, _port) = rest.rsplit_once(':')?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// Runs the etcd step on the hosts at `todo` (indices into `runs`).
pub(super) async fn run(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    todo: Vec<usize>,
    forks: usize,
) -> Vec<String> {
    let members = &plan.etcd_members;
    if !members.recorded && !todo.is_empty() {
        if let Err(e) = etcd_members::save(&plan.cluster_dir, &members.members) {
            for &i in &todo {
                runs[i].fail(
                    Step::Etcd.as_str(),
                    format!("recording the etcd members: {e}"),
                );
            }
            return Vec::new();
        }
    }
    let joining =
        |r: &HostRun| member_of(plan, &r.plan).is_some_and(|m| members.is_joining(&m.name));
    let (join, others): (Vec<usize>, Vec<usize>) =
        todo.into_iter().partition(|&i| joining(&runs[i]));
    let notes = rolling::run(Step::Etcd, plan, ctx, runs, others, forks, Gate::EtcdMember).await;
    join_members(plan, ctx, runs, &join).await;
    notes
}

/// Joins the members at `join`, one at a time in the order the plan gives.
async fn join_members(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    join: &[usize],
) {
    let members = &plan.etcd_members;
    let mut recorded: Vec<Member> = members
        .members
        .iter()
        .filter(|m| !members.is_joining(&m.name))
        .cloned()
        .collect();
    let mut stopped: Option<String> = None;
    for name in &members.joining {
        let Some(&i) = join
            .iter()
            .find(|&&i| member_of(plan, &runs[i].plan).is_some_and(|m| &m.name == name))
        else {
            // Its host is not in this run: the members after it would
            // start with an initial cluster that names it.
            stopped.get_or_insert_with(|| format!("etcd member {name} did not join in this run"));
            continue;
        };
        if let Some(why) = &stopped {
            let r = &mut runs[i];
            r.step = Step::Etcd.as_str().into();
            r.status = Status::Skipped;
            r.error = Some(format!("skipped: {why}, and members join one at a time"));
            continue;
        }
        let member = member_of(plan, &runs[i].plan).expect("found above").clone();
        match join_one(plan, ctx, runs, i, &member).await {
            Ok(()) => {
                recorded.push(member);
                if let Err(e) = etcd_members::save(&plan.cluster_dir, &recorded) {
                    runs[i].fail(
                        Step::Etcd.as_str(),
                        format!("recording etcd member {name}: {e}"),
                    );
                }
            }
            Err(e) => runs[i].fail(Step::Etcd.as_str(), e),
        }
        if !runs[i].ok() {
            stopped = Some(format!(
                "etcd member {name} on {} did not join",
                runs[i].plan.name
            ));
        }
    }
}

/// `member add` (unless the cluster lists the member already), then the
/// member's files and unit, then its health.
async fn join_one(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    i: usize,
    member: &Member,
) -> Result<(), String> {
    add_member(plan, runs, member).await?;
    let r = &mut runs[i];
    r.exec()?.log().line(&format!(
        "--- etcd member {} joins the running cluster",
        member.name
    ));
    run_step_on_host(Step::Etcd, plan, ctx, r, false).await;
    if !r.ok() {
        return Err(r.error.clone().unwrap_or_default());
    }
    rolling::pass_gate(plan, r, Gate::EtcdMember).await
}

/// Adds `member` to the cluster from a recorded member that is still ok.
async fn add_member(plan: &ClusterPlan, runs: &[HostRun], member: &Member) -> Result<(), String> {
    let members = &plan.etcd_members;
    let helper = runs
        .iter()
        .find(|r| {
            r.ok()
                && r.exec.is_some()
                && member_of(plan, &r.plan).is_some_and(|m| !members.is_joining(&m.name))
        })
        .ok_or_else(|| {
            format!(
                "etcd member {} cannot join: no running member of the cluster was reachable to add it",
                member.name
            )
        })?;
    let exec = helper.exec()?;
    let ctl = etcdctl::Etcdctl::on(
        plan,
        &helper.plan,
        &[etcdctl::client_endpoint(plan, &helper.plan)],
    )?;
    let listed = exec
        .check(&ctl.command(&["member", "list"]))
        .await
        .map_err(|e| format!("etcd member list on {}: {e}", helper.plan.name))?;
    if lists_peer(&listed, &member.peer_url) {
        exec.log().line(&format!(
            "etcd member {} ({}) is listed already: not added again",
            member.name, member.peer_url
        ));
        return Ok(());
    }
    let peer = format!("--peer-urls={}", member.peer_url);
    let script = ctl.reconfig_script(&["member", "add", &member.name, &peer]);
    let out = exec.run(&script).await.map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(());
    }
    Err(format!(
        "etcd member add {} on {}: {}",
        member.name,
        helper.plan.name,
        out.stdout.trim()
    ))
}

/// Whether `member list`'s output (`id, started, name, peers, clients,
/// learner` per line) has a member at `peer_url`.
fn lists_peer(listed: &str, peer_url: &str) -> bool {
    listed.lines().any(|l| {
        l.split(", ")
            .any(|field| field.split(',').any(|u| u == peer_url))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_found_in_member_list_by_its_peer_url() {
        let listed = "8e9e05c52164694d, started, etcd1, https://10.0.0.1:2380, https://10.0.0.1:2379, false\n\
                      91bc3c398fb3c146, unstarted, , https://10.0.0.4:2380, , false\n";
        assert!(lists_peer(listed, "https://10.0.0.1:2380"));
        assert!(lists_peer(listed, "https://10.0.0.4:2380"));
        assert!(!lists_peer(listed, "https://10.0.0.14:2380"));
        assert!(!lists_peer(listed, "https://10.0.0.1:2379x"));
    }

    #[test]
    fn the_peer_host_is_read_from_the_url() {
        assert_eq!(peer_host("https://10.0.0.1:2380"), Some("10.0.0.1"));
        assert_eq!(peer_host("https://[fd00::1]:2380"), Some("fd00::1"));
        assert_eq!(peer_host("http://10.0.0.1:2380"), None);
    }
}
