//! config.yml: the production guide's keys, typed, with the line of every
//! top-level key. Missing keys take the guide's production values.

use crate::plan::error::{Origin, PlanError, Problem, Problems, Result};
use crate::plan::ignored_keys::IgnoredKeys;
use crate::plan::jinja::{self, Scope};
use serde_norway::Value as Yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A config value and where it came from (line 0 = built-in default).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// Every key ferry reads from config.yml. Field names follow the YAML keys.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub cluster_name: Setting<String>,
    /// `None` = take the bundle's version.
    pub k8s_ver: Option<Setting<String>>,
    pub container_runtime: Setting<String>,
    /// Where containerd's binaries are unpacked.
    pub runtime_bin_dir: Setting<String>,
    pub task_install_containerd: Setting<bool>,
    pub enable_local_dns_cache: Setting<bool>,
    pub local_dns_cache: Setting<String>,
    pub vip: Option<Setting<String>>,
    pub vip_if: Setting<String>,
    pub cluster_cidr: Setting<String>,
    pub service_cidr: Setting<String>,
    pub node_port_range: Setting<String>,
    pub proxy_mode: Setting<String>,
    pub dns_domain: Setting<String>,
    pub cni_plugin: Setting<String>,
    pub cilium_tunnel_mode: Setting<String>,
    pub cilium_enable_bpf_masquerade: Setting<bool>,
    pub cilium_enable_hubble: Setting<bool>,
    /// kubeasz's Calico keys (see [`crate::plan::calico`]).
    pub calico_enable_overlay: Setting<String>,
    pub calico_networking_backend: Setting<String>,
    pub ip_autodetection_method: Setting<String>,
    pub calico_rr_enabled: Setting<bool>,
    pub etcd_data_dir: Setting<String>,
    pub etcd_wal_dir: Setting<String>,
    pub etcd_auto_compaction_retention: Setting<String>,
    pub etcd_snapshot_count: Setting<String>,
    /// systemd OnCalendar= of each member's scheduled snapshot; empty: none.
    pub etcd_backup_schedule: Setting<String>,
    /// How many scheduled snapshots each member keeps.
    pub etcd_backup_keep: Setting<u32>,
    pub etcd_client_port: Setting<u16>,
    pub etcd_peer_port: Setting<u16>,
    pub apiserver_bind_port: Setting<u16>,
    pub apiserver_max_requests_inflight: Setting<u32>,
    pub apiserver_max_mutating_requests_inflight: Setting<u32>,
    pub apiserver_event_ttl: Setting<String>,
    pub apiserver_request_timeout: Setting<String>,
    pub apiserver_enable_profiling: Setting<bool>,
    pub apiserver_audit_log_max_age: Setting<u32>,
    pub apiserver_audit_log_max_backup: Setting<u32>,
    pub apiserver_audit_log_max_size: Setting<u32>,
    pub apiserver_admission_plugins: Setting<Vec<String>>,
    pub kubelet_root_dir: Setting<String>,
    pub max_pods: Setting<u32>,
    pub kube_reserved_enabled: Setting<bool>,
    pub kube_reserved: Setting<BTreeMap<String, String>>,
    pub system_reserved: Setting<BTreeMap<String, String>>,
    pub eviction_hard: Setting<BTreeMap<String, String>>,
    pub metrics_server_enabled: Setting<bool>,
    pub ingress_nginx_enabled: Setting<bool>,
    pub cert_manager_enabled: Setting<bool>,
    /// Further registries containerd may fall back to after ferry's mirror(s).
    pub registry_mirrors: Setting<Vec<String>>,
    pub sandbox_image: Option<Setting<String>>,
    /// Inventory hosts (IP or name) that run ferry's registry mirror; empty = every master.
    pub ferry_registry_hosts: Setting<Vec<String>>,
    pub ferry_registry_port: Setting<u16>,
    /// Whether containerd may fall back to the upstream registry itself after
    /// the mirrors (off: a disconnected site has no upstream to reach).
    pub ferry_upstream_fallback: Setting<bool>,
    /// containerd's CRI `restrict_oom_score_adj`: for hosts that cannot lower
    /// OOM scores (containers without CAP_SYS_RESOURCE, such as LXC).
    pub containerd_restrict_oom_score_adj: Setting<bool>,
    /// Prefix length of the hosts' network (the inventory has no netmasks).
    pub host_subnet_prefix: Setting<u8>,
    /// Namespaces that get the ResourceQuota / LimitRange / default-deny templates.
    pub tenant_namespaces: Setting<Vec<String>>,
    /// kubeasz's per-host node name template (`K8S_NODENAME`), evaluated per host.
    pub k8s_nodename: Option<Setting<String>>,
    /// kubeconfig context name (kubeasz's `CONTEXT_NAME`); `None` = ferry's `user@cluster`.
    pub context_name: Option<Setting<String>>,
    /// Extra apiserver certificate SANs (IPs or DNS names).
    pub master_cert_hosts: Setting<Vec<String>>,
    /// Registries containerd may reach over plain HTTP (`http://`) or with an
    /// unverified certificate (`https://`), as kubeasz's `INSECURE_REG`.
    pub insecure_reg: Setting<Vec<String>>,
    /// kubeasz's public pull-through mirrors; ferry adds none (see validate).
    pub enable_mirror_registry: Setting<bool>,
    /// CA and leaf certificate lifetimes (Go durations such as `876000h`).
    pub ca_expiry: Option<Setting<String>>,
    pub cert_expiry: Option<Setting<String>>,
    /// kubeasz's `CHANGE_CA`: ferry never replaces a CA on a plan.
    pub change_ca: Setting<bool>,
    /// Pod CIDR prefix length per node (`--node-cidr-mask-size`).
    pub node_cidr_len: Setting<u8>,
    pub sys_reserved_enabled: Setting<bool>,
    /// containerd's `root` and `state` (kubeasz's CONTAINERD_ROOT_DIR /
    /// CONTAINERD_STORAGE_DIR and CONTAINERD_STATE_DIR).
    pub containerd_root_dir: Setting<String>,
    pub containerd_state_dir: Setting<String>,
    pub containerd_config_dir: Setting<String>,
    pub containerd_service_name: Setting<String>,
    /// kubeasz's `dns_install`: CoreDNS is not optional in ferry.
    pub dns_install: Setting<bool>,
    pub enable_cluster_audit: Setting<bool>,
    pub enable_setting_hostname: Setting<bool>,
    /// Port of every node's local apiserver load balancer on 127.0.0.1.
    pub local_lb_port: Setting<u16>,
    /// haproxy's `maxconn` on `[ex_lb]`; its open-file limit follows.
    pub ex_lb_maxconn: Setting<u32>,
    /// What Jinja in the inventory and config.yml sees: the inventory's
    /// variables and config.yml's scalars (as extra vars).
    pub scope: Scope,
    /// Values outside their key's kind (see [`crate::plan::config_types`]),
    /// kept only by [`Config::load_for_plan`], whose validation reports them
    /// with every other problem.
    pub kind_problems: Vec<Problem>,
}

