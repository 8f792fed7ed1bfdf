//! Calico's network settings, from kubeasz's CALICO_* keys, and the values
//! the tigera-operator chart gets for them.
//!
//! kubeasz's keys map onto the operator's `Installation`:
//! - `CALICO_NETWORKING_BACKEND` bird -> BGP on; vxlan -> BGP off.
//! - `CALICO_ENABLE_OVERLAY` Always / CrossSubnet / Never -> the IP pool's
//!   encapsulation (IPIP... with bird, VXLAN... with vxlan; Never -> None).
//! - `IP_AUTODETECTION_METHOD` (calico-node's syntax) -> nodeAddressAutodetectionV4.

use crate::plan::config::{Config, Setting};
use crate::plan::error::Problem;
use ipnet::Ipv4Net;
use serde_json::{json, Value as Json};
use std::net::Ipv4Addr;

/// How calico-node picks each node's address (calico-node's
/// `IP_AUTODETECTION_METHOD` forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Autodetect {
    FirstFound,
    /// `can-reach=DEST`: the address of the interface that routes to DEST.
    CanReach(String),
    /// `interface=REGEX`
    Interface(String),
    /// `skip-interface=REGEX`
    SkipInterface(String),
    /// `cidr=CIDR[,CIDR...]`
    Cidrs(Vec<Ipv4Net>),
    /// `kubernetes-internal-ip`
    KubernetesInternalIp,
}

/// Calico's network, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalicoNetwork {
    pub bgp: bool,
    /// The IP pool's encapsulation, as the operator names it.
    pub encapsulation: &'static str,
    pub autodetect: Autodetect,
}

/// kubeasz's example value of IP_AUTODETECTION_METHOD: the first master.
const FIRST_MASTER_JINJA: &str = "{{ groups['kube_master'][0] }}";

/// Reads and checks the CALICO_* keys. `first_master` stands in for kubeasz's
/// `{{ groups['kube_master'][0] }}`.
pub fn settings(cfg: &Config, first_master: Ipv4Addr) -> Result<CalicoNetwork, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut fail = |s: &Setting<String>, message: String| {
        problems.push(Problem {
            origin: s.origin.clone(),
            message,
        })
    };
    let backend = cfg.calico_networking_backend.value.to_ascii_lowercase();
    let overlay = cfg.calico_enable_overlay.value.as_str();
    let encapsulation = match (backend.as_str(), overlay) {
        ("bird", "Always") => Some("IPIP"),
        ("bird", "CrossSubnet") => Some("IPIPCrossSubnet"),
        ("bird", "Never") => Some("None"),
        ("vxlan", "Always") => Some("VXLAN"),
        ("vxlan", "CrossSubnet") => Some("VXLANCrossSubnet"),
        ("vxlan", "Never") => {
            fail(
                &cfg.calico_enable_overlay,
                "CALICO_ENABLE_OVERLAY \"Never\" with CALICO_NETWORKING_BACKEND \"vxlan\" leaves no route between nodes (no BGP, no tunnel); use Always or CrossSubnet, or the bird backend".into(),
            );
            None
        }
        ("bird" | "vxlan", _) => {
            fail(
                &cfg.calico_enable_overlay,
                format!(
                    "CALICO_ENABLE_OVERLAY \"{overlay}\" is not one of Always, CrossSubnet, Never"
                ),
            );
            None
        }
        ("none", _) => {
            fail(
                &cfg.calico_networking_backend,
                "CALICO_NETWORKING_BACKEND \"none\" (policy only, routes from elsewhere) is not supported by ferry; use bird or vxlan".into(),
            );
            None
        }
        _ => {
            fail(
                &cfg.calico_networking_backend,
                format!("CALICO_NETWORKING_BACKEND \"{backend}\" is not one of bird, vxlan"),
            );
            None
        }
    };
    if cfg.calico_rr_enabled.value {
        problems.push(Problem {
            origin: cfg.calico_rr_enabled.origin.clone(),
            message: "CALICO_RR_ENABLED: route reflectors are not supported by ferry yet; set it to false (a full BGP mesh serves up to about 50 nodes)".into(),
        });
    }
    let method = cfg
        .ip_autodetection_method
        .value
        .replace(FIRST_MASTER_JINJA, &first_master.to_string());
    let autodetect = match parse_autodetect(&method) {
        Ok(a) => Some(a),
        Err(reason) => {
            problems.push(Problem {
                origin: cfg.ip_autodetection_method.origin.clone(),
                message: format!("IP_AUTODETECTION_METHOD \"{method}\": {reason}"),
            });
            None
        }
    };
    match (encapsulation, autodetect) {
        (Some(encapsulation), Some(autodetect)) if problems.is_empty() => Ok(CalicoNetwork {
            bgp: backend == "bird",
            encapsulation,
            autodetect,
        }),
        _ => Err(problems),
    }
}

/// A regular expression for interface names: what Linux allows in a name plus
/// the regex operators, and nothing that could end a YAML or shell string.
fn is_interface_regex(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-*+?|^$()[]{},\\".contains(c))
}

