//! The hosts: their roles from the inventory's groups, then one [`NodeSpec`]
//! per host (address, names, balancer role, SSH target, arch, pool), and the
//! checks that no two share an address or a name.

use super::{parse_port, valid_dns_name, Checker, LbRole, NodeSpec};
use crate::plan::config::Config;
use crate::plan::error::Origin;
use crate::plan::inventory::Inventory;
use crate::plan::model::{Role, SshTarget};
use crate::plan::pools::Pool;
use ferry_bundles::BundleManifest;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The inventory groups ferry deploys, each host with the line of its membership.
pub(super) struct Groups {
    pub(super) masters: Vec<(String, Origin)>,
    pub(super) etcd: Vec<(String, Origin)>,
    pub(super) kube_nodes: Vec<(String, Origin)>,
    pub(super) ex_lb: Vec<(String, Origin)>,
    pub(super) chrony: Vec<(String, Origin)>,
}

impl Groups {
    pub(super) fn of(inv: &Inventory) -> Groups {
        Groups {
            masters: inv.group("kube_master"),
            etcd: inv.group("etcd"),
            kube_nodes: inv.group("kube_node"),
            ex_lb: inv.group("ex_lb"),
            chrony: inv.group("chrony"),
        }
    }

    /// Every host in one of the groups.
    fn in_use(&self) -> BTreeSet<&String> {
        self.masters
            .iter()
            .chain(&self.etcd)
            .chain(&self.kube_nodes)
            .chain(&self.ex_lb)
            .chain(&self.chrony)
            .map(|(h, _)| h)
            .collect()
    }

    /// A host's roles, from the groups it is in.
    fn roles(&self, host: &str) -> BTreeSet<Role> {
        let mut roles = BTreeSet::new();
        if member(&self.masters, host) {
            roles.insert(Role::Master);
            roles.insert(Role::Node); // masters run kubelet too (tainted NoSchedule)
        }
        if member(&self.kube_nodes, host) {
            roles.insert(Role::Node);
        }
        if member(&self.etcd, host) {
            roles.insert(Role::Etcd);
        }
        if member(&self.ex_lb, host) {
            roles.insert(Role::ExLb);
        }
        if member(&self.chrony, host) {
            roles.insert(Role::Chrony);
        }
        roles
    }
}

fn member(group: &[(String, Origin)], host: &str) -> bool {
    group.iter().any(|(h, _)| h == host)
}

/// What every host's [`NodeSpec`] is built from besides the host itself.
struct HostInputs<'a> {
    cfg: &'a Config,
    bundle: &'a BundleManifest,
    groups: &'a Groups,
    /// `ansible_user` in `[all:vars]`.
    ssh_user: Option<String>,
}

/// One [`NodeSpec`] per host in a group ferry deploys, in inventory order.
pub(super) fn nodes(
    c: &mut Checker,
    cfg: &Config,
    bundle: &BundleManifest,
    groups: &Groups,
) -> Vec<NodeSpec> {
    let ssh_user = c.all_var("ansible_user").map(|v| v.text);
    refuse_ansible_vars(c);
    let input = HostInputs {
        cfg,
        bundle,
        groups,
        ssh_user,
    };
    ordered_hosts(c.inv, groups)
        .iter()
        .map(|host| node_spec(c, &input, host))
        .collect()
}

/// Inventory order of first appearance, limited to hosts in a group ferry
/// uses; the others are left out with a warning.
fn ordered_hosts(inv: &Inventory, groups: &Groups) -> Vec<String> {
    let in_use = groups.in_use();
    for h in inv.hosts.iter().filter(|h| !in_use.contains(&h.host)) {
        tracing::warn!(
            "{}: host {} is in no group ferry deploys ([etcd], [kube_master], [kube_node], [ex_lb], [chrony]); it is left out of the plan",
            h.origin,
            h.host
        );
    }
    inv.hosts
        .iter()
        .map(|h| &h.host)
        .filter(|h| in_use.contains(h))
        .cloned()
        .collect()
}

