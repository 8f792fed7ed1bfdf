//! Inventory + config.yml + bundle.json -> a checked cluster description.
//! Every problem names the file and line it comes from; all are reported at once.

mod hosts;

use crate::plan::config::{Config, Setting};
use crate::plan::error::{Origin, PlanError, Problem, Problems, Result};
use crate::plan::inventory::{Inventory, Value};
use crate::plan::jinja::Scope;
use crate::plan::model::{Role, SshTarget};
use crate::plan::pools::Pool;
use crate::plan::value_kind::Kind;
use ferry_bundles::BundleManifest;
use hosts::Groups;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// keepalived state of an `[ex_lb]` host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbRole {
    Master,
    Backup,
}

/// One host after validation.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub inventory_host: String,
    pub ip: Ipv4Addr,
    pub ssh: SshTarget,
    pub arch: String,
    pub roles: BTreeSet<Role>,
    /// etcd member name (`etcd_name` / `NODE_NAME`, else the node name).
    pub etcd_name: Option<String>,
    pub lb_role: Option<LbRole>,
    /// The guide's node pool (`node_pool=` or a group named after it).
    pub pool: Option<Pool>,
    /// Listed in `[kube_node]` (a master listed there too takes workloads).
    pub worker: bool,
    pub origin: Origin,
}

impl NodeSpec {
    /// A master not also listed in `[kube_node]`: it runs no workloads.
    pub fn master_only(&self) -> bool {
        self.roles.contains(&Role::Master) && !self.worker
    }
}

/// The validated cluster: the config with inventory values merged in.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub config: Config,
    pub inventory_path: PathBuf,
    pub name: String,
    pub kubernetes: String,
    pub bin_dir: String,
    pub ca_dir: String,
    pub nodes: Vec<NodeSpec>,
    pub vip: Option<Ipv4Addr>,
    /// apiserver `--secure-port` on masters.
    pub apiserver_port: u16,
    /// Port haproxy listens on at the VIP (`EX_APISERVER_PORT`, else the apiserver port).
    pub lb_port: u16,
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub node_port_range: String,
    pub proxy_mode: String,
    pub dns_domain: String,
    pub cni: String,
    /// Calico's network when `cni` is calico.
    pub calico: Option<crate::plan::calico::CalicoNetwork>,
    pub registry_port: u16,
    pub cert_lifetimes: CertLifetimes,
    /// Extra apiserver SANs (`MASTER_CERT_HOSTS`).
    pub extra_sans: Vec<San>,
    /// `INSECURE_REG`: registries reached over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<InsecureRegistry>,
    /// Pod CIDR prefix length per node (`NODE_CIDR_LEN`).
    pub node_cidr_len: u8,
}

/// How long certificates are issued for (`CA_EXPIRY`, `CERT_EXPIRY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertLifetimes {
    pub ca_days: i64,
    pub leaf_days: i64,
}

impl CertLifetimes {
    /// Without CA_EXPIRY / CERT_EXPIRY: CAs for 10 years, leaves for one.
    pub const DEFAULT: CertLifetimes = CertLifetimes {
        ca_days: 3650,
        leaf_days: 365,
    };
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Ip(std::net::IpAddr),
    Dns(String),
}

/// A registry from `INSECURE_REG`, as containerd's `certs.d/<host>/hosts.toml` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsecureRegistry {
    /// `host` or `host:port`: the directory under certs.d.
    pub host: String,
    /// `http://host[:port]` or `https://host[:port]`.
    pub url: String,
    /// `https://`: the certificate is not verified (`skip_verify`).
    pub skip_verify: bool,
}

impl Cluster {
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(move |n| n.roles.contains(&role))
    }

    /// First IP of the service CIDR: the `kubernetes` Service.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        nth_ip(self.service_cidr, 1)
    }

    /// Tenth IP of the service CIDR: CoreDNS (kubeasz and kubeadm convention).
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        nth_ip(self.service_cidr, 10)
    }

    /// Host and port clients use to reach the apiservers: the VIP's balancer,
    /// else the first master.
    pub fn apiserver_host_port(&self) -> (String, u16) {
        match self.vip {
            Some(vip) => (vip.to_string(), self.lb_port),
            None => (
                self.with_role(Role::Master)
                    .next()
                    .map(|n| n.ip.to_string())
                    .unwrap_or_default(),
                self.apiserver_port,
            ),
        }
    }

    /// What a node's kubelet, kube-proxy and CNI agents use: the node's own
    /// load balancer in front of every apiserver (no node depends on one master).
    pub fn node_apiserver_host_port(&self) -> (String, u16) {
        ("127.0.0.1".to_string(), self.config.local_lb_port.value)
    }

    pub fn node_apiserver_endpoint(&self) -> String {
        let (host, port) = self.node_apiserver_host_port();
        format!("https://{host}:{port}")
    }

    /// What clients use to reach the apiservers.
    pub fn apiserver_endpoint(&self) -> String {
        let (host, port) = self.apiserver_host_port();
        format!("https://{host}:{port}")
    }

    /// Whether any node is in `pool`.
    pub fn has_pool(&self, pool: Pool) -> bool {
        self.nodes.iter().any(|n| n.pool == Some(pool))
    }

    pub fn registry_mirrors(&self) -> Vec<String> {
        self.with_role(Role::Registry)
            .map(|n| format!("{}:{}", n.ip, self.registry_port))
            .collect()
    }
}