/// A host name or IPv4 address calico-node can route to.
fn is_destination(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok()
        || (!s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }))
}

/// What is wrong with an `IP_AUTODETECTION_METHOD` as config.yml gives it
/// (kubeasz's first-master template stands for an address).
pub fn autodetect_problem(method: &str) -> Option<String> {
    parse_autodetect(&method.replace(FIRST_MASTER_JINJA, "192.0.2.1")).err()
}

fn parse_autodetect(method: &str) -> Result<Autodetect, String> {
    const FORMS: &str = "use first-found, can-reach=DEST, interface=REGEX, skip-interface=REGEX, cidr=CIDR[,CIDR] or kubernetes-internal-ip";
    match method.split_once('=') {
        None if method == "first-found" => Ok(Autodetect::FirstFound),
        None if method == "kubernetes-internal-ip" => Ok(Autodetect::KubernetesInternalIp),
        Some(("can-reach", d)) if is_destination(d) => Ok(Autodetect::CanReach(d.into())),
        Some(("can-reach", _)) => Err(format!("the destination is not an IPv4 address or host name; {FORMS}")),
        Some(("interface", r)) if is_interface_regex(r) => Ok(Autodetect::Interface(r.into())),
        Some(("skip-interface", r)) if is_interface_regex(r) => Ok(Autodetect::SkipInterface(r.into())),
        Some(("interface" | "skip-interface", _)) => Err(format!(
            "the interface pattern may hold letters, digits and . _ - * + ? | ^ $ ( ) [ ] {{ }} , \\ only; {FORMS}"
        )),
        Some(("cidr", list)) => list
            .split(',')
            .map(|c| c.trim().parse::<Ipv4Net>().map_err(|_| format!("\"{c}\" is not an IPv4 CIDR; {FORMS}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Autodetect::Cidrs),
        _ => Err(format!("not a method calico-node knows; {FORMS}")),
    }
}

impl Autodetect {
    /// The operator's `nodeAddressAutodetectionV4`.
    fn to_json(&self) -> Json {
        match self {
            Autodetect::FirstFound => json!({"firstFound": true}),
            Autodetect::CanReach(d) => json!({"canReach": d}),
            Autodetect::Interface(r) => json!({"interface": r}),
            Autodetect::SkipInterface(r) => json!({"skipInterface": r}),
            Autodetect::Cidrs(c) => {
                json!({"cidrs": c.iter().map(|c| c.to_string()).collect::<Vec<_>>()})
            }
            Autodetect::KubernetesInternalIp => json!({"kubernetes": "NodeInternalIP"}),
        }
    }
}

impl CalicoNetwork {
    /// Values for the tigera-operator chart. `api` is how the operator reaches
    /// the apiservers before any Service works (host, port).
    pub fn chart_values(&self, cluster_cidr: Ipv4Net, api: (&str, u16)) -> Json {
        json!({
            "installation": {
                "enabled": true,
                "kubernetesProvider": "",
                "cni": {"type": "Calico"},
                "calicoNetwork": {
                    "bgp": if self.bgp { "Enabled" } else { "Disabled" },
                    "ipPools": [{
                        "cidr": cluster_cidr.to_string(),
                        "encapsulation": self.encapsulation,
                        "natOutgoing": "Enabled",
                        "nodeSelector": "all()",
                        "blockSize": 26,
                    }],
                    "nodeAddressAutodetectionV4": self.autodetect.to_json(),
                },
            },
            // The Calico API server needs images and certificates ferry does not carry.
            "apiServer": {"enabled": false},
            "kubernetesServiceEndpoint": {"host": api.0, "port": api.1.to_string()},
        })
    }
}

/// Images the operator deploys for the Installation above, by catalog key
/// suffix (`calico/<name>`); their tag is the chart's appVersion.
pub const OPERATOR_IMAGES: &[&str] = &[
    "node",
    "cni",
    "kube-controllers",
    "typha",
    "pod2daemon-flexvol",
    "csi",
    "node-driver-registrar",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autodetect_forms() {
        assert_eq!(parse_autodetect("first-found"), Ok(Autodetect::FirstFound));
        assert_eq!(
            parse_autodetect("can-reach=10.0.0.1"),
            Ok(Autodetect::CanReach("10.0.0.1".into()))
        );
        assert_eq!(
            parse_autodetect("interface=eth.*|ens[0-9]+"),
            Ok(Autodetect::Interface("eth.*|ens[0-9]+".into()))
        );
        assert_eq!(
            parse_autodetect("cidr=10.0.0.0/24, 10.1.0.0/24").map(|a| a.to_json()),
            Ok(json!({"cidrs": ["10.0.0.0/24", "10.1.0.0/24"]}))
        );
        assert!(parse_autodetect("interface=eth0\"\n$(reboot)").is_err());
        assert!(parse_autodetect("can-reach=a b").is_err());
        assert!(parse_autodetect("nearest").is_err());
    }
}