const KNOWN_KEYS: &[&str] = &[
    "CLUSTER_NAME",
    "K8S_VER",
    "CONTAINER_RUNTIME",
    "RUNTIME_BIN_DIR",
    "TASK_INSTALL_CONTAINERD",
    "ENABLE_LOCAL_DNS_CACHE",
    "LOCAL_DNS_CACHE",
    "VIP",
    "VIP_IF",
    "CLUSTER_CIDR",
    "SERVICE_CIDR",
    "NODE_PORT_RANGE",
    "PROXY_MODE",
    "DNS_DOMAIN",
    "CNI_PLUGIN",
    "CILIUM_TUNNEL_MODE",
    "CILIUM_ENABLE_BPF_MASQUERADE",
    "CILIUM_ENABLE_HUBBLE",
    "CALICO_ENABLE_OVERLAY",
    "CALICO_NETWORKING_BACKEND",
    "IP_AUTODETECTION_METHOD",
    "CALICO_RR_ENABLED",
    "CALICO_RR_NODES",
    "ETCD_DATA_DIR",
    "ETCD_WAL_DIR",
    "ETCD_AUTO_COMPACTION_RETENTION",
    "ETCD_SNAPSHOT_COUNT",
    "ETCD_BACKUP_SCHEDULE",
    "ETCD_BACKUP_KEEP",
    "ETCD_CLIENT_PORT",
    "ETCD_PEER_PORT",
    "KUBE_APISERVER_BIND_PORT",
    "KUBE_APISERVER_MAX_REQUESTS_INFLIGHT",
    "KUBE_APISERVER_MAX_MUTATING_REQUESTS_INFLIGHT",
    "KUBE_APISERVER_EVENT_TTL",
    "KUBE_APISERVER_REQUEST_TIMEOUT",
    "KUBE_APISERVER_ENABLE_PROFILING",
    "KUBE_APISERVER_AUDIT_LOG_MAX_AGE",
    "KUBE_APISERVER_AUDIT_LOG_MAX_BACKUP",
    "KUBE_APISERVER_AUDIT_LOG_MAX_SIZE",
    "KUBE_APISERVER_ENABLE_ADMISSION_PLUGINS",
    "KUBELET_ROOT_DIR",
    "MAX_PODS",
    "KUBE_RESERVED_ENABLED",
    "KUBE_RESERVED",
    "SYSTEM_RESERVED",
    "EVICTION_HARD",
    "METRICS_SERVER_ENABLED",
    "INGRESS_NGINX_ENABLED",
    "CERT_MANAGER_ENABLED",
    "REGISTRY_MIRRORS",
    "SANDBOX_IMAGE",
    "FERRY_REGISTRY_HOSTS",
    "FERRY_REGISTRY_PORT",
    "FERRY_UPSTREAM_FALLBACK",
    "CONTAINERD_RESTRICT_OOM_SCORE_ADJ",
    "HOST_SUBNET_PREFIX",
    "TENANT_NAMESPACES",
    // kubeasz's keys ferry honours or refuses with a reason.
    "K8S_NODENAME",
    "CONTEXT_NAME",
    "MASTER_CERT_HOSTS",
    "INSECURE_REG",
    "ENABLE_MIRROR_REGISTRY",
    "CA_EXPIRY",
    "CERT_EXPIRY",
    "CHANGE_CA",
    "NODE_CIDR_LEN",
    "SYS_RESERVED_ENABLED",
    "CALICO_IPV4POOL_IPIP",
    "CONTAINERD_STORAGE_DIR",
    "CONTAINERD_ROOT_DIR",
    "CONTAINERD_STATE_DIR",
    "CONTAINERD_CONFIG_DIR",
    "CONTAINERD_SERVICE_NAME",
    "dns_install",
    "metricsserver_install",
    "ENABLE_CLUSTER_AUDIT",
    "ENABLE_SETTING_HOSTNAME",
    "LOCAL_LB_PORT",
    "EX_LB_MAXCONN",
];