fn nth_ip(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(n))
}

/// Inventory keys ferry reads (others in `[all:vars]` only warn).
const USED_VARS: &[&str] = &[
    "ansible_host",
    "ip",
    "node_name",
    "k8s_nodename",
    "NODE_NAME",
    "etcd_name",
    "LB_ROLE",
    "EX_APISERVER_VIP",
    "EX_APISERVER_PORT",
    "arch",
    "node_pool",
    "SECURE_PORT",
    "CONTAINER_RUNTIME",
    "CLUSTER_NETWORK",
    "PROXY_MODE",
    "SERVICE_CIDR",
    "CLUSTER_CIDR",
    "NODE_PORT_RANGE",
    "CLUSTER_DNS_DOMAIN",
    "bin_dir",
    "ca_dir",
    "ansible_user",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_ssh_private_key_file",
    "ansible_ssh_user",
    "ansible_private_key_file",
];

/// The kind of inventory values, checked as they are read (values that
/// must also agree with config.yml are checked before they are compared).
/// The others are parsed where they are used: `ansible_host` and `ip` (an
/// IPv4 address or DNS name), `K8S_NODENAME`'s result and the inventory
/// host as a node name (DNS subdomains), `LB_ROLE` and `node_pool`
/// (enumerations), and SSH ports.
const INVENTORY_KINDS: &[(&str, Kind)] = &[
    ("SECURE_PORT", Kind::Port),
    ("EX_APISERVER_VIP", Kind::Ip),
    ("CONTAINER_RUNTIME", Kind::Word),
    ("CLUSTER_NETWORK", Kind::Word),
    ("PROXY_MODE", Kind::Word),
    ("SERVICE_CIDR", Kind::Cidr),
    ("CLUSTER_CIDR", Kind::Cidr),
    ("NODE_PORT_RANGE", Kind::PortRange),
    ("arch", Kind::Word),
    ("node_name", Kind::DnsSubdomain),
    ("k8s_nodename", Kind::DnsSubdomain),
    ("ansible_user", Kind::UserName),
    ("ansible_ssh_user", Kind::UserName),
    ("bin_dir", Kind::AbsPath),
    ("ca_dir", Kind::AbsPath),
    ("etcd_name", Kind::Name),
    ("NODE_NAME", Kind::Name),
    ("CLUSTER_DNS_DOMAIN", Kind::DnsDomain),
    ("ansible_ssh_private_key_file", Kind::KeyFile),
    ("ansible_private_key_file", Kind::KeyFile),
];

/// Inventory keys that kubeasz uses and ferry has no use for (no warning).
const IGNORED_VARS: &[&str] = &[
    "base_dir",
    "cluster_dir",
    "CLUSTER",
    "NEW_INSTALL",
    "ansible_python_interpreter",
];

const KNOWN_GROUPS: &[&str] = &[
    "all",
    "etcd",
    "kube_master",
    "kube_node",
    "ex_lb",
    "chrony",
    "harbor",
    "ungrouped",
    "system",
    "stateless",
    "batch",
    "middleware",
];

struct Checker<'a> {
    inv: &'a Inventory,
    /// What Jinja in the inventory sees (see [`Config::scope`]).
    scope: Scope,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn new(inv: &'a Inventory, cfg: &Config) -> Checker<'a> {
        Checker {
            inv,
            scope: cfg.scope.clone(),
            problems: Vec::new(),
        }
    }

    /// The inventory's first line: where problems of the file as a whole point.
    fn file_origin(&self) -> Origin {
        Origin::new(&self.inv.path, 1)
    }

    /// A group's `[group]` line, else the inventory's first line.
    fn group_origin(&self, group: &str) -> Origin {
        self.inv
            .group_lines
            .get(group)
            .cloned()
            .unwrap_or(self.file_origin())
    }

    fn fail(&mut self, origin: &Origin, msg: impl Into<String>) {
        self.problems.push(Problem {
            origin: origin.clone(),
            message: msg.into(),
        });
    }

    /// An inventory value ferry uses, its Jinja evaluated as Ansible would;
    /// what cannot be evaluated is an error, never taken literally.
    fn evaluated(&mut self, v: Option<&Value>, key: &str, scope: &Scope) -> Option<Value> {
        let v = v?;
        if !v.is_jinja() {
            self.check_kind(key, v);
            return Some(v.clone());
        }
        match scope.eval(&v.text) {
            Ok(text) => {
                let v = Value {
                    text,
                    origin: v.origin.clone(),
                };
                self.check_kind(key, &v);
                Some(v)
            }
            Err(e) => {
                self.fail(
                    &v.origin,
                    format!("{key}={} holds Jinja that ferry cannot evaluate ({e}); write the value itself", v.text),
                );
                None
            }
        }
    }

    /// Every value written in the inventory for a key of [`INVENTORY_KINDS`],
    /// used or shadowed: Jinja is checked once evaluated, and an empty value
    /// (kubeasz's "not set", as in `k8s_nodename=''`) where it is read.
    fn check_written_kinds(&mut self) {
        let inv = self.inv;
        let host_vars = inv.hosts.iter().flat_map(|h| &h.vars);
        let group_vars = inv.group_vars.values().flatten();
        for (key, v) in host_vars.chain(group_vars) {
            if !v.is_jinja() && !v.text.is_empty() {
                self.check_kind(key, v);
            }
        }
    }

    /// An inventory value outside its key's kind (see [`INVENTORY_KINDS`]) is
    /// an error at its line; one value read twice is reported once.
    fn check_kind(&mut self, key: &str, v: &Value) {
        let Some((_, kind)) = INVENTORY_KINDS.iter().find(|(k, _)| *k == key) else {
            return;
        };
        if let Some(m) = kind.check(&v.text) {
            let problem = Problem {
                origin: v.origin.clone(),
                message: format!("{key}: {m}"),
            };
            if !self.problems.contains(&problem) {
                self.problems.push(problem);
            }
        }
    }

    fn host_var(&mut self, host: &str, key: &str) -> Option<Value> {
        let v = self.inv.host_var(host, key);
        let scope = self.scope.for_host(self.inv, host);
        self.evaluated(v, key, &scope)
    }

    fn all_var(&mut self, key: &str) -> Option<Value> {
        let v = self.inv.all_var(key);
        let scope = self.scope.clone();
        self.evaluated(v, key, &scope)
    }

    /// A setting both files may hold: they must agree; an explicit config value
    /// wins over nothing, the inventory wins over a config default.
    fn agree(
        &mut self,
        cfg_key: &str,
        cfg: &Setting<String>,
        inv_key: &str,
        norm: fn(&str) -> String,
    ) -> String {
        let inv = self.all_var(inv_key);
        match inv {
            Some(iv) if cfg.origin.line > 0 => {
                if norm(&iv.text) != norm(&cfg.value) {
                    self.fail(
                        &cfg.origin,
                        format!(
                            "{cfg_key}: \"{}\" disagrees with {inv_key}=\"{}\" at {}; make them the same",
                            cfg.value, iv.text, iv.origin
                        ),
                    );
                }
                cfg.value.clone()
            }
            Some(iv) => iv.text.clone(),
            None => cfg.value.clone(),
        }
    }
}

