//! The cluster plan: every host's files and services, in deploy order.
//!
//! This is the contract between `ferry plan` (which builds it) and
//! `ferry install` (which carries it out over SSH). Nothing here touches a
//! host. Paths in [`PlannedFile::path`] are absolute paths on the target host.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The whole cluster: what every host carries and runs.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterPlan {
    /// `CLUSTER_NAME` from config.yml.
    pub cluster_name: String,
    /// The CNI: `cilium` or `calico` (preflight's kernel minimum depends on it).
    pub cni: String,
    /// Directory on the deploy host holding the PKI, kubeconfigs and keys.
    pub cluster_dir: PathBuf,
    /// Kubernetes version (`1.29.6`), equal to the bundle's.
    pub kubernetes: String,
    /// `name` from bundle.json.
    pub bundle_name: String,
    /// The registry mirror(s) as `host:port` (an IP), in the order nodes try them.
    pub registry_mirrors: Vec<String>,
    /// The apiserver VIP held by keepalived on `[ex_lb]`, when there is one.
    pub vip: Option<String>,
    /// `https://<vip or first master>:<port>`: what the admin kubeconfig and
    /// other clients outside the nodes use.
    pub apiserver_endpoint: String,
    /// `https://127.0.0.1:<LOCAL_LB_PORT>`: every node's own balancer in front
    /// of all apiservers, which kubelet, kube-proxy and the CNI agents use.
    pub node_apiserver_endpoint: String,
    /// The port every master's apiserver serves on (`SECURE_PORT`).
    pub apiserver_port: u16,
    /// `https://<ip>:2379` of every etcd member.
    pub etcd_endpoints: Vec<String>,
    /// Where binaries go on every host (`bin_dir`, kubeasz default `/opt/kube/bin`).
    pub bin_dir: PathBuf,
    /// containerd does not lower OOM scores below its own
    /// (`CONTAINERD_RESTRICT_OOM_SCORE_ADJ`): hosts without CAP_SYS_RESOURCE need it.
    pub restrict_oom_score_adj: bool,
    /// Admin kubeconfig on the deploy host (inside `cluster_dir`).
    pub admin_kubeconfig: PathBuf,
    /// Hosts in inventory order (each host once, whatever its roles).
    pub hosts: Vec<HostPlan>,
    /// `--new-cluster`: the plan may replace the CA, service-account key and
    /// encryption keys hosts already hold (preflight refuses it otherwise).
    pub new_cluster: bool,
    /// etcd's members as the cluster dir records them, and those joining.
    pub etcd_members: crate::plan::etcd_members::EtcdMembers,
    /// Where the components keep their data on the hosts (removed only when asked).
    pub data_dirs: DataDirs,
}

/// Data directories on the hosts, by component.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataDirs {
    /// etcd's data dir and, when set apart, its WAL dir.
    pub etcd: Vec<PathBuf>,
    /// containerd's root and state dirs.
    pub containerd: Vec<PathBuf>,
    pub kubelet: Vec<PathBuf>,
}

/// One machine: its connection, roles, files and services.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// Node name (`node_name` / `k8s_nodename` / `NODE_NAME`), else the inventory host.
    pub name: String,
    /// The host as written in the inventory (first token of its line).
    pub inventory_host: String,
    /// The host's cluster IP (`ip`, else `ansible_host`, else the inventory host).
    pub address: String,
    pub ssh: SshTarget,
    /// Debian-style architecture: `amd64`, `arm64`.
    pub arch: String,
    pub roles: BTreeSet<Role>,
    /// The guide's node pool the host is in, if any.
    pub pool: Option<crate::plan::pools::Pool>,
    /// Every file the host carries, sorted by (step, path).
    pub files: Vec<PlannedFile>,
    /// Archives from the bundle unpacked on the host (containerd, CNI plugins).
    pub archives: Vec<PlannedArchive>,
    /// Units to (re)start, in order within each step.
    pub services: Vec<PlannedService>,
    /// Kernel modules to load (plan/kernel.rs), as data.
    pub kernel_modules: Vec<String>,
    /// sysctl keys and values to set (plan/kernel.rs), as data.
    pub sysctls: Vec<(String, String)>,
}

/// How to reach a host over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshTarget {
    /// `ansible_host`, else the inventory host.
    pub host: String,
    /// `ansible_port` / `ansible_ssh_port`, default 22.
    pub port: u16,
    /// `ansible_user`, default `root`.
    pub user: String,
    /// `ansible_ssh_private_key_file`.
    pub identity_file: Option<PathBuf>,
    /// `ansible_become`: commands run as root through passwordless sudo.
    #[serde(rename = "become")]
    pub become_root: bool,
}