/// Every config.yml key ferry reads (the others are ignored with a warning).
pub fn known_keys() -> &'static [&'static str] {
    KNOWN_KEYS
}

/// Keys whose value is a per-host template, evaluated when hosts are known.
const PER_HOST_KEYS: &[&str] = &["K8S_NODENAME"];

/// Reads typed values out of the top-level mapping, collecting problems.
struct Reader<'a> {
    path: &'a Path,
    /// The Jinja scope, with config.yml's scalars once they are read.
    scope: Scope,
    map: BTreeMap<String, Yaml>,
    lines: BTreeMap<String, usize>,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn origin(&self, key: &str) -> Origin {
        Origin::new(self.path, self.lines.get(key).copied().unwrap_or(0))
    }

    fn problem(&mut self, key: &str, msg: String) {
        let origin = self.origin(key);
        self.problems.push(Problem {
            origin,
            message: msg,
        });
    }

    fn opt_string(&mut self, key: &str) -> Option<Setting<String>> {
        let v = self.map.get(key)?.clone();
        let text = match v {
            Yaml::String(s) => s,
            Yaml::Number(n) => n.to_string(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Null => return None,
            _ => {
                self.problem(key, format!("{key} must be a single value (a string)"));
                return None;
            }
        };
        Some(Setting {
            value: text,
            origin: self.origin(key),
        })
    }

    fn string(&mut self, key: &str, default: &str) -> Setting<String> {
        self.opt_string(key).unwrap_or_else(|| Setting {
            value: default.to_string(),
            origin: Origin::new(self.path, 0),
        })
    }

    fn bool(&mut self, key: &str, default: bool) -> Setting<bool> {
        let value = match self.map.get(key) {
            None | Some(Yaml::Null) => default,
            Some(Yaml::Bool(b)) => *b,
            Some(Yaml::String(s)) if s == "true" || s == "yes" => true,
            Some(Yaml::String(s)) if s == "false" || s == "no" => false,
            Some(other) => {
                let shown = serde_norway::to_string(other).unwrap_or_default();
                self.problem(
                    key,
                    format!("{key} must be true or false, found `{}`", shown.trim()),
                );
                default
            }
        };
        Setting {
            value,
            origin: self.origin(key),
        }
    }

    fn number<T: TryFrom<u64> + Copy>(&mut self, key: &str, default: T) -> Setting<T> {
        let value = match self.map.get(key) {
            None | Some(Yaml::Null) => default,
            Some(v) => {
                let n = match v {
                    Yaml::Number(n) => n.as_u64(),
                    Yaml::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n.and_then(|n| T::try_from(n).ok()) {
                    Some(n) => n,
                    None => {
                        let shown = serde_norway::to_string(v).unwrap_or_default();
                        self.problem(
                            key,
                            format!(
                                "{key} must be a whole number in range, found `{}`",
                                shown.trim()
                            ),
                        );
                        default
                    }
                }
            }
        };
        Setting {
            value,
            origin: self.origin(key),
        }
    }

    fn list(&mut self, key: &str, default: &[&str]) -> Setting<Vec<String>> {
        let value = match self.map.get(key).cloned() {
            None | Some(Yaml::Null) => default.iter().map(|s| s.to_string()).collect(),
            Some(Yaml::Sequence(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Yaml::String(s) => out.push(s),
                        Yaml::Number(n) => out.push(n.to_string()),
                        _ => self.problem(key, format!("{key} must be a list of strings")),
                    }
                }
                out
            }
            Some(_) => {
                self.problem(key, format!("{key} must be a list"));
                default.iter().map(|s| s.to_string()).collect()
            }
        };
        Setting {
            value,
            origin: self.origin(key),
        }
    }

    fn map(&mut self, key: &str, default: &[(&str, &str)]) -> Setting<BTreeMap<String, String>> {
        let value = match self.map.get(key).cloned() {
            None | Some(Yaml::Null) => default
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            Some(Yaml::Mapping(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let k = match k {
                        Yaml::String(s) => s,
                        _ => {
                            self.problem(key, format!("{key} keys must be strings"));
                            continue;
                        }
                    };
                    let v = match v {
                        Yaml::String(s) => s,
                        Yaml::Number(n) => n.to_string(),
                        _ => {
                            self.problem(key, format!("{key}.{k} must be a string like \"500m\""));
                            continue;
                        }
                    };
                    out.insert(k, v);
                }
                out
            }
            Some(_) => {
                self.problem(
                    key,
                    format!("{key} must be a mapping (indented `key: value` lines)"),
                );
                BTreeMap::new()
            }
        };
        Setting {
            value,
            origin: self.origin(key),
        }
    }
}