fn same(s: &str) -> String {
    s.trim().to_string()
}

fn no_trailing_dot(s: &str) -> String {
    s.trim().trim_end_matches('.').to_string()
}

fn lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

/// Check everything and build the cluster description, or list every problem.
/// `allow_even_etcd`: an even number of etcd members is accepted (`ferry
/// node add --force`, on the way from 3 to 5 members).
pub fn validate(
    inv: &Inventory,
    cfg: &Config,
    bundle: &BundleManifest,
    allow_even_etcd: bool,
) -> Result<Cluster> {
    let mut c = Checker::new(inv, cfg);
    c.problems.extend(cfg.kind_problems.iter().cloned());
    c.check_written_kinds();
    warn_unknown_groups(inv);
    warn_unused_vars(inv, &c.scope);
    let shared = shared_settings(&mut c, cfg, bundle);
    let kubernetes = kubernetes_version(&mut c, cfg, bundle);
    let groups = Groups::of(inv);
    check_group_sizes(&mut c, &groups, allow_even_etcd);
    let mut nodes = hosts::nodes(&mut c, cfg, bundle, &groups);
    hosts::check_duplicates(&mut c, &nodes);
    let access = access_layer(&mut c, cfg, &groups, &nodes, shared.apiserver_port);
    if let (Some(svc), Some(pod)) = (shared.network.service_cidr, shared.network.cluster_cidr) {
        check_cidr_overlaps(&mut c, cfg, svc, pod, &nodes);
    }
    assign_chrony(&groups, &mut nodes);
    assign_registry(&mut c, cfg, &mut nodes);
    let kubeasz = kubeasz_values(&mut c, cfg, shared.network.cluster_cidr);
    check_insecure_registries(&mut c, cfg, bundle, &kubeasz);
    check_local_lb_port(&mut c, cfg, shared.apiserver_port);
    let calico = calico_network(&mut c, cfg, &shared.cni, &nodes);
    let parts = Parts {
        kubernetes,
        nodes,
        access,
        kubeasz,
        calico,
    };
    assemble(c, cfg, shared, parts)
}

/// Groups ferry does not know: a warning each.
fn warn_unknown_groups(inv: &Inventory) {
    for (g, origin) in &inv.group_lines {
        if !KNOWN_GROUPS.contains(&g.as_str()) && !inv.children.values().flatten().any(|x| x == g) {
            tracing::warn!("{origin}: group [{g}] is not used by ferry");
        }
    }
}

/// Group variables ferry does not read: a warning each, and one for Jinja in
/// the values it ignores that could not be evaluated.
fn warn_unused_vars(inv: &Inventory, scope: &Scope) {
    for (group, vars) in &inv.group_vars {
        for (k, v) in vars {
            if !USED_VARS.contains(&k.as_str()) && !IGNORED_VARS.contains(&k.as_str()) {
                tracing::warn!("{}: [{group}:vars] {k} is not used by ferry", v.origin);
            } else if v.is_jinja() && !USED_VARS.contains(&k.as_str()) {
                if let Err(e) = scope.eval(&v.text) {
                    tracing::warn!(
                        "{}: {k}={} holds Jinja that ferry cannot evaluate ({e}); ferry does not use it",
                        v.origin,
                        v.text
                    );
                }
            }
        }
    }
}

