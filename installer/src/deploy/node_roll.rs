//! The nodes step during an upgrade: nodes whose kubelet runs already go in
//! batches of at most `max_unavailable`: each is cordoned and drained with
//! the bundle's kubectl on a master, upgraded (its files and units), and
//! uncordoned once kubelet is active again. Nodes not running yet start
//! together. A batch with a failure stops the roll.

use super::{run_step_on_host, DeployContext, HostRun, Status};
use crate::exec::{fan_out, sh_quote, Executor};
use crate::plan::{ClusterPlan, Role, Step};
use std::time::Duration;

/// How many nodes may be out of service at once: a count, or a percentage
/// of the nodes (rounded down, at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailable {
    Count(usize),
    Percent(u8),
}

impl std::str::FromStr for MaxUnavailable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--max-unavailable {s:?}: give a count (1) or a percentage (25%)");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MaxUnavailable::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(MaxUnavailable::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl MaxUnavailable {
    /// The batch size for `nodes` nodes.
    pub fn batch(self, nodes: usize) -> usize {
        match self {
            MaxUnavailable::Count(n) => n,
            MaxUnavailable::Percent(p) => nodes * usize::from(p) / 100,
        }
        .max(1)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct NodeRoll {
    pub max_unavailable: MaxUnavailable,
    pub drain_timeout: Duration,
}

/// The batches `hosts` (running nodes, in inventory order) go in.
pub fn batches(hosts: &[usize], roll: &NodeRoll) -> Vec<Vec<usize>> {
    let size = roll.max_unavailable.batch(hosts.len());
    hosts.chunks(size).map(<[usize]>::to_vec).collect()
}

/// Runs the nodes step on the hosts at `todo`.
pub(super) async fn run(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    runs: &mut [HostRun],
    todo: Vec<usize>,
    opts: &super::DeployOptions,
    roll: &NodeRoll,
) -> Vec<String> {
    let forks = opts.forks;
    let running = super::rolling::running_hosts(Step::Nodes, runs, &todo, forks).await;
    let (rolling, start): (Vec<usize>, Vec<usize>) = todo.into_iter().partition(|i| running[i]);
    let mut notes =
        super::rolling::start_together(Step::Nodes, plan, ctx, runs, &start, forks).await;
    if rolling.is_empty() {
        return notes;
    }
    let Some(kubectl) = master_kubectl(plan, runs, opts).await else {
        for &i in &rolling {
            runs[i].fail(
                Step::Nodes.as_str(),
                "no master is left to drain nodes from; nodes are not upgraded without a drain"
                    .into(),
            );
        }
        return notes;
    };
    let mut stopped = false;
    for batch in batches(&rolling, roll) {
        if stopped {
            for &i in &batch {
                let r = &mut runs[i];
                r.step = Step::Nodes.as_str().into();
                r.status = Status::Skipped;
                r.error = Some("skipped: an earlier batch of nodes failed".into());
            }
            continue;
        }
        let done = fan_out(
            runs.iter_mut()
                .enumerate()
                .filter(|(i, _)| batch.contains(i))
                .map(|(_, r)| r)
                .collect(),
            forks,
            |r: &mut HostRun| roll_node(plan, ctx, r, &kubectl, roll.drain_timeout),
        )
        .await;
        notes.extend(done.into_iter().flatten());
        stopped = batch.iter().any(|&i| !runs[i].ok());
    }
    notes
}

/// The bundle's kubectl with the admin kubeconfig, run on the first master
/// still ok, over a connection of its own (the master may be a node in a batch).
struct MasterKubectl {
    exec: Executor,
    prefix: String,
    master: String,
}

async fn master_kubectl(
    plan: &ClusterPlan,
    runs: &[HostRun],
    opts: &super::DeployOptions,
) -> Option<MasterKubectl> {
    let r = runs
        .iter()
        .find(|r| r.ok() && r.plan.has(Role::Master) && r.exec.is_some())?;
    let (kubeconfig, _) = super::addons::admin_kubeconfig(plan, &r.plan).ok()?;
    Some(MasterKubectl {
        exec: super::connect(&r.plan, opts).await.exec?,
        prefix: format!(
            "{} --kubeconfig={}",
            sh_quote(&plan.bin_dir.join("kubectl").to_string_lossy()),
            sh_quote(&kubeconfig.to_string_lossy())
        ),
        master: r.plan.name.clone(),
    })
}

impl MasterKubectl {
    async fn run(&self, args: &str, limit: Duration) -> Result<String, String> {
        let out = self
            .exec
            .run_within(&format!("{} {args} 2>&1", self.prefix), None, limit)
            .await
            .map_err(|e| format!("kubectl {args} on {}: {e}", self.master))?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "kubectl {args} on {}: {}",
                self.master,
                out.stdout.trim()
            ))
        }
    }
}

/// Drain, upgrade, uncordon one node.
async fn roll_node(
    plan: &ClusterPlan,
    ctx: &DeployContext,
    r: &mut HostRun,
    kubectl: &MasterKubectl,
    drain_timeout: Duration,
) -> Option<String> {
    let node = sh_quote(&r.plan.name);
    let drain = format!(
        "drain {node} --ignore-daemonsets --delete-emptydir-data --timeout={}s",
        drain_timeout.as_secs()
    );
    if let Err(e) = kubectl
        .run(&drain, drain_timeout + Duration::from_secs(60))
        .await
    {
        r.fail(
            Step::Nodes.as_str(),
            format!("draining before the upgrade: {e}"),
        );
        return None;
    }
    if let Ok(e) = r.exec() {
        e.log().line(&format!(
            "--- {} drained (kubectl on {})",
            r.plan.name, kubectl.master
        ));
    }
    let note = run_step_on_host(Step::Nodes, plan, ctx, r, false).await;
    if r.ok() {
        if let Err(e) = kubectl
            .run(&format!("uncordon {node}"), Duration::from_secs(60))
            .await
        {
            r.fail(
                Step::Nodes.as_str(),
                format!("upgraded, but uncordoning failed: {e}"),
            );
        }
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unavailable_reads_a_count_or_a_percentage() {
        assert_eq!("2".parse(), Ok(MaxUnavailable::Count(2)));
        assert_eq!("25%".parse(), Ok(MaxUnavailable::Percent(25)));
        assert!("0".parse::<MaxUnavailable>().is_err());
        assert!("0%".parse::<MaxUnavailable>().is_err());
        assert!("150%".parse::<MaxUnavailable>().is_err());
        assert!("x".parse::<MaxUnavailable>().is_err());
    }

    #[test]
    fn batches_are_at_least_one_node() {
        let roll = |m| NodeRoll {
            max_unavailable: m,
            drain_timeout: Duration::from_secs(1),
        };
        let hosts = [3, 4, 5, 6, 7];
        assert_eq!(
            batches(&hosts, &roll(MaxUnavailable::Count(2))),
            [vec![3, 4], vec![5, 6], vec![7]]
        );
        assert_eq!(batches(&hosts, &roll(MaxUnavailable::Percent(10))).len(), 5);
        assert_eq!(
            batches(&hosts, &roll(MaxUnavailable::Percent(40))),
            [vec![3, 4], vec![5, 6], vec![7]]
        );
    }
}
