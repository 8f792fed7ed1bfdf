//! config.yml keys that kubeasz's example carries for components ferry does
//! not deploy, or for choices the bundle already makes (image versions,
//! offline tarballs). They are ignored and reported as one summary line,
//! grouped by component, so that the warnings that matter stay visible.

use crate::plan::error::Origin;
use std::collections::BTreeMap;

/// (component, why ferry ignores it, key patterns: exact, or a prefix ending in `*`).
const IGNORED: &[(&str, &str, &[&str])] = &[
    (
        "image versions",
        "the bundle pins every image",
        &[
            "calico_ver",
            "calico_ver_main",
            "cilium_ver",
            "corednsVer",
            "dnsNodeCacheVer",
            "metricsVer",
            "busybox_ver",
            "flannelVer",
            "flannel_ver",
            "flanneld_image",
            "kube_router_ver",
            "kube_ovn_ver",
        ],
    ),
    (
        "offline image tarballs",
        "the bundle carries the images",
        &["*_offline"],
    ),
    (
        "system preparation",
        "ferry installs only from the bundle",
        &[
            "INSTALL_SOURCE",
            "OS_HARDEN",
            "local_network",
            "ntp_servers",
        ],
    ),
    (
        "docker",
        "ferry installs containerd",
        &["DOCKER_*", "ENABLE_REMOTE_API"],
    ),
    (
        "flannel",
        "ferry deploys cilium or calico",
        &["FLANNEL_BACKEND", "DIRECT_ROUTING"],
    ),
    (
        "kube-router",
        "ferry deploys cilium or calico",
        &["OVERLAY_TYPE", "FIREWALL_ENABLE", "kuberouter_*"],
    ),
    (
        "kube-ovn",
        "ferry deploys cilium or calico",
        &["OVN_DB_NODE"],
    ),
    (
        "kubeasz's cilium role",
        "ferry's Cilium reads the CILIUM_* keys",
        &["cilium_*"],
    ),
    (
        "harbor",
        "ferry serves images from its own mirror",
        &["HARBOR_*"],
    ),
    ("dashboard", "not in the bundle", &["dashboard*"]),
    ("headlamp", "not in the bundle", &["headlamp*"]),
    ("prometheus", "not in the bundle", &["prom_*"]),
    ("kubeapps", "not in the bundle", &["kubeapps_*"]),
    (
        "local-path-provisioner",
        "not in the bundle",
        &["local_path_*"],
    ),
    ("nfs-provisioner", "not in the bundle", &["nfs_*"]),
    ("openebs", "not in the bundle", &["openebs_*"]),
    ("network-check", "not in the bundle", &["network_check_*"]),
    (
        "node-problem-detector",
        "not in the bundle",
        &["node_problem_detector_*"],
    ),
    (
        "kubeblocks",
        "not in the bundle",
        &["kubeblocks_*", "kb_addon_*"],
    ),
    ("higress", "not in the bundle", &["higress_*"]),
    (
        "ingress",
        "not in the bundle",
        &[
            "ingress_nginx_*",
            "ingress_install",
            "ingress_backend",
            "traefik_*",
        ],
    ),
    ("argocd", "not in the bundle", &["argocd_*"]),
    ("minio", "not in the bundle", &["minio_*"]),
    ("nacos", "not in the bundle", &["nacos_*"]),
    ("rocketmq", "not in the bundle", &["rocketmq_*"]),
    (
        "older kubeasz keys",
        "no longer read by kubeasz either",
        &["ETCD_CLUSTER_SIZE", "BALANCE_ALG"],
    ),
];

fn matches(pattern: &str, key: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(suffix), _) => key.ends_with(suffix),
        (_, Some(prefix)) => key.starts_with(prefix),
        _ => pattern == key,
    }
}

/// The component a kubeasz key configures, when ferry ignores it.
pub fn ignored_component(key: &str) -> Option<(&'static str, &'static str)> {
    IGNORED
        .iter()
        .find(|(_, _, keys)| keys.iter().any(|p| matches(p, key)))
        .map(|(component, why, _)| (*component, *why))
}

/// Collects the ignored keys of one file and reports them once.
#[derive(Debug, Default)]
pub struct IgnoredKeys {
    by_component: BTreeMap<&'static str, Vec<(String, Origin)>>,
}

impl IgnoredKeys {
    /// Records `key` when it is one ferry ignores; false when it is not.
    pub fn note(&mut self, key: &str, origin: &Origin) -> bool {
        let Some((component, why)) = ignored_component(key) else {
            return false;
        };
        tracing::debug!("{origin}: {key} is ignored: {component} ({why})");
        self.by_component
            .entry(component)
            .or_default()
            .push((key.to_string(), origin.clone()));
        true
    }

    /// One line: how many keys, grouped by component; `None` when there are none.
    pub fn summary(&self, file: &std::path::Path) -> Option<String> {
        let total: usize = self.by_component.values().map(Vec::len).sum();
        if total == 0 {
            return None;
        }
        let groups: Vec<String> = self
            .by_component
            .iter()
            .map(|(c, keys)| format!("{c} ({})", keys.len()))
            .collect();
        Some(format!(
            "{}: {total} kubeasz keys configure what ferry does not deploy and are ignored: {}; --verbose lists each",
            file.display(),
            groups.join(", ")
        ))
    }

    pub fn report(&self, file: &std::path::Path) {
        if let Some(line) = self.summary(file) {
            tracing::warn!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn groups_by_component() {
        assert_eq!(ignored_component("prom_install").unwrap().0, "prometheus");
        assert_eq!(
            ignored_component("calico_offline").unwrap().0,
            "offline image tarballs"
        );
        assert_eq!(ignored_component("HARBOR_TLS_PORT").unwrap().0, "harbor");
        assert!(ignored_component("CLUSTER_NAME").is_none());
        assert!(ignored_component("CALICO_RR_ENABLED").is_none());
        let mut keys = IgnoredKeys::default();
        let o = Origin::new(Path::new("config.yml"), 3);
        for k in [
            "prom_install",
            "prom_namespace",
            "minio_install",
            "MAX_PODS",
        ] {
            keys.note(k, &o);
        }
        let line = keys.summary(Path::new("config.yml")).unwrap();
        assert!(
            line.starts_with("config.yml: 3 kubeasz keys")
                && line.contains("minio (1), prometheus (2)"),
            "{line}"
        );
    }
}