/// Settings both files may carry, merged and checked, with the directories
/// the inventory names.
struct SharedSettings {
    apiserver_port: u16,
    cni: String,
    proxy_mode: String,
    network: NetworkSettings,
    bin_dir: String,
    ca_dir: String,
}

/// The cluster's address ranges and DNS domain.
struct NetworkSettings {
    /// `None` when it did not parse (reported).
    service_cidr: Option<Ipv4Net>,
    /// `None` when it did not parse (reported).
    cluster_cidr: Option<Ipv4Net>,
    node_port_range: String,
    dns_domain: String,
}

fn shared_settings(c: &mut Checker, cfg: &Config, bundle: &BundleManifest) -> SharedSettings {
    let apiserver_port = apiserver_port(c, cfg);
    check_runtime(c, cfg);
    let cni = cni(c, cfg);
    let proxy_mode = lower(&c.agree("PROXY_MODE", &cfg.proxy_mode, "PROXY_MODE", lower));
    let o = origin_of(c.inv, "PROXY_MODE", &cfg.proxy_mode.origin);
    check_proxy_mode(c, &proxy_mode, &o, &bundle.kubernetes);
    c.problems.extend(crate::plan::kubeasz::check(cfg));
    let network = network_settings(c, cfg);
    check_config_values(c, cfg);
    let bin_dir = c
        .all_var("bin_dir")
        .map(|v| v.text)
        .unwrap_or_else(|| "/opt/kube/bin".into());
    let ca_dir = c
        .all_var("ca_dir")
        .map(|v| v.text)
        .unwrap_or_else(|| "/etc/kubernetes/ssl".into());
    SharedSettings {
        apiserver_port,
        cni,
        proxy_mode,
        network,
        bin_dir,
        ca_dir,
    }
}

/// `KUBE_APISERVER_BIND_PORT` / `SECURE_PORT`.
fn apiserver_port(c: &mut Checker, cfg: &Config) -> u16 {
    let port_setting = Setting {
        value: cfg.apiserver_bind_port.value.to_string(),
        origin: cfg.apiserver_bind_port.origin.clone(),
    };
    let port_text = c.agree(
        "KUBE_APISERVER_BIND_PORT",
        &port_setting,
        "SECURE_PORT",
        same,
    );
    parse_port(c, &port_text, &port_setting.origin, "apiserver port")
}

/// `CONTAINER_RUNTIME`: containerd only.
fn check_runtime(c: &mut Checker, cfg: &Config) {
    let runtime = c.agree(
        "CONTAINER_RUNTIME",
        &cfg.container_runtime,
        "CONTAINER_RUNTIME",
        lower,
    );
    if runtime != "containerd" {
        let o = origin_of(c.inv, "CONTAINER_RUNTIME", &cfg.container_runtime.origin);
        c.fail(
            &o,
            format!("container runtime \"{runtime}\" is not supported; ferry installs containerd"),
        );
    }
}

/// `CNI_PLUGIN` / `CLUSTER_NETWORK`: cilium or calico.
fn cni(c: &mut Checker, cfg: &Config) -> String {
    let cni = lower(&c.agree("CNI_PLUGIN", &cfg.cni_plugin, "CLUSTER_NETWORK", lower));
    if cni != "cilium" && cni != "calico" {
        let o = origin_of(c.inv, "CLUSTER_NETWORK", &cfg.cni_plugin.origin);
        c.fail(
            &o,
            format!("CNI \"{cni}\" is not supported: ferry deploys cilium or calico; set CLUSTER_NETWORK (or CNI_PLUGIN) to one of them"),
        );
    }
    cni
}

/// The service and pod CIDRs, the NodePort range and the DNS domain: all four
/// merged first, then each checked.
fn network_settings(c: &mut Checker, cfg: &Config) -> NetworkSettings {
    let service_text = c.agree("SERVICE_CIDR", &cfg.service_cidr, "SERVICE_CIDR", same);
    let cluster_text = c.agree("CLUSTER_CIDR", &cfg.cluster_cidr, "CLUSTER_CIDR", same);
    let node_port_range = c.agree(
        "NODE_PORT_RANGE",
        &cfg.node_port_range,
        "NODE_PORT_RANGE",
        same,
    );
    let dns_domain = no_trailing_dot(&c.agree(
        "DNS_DOMAIN",
        &cfg.dns_domain,
        "CLUSTER_DNS_DOMAIN",
        no_trailing_dot,
    ));
    let o = origin_of(c.inv, "SERVICE_CIDR", &cfg.service_cidr.origin);
    let service_cidr = parse_cidr(c, &service_text, &o);
    let o = origin_of(c.inv, "CLUSTER_CIDR", &cfg.cluster_cidr.origin);
    let cluster_cidr = parse_cidr(c, &cluster_text, &o);
    let o = origin_of(c.inv, "NODE_PORT_RANGE", &cfg.node_port_range.origin);
    check_port_range(c, &node_port_range, &o);
    NetworkSettings {
        service_cidr,
        cluster_cidr,
        node_port_range,
        dns_domain,
    }
}