/// Line (1-based) of every top-level key: a line starting at column 0 with `KEY:`.
fn top_level_lines(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with([' ', '\t', '#', '-']) {
            continue;
        }
        if let Some((k, _)) = line.split_once(':') {
            let k = k.trim().trim_matches(['"', '\'']);
            if !k.is_empty() && !k.contains(char::is_whitespace) {
                out.entry(k.to_string()).or_insert(i + 1);
            }
        }
    }
    out
}

impl Config {
    /// Read config.yml; Jinja in the keys ferry uses is evaluated in `scope`
    /// (the inventory's variables; see [`crate::plan::jinja`]).
    pub fn load(path: &Path, scope: &Scope) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::io(path, e))?;
        Config::parse(path, &text, scope)
    }

    /// Like [`Config::load`], but values outside their kind are kept in
    /// `kind_problems` for validation to report with the rest.
    pub fn load_for_plan(path: &Path, scope: &Scope) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError::io(path, e))?;
        Config::parse_keeping_kind_problems(path, &text, scope)
    }

    /// config.yml's text, every value checked.
    pub fn parse(path: &Path, text: &str, scope: &Scope) -> Result<Config> {
        let mut cfg = Config::parse_keeping_kind_problems(path, text, scope)?;
        match std::mem::take(&mut cfg.kind_problems) {
            p if p.is_empty() => Ok(cfg),
            p => Err(PlanError::Invalid(Problems(p))),
        }
    }

    fn parse_keeping_kind_problems(path: &Path, text: &str, scope: &Scope) -> Result<Config> {
        let map = top_level_map(path, text)?;
        control_characters(path, text, &map)?;
        let mut r = Reader {
            path,
            map,
            lines: top_level_lines(text),
            problems: Vec::new(),
            scope: scope.clone(),
        };
        r.evaluate_keys();
        r.alias("CALICO_ENABLE_OVERLAY", "CALICO_IPV4POOL_IPIP");
        r.alias("CONTAINERD_ROOT_DIR", "CONTAINERD_STORAGE_DIR");
        r.alias("METRICS_SERVER_ENABLED", "metricsserver_install");
        let mut kind_problems = crate::plan::config_types::check(path, &r.map, &r.lines);
        let mut cfg = r.read();
        // A list given as a scalar is reported by the reader too: once is enough.
        kind_problems.retain(|p| !r.problems.contains(p));
        cfg.kind_problems = kind_problems;
        if r.problems.is_empty() {
            Ok(cfg)
        } else {
            Err(PlanError::Invalid(Problems(r.problems)))
        }
    }
}

