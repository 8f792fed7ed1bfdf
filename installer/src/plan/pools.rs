//! The production guide's node pools: system (DNS, monitoring, logging,
//! ingress; tainted), stateless (general services), batch (offline jobs, low
//! priority) and middleware (Kafka, Elasticsearch, Redis...; isolated).
//! A pool is set per host (`node_pool=system`) or by an inventory group named
//! after it (`[system]`); it becomes kubelet's `--node-labels` and
//! `--register-with-taints`.

use std::fmt;

/// The label (and taint key) every pooled node carries. kubelet may set
/// labels under `node.kubernetes.io/` on itself; `node-role.kubernetes.io/`
/// it may not (NodeRestriction, and kubelet refuses it at start).
pub const POOL_LABEL: &str = "node.kubernetes.io/pool";

/// The taint of masters that run no workloads.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane:NoSchedule";

/// The PriorityClass of the batch pool's workloads.
pub const BATCH_PRIORITY_CLASS: &str = "batch-low";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    System,
    Stateless,
    Batch,
    Middleware,
}

impl Pool {
    pub const ALL: [Pool; 4] = [Pool::System, Pool::Stateless, Pool::Batch, Pool::Middleware];

    pub fn name(self) -> &'static str {
        match self {
            Pool::System => "system",
            Pool::Stateless => "stateless",
            Pool::Batch => "batch",
            Pool::Middleware => "middleware",
        }
    }

    pub fn parse(text: &str) -> Option<Pool> {
        Pool::ALL.into_iter().find(|p| p.name() == text)
    }

    /// What keeps other workloads off the pool: the system and middleware
    /// pools admit only pods that tolerate them.
    pub fn taint(self) -> Option<String> {
        match self {
            Pool::System | Pool::Middleware => {
                Some(format!("{POOL_LABEL}={}:NoSchedule", self.name()))
            }
            Pool::Stateless | Pool::Batch => None,
        }
    }

    pub fn purpose(self) -> &'static str {
        match self {
            Pool::System => "DNS, monitoring, logging, ingress; tainted",
            Pool::Stateless => "general services",
            Pool::Batch => "offline jobs; PriorityClass batch-low",
            Pool::Middleware => "stateful middleware; tainted",
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// kubelet's `--node-labels` and `--register-with-taints` for a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub labels: Vec<String>,
    pub taints: Vec<String>,
}

/// A node's registration: its pool's label and taint, and the control-plane
/// taint on a master that is not also listed as a worker.
pub fn registration(pool: Option<Pool>, master_only: bool) -> Registration {
    let mut r = Registration::default();
    if let Some(p) = pool {
        r.labels.push(format!("{POOL_LABEL}={}", p.name()));
        r.taints.extend(p.taint());
    }
    if master_only {
        r.taints.push(CONTROL_PLANE_TAINT.to_string());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_label_and_taint() {
        let system = registration(Some(Pool::System), false);
        assert_eq!(system.labels, ["node.kubernetes.io/pool=system"]);
        assert_eq!(system.taints, ["node.kubernetes.io/pool=system:NoSchedule"]);
        assert!(registration(Some(Pool::Batch), false).taints.is_empty());
        assert_eq!(
            registration(None, true).taints,
            ["node-role.kubernetes.io/control-plane:NoSchedule"]
        );
        assert_eq!(Pool::parse("middleware"), Some(Pool::Middleware));
        assert_eq!(Pool::parse("gpu"), None);
    }
}
