//! The kernel settings every host gets, as data: the modules to load and the
//! sysctl keys with their values. The rendered modules-load.d and sysctl.d
//! files and the deploy's own actions (modprobe, sysctl, preflight's module
//! check) all come from these lists; nothing is read back from rendered text.

/// Modules containerd and kubelet need.
pub const MODULES: [&str; 2] = ["overlay", "br_netfilter"];
/// Modules kube-proxy's ipvs mode needs.
pub const IPVS_MODULES: [&str; 5] = ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"];

/// The production guide's sysctl baseline.
pub const SYSCTLS: [(&str, &str); 12] = [
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.tcp_tw_reuse", "1"),
    ("net.ipv4.tcp_fin_timeout", "15"),
    ("net.core.somaxconn", "32768"),
    ("net.ipv4.tcp_max_syn_backlog", "8192"),
    ("fs.inotify.max_user_instances", "8192"),
    ("fs.inotify.max_user_watches", "1048576"),
    ("fs.file-max", "2097152"),
    ("vm.max_map_count", "262144"),
    ("vm.swappiness", "0"),
];
/// On `[ex_lb]`: keepalived holds the VIP; haproxy binds it before it arrives.
pub const EX_LB_SYSCTLS: [(&str, &str); 1] = [("net.ipv4.ip_nonlocal_bind", "1")];

/// A host's modules.
pub fn modules(ipvs: bool) -> Vec<String> {
    let ipvs_modules: &[&str] = if ipvs { &IPVS_MODULES } else { &[] };
    MODULES
        .iter()
        .chain(ipvs_modules)
        .map(|m| m.to_string())
        .collect()
}

/// A host's sysctls.
pub fn sysctls(ex_lb: bool) -> Vec<(String, String)> {
    let lb: &[(&str, &str)] = if ex_lb { &EX_LB_SYSCTLS } else { &[] };
    SYSCTLS
        .iter()
        .chain(lb)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name and value stays within what a shell word and a /proc path
    /// can carry without quoting, as a second line of defence.
    #[test]
    fn names_and_values_are_plain() {
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        for m in modules(true) {
            assert!(plain(&m), "{m}");
        }
        for (k, v) in sysctls(true) {
            assert!(plain(&k) && plain(&v), "{k}={v}");
        }
        assert_eq!(modules(false), ["overlay", "br_netfilter"]);
        assert_eq!(sysctls(true).last().unwrap().0, "net.ipv4.ip_nonlocal_bind");
        assert!(!sysctls(false)
            .iter()
            .any(|(k, _)| k == "net.ipv4.ip_nonlocal_bind"));
    }
}
