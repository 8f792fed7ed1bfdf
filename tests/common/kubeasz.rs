//! kubeasz's example cluster files (tests/fixtures/kubeasz/<release>/,
//! unedited) as `ezctl new` writes them into a cluster dir. Shared by the
//! plan tests of both crates (installer/tests includes it by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One kubeasz release: its example dir and the placeholder values `ezctl new`
/// takes from that release's `ezdown`.
pub struct Release {
    pub dir: &'static str,
    pub placeholders: &'static [(&'static str, &'static str)],
}

pub const KUBEASZ_3_6_3: Release = Release {
    dir: "3.6.3",
    placeholders: &[
        ("__flannel__", "v0.22.2"),
        ("__calico__", "v3.26.4"),
        ("__cilium__", "1.14.5"),
        ("__kube_ovn__", "v1.11.5"),
        ("__kube_router__", "v1.5.4"),
        ("__coredns__", "1.11.1"),
        ("__pause__", "3.9"),
        ("__dns_node_cache__", "1.22.23"),
        ("__dashboard__", "v2.7.0"),
        ("__dash_metrics__", "v1.0.8"),
        ("__local_path_provisioner__", "v0.0.24"),
        ("__nfs_provisioner__", "v4.0.2"),
        ("__prom_chart__", "45.23.0"),
        ("__kubeapps_chart__", "12.4.3"),
        ("__harbor__", "v2.8.4"),
        ("__metrics__", "v0.6.4"),
    ],
};

pub const KUBEASZ_3_7_0: Release = Release {
    dir: "3.7.0",
    placeholders: &[
        ("__flannel__", "v0.28.9"),
        ("__calico__", "v3.32.1"),
        ("__cilium__", "1.17.4"),
        ("__headlamp__", "0.43.0"),
        ("__higress__", "2.2.3"),
        ("__kube_ovn__", "v1.11.5"),
        ("__kube_router__", "v1.5.4"),
        ("__coredns__", "1.14.6"),
        ("__pause__", "3.10.2"),
        ("__dns_node_cache__", "1.26.8"),
        ("__local_path_provisioner__", "v0.0.31"),
        ("__nfs_provisioner__", "v4.0.2"),
        ("__node_problem_detector__", "v1.35.3"),
        ("__openebs_ver__", "4.5.1"),
        ("__prom_chart__", "88.1.5"),
        ("__kubeblocks_ver__", "1.0.1"),
        ("__ingress_nginx_ver__", "4.13.0"),
        ("__harbor__", "v2.12.4"),
        ("__metrics__", "v0.9.0"),
    ],
};

/// The release's example directory (from either crate's tests).
pub fn example_dir(release: &Release) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [here, &here.join("..")]
        .iter()
        .map(|root| root.join("tests/fixtures/kubeasz").join(release.dir))
        .find(|dir| dir.is_dir())
        .expect("tests/fixtures/kubeasz")
}

/// `ezctl new <cluster>` on a deploy host without docker registry mirrors,
/// with `k8s` as K8S_BIN_VER: (hosts, config.yml) texts.
pub fn ezctl_new(release: &Release, cluster: &str, k8s: &str) -> (String, String) {
    let dir = example_dir(release);
    let hosts = std::fs::read_to_string(dir.join("hosts.multi-node")).expect("example hosts");
    let mut config = std::fs::read_to_string(dir.join("config.yml")).expect("example config");
    config = config.replace("__k8s_ver__", k8s);
    for (placeholder, version) in release.placeholders {
        config = config.replace(placeholder, version);
    }
    config = config
        .lines()
        .map(|l| match l.starts_with("ENABLE_MIRROR_REGISTRY") {
            true => "ENABLE_MIRROR_REGISTRY: false",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !config.contains("__"),
        "a placeholder is left unfilled: {config}"
    );
    (hosts.replace("_cluster_name_", cluster), config + "\n")
}