fn node_spec(c: &mut Checker, input: &HostInputs, host: &str) -> NodeSpec {
    let origin = c
        .inv
        .host(host)
        .map(|h| h.origin.clone())
        .unwrap_or(c.file_origin());
    let roles = input.groups.roles(host);
    let ip = host_ip(c, host, &origin);
    let (name, from_var) = node_name(c, input.cfg, host);
    // A name from node_name or k8s_nodename was checked as it was read.
    if !from_var && !valid_dns_name(&name) {
        c.fail(
            &origin,
            format!(
                "host {host}: node name {name:?} (node_name, k8s_nodename, K8S_NODENAME or the host itself) must be lower-case letters, digits, '-' or '.'"
            ),
        );
    }
    let etcd_name = roles
        .contains(&Role::Etcd)
        .then(|| etcd_name(c, host, &name));
    let lb_role = match roles.contains(&Role::ExLb) {
        false => None,
        true => lb_role(c, host),
    };
    let ssh = ssh_target(c, host, input.ssh_user.as_deref());
    let arch = host_arch(c, input.bundle, host, &origin);
    let pool = node_pool(c, host, &origin);
    let worker = member(&input.groups.kube_nodes, host);
    if let Some(p) = pool.filter(|_| !worker) {
        let msg = format!("host {host} has pool {} but is not in [kube_node]; only workers join a pool (a master listed in [kube_node] too takes workloads)", p.name());
        c.fail(&origin, msg);
    }
    NodeSpec {
        name,
        inventory_host: host.to_string(),
        ip,
        ssh,
        arch,
        roles,
        etcd_name,
        lb_role,
        pool,
        worker,
        origin,
    }
}

/// `ip=`, else `ansible_host=`, else the inventory host itself: an IPv4 address.
fn host_ip(c: &mut Checker, host: &str, origin: &Origin) -> Ipv4Addr {
    let ip_val = c
        .host_var(host, "ip")
        .or_else(|| c.host_var(host, "ansible_host"));
    let (ip_text, ip_origin) = match &ip_val {
        Some(v) => (v.text.clone(), v.origin.clone()),
        None => (host.to_string(), origin.clone()),
    };
    match ip_text.parse::<Ipv4Addr>() {
        Ok(ip) => ip,
        Err(_) => {
            c.fail(&ip_origin, format!("host {host}: \"{ip_text}\" is not an IPv4 address; set ip=<address> on its line"));
            Ipv4Addr::UNSPECIFIED
        }
    }
}

/// A host's node name: ferry's `node_name`, else kubeasz's `K8S_NODENAME`
/// template evaluated for the host, else `k8s_nodename`, else the inventory
/// host; and whether it came from a variable (checked as it was read).
fn node_name(c: &mut Checker, cfg: &Config, host: &str) -> (String, bool) {
    if let Some(v) = c.host_var(host, "node_name") {
        return (v.text, true);
    }
    if let Some(t) = &cfg.k8s_nodename {
        let scope = c.scope.for_host(c.inv, host);
        match scope.eval(&t.value) {
            Ok(name) if valid_dns_name(&name) => return (name, true),
            Ok(name) if !name.is_empty() => c.fail(
                &t.origin,
                format!("K8S_NODENAME gives host {host} the node name {name:?}, which is not lower-case letters, digits, '-' or '.'"),
            ),
            Ok(_) => c.fail(&t.origin, format!("K8S_NODENAME is empty for host {host}")),
            Err(e) => c.fail(
                &t.origin,
                format!("K8S_NODENAME cannot be evaluated for host {host} ({e}); write a plain template or set k8s_nodename on the host's line"),
            ),
        }
        return (host.to_string(), false);
    }
    // kubeasz's examples write `k8s_nodename=''` for "not set".
    match c
        .host_var(host, "k8s_nodename")
        .filter(|v| !v.text.is_empty())
    {
        Some(v) => (v.text, true),
        None => (host.to_string(), false),
    }
}

/// An etcd member's name: `etcd_name`, else `NODE_NAME`, else the node name.
fn etcd_name(c: &mut Checker, host: &str, node_name: &str) -> String {
    c.host_var(host, "etcd_name")
        .or_else(|| c.host_var(host, "NODE_NAME"))
        .map(|v| v.text)
        .unwrap_or(node_name.to_string())
}

/// An `[ex_lb]` host's `LB_ROLE`, master or backup.
fn lb_role(c: &mut Checker, host: &str) -> Option<LbRole> {
    match c.host_var(host, "LB_ROLE") {
        None => None,
        Some(v) if v.text.eq_ignore_ascii_case("master") => Some(LbRole::Master),
        Some(v) if v.text.eq_ignore_ascii_case("backup") => Some(LbRole::Backup),
        Some(v) => {
            c.fail(
                &v.origin,
                format!("LB_ROLE=\"{}\" must be master or backup", v.text),
            );
            None
        }
    }
}

