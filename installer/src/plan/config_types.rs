//! The kind of every string-valued config.yml key ferry reads (booleans and
//! numbers are typed where they are read): a value outside its kind is an
//! error naming the file, the key's line, the key and what is allowed.

use crate::plan::config::scalar_text;
use crate::plan::error::{Origin, Problem};
use crate::plan::value_kind::Kind;
use serde_norway::Value as Yaml;
use std::collections::BTreeMap;
use std::path::Path;

/// How a key's value is shaped.
#[derive(Debug, Clone, Copy)]
enum Shape {
    One(Kind),
    /// One value, where an empty string means "not set".
    OneOrEmpty(Kind),
    List(Kind),
    /// A mapping whose keys are from a fixed set.
    Map(&'static [&'static str], Kind),
}

use Kind::*;
use Shape::*;

const RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage", "pid"];

/// kubelet's eviction signals.
const EVICTION_SIGNALS: &[&str] = &[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "containerfs.available",
    "containerfs.inodesFree",
    "pid.available",
];

/// Every string-valued key, by kind. Enumerated words (PROXY_MODE, CNI_PLUGIN,
/// the Calico keys) are checked against their values where they are used.
const KINDS: &[(&str, Shape)] = &[
    ("CLUSTER_NAME", One(DnsLabel)),
    ("K8S_VER", One(Version)),
    ("CONTAINER_RUNTIME", One(Word)),
    ("RUNTIME_BIN_DIR", One(AbsPath)),
    ("LOCAL_DNS_CACHE", One(Ip)),
    ("VIP", OneOrEmpty(Ip)),
    ("VIP_IF", One(Interface)),
    ("CLUSTER_CIDR", One(Cidr)),
    ("SERVICE_CIDR", One(Cidr)),
    ("NODE_PORT_RANGE", One(PortRange)),
    ("PROXY_MODE", One(Word)),
    ("DNS_DOMAIN", One(DnsDomain)),
    ("CNI_PLUGIN", One(Word)),
    ("CILIUM_TUNNEL_MODE", One(Word)),
    ("CALICO_ENABLE_OVERLAY", One(Word)),
    ("CALICO_NETWORKING_BACKEND", One(Word)),
    ("CALICO_RR_NODES", List(HostOrIp)),
    ("ETCD_DATA_DIR", One(AbsPath)),
    ("ETCD_WAL_DIR", OneOrEmpty(AbsPath)),
    ("ETCD_AUTO_COMPACTION_RETENTION", One(HoursOrDuration)),
    ("ETCD_SNAPSHOT_COUNT", One(Count)),
    ("ETCD_BACKUP_SCHEDULE", OneOrEmpty(Calendar)),
    ("KUBE_APISERVER_EVENT_TTL", One(Duration)),
    ("KUBE_APISERVER_REQUEST_TIMEOUT", One(Duration)),
    ("KUBE_APISERVER_ENABLE_ADMISSION_PLUGINS", List(Identifier)),
    ("KUBELET_ROOT_DIR", One(AbsPath)),
    ("KUBE_RESERVED", Map(RESOURCES, Quantity)),
    ("SYSTEM_RESERVED", Map(RESOURCES, Quantity)),
    ("EVICTION_HARD", Map(EVICTION_SIGNALS, QuantityOrPercent)),
    ("REGISTRY_MIRRORS", List(HttpUrl)),
    ("SANDBOX_IMAGE", One(ImageRef)),
    ("FERRY_REGISTRY_HOSTS", List(HostOrIp)),
    ("TENANT_NAMESPACES", List(DnsLabel)),
    ("CONTEXT_NAME", One(Name)),
    ("MASTER_CERT_HOSTS", List(HostOrIp)),
    ("INSECURE_REG", List(HttpUrl)),
    ("CA_EXPIRY", One(Duration)),
    ("CERT_EXPIRY", One(Duration)),
    ("CONTAINERD_ROOT_DIR", One(AbsPath)),
    ("CONTAINERD_STATE_DIR", One(AbsPath)),
    ("CONTAINERD_CONFIG_DIR", One(AbsPath)),
    ("CONTAINERD_SERVICE_NAME", One(UnitName)),
];

/// String-valued keys typed elsewhere: `K8S_NODENAME` is a per-host template
/// whose result is checked as a node name per host.
pub const CHECKED_WHERE_USED: &[&str] = &["K8S_NODENAME"];

/// Whether `key` has a kind here.
pub fn has_kind(key: &str) -> bool {
    KINDS.iter().any(|(k, _)| *k == key)
}

/// Every value of `map` outside its key's kind, as problems at the key's line.
pub fn check(
    path: &Path,
    map: &BTreeMap<String, Yaml>,
    lines: &BTreeMap<String, usize>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (key, shape) in KINDS {
        let Some(value) = map.get(*key).filter(|v| !v.is_null()) else {
            continue;
        };
        let origin = Origin::new(path, lines.get(*key).copied().unwrap_or(0));
        for message in shape_problems(key, *shape, value) {
            problems.push(Problem {
                origin: origin.clone(),
                message,
            });
        }
    }
    // Calico's forms (see crate::plan::calico), checked whatever the CNI.
    const AUTODETECT: &str = "IP_AUTODETECTION_METHOD";
    if let Some(reason) = map.get(AUTODETECT).and_then(scalar_text).and_then(|m| {
        crate::plan::calico::autodetect_problem(&m).map(|r| format!("{AUTODETECT} {m:?}: {r}"))
    }) {
        problems.push(Problem {
            origin: Origin::new(path, lines.get(AUTODETECT).copied().unwrap_or(0)),
            message: reason,
        });
    }
    problems
}

/// What is wrong with one key's value (its Yaml shape is checked where it is read).
fn shape_problems(key: &str, shape: Shape, value: &Yaml) -> Vec<String> {
    match (shape, value) {
        (OneOrEmpty(_), Yaml::String(s)) if s.is_empty() => vec![],
        (One(kind) | OneOrEmpty(kind), v) => scalar_text(v)
            .and_then(|s| kind.check(&s))
            .map(|m| format!("{key}: {m}"))
            .into_iter()
            .collect(),
        (List(kind), Yaml::Sequence(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let m = kind.check(&scalar_text(v)?)?;
                Some(format!("{key}[{i}]: {m}"))
            })
            .collect(),
        (Map(names, kind), Yaml::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let k = scalar_text(k)?;
                if !names.contains(&k.as_str()) {
                    return Some(format!("{key}: {k:?} is not one of {}", names.join(", ")));
                }
                let m = kind.check(&scalar_text(v)?)?;
                Some(format!("{key}.{k}: {m}"))
            })
            .collect(),
        // Said in the words `Reader::list` and `Reader::map` use, so that a
        // key read there is reported once.
        (List(_), Yaml::String(_) | Yaml::Number(_) | Yaml::Bool(_)) => {
            vec![format!("{key} must be a list")]
        }
        _ => vec![],
    }
}