/// config.yml values only it carries: the cilium tunnel mode, ingress-nginx,
/// the host subnet prefix.
fn check_config_values(c: &mut Checker, cfg: &Config) {
    if !["native", "vxlan", "geneve"].contains(&cfg.cilium_tunnel_mode.value.as_str()) {
        c.fail(
            &cfg.cilium_tunnel_mode.origin,
            format!(
                "CILIUM_TUNNEL_MODE \"{}\" is not one of native, vxlan, geneve",
                cfg.cilium_tunnel_mode.value
            ),
        );
    }
    if cfg.ingress_nginx_enabled.value {
        c.fail(
            &cfg.ingress_nginx_enabled.origin,
            "INGRESS_NGINX_ENABLED: ferry's bundle does not carry ingress-nginx; set it to false",
        );
    }
    if cfg.host_subnet_prefix.value > 32 {
        c.fail(
            &cfg.host_subnet_prefix.origin,
            "HOST_SUBNET_PREFIX must be between 0 and 32",
        );
    }
    if !(100..=1_000_000).contains(&cfg.ex_lb_maxconn.value) {
        c.fail(
            &cfg.ex_lb_maxconn.origin,
            "EX_LB_MAXCONN must be between 100 and 1000000 (haproxy's connections on [ex_lb])",
        );
    }
    if !(1..=1000).contains(&cfg.etcd_backup_keep.value) {
        c.fail(
            &cfg.etcd_backup_keep.origin,
            "ETCD_BACKUP_KEEP must be between 1 and 1000 (scheduled etcd snapshots each member keeps)",
        );
    }
}

/// The bundle's Kubernetes version (no `v`); `K8S_VER`, if set, must be it.
fn kubernetes_version(c: &mut Checker, cfg: &Config, bundle: &BundleManifest) -> String {
    let kubernetes = bundle.kubernetes.trim_start_matches('v').to_string();
    if let Some(v) = &cfg.k8s_ver {
        if v.value.trim_start_matches('v') != kubernetes {
            c.fail(
                &v.origin,
                format!(
                    "K8S_VER \"{}\" is not the bundle's Kubernetes version {kubernetes} (bundle {}); use a bundle built for {} or set K8S_VER: \"{kubernetes}\"",
                    v.value, bundle.name, v.value
                ),
            );
        }
    }
    kubernetes
}

/// At least one master, and an odd number of etcd members.
fn check_group_sizes(c: &mut Checker, groups: &Groups, allow_even_etcd: bool) {
    if groups.masters.is_empty() {
        let o = c.group_origin("kube_master");
        c.fail(&o, "no master: list at least one host under [kube_master]");
    }
    let even = groups.etcd.len().is_multiple_of(2);
    if groups.etcd.is_empty() || (even && !allow_even_etcd) {
        let o = c.group_origin("etcd");
        c.fail(
            &o,
            format!(
                "[etcd] has {} member(s); etcd needs an odd number (1, 3, 5) to keep quorum: an even count tolerates no more failed members than one fewer does (`ferry node add --force` accepts it on the way from 3 to 5)",
                groups.etcd.len()
            ),
        );
    }
}

/// How clients reach the apiservers.
struct Access {
    vip: Option<Ipv4Addr>,
    /// Port haproxy listens on at the VIP.
    lb_port: u16,
}

/// The VIP (config.yml's `VIP` or `EX_APISERVER_VIP` on the `[ex_lb]` lines,
/// which must agree) and the port haproxy listens on there.
fn access_layer(
    c: &mut Checker,
    cfg: &Config,
    groups: &Groups,
    nodes: &[NodeSpec],
    apiserver_port: u16,
) -> Access {
    let mut vip_text = cfg.vip.clone();
    let mut lb_port = apiserver_port;
    for (h, _) in &groups.ex_lb {
        if let Some(v) = c.host_var(h, "EX_APISERVER_VIP") {
            match &vip_text {
                Some(cv) if cv.value != v.text => c.fail(
                    &cv.origin,
                    format!(
                        "VIP: \"{}\" disagrees with EX_APISERVER_VIP={} at {}; make them the same",
                        cv.value, v.text, v.origin
                    ),
                ),
                Some(_) => {}
                None => {
                    vip_text = Some(Setting {
                        value: v.text.clone(),
                        origin: v.origin.clone(),
                    })
                }
            }
        }
        if let Some(p) = c.host_var(h, "EX_APISERVER_PORT") {
            lb_port = parse_port(c, &p.text, &p.origin, "EX_APISERVER_PORT");
        }
    }
    let vip = check_vip(c, cfg, groups, nodes, vip_text.as_ref());
    if lb_port == apiserver_port {
        for (h, origin) in groups
            .ex_lb
            .iter()
            .filter(|(h, _)| groups.masters.iter().any(|(m, _)| m == h))
        {
            c.fail(
                origin,
                format!("{h} is in [ex_lb] and [kube_master]: haproxy would listen on the VIP at {lb_port}, the port its apiserver listens on; set EX_APISERVER_PORT=8443 (kubeasz's example) on the [ex_lb] lines"),
            );
        }
    }
    Access { vip, lb_port }
}

/// A VIP needs `[ex_lb]` hosts and they need one; it must be an IPv4 address.
fn check_vip(
    c: &mut Checker,
    cfg: &Config,
    groups: &Groups,
    nodes: &[NodeSpec],
    vip_text: Option<&Setting<String>>,
) -> Option<Ipv4Addr> {
    let Some(v) = vip_text else {
        if !groups.ex_lb.is_empty() {
            let o = c.group_origin("ex_lb");
            c.fail(&o, "[ex_lb] hosts need a VIP: set VIP in config.yml (or EX_APISERVER_VIP on the [ex_lb] lines)");
        }
        return None;
    };
    match v.value.parse::<Ipv4Addr>() {
        Err(_) => {
            c.fail(
                &v.origin,
                format!("VIP \"{}\" is not an IPv4 address", v.value),
            );
            None
        }
        Ok(vip) => {
            if groups.ex_lb.is_empty() {
                c.fail(&v.origin, "VIP is set but [ex_lb] has no hosts to hold it (haproxy + keepalived); add two [ex_lb] hosts");
            }
            check_vip_address(c, cfg, nodes, vip, &v.origin);
            Some(vip)
        }
    }
}

