//! config.yml keys that kubeasz's example carries for components ferry does
//! not deploy, or for choices the bundle already makes (image versions,
//! offline tarballs). They are ignored and reported as one summary line,
//! grouped by component, so that the warnings that matter stay visible.

use crate::plan::config::Config;
use crate::plan::{Origin, Problem};
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

/// The kubeasz keys ferry refuses, each with the reason; warnings for those
/// it honours only in part.
pub fn check(cfg: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut refuse = |origin: &Origin, message: &str| {
        problems.push(Problem {
            origin: origin.clone(),
            message: message.to_string(),
        })
    };
    if cfg.change_ca.value {
        refuse(&cfg.change_ca.origin, "CHANGE_CA: true asks to replace the CA; ferry never replaces a CA during a plan (every kubeconfig, Secret and node certificate depends on it); set it to false");
    }
    if !cfg.dns_install.value {
        refuse(&cfg.dns_install.origin, "dns_install: ferry always deploys CoreDNS (every kubelet's clusterDNS points at it); set it to \"yes\"");
    }
    if cfg.containerd_config_dir.value.trim_end_matches('/') != "/etc/containerd" {
        refuse(&cfg.containerd_config_dir.origin, "CONTAINERD_CONFIG_DIR: ferry writes containerd's configuration to /etc/containerd, where containerd and crictl look for it; set /etc/containerd or remove the key");
    }
    if cfg.containerd_service_name.value != "containerd.service" {
        refuse(&cfg.containerd_service_name.origin, "CONTAINERD_SERVICE_NAME: ferry installs containerd as containerd.service (kubelet's unit requires it by that name); set containerd.service or remove the key");
    }
    for dir in [&cfg.containerd_root_dir, &cfg.containerd_state_dir] {
        if !safe_absolute_path(&dir.value) {
            refuse(&dir.origin, "containerd's root and state directories must be absolute paths of letters, digits, '/', '.', '_' or '-', without '..'");
        }
    }
    if cfg.enable_mirror_registry.value {
        tracing::warn!("{}: ENABLE_MIRROR_REGISTRY: true adds kubeasz's public registry mirrors, which a disconnected site cannot reach; ferry adds none and serves every image from its own mirror", cfg.enable_mirror_registry.origin);
    }
    if !cfg.enable_cluster_audit.value {
        tracing::warn!("{}: ENABLE_CLUSTER_AUDIT: false is not honoured: ferry keeps the apiserver's audit log on, as the production profile requires", cfg.enable_cluster_audit.origin);
    }
    if cfg.enable_setting_hostname.value {
        tracing::warn!("{}: ENABLE_SETTING_HOSTNAME: ferry does not change the hosts' hostnames; each kubelet registers with its node name (K8S_NODENAME) through --hostname-override", cfg.enable_setting_hostname.origin);
    }
    problems
}

/// An absolute path ferry may write into a unit or a TOML file.
pub fn safe_absolute_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.split('/').any(|part| part == "..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

/// A Go duration of whole hours, minutes or seconds (`876000h`, `8760h30m`), in days.
pub fn duration_days(text: &str) -> Result<i64, String> {
    let mut seconds: i64 = 0;
    let mut number = String::new();
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("unit `{ch}` is not h, m or s")),
        };
        let n: i64 = number
            .parse()
            .map_err(|_| format!("`{ch}` has no number before it"))?;
        seconds = n
            .checked_mul(unit)
            .and_then(|x| seconds.checked_add(x))
            .ok_or("too large")?;
        number.clear();
    }
    if !number.is_empty() || seconds == 0 {
        return Err("write hours like 876000h".into());
    }
    let days = seconds / 86_400;
    // X.509 cannot say anything after 9999-12-31; stay well inside it.
    if !(1..=365 * 1000).contains(&days) {
        return Err("must be between one day and 1000 years".into());
    }
    Ok(days)
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

    #[test]
    fn go_durations_in_days() {
        assert_eq!(duration_days("876000h"), Ok(36500));
        assert_eq!(duration_days("438000h"), Ok(18250));
        assert_eq!(duration_days("48h30m"), Ok(2));
        assert!(duration_days("10y").unwrap_err().contains("unit `y`"));
        assert!(duration_days("100").is_err());
        assert!(duration_days("1h").is_err());
    }

    #[test]
    fn safe_paths() {
        assert!(safe_absolute_path("/data/containerd"));
        assert!(!safe_absolute_path("data"));
        assert!(!safe_absolute_path("/var/../etc"));
        assert!(!safe_absolute_path("/var/lib/x\"\nroot = \"/"));
    }
}