/// What a host is for. Order is only for stable output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Etcd,
    Master,
    Node,
    ExLb,
    Chrony,
    Registry,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Etcd => "etcd",
            Role::Master => "master",
            Role::Node => "node",
            Role::ExLb => "ex_lb",
            Role::Chrony => "chrony",
            Role::Registry => "registry",
        }
    }
}

/// Deploy steps, in the order install runs them (derive(Ord) follows declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// modules-load, sysctl, swap off, chrony.
    Baseline,
    /// kube-* binaries, etcd, etcdctl, runc, crictl, helm, ferry.
    Binaries,
    /// containerd config, certs.d, unit; CNI plugins.
    Containerd,
    /// ferry registry mirror (unit + TLS) on registry hosts.
    Registry,
    Etcd,
    /// apiserver, controller-manager, scheduler with their configs and PKI.
    ControlPlane,
    /// haproxy + keepalived on `[ex_lb]`.
    AccessLayer,
    /// kubelet + kube-proxy.
    Nodes,
    /// Addon manifests applied with kubectl from the first master.
    Addons,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Baseline => "baseline",
            Step::Binaries => "binaries",
            Step::Containerd => "containerd",
            Step::Registry => "registry",
            Step::Etcd => "etcd",
            Step::ControlPlane => "control_plane",
            Step::AccessLayer => "access_layer",
            Step::Nodes => "nodes",
            Step::Addons => "addons",
        }
    }
}

/// One file on one host.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    /// Absolute path on the host.
    pub path: PathBuf,
    /// Unix permission bits (0o600 for private keys).
    pub mode: u32,
    /// Holds key material: never print its content, write it 0600.
    pub secret: bool,
    pub content: FileContent,
    pub step: Step,
}

impl PlannedFile {
    /// The mode the file is written with: a secret never gets group or other bits.
    pub fn placed_mode(&self) -> u32 {
        if self.secret {
            self.mode & 0o700
        } else {
            self.mode
        }
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// Rendered here (configs, units, certificates, kubeconfigs).
    Inline(Vec<u8>),
    /// A file of the bundle, copied as is (binaries). `sha256`/`size` are from bundle.json.
    BundleFile {
        bundle_path: String,
        sha256: String,
        size: u64,
    },
    /// The ferry executable running the install (registry hosts need it to serve
    /// the mirror); used when the bundle does not carry `bin/linux-<arch>/ferry`.
    FerryExecutable,
}

impl FileContent {
    /// sha256 (hex) of the content when known without reading anything.
    pub fn sha256(&self) -> Option<String> {
        match self {
            FileContent::Inline(b) => Some(hex::encode(Sha256::digest(b))),
            FileContent::BundleFile { sha256, .. } => Some(sha256.clone()),
            FileContent::FerryExecutable => None,
        }
    }
}

// Inline content is summarised (size + sha256), never printed: it may be a private key.
impl Serialize for FileContent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            FileContent::Inline(b) => {
                let mut st = s.serialize_struct("inline", 3)?;
                st.serialize_field("source", "inline")?;
                st.serialize_field("size", &b.len())?;
                st.serialize_field("sha256", &hex::encode(Sha256::digest(b)))?;
                st.end()
            }
            FileContent::BundleFile {
                bundle_path,
                sha256,
                size,
            } => {
                let mut st = s.serialize_struct("bundle_file", 4)?;
                st.serialize_field("source", "bundle")?;
                st.serialize_field("bundle_path", bundle_path)?;
                st.serialize_field("size", size)?;
                st.serialize_field("sha256", sha256)?;
                st.end()
            }
            FileContent::FerryExecutable => {
                let mut st = s.serialize_struct("ferry", 1)?;
                st.serialize_field("source", "ferry_executable")?;
                st.end()
            }
        }
    }
}

/// An archive of the bundle unpacked into a directory on the host
/// (`tar -xzf <archive> -C <dest_dir> --strip-components=<n>`).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedArchive {
    pub bundle_path: String,
    pub sha256: String,
    pub size: u64,
    pub dest_dir: PathBuf,
    pub strip_components: u32,
    pub step: Step,
}

/// A systemd unit to enable and (re)start once its step's files are in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedService {
    /// `kubelet.service`.
    pub unit: String,
    pub step: Step,
    pub enable: bool,
}

impl ClusterPlan {
    pub fn host(&self, name: &str) -> Option<&HostPlan> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Hosts having `role`, in inventory order.
    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &HostPlan> {
        self.hosts.iter().filter(move |h| h.roles.contains(&role))
    }
}

impl HostPlan {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn file(&self, path: &str) -> Option<&PlannedFile> {
        self.files.iter().find(|f| f.path.as_os_str() == path)
    }

    /// Files of one step.
    pub fn files_for(&self, step: Step) -> impl Iterator<Item = &PlannedFile> {
        self.files.iter().filter(move |f| f.step == step)
    }
}