/// The VIP is no host's address and lies in the masters' subnet.
fn check_vip_address(
    c: &mut Checker,
    cfg: &Config,
    nodes: &[NodeSpec],
    vip: Ipv4Addr,
    origin: &Origin,
) {
    if let Some(n) = nodes.iter().find(|n| n.ip == vip) {
        c.fail(
            origin,
            format!(
                "VIP {vip} is the address of host {} (at {}); pick an unused address",
                n.inventory_host, n.origin
            ),
        );
    }
    let prefix = cfg.host_subnet_prefix.value.min(32);
    for m in nodes.iter().filter(|n| n.roles.contains(&Role::Master)) {
        let net = Ipv4Net::new(m.ip, prefix).map(|n| n.trunc()).ok();
        if net.is_some_and(|net| !net.contains(&vip)) {
            c.fail(
                origin,
                format!(
                    "VIP {vip} is not in master {}'s subnet {}/{prefix} (HOST_SUBNET_PREFIX); keepalived can only hold an address of the masters' network",
                    m.inventory_host,
                    net.map(|n| n.network().to_string()).unwrap_or_default()
                ),
            );
            break;
        }
    }
}

/// The pod and service CIDRs are disjoint, and neither overlaps a host network.
fn check_cidr_overlaps(
    c: &mut Checker,
    cfg: &Config,
    svc: Ipv4Net,
    pod: Ipv4Net,
    nodes: &[NodeSpec],
) {
    let svc_o = origin_of(c.inv, "SERVICE_CIDR", &cfg.service_cidr.origin);
    let pod_o = origin_of(c.inv, "CLUSTER_CIDR", &cfg.cluster_cidr.origin);
    if overlaps(svc, pod) {
        c.fail(
            &pod_o,
            format!(
                "CLUSTER_CIDR {pod} overlaps SERVICE_CIDR {svc} (at {svc_o}); pick disjoint ranges"
            ),
        );
    }
    let prefix = cfg.host_subnet_prefix.value.min(32);
    for (net, n) in host_networks(nodes, prefix) {
        for (key, cidr, o) in [("CLUSTER_CIDR", pod, &pod_o), ("SERVICE_CIDR", svc, &svc_o)] {
            if overlaps(net, cidr) {
                c.fail(o, format!("{key} {cidr} overlaps the host network {net} of {} (at {}); pick a range outside the hosts' networks", n.inventory_host, n.origin));
            }
        }
    }
}

/// Each distinct host network (`HOST_SUBNET_PREFIX`), with the first node in it.
fn host_networks(nodes: &[NodeSpec], prefix: u8) -> Vec<(Ipv4Net, &NodeSpec)> {
    let mut host_nets: Vec<(Ipv4Net, &NodeSpec)> = Vec::new();
    for n in nodes {
        if let Ok(net) = Ipv4Net::new(n.ip, prefix) {
            if !host_nets.iter().any(|(x, _)| *x == net.trunc()) {
                host_nets.push((net.trunc(), n));
            }
        }
    }
    host_nets
}

/// Time: with no `[chrony]` hosts the masters serve time to the cluster (the
/// network has no upstream), so every host still syncs to one clock.
fn assign_chrony(groups: &Groups, nodes: &mut [NodeSpec]) {
    if groups.chrony.is_empty() {
        for n in nodes.iter_mut().filter(|n| n.roles.contains(&Role::Master)) {
            n.roles.insert(Role::Chrony);
        }
    }
}

/// Registry mirror hosts: `FERRY_REGISTRY_HOSTS` (inventory host, node name
/// or IP), else the masters.
fn assign_registry(c: &mut Checker, cfg: &Config, nodes: &mut [NodeSpec]) {
    let registry_hosts = &cfg.ferry_registry_hosts.value;
    if registry_hosts.is_empty() {
        for n in nodes.iter_mut().filter(|n| n.roles.contains(&Role::Master)) {
            n.roles.insert(Role::Registry);
        }
    } else {
        for want in registry_hosts {
            match nodes
                .iter_mut()
                .find(|n| &n.inventory_host == want || &n.name == want || n.ip.to_string() == *want)
            {
                Some(n) => {
                    n.roles.insert(Role::Registry);
                }
                None => c.fail(
                    &cfg.ferry_registry_hosts.origin,
                    format!(
                        "FERRY_REGISTRY_HOSTS names {want}, which is not a host of {}",
                        c.inv.path.display()
                    ),
                ),
            }
        }
    }
    if cfg.ferry_registry_port.value == 0 {
        c.fail(
            &cfg.ferry_registry_port.origin,
            "FERRY_REGISTRY_PORT must not be 0",
        );
    }
}