/// The top-level mapping of config.yml, by key.
fn top_level_map(path: &Path, text: &str) -> Result<BTreeMap<String, Yaml>> {
    let doc: Yaml = serde_norway::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        PlanError::invalid(Origin::new(path, line), format!("not valid YAML: {e}"))
    })?;
    let mapping = match doc {
        Yaml::Mapping(m) => m,
        Yaml::Null => Default::default(),
        _ => {
            return Err(PlanError::invalid(
                Origin::new(path, 1),
                "config.yml must be a mapping of KEY: value",
            ))
        }
    };
    Ok(mapping
        .into_iter()
        .filter_map(|(k, v)| match k {
            Yaml::String(k) => Some((k, v)),
            _ => None,
        })
        .collect())
}

/// The first control character in any value (nested ones included) is an
/// error naming the key and its line.
fn control_characters(path: &Path, text: &str, map: &BTreeMap<String, Yaml>) -> Result<()> {
    fn find(v: &Yaml) -> Option<char> {
        match v {
            Yaml::String(s) => s.chars().find(|c| c.is_control()),
            Yaml::Sequence(items) => items.iter().find_map(find),
            Yaml::Mapping(m) => m.iter().find_map(|(k, v)| find(k).or_else(|| find(v))),
            _ => None,
        }
    }
    let lines = top_level_lines(text);
    for (key, value) in map {
        if let Some(c) = find(value) {
            let line = lines.get(key).copied().unwrap_or(0);
            return Err(PlanError::invalid(
                Origin::new(path, line),
                format!("{key}: {}", crate::plan::inventory::control_character(c)),
            ));
        }
    }
    Ok(())
}

/// A scalar's text as a Jinja variable sees it.
pub(crate) fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn holds_jinja(v: &Yaml) -> bool {
    match v {
        Yaml::String(s) => jinja::is_jinja(s),
        Yaml::Sequence(items) => items.iter().any(holds_jinja),
        _ => false,
    }
}

/// Evaluate the Jinja in a string or in a list's strings.
fn evaluate(scope: &Scope, v: &Yaml) -> std::result::Result<Yaml, String> {
    match v {
        Yaml::String(s) if jinja::is_jinja(s) => scope.eval(s).map(Yaml::String),
        Yaml::Sequence(items) => items
            .iter()
            .map(|i| evaluate(scope, i))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Yaml::Sequence),
        other => Ok(other.clone()),
    }
}

