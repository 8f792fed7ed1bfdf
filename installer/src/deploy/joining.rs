//! Which hosts `ferry node add` may add: every host named is in the
//! inventory and every etcd member new to the running cluster is named (an
//! even member count is the plan's to refuse, see `--force`).

use super::etcd_step::member_of;
use crate::plan::etcd_members::record_path;
use crate::plan::{ClusterPlan, HostPlan};

/// (host, member) of every etcd member joining, in the order they join.
pub fn joining_hosts(plan: &ClusterPlan) -> Vec<(String, String)> {
    plan.etcd_members
        .joining
        .iter()
        .filter_map(|name| {
            plan.hosts
                .iter()
                .find(|h| member_of(plan, h).is_some_and(|m| &m.name == name))
                .map(|h| (h.name.clone(), name.clone()))
        })
        .collect()
}

fn named(h: &HostPlan, name: &str) -> bool {
    h.name == name || h.inventory_host == name || h.address == name
}

/// Checks `hosts` (as given to `ferry node add`) against the plan.
pub fn check(plan: &ClusterPlan, hosts: &[String]) -> Result<(), String> {
    if !plan.etcd_members.recorded {
        return Err(format!(
            "{} does not exist: the cluster has not been installed with this cluster dir; run ferry install first (node add adds hosts to a running cluster)",
            record_path(&plan.cluster_dir).display()
        ));
    }
    let unknown: Vec<&str> = hosts
        .iter()
        .filter(|n| !plan.hosts.iter().any(|h| named(h, n)))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "not in the inventory: {}; add the host to the inventory first (as with kubeasz), then run ferry node add",
            unknown.join(", ")
        ));
    }
    let unnamed: Vec<String> = joining_hosts(plan)
        .into_iter()
        .filter(|(h, _)| {
            !hosts
                .iter()
                .any(|n| plan.hosts.iter().any(|p| &p.name == h && named(p, n)))
        })
        .map(|(h, m)| format!("{h} (etcd member {m})"))
        .collect();
    if !unnamed.is_empty() {
        return Err(format!(
            "the inventory has etcd members the cluster does not have yet that were not named: {}; name them too, or take them out of the inventory",
            unnamed.join(", ")
        ));
    }
    Ok(())
}