/// `INSECURE_REG` must not list a registry whose images ferry's mirror serves.
fn check_insecure_registries(
    c: &mut Checker,
    cfg: &Config,
    bundle: &BundleManifest,
    kubeasz: &KubeaszValues,
) {
    let served = crate::images::registries(bundle);
    for r in &kubeasz.insecure_registries {
        if served.contains(&r.host) {
            c.fail(
                &cfg.insecure_reg.origin,
                format!("INSECURE_REG lists {}, whose images the bundle carries and ferry's mirror serves; remove it", r.url),
            );
        }
    }
}

/// Calico's network when the CNI is calico (it needs the first master).
fn calico_network(
    c: &mut Checker,
    cfg: &Config,
    cni: &str,
    nodes: &[NodeSpec],
) -> Option<crate::plan::calico::CalicoNetwork> {
    let first_master = nodes
        .iter()
        .find(|n| n.roles.contains(&Role::Master))
        .map(|n| n.ip);
    match (cni, first_master) {
        ("calico", Some(first)) => match crate::plan::calico::settings(cfg, first) {
            Ok(net) => Some(net),
            Err(problems) => {
                c.problems.extend(problems);
                None
            }
        },
        _ => None,
    }
}

/// What the checks after the shared settings produced, for [`assemble`].
struct Parts {
    kubernetes: String,
    nodes: Vec<NodeSpec>,
    access: Access,
    kubeasz: KubeaszValues,
    calico: Option<crate::plan::calico::CalicoNetwork>,
}

/// Every problem found, or the cluster.
fn assemble(c: Checker, cfg: &Config, shared: SharedSettings, parts: Parts) -> Result<Cluster> {
    if !c.problems.is_empty() {
        return Err(PlanError::Invalid(Problems(c.problems)));
    }
    let net = shared.network;
    // A CIDR that did not parse was reported above, so both are present here.
    let (Some(service_cidr), Some(cluster_cidr)) = (net.service_cidr, net.cluster_cidr) else {
        return Err(PlanError::invalid(
            c.file_origin(),
            "SERVICE_CIDR or CLUSTER_CIDR is not a CIDR",
        ));
    };
    Ok(Cluster {
        config: cfg.clone(),
        inventory_path: c.inv.path.clone(),
        name: cfg.cluster_name.value.clone(),
        kubernetes: parts.kubernetes,
        bin_dir: shared.bin_dir,
        ca_dir: shared.ca_dir,
        nodes: parts.nodes,
        vip: parts.access.vip,
        apiserver_port: shared.apiserver_port,
        lb_port: parts.access.lb_port,
        cluster_cidr,
        service_cidr,
        node_port_range: net.node_port_range,
        proxy_mode: shared.proxy_mode,
        dns_domain: net.dns_domain,
        cni: shared.cni,
        calico: parts.calico,
        registry_port: cfg.ferry_registry_port.value,
        cert_lifetimes: parts.kubeasz.cert_lifetimes,
        extra_sans: parts.kubeasz.extra_sans,
        insecure_registries: parts.kubeasz.insecure_registries,
        node_cidr_len: cfg.node_cidr_len.value,
    })
}

/// The local balancer listens on 127.0.0.1 of every node, masters included,
/// where the apiserver, etcd, the mirror and kubelet also listen.
fn check_local_lb_port(c: &mut Checker, cfg: &Config, apiserver_port: u16) {
    let port = cfg.local_lb_port.value;
    let taken = [
        (apiserver_port, "the apiserver's port"),
        (cfg.etcd_client_port.value, "ETCD_CLIENT_PORT"),
        (cfg.etcd_peer_port.value, "ETCD_PEER_PORT"),
        (cfg.ferry_registry_port.value, "FERRY_REGISTRY_PORT"),
        (10250, "kubelet's port"),
        (0, "not a port"),
    ];
    if let Some((_, what)) = taken.iter().find(|(p, _)| *p == port) {
        c.fail(
            &cfg.local_lb_port.origin,
            format!("LOCAL_LB_PORT {port} is {what}; every node's local apiserver balancer needs a port of its own (default 6444)"),
        );
    }
}

/// The typed values of kubeasz's certificate, registry and pod-CIDR keys.
struct KubeaszValues {
    cert_lifetimes: CertLifetimes,
    extra_sans: Vec<San>,
    insecure_registries: Vec<InsecureRegistry>,
}