impl Reader<'_> {
    /// Sort every key: kubeasz keys for what ferry does not deploy (one
    /// summary line), unknown keys (a warning each), and the keys ferry
    /// reads, whose Jinja is evaluated here (per-host templates later).
    fn evaluate_keys(&mut self) {
        let scalars: BTreeMap<String, String> = self
            .map
            .iter()
            .filter_map(|(k, v)| scalar_text(v).map(|t| (k.clone(), t)))
            .collect();
        self.scope = std::mem::take(&mut self.scope).with_config(&scalars);
        let mut ignored = IgnoredKeys::default();
        let keys: Vec<String> = self.map.keys().cloned().collect();
        for key in keys {
            let origin = self.origin(&key);
            if ignored.note(&key, &origin) {
                continue;
            }
            let value = self.map[&key].clone();
            if !KNOWN_KEYS.contains(&key.as_str()) {
                let jinja = if holds_jinja(&value) {
                    " (its Jinja is not evaluated)"
                } else {
                    ""
                };
                tracing::warn!("{origin}: unknown key {key} is ignored{jinja}");
                continue;
            }
            if PER_HOST_KEYS.contains(&key.as_str()) || !holds_jinja(&value) {
                continue;
            }
            match evaluate(&self.scope, &value) {
                Ok(v) => {
                    self.map.insert(key, v);
                }
                Err(e) => self.problem(
                    &key,
                    format!("{key} holds Jinja that ferry cannot evaluate ({e}); write the value itself"),
                ),
            }
        }
        ignored.report(self.path);
    }

    /// kubeasz's older or other name for a key: used when the key itself is
    /// absent; both present must agree.
    fn alias(&mut self, key: &str, other: &str) {
        let Some(v) = self.map.get(other).cloned() else {
            return;
        };
        match self.map.get(key) {
            None => {
                self.map.insert(key.to_string(), v);
                if let Some(line) = self.lines.get(other).copied() {
                    self.lines.insert(key.to_string(), line);
                }
            }
            Some(mine) if scalar_text(mine) != scalar_text(&v) => self.problem(
                other,
                format!(
                    "{other} and {key} (line {}) both set it and disagree; keep one",
                    self.origin(key).line
                ),
            ),
            Some(_) => {}
        }
    }

    /// Every key, typed, with the guide's production values as defaults.
    fn read(&mut self) -> Config {
        let r = self;
        let default_plugins = [
            "NodeRestriction",
            "NamespaceLifecycle",
            "LimitRanger",
            "ServiceAccount",
            "DefaultStorageClass",
            "ResourceQuota",
            "Priority",
            "MutatingAdmissionWebhook",
            "ValidatingAdmissionWebhook",
        ];
        let reserved = [
            ("cpu", "500m"),
            ("memory", "1Gi"),
            ("ephemeral-storage", "5Gi"),
        ];
        Config {
            path: r.path.to_path_buf(),
            scope: r.scope.clone(),
            cluster_name: r.string("CLUSTER_NAME", "prod-k8s"),
            k8s_ver: r.opt_string("K8S_VER"),
            container_runtime: r.string("CONTAINER_RUNTIME", "containerd"),
            runtime_bin_dir: r.string("RUNTIME_BIN_DIR", "/usr/bin"),
            task_install_containerd: r.bool("TASK_INSTALL_CONTAINERD", true),
            enable_local_dns_cache: r.bool("ENABLE_LOCAL_DNS_CACHE", true),
            local_dns_cache: r.string("LOCAL_DNS_CACHE", "169.254.20.10"),
            vip: r.opt_string("VIP").filter(|v| !v.value.is_empty()),
            vip_if: r.string("VIP_IF", "eth0"),
            cluster_cidr: r.string("CLUSTER_CIDR", "10.244.0.0/16"),
            service_cidr: r.string("SERVICE_CIDR", "10.96.0.0/16"),
            node_port_range: r.string("NODE_PORT_RANGE", "30000-32767"),
            proxy_mode: r.string("PROXY_MODE", "ipvs"),
            dns_domain: r.string("DNS_DOMAIN", "cluster.local"),
            cni_plugin: r.string("CNI_PLUGIN", "cilium"),
            cilium_tunnel_mode: r.string("CILIUM_TUNNEL_MODE", "native"),
            cilium_enable_bpf_masquerade: r.bool("CILIUM_ENABLE_BPF_MASQUERADE", true),
            cilium_enable_hubble: r.bool("CILIUM_ENABLE_HUBBLE", true),
            calico_enable_overlay: r.string("CALICO_ENABLE_OVERLAY", "Always"),
            calico_networking_backend: r.string("CALICO_NETWORKING_BACKEND", "bird"),
            ip_autodetection_method: r.string(
                "IP_AUTODETECTION_METHOD",
                "can-reach={{ groups['kube_master'][0] }}",
            ),
            calico_rr_enabled: r.bool("CALICO_RR_ENABLED", false),
            etcd_data_dir: r.string("ETCD_DATA_DIR", "/var/lib/etcd"),
            etcd_wal_dir: r.string("ETCD_WAL_DIR", "/var/lib/etcd/wal"),
            etcd_auto_compaction_retention: r.string("ETCD_AUTO_COMPACTION_RETENTION", "8"),
            etcd_snapshot_count: r.string("ETCD_SNAPSHOT_COUNT", "10000"),
            etcd_backup_schedule: r.string("ETCD_BACKUP_SCHEDULE", "daily"),
            etcd_backup_keep: r.number("ETCD_BACKUP_KEEP", 7u32),
            etcd_client_port: r.number("ETCD_CLIENT_PORT", 2379u16),
            etcd_peer_port: r.number("ETCD_PEER_PORT", 2380u16),
            apiserver_bind_port: r.number("KUBE_APISERVER_BIND_PORT", 6443u16),
            apiserver_max_requests_inflight: r
                .number("KUBE_APISERVER_MAX_REQUESTS_INFLIGHT", 3000u32),
            apiserver_max_mutating_requests_inflight: r
                .number("KUBE_APISERVER_MAX_MUTATING_REQUESTS_INFLIGHT", 1500u32),
            apiserver_event_ttl: r.string("KUBE_APISERVER_EVENT_TTL", "1h"),
            apiserver_request_timeout: r.string("KUBE_APISERVER_REQUEST_TIMEOUT", "1m"),
            apiserver_enable_profiling: r.bool("KUBE_APISERVER_ENABLE_PROFILING", false),
            apiserver_audit_log_max_age: r.number("KUBE_APISERVER_AUDIT_LOG_MAX_AGE", 7u32),
            apiserver_audit_log_max_backup: r.number("KUBE_APISERVER_AUDIT_LOG_MAX_BACKUP", 10u32),
            apiserver_audit_log_max_size: r.number("KUBE_APISERVER_AUDIT_LOG_MAX_SIZE", 100u32),
            apiserver_admission_plugins: r
                .list("KUBE_APISERVER_ENABLE_ADMISSION_PLUGINS", &default_plugins),
            kubelet_root_dir: r.string("KUBELET_ROOT_DIR", "/var/lib/kubelet"),
            max_pods: r.number("MAX_PODS", 110u32),
            kube_reserved_enabled: r.bool("KUBE_RESERVED_ENABLED", true),
            kube_reserved: r.map("KUBE_RESERVED", &reserved),
            system_reserved: r.map("SYSTEM_RESERVED", &reserved),
            eviction_hard: r.map(
                "EVICTION_HARD",
                &[
                    ("memory.available", "500Mi"),
                    ("nodefs.available", "10%"),
                    ("imagefs.available", "15%"),
                ],
            ),
            metrics_server_enabled: r.bool("METRICS_SERVER_ENABLED", true),
            ingress_nginx_enabled: r.bool("INGRESS_NGINX_ENABLED", false),
            cert_manager_enabled: r.bool("CERT_MANAGER_ENABLED", true),
            registry_mirrors: r.list("REGISTRY_MIRRORS", &[]),
            sandbox_image: r.opt_string("SANDBOX_IMAGE"),
            ferry_registry_hosts: r.list("FERRY_REGISTRY_HOSTS", &[]),
            ferry_registry_port: r.number("FERRY_REGISTRY_PORT", 5000u16),
            ferry_upstream_fallback: r.bool("FERRY_UPSTREAM_FALLBACK", false),
            containerd_restrict_oom_score_adj: r.bool("CONTAINERD_RESTRICT_OOM_SCORE_ADJ", false),
            host_subnet_prefix: r.number("HOST_SUBNET_PREFIX", 24u8),
            tenant_namespaces: r.list("TENANT_NAMESPACES", &["prod-business"]),
            k8s_nodename: r.opt_string("K8S_NODENAME"),
            context_name: r.opt_string("CONTEXT_NAME"),
            master_cert_hosts: r.list("MASTER_CERT_HOSTS", &[]),
            insecure_reg: r.list("INSECURE_REG", &[]),
            enable_mirror_registry: r.bool("ENABLE_MIRROR_REGISTRY", false),
            ca_expiry: r.opt_string("CA_EXPIRY"),
            cert_expiry: r.opt_string("CERT_EXPIRY"),
            change_ca: r.bool("CHANGE_CA", false),
            node_cidr_len: r.number("NODE_CIDR_LEN", 24u8),
            sys_reserved_enabled: r.bool("SYS_RESERVED_ENABLED", true),
            containerd_root_dir: r.string("CONTAINERD_ROOT_DIR", "/var/lib/containerd"),
            containerd_state_dir: r.string("CONTAINERD_STATE_DIR", "/run/containerd"),
            containerd_config_dir: r.string("CONTAINERD_CONFIG_DIR", "/etc/containerd"),
            containerd_service_name: r.string("CONTAINERD_SERVICE_NAME", "containerd.service"),
            dns_install: r.bool("dns_install", true),
            enable_cluster_audit: r.bool("ENABLE_CLUSTER_AUDIT", true),
            enable_setting_hostname: r.bool("ENABLE_SETTING_HOSTNAME", false),
            local_lb_port: r.number("LOCAL_LB_PORT", 6444u16),
            ex_lb_maxconn: r.number("EX_LB_MAXCONN", 50_000u32),
            kind_problems: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lines() {
        let c = Config::parse(
            Path::new("c.yml"),
            "# x\nCLUSTER_NAME: a\nMAX_PODS: 90\nKUBE_RESERVED:\n  cpu: 1\n",
            &Scope::default(),
        )
        .unwrap();
        assert_eq!(c.cluster_name.value, "a");
        assert_eq!(c.cluster_name.origin.line, 2);
        assert_eq!(c.max_pods.value, 90);
        assert_eq!(c.kube_reserved.value["cpu"], "1");
        assert_eq!(c.proxy_mode.value, "ipvs");
        assert_eq!(c.proxy_mode.origin.line, 0);
        assert!(!c.ferry_upstream_fallback.value);
    }

    #[test]
    fn upstream_fallback_is_a_checked_boolean() {
        let c = Config::parse(
            Path::new("c.yml"),
            "FERRY_UPSTREAM_FALLBACK: true\n",
            &Scope::default(),
        )
        .unwrap();
        assert!(c.ferry_upstream_fallback.value);
        let err = Config::parse(
            Path::new("c.yml"),
            "A: 1\nFERRY_UPSTREAM_FALLBACK: sometimes\n",
            &Scope::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.yml:2")
                && err.contains("FERRY_UPSTREAM_FALLBACK must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn control_characters_are_refused_naming_key_and_line() {
        for (text, key, line, code) in [
            (
                "A: 1\nCLUSTER_NAME: \"x\\n$(touch /tmp/pwned)\"\n",
                "CLUSTER_NAME",
                2,
                "U+000A",
            ),
            (
                "MASTER_CERT_HOSTS:\n  - \"a.example\"\n  - \"b\\rc\"\n",
                "MASTER_CERT_HOSTS",
                1,
                "U+000D",
            ),
            (
                "INSECURE_REG: [\"ok\", \"\\e[31m\"]\n",
                "INSECURE_REG",
                1,
                "U+001B",
            ),
        ] {
            let err = Config::parse(Path::new("c.yml"), text, &Scope::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("c.yml:{line}")) && err.contains(key) && err.contains(code),
                "{text}: {err}"
            );
        }
    }

    /// Keys read under another key's name (see `Reader::alias`).
    const ALIASES: &[(&str, &str)] = &[
        ("CALICO_IPV4POOL_IPIP", "CALICO_ENABLE_OVERLAY"),
        ("CONTAINERD_STORAGE_DIR", "CONTAINERD_ROOT_DIR"),
        ("metricsserver_install", "METRICS_SERVER_ENABLED"),
    ];

    /// Every key ferry reads refuses values that would close a quoted string,
    /// add a flag, run a command or climb out of a directory, naming the
    /// file, line and key.
    #[test]
    fn every_key_refuses_a_value_outside_its_kind() {
        let hostile = [
            "x\" --y=\"z",
            "a b",
            "/etc/../x",
            "$(touch /tmp/x)",
            "a'];x=['",
        ];
        for key in KNOWN_KEYS {
            if crate::plan::config_types::CHECKED_WHERE_USED.contains(key) {
                continue;
            }
            let named = ALIASES
                .iter()
                .find(|(alias, _)| alias == key)
                .map_or(*key, |(_, k)| *k);
            for value in hostile {
                let text = format!("A: 1\n{key}: {}\n", serde_json::to_string(value).unwrap());
                let err = Config::parse(Path::new("c.yml"), &text, &Scope::default())
                    .expect_err(&format!("{key}: {value:?} was accepted"))
                    .to_string();
                assert!(
                    err.contains("c.yml:2") && err.contains(named),
                    "{key}: {value:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn kinds_say_what_is_allowed_and_list_items_are_named() {
        let err = Config::parse(
            Path::new("c.yml"),
            "VIP_IF: \"eth0;reboot\"\nTENANT_NAMESPACES: [ok, \"Bad_ns\"]\nKUBE_RESERVED:\n  cpu: \"1 --x\"\n  gpu: 1\n",
            &Scope::default(),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "c.yml:1: VIP_IF: \"eth0;reboot\" is not an interface name",
            "c.yml:2: TENANT_NAMESPACES[1]: \"Bad_ns\" is not a DNS label",
            "c.yml:3: KUBE_RESERVED.cpu: \"1 --x\" is not a Kubernetes quantity",
            "KUBE_RESERVED: \"gpu\" is not one of cpu, memory, ephemeral-storage, pid",
        ] {
            assert!(err.contains(part), "{part}\n{err}");
        }
    }

    #[test]
    fn the_guides_and_kubeaszs_values_are_of_their_kinds() {
        let text = "VIP: \"\"\nETCD_WAL_DIR: \"\"\nDNS_DOMAIN: cluster.local.\nSANDBOX_IMAGE: \"harbor.company.local/google_containers/pause:3.9\"\nREGISTRY_MIRRORS: [\"https://harbor.company.local\"]\nEVICTION_HARD: {memory.available: 500Mi, nodefs.available: 10%}\nCA_EXPIRY: \"876000h\"\nETCD_AUTO_COMPACTION_RETENTION: 8\n";
        let c = Config::parse(Path::new("c.yml"), text, &Scope::default()).unwrap();
        assert!(c.vip.is_none());
        assert_eq!(c.etcd_wal_dir.value, "");
    }

    #[test]
    fn bad_type_names_line() {
        let err = Config::parse(
            Path::new("c.yml"),
            "A: 1\nMAX_PODS: lots\n",
            &Scope::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("c.yml:2"), "{err}");
        assert!(err.contains("MAX_PODS"), "{err}");
    }
}
