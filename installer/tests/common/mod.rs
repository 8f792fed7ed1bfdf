//! Shared helpers for the plan tests: fixtures and temp inputs.
#![allow(dead_code)]

use ferry_bundles::BundleManifest;
use ferry_installer::plan::{build_plan, ClusterPlan, FileContent, PlanError, PlanOptions};
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/guide")
}

/// The bundle.json fixture: Kubernetes 1.29.6, amd64 + arm64, the prod profile's images.
pub fn bundle() -> BundleManifest {
    let bytes = std::fs::read(fixtures().join("bundle.json")).expect("fixture bundle.json");
    BundleManifest::from_bytes(&bytes).expect("fixture parses")
}

/// The production guide's example inventory and config, planned into a fresh cluster dir.
pub fn guide_plan(cluster_dir: &Path) -> ClusterPlan {
    build_plan(
        &fixtures().join("hosts"),
        &fixtures().join("config.yml"),
        &bundle(),
        Some(cluster_dir),
        &PlanOptions::default(),
    )
    .expect("the guide's example plans")
}

/// Inputs written to a temp dir, named `hosts` and `config.yml` like kubeasz's.
pub struct Inputs {
    pub dir: tempfile::TempDir,
}

impl Inputs {
    pub fn new(hosts: &str, config: &str) -> Inputs {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts"), hosts).expect("write hosts");
        std::fs::write(dir.path().join("config.yml"), config).expect("write config");
        Inputs { dir }
    }

    pub fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    pub fn plan(&self) -> Result<ClusterPlan, PlanError> {
        self.plan_with(&bundle())
    }

    pub fn plan_with(&self, bundle: &BundleManifest) -> Result<ClusterPlan, PlanError> {
        build_plan(
            &self.hosts(),
            &self.config(),
            bundle,
            Some(&self.dir.path().join("cluster")),
            &PlanOptions::default(),
        )
    }
}

/// Write every inline file of every host under `root/<host>/<path>`.
pub fn write_trees(plan: &ClusterPlan, root: &Path) {
    for h in &plan.hosts {
        for f in &h.files {
            if let FileContent::Inline(b) = &f.content {
                let p = root
                    .join(&h.name)
                    .join(f.path.strip_prefix("/").expect("absolute"));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, b).expect("write");
            }
        }
    }
}

/// Text of an inline file on a host.
pub fn text(plan: &ClusterPlan, host: &str, path: &str) -> String {
    let h = plan
        .host(host)
        .unwrap_or_else(|| panic!("host {host} in plan"));
    let f = h
        .file(path)
        .unwrap_or_else(|| panic!("{path} planned on {host}"));
    match &f.content {
        FileContent::Inline(b) => String::from_utf8(b.clone()).expect("utf-8"),
        other => panic!("{path} on {host} is not inline: {other:?}"),
    }
}

/// A minimal valid inventory: 3 masters that are also etcd, one worker.
pub const SMALL_HOSTS: &str = "\
[etcd]
10.1.0.1 NODE_NAME=etcd1
10.1.0.2 NODE_NAME=etcd2
10.1.0.3 NODE_NAME=etcd3

[kube_master]
10.1.0.1 k8s_nodename='master-01'
10.1.0.2 k8s_nodename='master-02'
10.1.0.3 k8s_nodename='master-03'

[kube_node]
10.1.0.4 k8s_nodename='worker-01'

[all:vars]
ansible_user=root
";

pub const SMALL_CONFIG: &str = "\
CLUSTER_NAME: \"small\"
K8S_VER: \"1.29.6\"
CLUSTER_CIDR: \"10.244.0.0/16\"
SERVICE_CIDR: \"10.96.0.0/16\"
";