fn kubeasz_values(c: &mut Checker, cfg: &Config, cluster_cidr: Option<Ipv4Net>) -> KubeaszValues {
    let mut days = |s: &Option<Setting<String>>, default: i64| match s {
        None => default,
        Some(s) => crate::plan::kubeasz::duration_days(&s.value).unwrap_or_else(|e| {
            c.fail(
                &s.origin,
                format!("\"{}\" is not a certificate lifetime: {e}", s.value),
            );
            default
        }),
    };
    let cert_lifetimes = CertLifetimes {
        ca_days: days(&cfg.ca_expiry, CertLifetimes::DEFAULT.ca_days),
        leaf_days: days(&cfg.cert_expiry, CertLifetimes::DEFAULT.leaf_days),
    };
    if cert_lifetimes.leaf_days > cert_lifetimes.ca_days {
        let o = cfg
            .cert_expiry
            .as_ref()
            .map(|s| s.origin.clone())
            .unwrap_or_else(|| Origin::new(&cfg.path, 0));
        c.fail(
            &o,
            "CERT_EXPIRY is longer than CA_EXPIRY; a certificate cannot outlive its CA",
        );
    }
    let mut extra_sans = Vec::new();
    for host in &cfg.master_cert_hosts.value {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => extra_sans.push(San::Ip(ip)),
            Err(_) if valid_dns_name(&host.to_ascii_lowercase()) => {
                extra_sans.push(San::Dns(host.to_ascii_lowercase()))
            }
            Err(_) => c.fail(
                &cfg.master_cert_hosts.origin,
                format!("MASTER_CERT_HOSTS: \"{host}\" is neither an IP address nor a DNS name"),
            ),
        }
    }
    let mut insecure_registries = Vec::new();
    for url in &cfg.insecure_reg.value {
        match parse_insecure_registry(url) {
            Ok(r) => insecure_registries.push(r),
            Err(e) => c.fail(
                &cfg.insecure_reg.origin,
                format!("INSECURE_REG: \"{url}\" {e}"),
            ),
        }
    }
    let len = cfg.node_cidr_len.value;
    match cluster_cidr {
        Some(pod) if len < pod.prefix_len() || len > 30 => c.fail(
            &cfg.node_cidr_len.origin,
            format!(
                "NODE_CIDR_LEN {len} must be between CLUSTER_CIDR's prefix /{} and 30",
                pod.prefix_len()
            ),
        ),
        _ => {}
    }
    KubeaszValues {
        cert_lifetimes,
        extra_sans,
        insecure_registries,
    }
}

/// `http://host[:port]` or `https://host[:port]`, as kubeasz writes INSECURE_REG.
fn parse_insecure_registry(url: &str) -> std::result::Result<InsecureRegistry, String> {
    let (scheme, host) = url
        .split_once("://")
        .ok_or("must start with http:// or https://")?;
    let skip_verify = match scheme {
        "http" => false,
        "https" => true,
        _ => return Err("must start with http:// or https://".into()),
    };
    let host = host.trim_end_matches('/');
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let name_ok = name.parse::<Ipv4Addr>().is_ok() || valid_dns_name(&name.to_ascii_lowercase());
    if !port_ok || !name_ok {
        return Err(
            "must be a registry host with an optional port, like http://registry.local:5000".into(),
        );
    }
    Ok(InsecureRegistry {
        host: host.to_ascii_lowercase(),
        url: format!("{scheme}://{}", host.to_ascii_lowercase()),
        skip_verify,
    })
}

/// ipvs and iptables; nftables from Kubernetes 1.29, where it is alpha until
/// 1.31 and needs kube-proxy's `NFTablesProxyMode` feature gate (rendered).
fn check_proxy_mode(c: &mut Checker, mode: &str, origin: &Origin, kubernetes: &str) {
    match mode {
        "ipvs" | "iptables" => {}
        "nftables" => match kube_minor(kubernetes) {
            Some(m) if m >= 31 => {}
            Some(m) if m >= 29 => tracing::warn!(
                "{origin}: PROXY_MODE nftables is alpha in Kubernetes 1.{m} (beta from 1.31); kube-proxy gets the NFTablesProxyMode feature gate, and every node needs nft 1.0.1 or later"
            ),
            _ => c.fail(
                origin,
                format!("PROXY_MODE nftables needs Kubernetes 1.29 or later (the bundle has {kubernetes}); use ipvs or iptables"),
            ),
        },
        other => c.fail(
            origin,
            format!("PROXY_MODE \"{other}\" is not one of ipvs, iptables, nftables"),
        ),
    }
}

/// The minor version of a Kubernetes release (`1.29.6` -> 29).
pub fn kube_minor(kubernetes: &str) -> Option<u32> {
    kubernetes
        .trim_start_matches('v')
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}

/// Where a merged value came from: the inventory's `[all:vars]` line if set there, else config.yml.
fn origin_of(inv: &Inventory, inv_key: &str, cfg_origin: &Origin) -> Origin {
    if cfg_origin.line > 0 {
        return cfg_origin.clone();
    }
    inv.all_var(inv_key)
        .map(|v| v.origin.clone())
        .unwrap_or_else(|| cfg_origin.clone())
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn parse_cidr(c: &mut Checker, text: &str, origin: &Origin) -> Option<Ipv4Net> {
    match text.parse::<Ipv4Net>() {
        Ok(net) if net == net.trunc() => Some(net),
        Ok(net) => {
            c.fail(
                origin,
                format!(
                    "\"{text}\" has host bits set; did you mean {}?",
                    net.trunc()
                ),
            );
            None
        }
        Err(_) => {
            c.fail(
                origin,
                format!("\"{text}\" is not an IPv4 CIDR like 10.96.0.0/16"),
            );
            None
        }
    }
}

fn parse_port(c: &mut Checker, text: &str, origin: &Origin, what: &str) -> u16 {
    match text.trim().parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            c.fail(
                origin,
                format!("{what} \"{text}\" is not a port number (1-65535)"),
            );
            0
        }
    }
}

fn check_port_range(c: &mut Checker, text: &str, origin: &Origin) {
    let ok = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .is_some_and(|(a, b)| a > 0 && a < b);
    if !ok {
        c.fail(
            origin,
            format!("NODE_PORT_RANGE \"{text}\" must be FIRST-LAST, like 30000-32767"),
        );
    }
}

fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.')
        && s.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && s.ends_with(|ch: char| ch.is_ascii_alphanumeric())
}
