//! The access layer: on `[ex_lb]`, haproxy in front of the apiservers and
//! keepalived holding the VIP; on every node, a local haproxy on 127.0.0.1
//! in front of every apiserver, which kubelet, kube-proxy and the CNI agents
//! use (as kubeasz's kube-lb), so that no node depends on one master.

use super::{HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::plan::error::Result;
use crate::plan::model::{Role, Step};
use crate::plan::pki::{Pki, APISERVER_CHECK};
use crate::plan::validate::{Cluster, LbRole, NodeSpec};
use serde_json::{json, Value as Json};
use std::net::Ipv4Addr;
use std::path::Path;

pub(super) struct AccessInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub pki: &'a Pki,
    pub vip: Ipv4Addr,
}

/// Where a balancer host keeps what its health checks read `/readyz` with:
/// `ca.pem` (the cluster CA) and `client.pem` (certificate and key in one
/// file, as haproxy and curl take them).
pub const APISERVER_CHECK_DIR: &str = "/etc/ferry/apiserver-check";

/// Places the health-check credentials (masters get them with the control
/// plane, so ferry's own gate can use them before the balancers run).
pub(super) fn check_credentials(h: &mut HostFiles, pki: &Pki, step: Step) -> Result<()> {
    let dir = Path::new(APISERVER_CHECK_DIR);
    h.text(dir.join("ca.pem"), pki.text("ca.pem")?, step)?;
    let mut pem = pki.get(&format!("{APISERVER_CHECK}.pem"))?.to_vec();
    pem.extend_from_slice(pki.get(&format!("{APISERVER_CHECK}-key.pem"))?);
    h.secret(dir.join("client.pem"), pem, step)
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &AccessInput) -> Result<()> {
    check_credentials(h, input.pki, Step::AccessLayer)?;
    let ctx = lb_ctx(input);
    h.text(
        "/etc/haproxy/haproxy.cfg",
        r.render("lb/haproxy.cfg", &ctx)?,
        Step::AccessLayer,
    )?;
    h.text(
        "/etc/keepalived/keepalived.conf",
        r.render("lb/keepalived.conf", &ctx)?,
        Step::AccessLayer,
    )?;
    h.text(
        format!("{SYSTEMD_DIR}/haproxy.service.d/ferry-limits.conf"),
        r.render("systemd/haproxy-limits.conf", &ctx)?,
        Step::AccessLayer,
    )?;
    h.service("haproxy.service", Step::AccessLayer, true);
    h.service("keepalived.service", Step::AccessLayer, true);
    Ok(())
}

/// A node's local clients (kubelet, kube-proxy, CNI agents) hold a few dozen
/// connections.
const LOCAL_LB_MAXCONN: u32 = 2000;

/// Where the local balancer's configuration lives (not /etc/haproxy: an
/// `[ex_lb]` host or a site's own haproxy may use that).
const LOCAL_LB_CONFIG: &str = "/etc/ferry/kube-lb/haproxy.cfg";

/// The node's local apiserver balancer: haproxy, a unit of its own.
pub(super) fn render_local(
    h: &mut HostFiles,
    r: &Renderer,
    s: &HostScope,
    pki: &Pki,
) -> Result<()> {
    check_credentials(h, pki, Step::AccessLayer)?;
    let (_, port) = s.cluster.node_apiserver_host_port();
    let ctx = json!({"cluster": s.cluster_ctx, "host": s.host_ctx,
        "lb": {"port": port, "masters": backends(s.cluster), "config": LOCAL_LB_CONFIG,
            "check_dir": APISERVER_CHECK_DIR,
            "maxconn": LOCAL_LB_MAXCONN, "nofile": open_files_for(LOCAL_LB_MAXCONN)}});
    h.text(
        LOCAL_LB_CONFIG,
        r.render("lb/kube-lb.cfg", &ctx)?,
        Step::AccessLayer,
    )?;
    h.text(
        format!("{SYSTEMD_DIR}/ferry-kube-lb.service"),
        r.render("systemd/ferry-kube-lb.service", &ctx)?,
        Step::AccessLayer,
    )?;
    h.service("ferry-kube-lb.service", Step::AccessLayer, true);
    Ok(())
}

fn lb_ctx(input: &AccessInput) -> Json {
    let s = input.scope;
    let (c, n) = (s.cluster, s.node);
    let lbs: Vec<&NodeSpec> = c.with_role(Role::ExLb).collect();
    let idx = lbs.iter().position(|x| x.name == n.name).unwrap_or(0);
    let is_master = is_keepalived_master(n, &lbs, idx);
    let maxconn = c.config.ex_lb_maxconn.value;
    json!({"cluster": s.cluster_ctx, "host": s.host_ctx, "lb": {
        "vip": input.vip.to_string(), "port": c.lb_port, "masters": backends(c),
        "check_dir": APISERVER_CHECK_DIR,
        "maxconn": maxconn, "nofile": open_files_for(maxconn),
        "state": if is_master {"MASTER"} else {"BACKUP"},
        "priority": if is_master {150} else {100usize.saturating_sub(idx)},
        "interface": c.config.vip_if.value, "router_id": router_id(&c.name),
        "peers": lbs.iter().filter(|x| x.name != n.name).map(|x| x.ip.to_string()).collect::<Vec<_>>()}})
}

/// Every master's apiserver, as both balancers' templates list them.
fn backends(c: &Cluster) -> Vec<Json> {
    c.with_role(Role::Master)
        .map(|m| json!({"name": m.name, "ip": m.ip.to_string()}))
        .collect()
}

/// The open files haproxy needs for `maxconn` connections: two sockets each
/// (client and server side), plus listeners, checks and logs.
pub(super) fn open_files_for(maxconn: u32) -> u64 {
    2 * u64::from(maxconn) + 1024
}

/// The inventory's `lb_role`; without any, the first `[ex_lb]` host is MASTER.
fn is_keepalived_master(n: &NodeSpec, lbs: &[&NodeSpec], idx: usize) -> bool {
    let any_master = lbs.iter().any(|x| x.lb_role == Some(LbRole::Master));
    match n.lb_role {
        Some(role) => role == LbRole::Master,
        None => !any_master && idx == 0,
    }
}

/// VRRP router id (1..=254), derived from the cluster name so clusters on one
/// network differ.
fn router_id(cluster_name: &str) -> u32 {
    1 + (cluster_name
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32))
        % 254)
}