/// How ferry reaches a host: Ansible's connection variables (and their older
/// names), else port 22 and `[all:vars]`' user or root.
fn ssh_target(c: &mut Checker, host: &str, ssh_user: Option<&str>) -> SshTarget {
    let host_origin = c
        .inv
        .hosts
        .iter()
        .find(|h| h.host == host)
        .map(|h| h.origin.clone());
    let (ssh_host, host_origin) = match c.host_var(host, "ansible_host") {
        Some(v) => (v.text, Some(v.origin)),
        None => (host.to_string(), host_origin),
    };
    if !is_ssh_host(&ssh_host) {
        if let Some(origin) = &host_origin {
            c.fail(
                origin,
                format!("ansible_host (or the inventory host) {ssh_host:?} is neither an IP address nor a DNS name (letters, digits, '-', '.')"),
            );
        }
    }
    let port = c
        .host_var(host, "ansible_port")
        .or_else(|| c.host_var(host, "ansible_ssh_port"));
    let ssh_port = match port {
        Some(p) => parse_port(
            c,
            &p.text,
            &p.origin,
            "SSH port (ansible_port or ansible_ssh_port)",
        ),
        None => 22,
    };
    let user_var = c
        .host_var(host, "ansible_user")
        .or_else(|| c.host_var(host, "ansible_ssh_user"));
    // The user name's kind is checked as it is read (INVENTORY_KINDS).
    let user = user_var
        .map(|v| v.text)
        .or(ssh_user.map(str::to_string))
        .unwrap_or("root".into());
    let identity_file = c
        .host_var(host, "ansible_ssh_private_key_file")
        .or_else(|| c.host_var(host, "ansible_private_key_file"))
        .map(|v| PathBuf::from(v.text));
    SshTarget {
        host: ssh_host,
        port: ssh_port,
        user,
        identity_file,
        become_root: become_root(c, host),
    }
}

/// `ansible_become` (sudo to root, without a password), with the only
/// `ansible_become_user` (root) and `ansible_become_method` (sudo) ferry follows.
fn become_root(c: &mut Checker, host: &str) -> bool {
    if let Some(v) = c.host_var(host, "ansible_become_user") {
        if v.text != "root" {
            fail_once(c, &v.origin, format!("ansible_become_user={:?} is not supported: ferry becomes root only; set root or remove it", v.text));
        }
    }
    if let Some(v) = c.host_var(host, "ansible_become_method") {
        if v.text != "sudo" {
            fail_once(c, &v.origin, format!("ansible_become_method={:?} is not supported: ferry becomes root with sudo only (passwordless, NOPASSWD)", v.text));
        }
    }
    let Some(v) = c.host_var(host, "ansible_become") else {
        return false;
    };
    match v.text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => true,
        "false" | "no" | "off" | "0" | "" => false,
        _ => {
            fail_once(
                c,
                &v.origin,
                format!("ansible_become={:?} is neither true nor false", v.text),
            );
            false
        }
    }
}

/// `msg` at `origin`, once however many hosts read the value (group vars).
fn fail_once(c: &mut Checker, origin: &Origin, msg: String) {
    if !c
        .problems
        .iter()
        .any(|p| p.origin == *origin && p.message == msg)
    {
        c.fail(origin, msg);
    }
}

/// An IP address or a DNS name: what may follow ssh's options.
fn is_ssh_host(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_ok()
        || (!h.is_empty()
            && h.len() <= 253
            && !h.starts_with(['-', '.'])
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)))
}

/// A host's `arch` (default amd64): the bundle must carry its platform.
fn host_arch(c: &mut Checker, bundle: &BundleManifest, host: &str, origin: &Origin) -> String {
    let arch_val = c.host_var(host, "arch");
    let arch = arch_val
        .as_ref()
        .map(|v| v.text.clone())
        .unwrap_or("amd64".into());
    let platform = format!("linux/{arch}");
    if !bundle.platforms.contains(&platform) {
        let o = arch_val.map(|v| v.origin).unwrap_or(origin.clone());
        c.fail(
            &o,
            format!(
                "host {host} is {platform} but bundle {} carries only {}; build the bundle with --platform {platform}",
                bundle.name,
                bundle.platforms.join(", ")
            ),
        );
    }
    arch
}
/// Ansible connection settings ferry does not follow, each with the reason
/// (it connects with its own SSH client and keys, as root or through
/// passwordless sudo).
const REFUSED_ANSIBLE_VARS: &[(&str, &str)] = &[
    ("ansible_password", "ferry authenticates with SSH keys (ansible_ssh_private_key_file or the agent), never a password"),
    ("ansible_ssh_pass", "ferry authenticates with SSH keys (ansible_ssh_private_key_file or the agent), never a password"),
    ("ansible_become_password", "ferry carries no passwords: with ansible_become the SSH user needs passwordless sudo (NOPASSWD)"),
    ("ansible_connection", "ferry always connects over SSH, also to the deploy host itself"),
    ("ansible_ssh_common_args", "put SSH options in an ssh_config and pass it with --ssh-config"),
    ("ansible_ssh_extra_args", "put SSH options in an ssh_config and pass it with --ssh-config"),
];

