//! A Kubernetes node's kubelet and kube-proxy: certificates, kubeconfigs,
//! configs and units.

use super::{kubeconfig, HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::plan::error::Result;
use crate::plan::model::{FileContent, Step};
use crate::plan::pki::Pki;
use crate::plan::pools;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

pub(super) struct NodeInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub pki: &'a Pki,
    pub kubeconfigs: &'a BTreeMap<String, String>,
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &NodeInput) -> Result<()> {
    let ctx = node_ctx(input);
    credentials(h, input)?;
    let kubelet_config = format!(
        "{}/config.yaml",
        input.scope.cluster.config.kubelet_root_dir.value
    );
    for (path, template) in [
        (kubelet_config.as_str(), "kubernetes/kubelet-config.yaml"),
        (
            "/var/lib/kube-proxy/config.yaml",
            "kubernetes/kube-proxy-config.yaml",
        ),
    ] {
        h.text(path, r.render(template, &ctx)?, Step::Nodes)?;
    }
    for unit in ["kubelet", "kube-proxy"] {
        h.text(
            format!("{SYSTEMD_DIR}/{unit}.service"),
            r.render(&format!("systemd/{unit}.service"), &ctx)?,
            Step::Nodes,
        )?;
    }
    h.service("kubelet.service", Step::Nodes, true);
    h.service("kube-proxy.service", Step::Nodes, true);
    Ok(())
}

fn node_ctx(input: &NodeInput) -> Json {
    let s = input.scope;
    let c = s.cluster;
    let cfg = &c.config;
    let kubelet = json!({
        "root_dir": cfg.kubelet_root_dir.value,
        "max_pods": cfg.max_pods.value,
        "cluster_dns": if cfg.enable_local_dns_cache.value { cfg.local_dns_cache.value.clone() } else { c.dns_service_ip().to_string() },
        "kube_reserved_enabled": cfg.kube_reserved_enabled.value,
        "system_reserved_enabled": cfg.sys_reserved_enabled.value,
        "kube_reserved": cfg.kube_reserved.value,
        "system_reserved": cfg.system_reserved.value,
        "eviction_hard": cfg.eviction_hard.value});
    let registration = pools::registration(s.node.pool, s.node.master_only());
    json!({"cluster": s.cluster_ctx, "host": s.host_ctx, "kubelet": kubelet,
        "registration": {"labels": registration.labels.join(","), "taints": registration.taints.join(",")}})
}

/// The cluster CA, the kubelet's serving pair and both kubeconfigs.
fn credentials(h: &mut HostFiles, input: &NodeInput) -> Result<()> {
    let (pki, ca_dir, name) = (input.pki, input.scope.ca_dir(), &input.scope.node.name);
    h.add(
        ca_dir.join("ca.pem"),
        0o644,
        FileContent::Inline(pki.get("ca.pem")?.to_vec()),
        Step::Nodes,
        false,
    )?;
    h.text(
        ca_dir.join("kubelet.pem"),
        pki.text(&format!("kubelet/{name}-server.pem"))?,
        Step::Nodes,
    )?;
    h.secret(
        ca_dir.join("kubelet-key.pem"),
        pki.get(&format!("kubelet/{name}-server-key.pem"))?.to_vec(),
        Step::Nodes,
    )?;
    h.secret(
        "/etc/kubernetes/kubelet.kubeconfig",
        kubeconfig(input.kubeconfigs, &format!("kubelet-{name}"))?.into_bytes(),
        Step::Nodes,
    )?;
    h.secret(
        "/etc/kubernetes/kube-proxy.kubeconfig",
        kubeconfig(input.kubeconfigs, "kube-proxy")?.into_bytes(),
        Step::Nodes,
    )
}
