//! The addon manifests of a cluster, in apply (name) order:
//!
//! | file                               | from                                             |
//! |------------------------------------|--------------------------------------------------|
//! | 00-cilium-secrets.yaml, 00-cilium.yaml | Cilium's chart, `helm template` (Secrets apart) |
//! | 00-calico.yaml                     | Calico's tigera-operator chart, `helm template`  |
//! | 10-coredns.yaml, 20-nodelocaldns.yaml | ferry templates (kubernetes publishes templates) |
//! | 15-priority-classes.yaml           | ferry template, with a batch pool                 |
//! | 30-metrics-server.yaml             | metrics-server's components.yaml as published    |
//! | 40-cert-manager.yaml               | cert-manager's cert-manager.yaml as published    |
//!
//! With a system pool, CoreDNS and the published Deployments (metrics-server,
//! cert-manager) tolerate its taint and require its nodes (see [`placement`]).
//! | 45-prometheus-operator-crds.yaml   | the PrometheusRule CRD of prometheus-operator's release |
//! | 50-prometheus-rules.yaml, 60-tenant-baseline.yaml | ferry templates                   |

use super::{RenderInput, Renderer};
use crate::plan::addon_artifacts::{select, split_secrets, Artifacts};
use crate::plan::calico::CalicoNetwork;
use crate::plan::error::{PlanError, Problem, Problems, Result};
use crate::plan::model::Role;
use crate::plan::pki::Pki;
use crate::plan::placement;
use crate::plan::pools::{Pool, BATCH_PRIORITY_CLASS};
use crate::plan::validate::Cluster;
use base64::Engine;
use serde_json::{json, Value as Json};

/// One rendered addon manifest.
pub struct RenderedAddon {
    /// File name under [`super::ADDONS_DIR`]; install applies them in name order.
    pub name: String,
    pub text: String,
    /// Images the template asked for that the bundle does not carry.
    pub absent: Vec<String>,
    /// Images the addon deploys at run time that its text does not name (an
    /// operator's), which the bundle must carry for every node.
    pub implied_images: Vec<String>,
    /// Holds private keys: written 0600 and left out of snapshots.
    pub secret: bool,
}

