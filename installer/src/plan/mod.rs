//! `ferry plan`: inventory + config.yml + bundle.json -> certificates and every
//! host's files. Nothing is sent to hosts here.

pub mod addon_artifacts;
pub mod calico;
pub mod closure;
pub mod config;
pub mod config_types;
pub mod error;
pub mod etcd_members;
pub mod ignored_keys;
pub mod inventory;
pub mod jinja;
pub mod kernel;
pub mod kinds;
pub mod kubeasz;
pub mod model;
pub mod pki;
pub mod placement;
pub mod pools;
pub mod render;
pub mod validate;
pub mod value_kind;

pub use error::{Origin, PlanError, Problem, Problems, Result};
pub use model::{
    ClusterPlan, FileContent, HostPlan, PlannedArchive, PlannedFile, PlannedService, Role,
    SshTarget, Step,
};

use ferry_bundles::BundleManifest;
use std::path::{Path, PathBuf};

/// Options of [`build_plan`].
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Renew every leaf certificate (CAs and keys of CAs are kept).
    pub rotate: bool,
    /// Where the bundle's files are (its unpacked directory): the addons are
    /// rendered from the release artifacts it carries.
    pub artifacts: Option<crate::plan::addon_artifacts::Artifacts>,
    /// Write nothing: read the PKI and keys as an install left them
    /// (`ferry status`); a cluster dir without them is an error.
    pub read_only: bool,
    /// `--new-cluster`: see [`ClusterPlan::new_cluster`].
    pub new_cluster: bool,
    /// Accept an even number of etcd members (`ferry node add --force`).
    pub allow_even_etcd: bool,
    /// Inventory hosts planned as if the inventory did not list them
    /// (`ferry node remove`: what the others look like without them).
    pub exclude_hosts: std::collections::BTreeSet<String>,
}

/// Parse and validate `inventory` and `config`, create or reuse the PKI in
/// `cluster_dir` (default `/etc/ferry/clusters/<CLUSTER_NAME>`), render every
/// host's files and check that the bundle carries every image and binary they
/// reference. Writes only into the cluster dir (PKI, kubeconfigs, secrets).
pub fn build_plan(
    inventory: &Path,
    config: &Path,
    bundle: &BundleManifest,
    cluster_dir: Option<&Path>,
    opts: &PlanOptions,
) -> Result<ClusterPlan> {
    let inv = crate::plan::inventory::Inventory::load(inventory).map(|mut inv| {
        inv.exclude(&opts.exclude_hosts);
        inv
    });
    let scope = match &inv {
        Ok(inv) => crate::plan::jinja::Scope::from_inventory(inv),
        Err(_) => crate::plan::jinja::Scope::default(),
    };
    let cfg = crate::plan::config::Config::load_for_plan(config, &scope);
    let (inv, cfg) = match (inv, cfg) {
        (Ok(i), Ok(c)) => (i, c),
        (Err(PlanError::Invalid(mut a)), Err(PlanError::Invalid(b))) => {
            a.0.extend(b.0);
            return Err(PlanError::Invalid(a));
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let cluster = crate::plan::validate::validate(&inv, &cfg, bundle, opts.allow_even_etcd)?;
    let cluster_dir = cluster_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_cluster_dir(&cluster.name));
    let (pki, encryption_key) = if opts.read_only {
        let pki = crate::plan::pki::load(&cluster_dir)?;
        let key = crate::plan::pki::read_secret_key(&cluster_dir, "encryption-key")?;
        (pki, key)
    } else {
        let pki = crate::plan::pki::ensure(&cluster, &cluster_dir, opts.rotate)?;
        let key = crate::plan::pki::ensure_secret_key(&cluster_dir, "encryption-key", pki.fresh)?;
        (pki, key)
    };
    let etcd_members = crate::plan::etcd_members::plan(&cluster, &cluster_dir)?;
    let renderer = crate::plan::render::Renderer::new(bundle)?;
    let kubeconfigs = crate::plan::render::render_kubeconfigs(&renderer, &cluster, &pki)?;
    for (name, text) in kubeconfigs.iter().filter(|_| !opts.read_only) {
        let path = cluster_dir
            .join("kubeconfig")
            .join(format!("{name}.kubeconfig"));
        crate::plan::pki::write_if_changed(&path, text.as_bytes(), true)?;
    }
    let input = crate::plan::render::RenderInput {
        cluster: &cluster,
        bundle,
        pki: &pki,
        encryption_key: &encryption_key,
        kubeconfigs: &kubeconfigs,
        artifacts: opts.artifacts.as_ref(),
        etcd_members: &etcd_members,
    };
    let (hosts, missing) = crate::plan::render::render_hosts(&renderer, &input)?;
    crate::plan::closure::check(&hosts, bundle, &cluster.bin_dir, missing)?;
    crate::plan::kinds::check_plan(&hosts, &cluster.kubernetes)?;
    let etcd_endpoints = cluster
        .with_role(Role::Etcd)
        .map(|n| format!("https://{}:{}", n.ip, cluster.config.etcd_client_port.value))
        .collect();
    Ok(ClusterPlan {
        cluster_name: cluster.name.clone(),
        cni: cluster.cni.clone(),
        admin_kubeconfig: cluster_dir.join("kubeconfig/admin.kubeconfig"),
        cluster_dir,
        kubernetes: cluster.kubernetes.clone(),
        bundle_name: bundle.name.clone(),
        registry_mirrors: cluster.registry_mirrors(),
        vip: cluster.vip.map(|v| v.to_string()),
        apiserver_endpoint: cluster.apiserver_endpoint(),
        node_apiserver_endpoint: cluster.node_apiserver_endpoint(),
        apiserver_port: cluster.apiserver_port,
        etcd_endpoints,
        bin_dir: PathBuf::from(&cluster.bin_dir),
        restrict_oom_score_adj: cluster.config.containerd_restrict_oom_score_adj.value,
        hosts,
        new_cluster: opts.new_cluster,
        etcd_members,
        data_dirs: data_dirs(&cluster.config),
    })
}

fn data_dirs(cfg: &crate::plan::config::Config) -> crate::plan::model::DataDirs {
    let dirs = |v: &[&str]| -> Vec<PathBuf> {
        v.iter()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect()
    };
    crate::plan::model::DataDirs {
        etcd: dirs(&[&cfg.etcd_data_dir.value, &cfg.etcd_wal_dir.value]),
        containerd: dirs(&[
            &cfg.containerd_root_dir.value,
            &cfg.containerd_state_dir.value,
        ]),
        kubelet: dirs(&[&cfg.kubelet_root_dir.value]),
    }
}

/// Default cluster directory for a cluster name.
pub fn default_cluster_dir(cluster_name: &str) -> PathBuf {
    Path::new("/etc/ferry/clusters").join(cluster_name)
}
