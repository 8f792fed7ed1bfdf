//! The install flow `ferry install` runs and the day-2 commands share: the
//! bundle (verified and unpacked, or found already unpacked) -> the cluster
//! plan -> deploy (preflight, steps, checks). Callers parse their flags and
//! print; what happens on the way reaches them as [`InstallEvent`]s.

use crate::deploy::status::HostStatus;
use crate::deploy::{self, DeployContext, DeployError, DeployOptions, DeployReport, Status};
use crate::exec::SshOptions;
use crate::plan::addon_artifacts::Artifacts;
use crate::plan::{build_plan, ClusterPlan, PlanError, PlanOptions};
use crate::store::{Store, StoreError};
use crate::unpack::{unpack, UnpackError, UnpackReport};
use ferry_bundles::{BundleSource, Trust};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};

/// What planning the cluster reads, and where the cluster's state lives.
#[derive(Debug, Clone)]
pub struct ClusterInputs {
    /// kubeasz-style inventory (hosts file).
    pub inventory: PathBuf,
    pub config: PathBuf,
    /// PKI, kubeconfigs and logs (None: /etc/ferry/clusters/CLUSTER_NAME).
    pub cluster_dir: Option<PathBuf>,
    /// `--new-cluster`: replace the CA and keys hosts already hold.
    pub new_cluster: bool,
}

/// How the hosts are reached.
#[derive(Debug, Clone)]
pub struct HostAccess {
    pub ssh: SshOptions,
    /// Hosts worked on at once.
    pub forks: usize,
}

pub struct InstallRequest {
    /// The bundle file and the keys its signature must match.
    pub bundle: BundleSource,
    pub trust: Trust,
    pub data_dir: PathBuf,
    pub cluster: ClusterInputs,
    pub access: HostAccess,
    /// Only these hosts (names, inventory hosts or addresses); all when None.
    pub limit: Option<BTreeSet<String>>,
}

/// Progress of [`install`], in the order it happens.
pub enum InstallEvent<'a> {
    /// The bundle is verified and unpacked, or was found already unpacked.
    Unpacked(&'a UnpackReport),
    /// The cluster is planned; deploying it starts.
    Deploying {
        plan: &'a ClusterPlan,
        options: &'a DeployOptions,
    },
}

pub struct InstallOutcome {
    pub bundle: UnpackReport,
    pub report: DeployReport,
}

impl InstallOutcome {
    /// The hosts that did not end ok.
    pub fn unfinished_hosts(&self) -> Vec<&str> {
        self.report
            .hosts
            .iter()
            .filter(|h| h.status != Status::Ok)
            .map(|h| h.host.as_str())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("unpacking {bundle} into {}", data_dir.display())]
    Unpack {
        bundle: String,
        data_dir: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("reading bundle {bundle} in {}", data_dir.display())]
    ReadBundle {
        bundle: String,
        data_dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("bundle {bundle} in {}", data_dir.display())]
    BundleDir {
        bundle: String,
        data_dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("planning the cluster from {} and {}", inventory.display(), config.display())]
    Plan {
        inventory: PathBuf,
        config: PathBuf,
        #[source]
        source: PlanError,
    },
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// Preflight problems carry the report of every host.
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// Verifies and unpacks the bundle (unless the same one already is), plans
/// the cluster and deploys it. Starts its own async runtime for the deploy.
pub fn install(
    request: InstallRequest,
    mut on_event: impl FnMut(InstallEvent<'_>),
) -> Result<InstallOutcome, InstallError> {
    let unpacked = unpack_bundle(&request.bundle, &request.trust, &request.data_dir)?;
    on_event(InstallEvent::Unpacked(&unpacked));
    let bundle = open_bundle(&request.data_dir, &unpacked.name)?;
    let plan = plan_cluster(&request.cluster, &bundle, false)?;
    let options = deploy_options(&request.access, &plan, request.limit);
    on_event(InstallEvent::Deploying {
        plan: &plan,
        options: &options,
    });
    let report = block_on(deploy::deploy(&plan, &bundle, &options))??;
    Ok(InstallOutcome {
        bundle: unpacked,
        report,
    })
}

/// Per host of the cluster planned from an unpacked bundle: the plan's units
/// and their state, etcd health, mirror reachability. Read-only: the cluster
/// dir is read as the install left it, nothing is created.
pub fn cluster_status(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
) -> Result<Vec<HostStatus>, InstallError> {
    let bundle = open_bundle(data_dir, bundle)?;
    let plan = plan_cluster(cluster, &bundle, true)?;
    let options = deploy_options(access, &plan, None);
    block_on(deploy::status::status(&plan, &options))
}

fn unpack_bundle(
    bundle: &BundleSource,
    trust: &Trust,
    data_dir: &Path,
) -> Result<UnpackReport, InstallError> {
    unpack(bundle, trust, data_dir).map_err(|source| InstallError::Unpack {
        bundle: bundle.display(),
        data_dir: data_dir.to_owned(),
        source,
    })
}

/// The bundle `name` unpacked in `data_dir`, with its bundle.json.
fn open_bundle(data_dir: &Path, name: &str) -> Result<DeployContext, InstallError> {
    let store = Store::open(data_dir);
    let manifest = store
        .manifest(name)
        .map_err(|source| InstallError::ReadBundle {
            bundle: name.to_owned(),
            data_dir: store.root().to_owned(),
            source,
        })?;
    Ok(DeployContext {
        store,
        bundle: name.to_owned(),
        manifest,
    })
}

/// The cluster planned from `cluster`'s inventory and config.yml, its addons
/// rendered from the artifacts `bundle` carries.
fn plan_cluster(
    cluster: &ClusterInputs,
    bundle: &DeployContext,
    read_only: bool,
) -> Result<ClusterPlan, InstallError> {
    let artifacts =
        bundle
            .store
            .bundle_dir(&bundle.bundle)
            .map_err(|source| InstallError::BundleDir {
                bundle: bundle.bundle.clone(),
                data_dir: bundle.store.root().to_owned(),
                source,
            })?;
    let options = PlanOptions {
        artifacts: Some(Artifacts::new(artifacts)),
        read_only,
        new_cluster: cluster.new_cluster,
        ..PlanOptions::default()
    };
    build_plan(
        &cluster.inventory,
        &cluster.config,
        &bundle.manifest,
        cluster.cluster_dir.as_deref(),
        &options,
    )
    .map_err(|source| InstallError::Plan {
        inventory: cluster.inventory.clone(),
        config: cluster.config.clone(),
        source,
    })
}

fn deploy_options(
    access: &HostAccess,
    plan: &ClusterPlan,
    limit: Option<BTreeSet<String>>,
) -> DeployOptions {
    DeployOptions {
        forks: access.forks,
        ssh: access.ssh.clone(),
        log_dir: plan.cluster_dir.join("logs"),
        limit,
    }
}

/// Runs `work` to completion on a new multi-threaded runtime.
fn block_on<F: Future>(work: F) -> Result<F::Output, InstallError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(InstallError::Runtime)?;
    Ok(runtime.block_on(work))
}