impl RenderedAddon {
    fn new(name: &str, text: String) -> RenderedAddon {
        RenderedAddon {
            name: name.into(),
            text,
            absent: Vec::new(),
            implied_images: Vec::new(),
            secret: false,
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    crate::plan::value_kind::Kind::DnsLabel.accepts(s)
}

/// Values that go into Corefiles and certificate names, where YAML escaping
/// cannot help: they must be what Kubernetes accepts there.
fn check_addon_values(c: &Cluster) -> Result<()> {
    let cfg = &c.config;
    let mut problems = Vec::new();
    if !c.dns_domain.split('.').all(is_dns_label) {
        problems.push(Problem {
            origin: cfg.dns_domain.origin.clone(),
            message: format!(
                "DNS_DOMAIN \"{}\" is not a DNS name (lower-case labels of a-z, 0-9 and -, separated by dots)",
                c.dns_domain
            ),
        });
    }
    if cfg.enable_local_dns_cache.value
        && cfg
            .local_dns_cache
            .value
            .parse::<std::net::Ipv4Addr>()
            .is_err()
    {
        problems.push(Problem {
            origin: cfg.local_dns_cache.origin.clone(),
            message: format!(
                "LOCAL_DNS_CACHE \"{}\" is not an IPv4 address (NodeLocal DNSCache binds it; 169.254.20.10 is usual)",
                cfg.local_dns_cache.value
            ),
        });
    }
    if !is_dns_label(&c.name) {
        problems.push(Problem {
            origin: cfg.cluster_name.origin.clone(),
            message: format!(
                "CLUSTER_NAME \"{}\" must be a DNS label (a-z, 0-9 and -): Cilium and Hubble's certificates use it",
                c.name
            ),
        });
    }
    for ns in &cfg.tenant_namespaces.value {
        if !is_dns_label(ns) {
            problems.push(Problem {
                origin: cfg.tenant_namespaces.origin.clone(),
                message: format!("TENANT_NAMESPACES: \"{ns}\" is not a namespace name (a DNS label: a-z, 0-9 and -)"),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Invalid(Problems(problems)))
    }
}

/// Context of ferry's own addon templates.
fn templates_ctx(c: &Cluster) -> Json {
    let cfg = &c.config;
    // The Corefile has no quoting: its addresses are written from parsed
    // addresses (check_addon_values refuses LOCAL_DNS_CACHE when it is not one).
    let local = cfg.local_dns_cache.value.parse::<std::net::Ipv4Addr>().ok();
    let mut bind: Vec<String> = local.iter().map(|ip| ip.to_string()).collect();
    if c.proxy_mode != "ipvs" {
        bind.push(c.dns_service_ip().to_string());
    }
    json!({
        "cluster": super::cluster_ctx(c),
        "dns": {"replicas": 2, "service_ip": c.dns_service_ip().to_string(),
                "local_ip": local.map(|ip| ip.to_string()).unwrap_or_default(), "bind": bind},
        "tenants": cfg.tenant_namespaces.value,
        "pools": {"system": c.has_pool(Pool::System), "batch": c.has_pool(Pool::Batch)},
        "placement": {"toleration": placement::system_toleration(), "affinity": placement::system_affinity()},
        "batch_priority_class": BATCH_PRIORITY_CLASS,
    })
}

/// Values for Cilium's chart: the guide's settings from config.yml, and
/// Hubble's certificates from the cluster CA (the chart would otherwise
/// generate a CA of its own at every render).
fn cilium_values(c: &Cluster, pki: &Pki) -> Result<Json> {
    let cfg = &c.config;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let pem = |name: &str| pki.get(name).map(b64);
    // Cilium's agents and operator run on the host network: they reach the
    // apiservers through the node's local balancer, like kubelet.
    let (host, port) = c.node_apiserver_host_port();
    let hubble = cfg.cilium_enable_hubble.value;
    let routing = cfg.cilium_tunnel_mode.value.as_str();
    let mut values = json!({
        "cluster": {"name": c.name, "id": 0},
        "k8sServiceHost": host,
        "k8sServicePort": port,
        // kube-proxy runs (PROXY_MODE); Cilium leaves Services to it.
        "kubeProxyReplacement": "false",
        "ipam": {"mode": "kubernetes"},
        "k8s": {"requireIPv4PodCIDR": true},
        "ipv4": {"enabled": true},
        "ipv6": {"enabled": false},
        "bpf": {"masquerade": cfg.cilium_enable_bpf_masquerade.value},
        "cni": {"binPath": "/opt/cni/bin", "confPath": "/etc/cni/net.d", "exclusive": true},
        // By tag: the mirror serves the bundle's images under their upstream tags.
        "image": {"useDigest": false},
        "operator": {"replicas": c.with_role(Role::Node).count().clamp(1, 2), "image": {"useDigest": false}},
        "envoy": {"enabled": false},
        "hubble": {"enabled": hubble, "ui": {"enabled": false}, "relay": {"enabled": hubble, "image": {"useDigest": false}}},
    });
    if routing == "native" {
        values["routingMode"] = json!("native");
        values["ipv4NativeRoutingCIDR"] = json!(c.cluster_cidr.to_string());
        values["autoDirectNodeRoutes"] = json!(true);
    } else {
        values["routingMode"] = json!("tunnel");
        values["tunnelProtocol"] = json!(routing);
    }
    if hubble {
        let server = crate::plan::pki::HUBBLE_SERVER;
        let client = crate::plan::pki::HUBBLE_RELAY_CLIENT;
        values["tls"] = json!({"ca": {"cert": pem("ca.pem")?}});
        values["hubble"]["tls"] = json!({
            "enabled": true,
            "auto": {"enabled": false},
            "server": {"cert": pem(&format!("{server}.pem"))?, "key": pem(&format!("{server}-key.pem"))?},
        });
        values["hubble"]["relay"]["tls"] = json!({
            "client": {"cert": pem(&format!("{client}.pem"))?, "key": pem(&format!("{client}-key.pem"))?},
        });
    }
    Ok(values)
}

/// Cilium's chart, rendered; its Secrets (Hubble's keys) go to a file of their own.
fn cilium(input: &RenderInput, arts: &Artifacts) -> Result<Vec<RenderedAddon>> {
    let values = cilium_values(input.cluster, input.pki)?;
    let (c, text) = arts.helm_template(input.bundle, "cilium", "cilium", "kube-system", &values)?;
    let (secrets, rest) = split_secrets(&text);
    let header = format!(
        "# Rendered by ferry plan: Cilium {} from {} with the bundle's helm.\n",
        c.version, c.path
    );
    let mut out = Vec::new();
    if !secrets.is_empty() {
        let mut s = RenderedAddon::new(
            "00-cilium-secrets.yaml",
            format!("{header}# Secrets: this file is written 0600.\n{secrets}"),
        );
        s.secret = true;
        out.push(s);
    }
    out.push(RenderedAddon::new(
        "00-cilium.yaml",
        format!("{header}{rest}"),
    ));
    Ok(out)
}

/// Namespace the tigera-operator runs in. Its chart leaves creating it to
/// `helm install --create-namespace`, so ferry adds it, labelled as Calico's
/// own manifest labels it (the operator's pods run privileged).
const TIGERA_NAMESPACE: &str = "tigera-operator";

/// Calico through its operator's chart.
fn calico(input: &RenderInput, arts: &Artifacts, net: &CalicoNetwork) -> Result<RenderedAddon> {
    let c = input.cluster;
    let (host, port) = c.apiserver_host_port();
    let values = net.chart_values(c.cluster_cidr, (&host, port));
    let (comp, text) = arts.helm_template(
        input.bundle,
        "tigera-operator",
        "calico",
        TIGERA_NAMESPACE,
        &values,
    )?;
    let namespace = format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {TIGERA_NAMESPACE}\n  labels:\n    name: {TIGERA_NAMESPACE}\n    pod-security.kubernetes.io/enforce: privileged\n"
    );
    let mut a = RenderedAddon::new(
        "00-calico.yaml",
        format!(
            "# Rendered by ferry plan: Calico {} (tigera-operator chart {}) with the bundle's helm; ferry adds the operator's Namespace.\n{namespace}{text}",
            comp.version, comp.path
        ),
    );
    a.implied_images = crate::plan::calico::OPERATOR_IMAGES
        .iter()
        .map(|n| format!("docker.io/calico/{n}:v{}", comp.version))
        .collect();
    Ok(a)
}

/// A release manifest as published, with a line saying where it came from.
fn published(
    arts: &Artifacts,
    input: &RenderInput,
    component: &str,
    file: &str,
) -> Result<RenderedAddon> {
    let (c, text) = arts.manifest(input.bundle, component)?;
    let (text, placed) = match input.cluster.has_pool(Pool::System) {
        false => (text, ""),
        true => {
            let text = placement::deployments_onto_system_pool(&text).map_err(|reason| {
                PlanError::Addon {
                    addon: component.into(),
                    reason: format!("{}: {reason}", c.path),
                }
            })?;
            (text, ", its Deployments on the system pool")
        }
    };
    Ok(RenderedAddon::new(
        file,
        format!(
            "# ferry: {component} {} as published ({}){placed}.\n---\n{text}",
            c.version, c.path
        ),
    ))
}

/// The PrometheusRule CRD out of prometheus-operator's CRD bundle.
fn prometheus_rule_crd(arts: &Artifacts, input: &RenderInput) -> Result<RenderedAddon> {
    const CRD: &str = "prometheusrules.monitoring.coreos.com";
    let (c, text) = arts.manifest(input.bundle, "prometheus-operator-crds")?;
    let doc = select(&text, "CustomResourceDefinition", CRD).ok_or_else(|| PlanError::Addon {
        addon: "prometheus-operator-crds".into(),
        reason: format!("{} holds no CustomResourceDefinition {CRD}", c.path),
    })?;
    Ok(RenderedAddon::new(
        "45-prometheus-operator-crds.yaml",
        format!(
            "# ferry: the {CRD} CRD of prometheus-operator {} ({}), for the platform alert rules.\n---\n{doc}",
            c.version, c.path
        ),
    ))
}

/// The addon manifests the config enables, in apply (name) order.
pub fn render_addons(r: &Renderer, input: &RenderInput) -> Result<Vec<RenderedAddon>> {
    let c = input.cluster;
    let cfg = &c.config;
    check_addon_values(c)?;
    let arts = input.artifacts.ok_or_else(|| PlanError::Bundle {
        bundle: input.bundle.name.clone(),
        reason: "the addons are rendered from the release artifacts the bundle carries, and a bare bundle.json holds none; give the bundle file itself".into(),
    })?;
    let mut out = match &c.calico {
        Some(net) => vec![calico(input, arts, net)?],
        None => cilium(input, arts)?,
    };
    let ctx = templates_ctx(c);
    let template = |name: &str| -> Result<RenderedAddon> {
        let mut a = RenderedAddon::new(name, r.render(&format!("addons/{name}"), &ctx)?);
        a.absent = r.take_missing();
        Ok(a)
    };
    out.push(template("10-coredns.yaml")?);
    if cfg.enable_local_dns_cache.value {
        out.push(template("20-nodelocaldns.yaml")?);
    }
    out.push(template("50-prometheus-rules.yaml")?);
    out.push(template("60-tenant-baseline.yaml")?);
    if c.has_pool(Pool::Batch) {
        out.push(template("15-priority-classes.yaml")?);
    }
    if cfg.metrics_server_enabled.value {
        out.push(published(
            arts,
            input,
            "metrics-server",
            "30-metrics-server.yaml",
        )?);
    }
    if cfg.cert_manager_enabled.value {
        out.push(published(
            arts,
            input,
            "cert-manager",
            "40-cert-manager.yaml",
        )?);
    }
    out.push(prometheus_rule_crd(arts, input)?);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
