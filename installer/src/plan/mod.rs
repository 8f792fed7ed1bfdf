//! `ferry plan`: inventory + config.yml + bundle.json -> certificates and every
//! host's files. Nothing is sent to hosts here.

pub mod error;
pub mod model;

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
}

/// Parse and validate `inventory` and `config`, create or reuse the PKI in
/// `cluster_dir` (default `/etc/ferry/clusters/<CLUSTER_NAME>`), render every
/// host's files and check that the bundle carries every image and binary they
/// reference.
pub fn build_plan(
    inventory: &Path,
    config: &Path,
    bundle: &BundleManifest,
    cluster_dir: Option<&Path>,
    opts: &PlanOptions,
) -> Result<ClusterPlan> {
    let _ = (inventory, config, bundle, cluster_dir, opts);
    Err(PlanError::Bundle {
        bundle: bundle.name.clone(),
        reason: "plan: not built yet".into(),
    })
}

/// Default cluster directory for a cluster name.
pub fn default_cluster_dir(cluster_name: &str) -> PathBuf {
    Path::new("/etc/ferry/clusters").join(cluster_name)
}
