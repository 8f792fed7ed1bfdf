//! The guide's node pools (system, stateless, batch, middleware): kubelet's
//! labels and taints, masters without workloads, ferry's addons on the
//! system pool, the batch PriorityClass, and what is refused.

mod common;
use common::{Inputs, SMALL_CONFIG};
use ferry_installer::plan::ClusterPlan;
use serde_norway::Value;

const POOL_HOSTS: &str = "\
[etcd]
10.1.0.1 NODE_NAME=etcd1

[kube_master]
10.1.0.1 k8s_nodename='master-01'
10.1.0.2 k8s_nodename='master-02'

[kube_node]
10.1.0.2 k8s_nodename='master-02'
10.1.0.11 k8s_nodename='system-01'
10.1.0.12 k8s_nodename='system-02'
10.1.0.21 k8s_nodename='app-01' node_pool=stateless
10.1.0.31 k8s_nodename='jobs-01' node_pool=batch
10.1.0.41 k8s_nodename='kafka-01' node_pool=middleware
10.1.0.51 k8s_nodename='plain-01'

[system]
10.1.0.11
10.1.0.12

[all:vars]
ansible_user=root
";

fn plan_of(hosts: &str) -> ClusterPlan {
    Inputs::new(hosts, SMALL_CONFIG).plan().expect("plans")
}

/// `--node-labels` and `--register-with-taints` of a host's kubelet ("" when absent).
fn kubelet_flags(plan: &ClusterPlan, host: &str) -> (String, String) {
    let unit = common::text(plan, host, "/etc/systemd/system/kubelet.service");
    let flag = |name: &str| {
        unit.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("--{name}=")))
            .map(|v| v.trim_end_matches(" \\").to_string())
            .unwrap_or_default()
    };
    (flag("node-labels"), flag("register-with-taints"))
}

#[test]
fn pools_become_kubelet_labels_and_taints() {
    let plan = plan_of(POOL_HOSTS);
    let pool = "node.kubernetes.io/pool";
    for (host, labels, taints) in [
        (
            "system-01",
            format!("{pool}=system"),
            format!("{pool}=system:NoSchedule"),
        ),
        ("app-01", format!("{pool}=stateless"), String::new()),
        ("jobs-01", format!("{pool}=batch"), String::new()),
        (
            "kafka-01",
            format!("{pool}=middleware"),
            format!("{pool}=middleware:NoSchedule"),
        ),
        ("plain-01", String::new(), String::new()),
        // A master runs no workloads...
        (
            "master-01",
            String::new(),
            "node-role.kubernetes.io/control-plane:NoSchedule".to_string(),
        ),
        // ...unless the inventory lists it as a worker too.
        ("master-02", String::new(), String::new()),
    ] {
        assert_eq!(kubelet_flags(&plan, host), (labels, taints), "{host}");
    }
    assert_eq!(
        plan.host("system-02")
            .and_then(|h| h.pool)
            .map(|p| p.name()),
        Some("system")
    );
}

/// The Deployment documents of an addon file, parsed.
fn deployments(plan: &ClusterPlan, file: &str) -> Vec<Value> {
    let text = common::text(plan, "master-01", &format!("/etc/ferry/addons/{file}"));
    text.split("\n---\n")
        .filter_map(|d| serde_norway::from_str::<Value>(d).ok())
        .filter(|v| v["kind"].as_str() == Some("Deployment"))
        .collect()
}

fn on_system_pool(d: &Value) -> bool {
    let spec = &d["spec"]["template"]["spec"];
    let tolerates = spec["tolerations"].as_sequence().is_some_and(|ts| {
        ts.iter().any(|t| {
            t["key"].as_str() == Some("node.kubernetes.io/pool")
                && t["value"].as_str() == Some("system")
                && t["effect"].as_str() == Some("NoSchedule")
        })
    });
    let term = &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0];
    tolerates
        && term["key"].as_str() == Some("node.kubernetes.io/pool")
        && term["values"][0].as_str() == Some("system")
}

#[test]
fn ferry_addons_run_on_the_system_pool_when_there_is_one() {
    let with = plan_of(POOL_HOSTS);
    let without = plan_of(common::SMALL_HOSTS);
    for file in [
        "10-coredns.yaml",
        "30-metrics-server.yaml",
        "40-cert-manager.yaml",
    ] {
        let placed = deployments(&with, file);
        assert!(!placed.is_empty(), "{file} has Deployments");
        for d in &placed {
            assert!(
                on_system_pool(d),
                "{file}: {}",
                serde_norway::to_string(d).unwrap()
            );
        }
        assert!(
            deployments(&without, file)
                .iter()
                .all(|d| !on_system_pool(d)),
            "{file} without a system pool stays as it was"
        );
    }
    // Upstream's own scheduling stays: metrics-server's Linux nodeSelector.
    let ms = &deployments(&with, "30-metrics-server.yaml")[0];
    assert_eq!(
        ms["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/os"].as_str(),
        Some("linux")
    );
    // Only the Deployments change: the other documents are as published.
    let docs = |plan: &ClusterPlan| {
        let text = common::text(plan, "master-01", "/etc/ferry/addons/40-cert-manager.yaml");
        text.split("\n---\n")
            .filter(|d| !d.contains("kind: Deployment"))
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(docs(&with), docs(&without));
    // NodeLocal DNS is a DaemonSet on every node: it tolerates every taint.
    let nodelocal = common::text(&with, "master-01", "/etc/ferry/addons/20-nodelocaldns.yaml");
    assert!(nodelocal.contains("{effect: NoSchedule, operator: Exists}"));
}

#[test]
fn the_batch_pool_gets_its_priority_class() {
    let plan = plan_of(POOL_HOSTS);
    let text = common::text(
        &plan,
        "master-01",
        "/etc/ferry/addons/15-priority-classes.yaml",
    );
    let pc: Value = serde_norway::from_str(&text).expect("YAML");
    assert_eq!(pc["kind"].as_str(), Some("PriorityClass"));
    assert_eq!(pc["metadata"]["name"].as_str(), Some("batch-low"));
    assert!(pc["value"].as_i64().is_some_and(|v| v < 0));
    assert_eq!(pc["preemptionPolicy"].as_str(), Some("Never"));
    let without = plan_of(common::SMALL_HOSTS);
    let master = without.host("master-01").unwrap();
    assert!(master
        .file("/etc/ferry/addons/15-priority-classes.yaml")
        .is_none());
}

#[test]
fn pool_mistakes_name_the_host_and_line() {
    for (hosts, says) in [
        (
            POOL_HOSTS.replace("node_pool=batch", "node_pool=gpu"),
            "hosts:13: node_pool=\"gpu\" is not one of system, stateless, batch, middleware",
        ),
        (
            POOL_HOSTS.replace("[system]\n10.1.0.11", "[system]\n10.1.0.11\n10.1.0.21"),
            "host 10.1.0.21: node_pool=stateless disagrees with its [system] group",
        ),
        (
            POOL_HOSTS.replace(
                "10.1.0.1 k8s_nodename='master-01'",
                "10.1.0.1 k8s_nodename='master-01' node_pool=system",
            ),
            "host 10.1.0.1 has pool system but is not in [kube_node]",
        ),
    ] {
        let inputs = Inputs::new(&hosts, SMALL_CONFIG);
        let err = inputs.plan().expect_err("refused").to_string();
        assert!(err.contains(says), "{says}\n{err}");
    }
}