/// Every refused `ansible_*` variable set anywhere in the inventory, at its line.
fn refuse_ansible_vars(c: &mut Checker) {
    let inv = c.inv;
    let host_vars = inv.hosts.iter().flat_map(|h| h.vars.iter());
    let group_vars = inv.group_vars.values().flat_map(|vars| vars.iter());
    for (key, value) in host_vars.chain(group_vars) {
        // `ansible_become=false` and an empty value ask for nothing.
        let asks = !value.text.is_empty() && !value.text.eq_ignore_ascii_case("false");
        if let Some((_, why)) = REFUSED_ANSIBLE_VARS.iter().find(|(k, _)| k == key) {
            if asks {
                c.fail(&value.origin, format!("{key} is not supported: {why}"));
            }
        }
    }
}

/// A host's pool: `node_pool=` on its line (or its groups' vars), else the
/// pool group it is in; both must agree, and only nodes have one.
fn node_pool(c: &mut Checker, host: &str, origin: &Origin) -> Option<Pool> {
    let by_group: Vec<Pool> = Pool::ALL
        .into_iter()
        .filter(|p| c.inv.group(p.name()).iter().any(|(h, _)| h == host))
        .collect();
    if by_group.len() > 1 {
        let names: Vec<&str> = by_group.iter().map(|p| p.name()).collect();
        c.fail(
            origin,
            format!(
                "host {host} is in several pool groups ({}); a node belongs to one pool",
                names.join(", ")
            ),
        );
    }
    let by_var = c.host_var(host, "node_pool");
    let from_var = by_var.as_ref().and_then(|v| {
        let pool = Pool::parse(&v.text.to_ascii_lowercase());
        if pool.is_none() {
            c.fail(
                &v.origin,
                format!(
                    "node_pool=\"{}\" is not one of system, stateless, batch, middleware",
                    v.text
                ),
            );
        }
        pool
    });
    match (from_var, by_group.first().copied()) {
        (Some(v), Some(g)) if v != g => {
            c.fail(
                origin,
                format!("host {host}: node_pool={v} disagrees with its [{g}] group; keep one"),
            );
            Some(v)
        }
        (Some(v), _) => Some(v),
        (None, g) => g,
    }
}

/// No two hosts share an IP, a node name or an etcd member name; the problems
/// are reported in host order after all are found.
pub(super) fn check_duplicates(c: &mut Checker, nodes: &[NodeSpec]) {
    let mut by_ip: BTreeMap<Ipv4Addr, &NodeSpec> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, &NodeSpec> = BTreeMap::new();
    let mut by_etcd: BTreeMap<&str, &NodeSpec> = BTreeMap::new();
    let mut dup = Vec::new();
    for n in nodes {
        if let Some(prev) = by_ip.insert(n.ip, n) {
            dup.push((
                n.origin.clone(),
                format!(
                    "duplicate IP {}: hosts {} and {} (at {})",
                    n.ip, prev.inventory_host, n.inventory_host, prev.origin
                ),
            ));
        }
        if let Some(prev) = by_name.insert(&n.name, n) {
            dup.push((
                n.origin.clone(),
                format!(
                    "duplicate node name {}: hosts {} and {} (at {})",
                    n.name, prev.inventory_host, n.inventory_host, prev.origin
                ),
            ));
        }
        if let Some(e) = &n.etcd_name {
            if let Some(prev) = by_etcd.insert(e, n) {
                dup.push((
                    n.origin.clone(),
                    format!(
                        "duplicate etcd member name {e}: hosts {} and {} (at {})",
                        prev.inventory_host, n.inventory_host, prev.origin
                    ),
                ));
            }
        }
    }
    for (o, m) in dup {
        c.fail(&o, m);
    }
}
