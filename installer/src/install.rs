//! The install flow `ferry install` runs and the day-2 commands share: the
//! bundle (verified and unpacked, or found already unpacked) -> the cluster
//! plan -> deploy (preflight, steps, checks). Callers parse their flags and
//! print; what happens on the way reaches them as [`InstallEvent`]s.

use crate::deploy::status::HostStatus;
use crate::deploy::{self, DeployContext, DeployError, DeployOptions, DeployReport, Status};
use crate::exec::SshOptions;
use crate::plan::addon_artifacts::Artifacts;
use crate::plan::{build_plan, ClusterPlan, HostPlan, PlanError, PlanOptions};
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
    /// Accept an even number of etcd members (`ferry node add --force`).
    pub allow_even_etcd: bool,
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
    /// Hash every placed file on every host, not trusting recorded manifests.
    pub verify_hosts: bool,
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
    /// The named hosts, or the etcd members they would make, cannot be added as asked.
    #[error("{0}")]
    Nodes(String),
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
    refuse_joining_members(&plan)?;
    refuse_version_change(&plan, &bundle)?;
    let whole = request.limit.is_none();
    let mut options = deploy_options(&request.access, &plan, request.limit);
    options.verify_hosts = request.verify_hosts;
    on_event(InstallEvent::Deploying {
        plan: &plan,
        options: &options,
    });
    let report = block_on(deploy::deploy(&plan, &bundle, &options))??;
    // What the cluster runs, once every host runs it (ferry upgrade starts there).
    if whole && report.ok() {
        let installed = crate::upgrade::installed::Installed::of(&bundle.manifest);
        crate::upgrade::installed::save_installed(&plan.cluster_dir, &installed)
            .map_err(InstallError::Nodes)?;
    }
    Ok(InstallOutcome {
        bundle: unpacked,
        report,
    })
}

/// `ferry node add`: hosts already in the inventory join the running cluster.
pub struct NodeAddRequest {
    pub data_dir: PathBuf,
    /// The unpacked bundle the cluster runs.
    pub bundle: String,
    pub cluster: ClusterInputs,
    pub access: HostAccess,
    /// The hosts to add (names, inventory hosts or addresses).
    pub hosts: Vec<String>,
}

/// Adds `request.hosts` to the cluster: the whole plan is deployed again,
/// so every host gets what concerns it (load balancers, apiserver
/// certificates, etcd endpoints), running etcd members and apiservers
/// restart one at a time, and new etcd members join one at a time.
pub fn node_add(
    request: NodeAddRequest,
    mut on_event: impl FnMut(InstallEvent<'_>),
) -> Result<DeployReport, InstallError> {
    let bundle = open_bundle(&request.data_dir, &request.bundle)?;
    let plan = plan_cluster(&request.cluster, &bundle, false)?;
    crate::deploy::joining::check(&plan, &request.hosts).map_err(InstallError::Nodes)?;
    let options = deploy_options(&request.access, &plan, None);
    on_event(InstallEvent::Deploying {
        plan: &plan,
        options: &options,
    });
    Ok(block_on(deploy::deploy(&plan, &bundle, &options))??)
}

/// `ferry node remove`: hosts of the inventory leave the running cluster.
pub struct NodeRemoveRequest {
    pub data_dir: PathBuf,
    pub bundle: String,
    pub cluster: ClusterInputs,
    pub access: HostAccess,
    /// The hosts to remove (names, inventory hosts or addresses).
    pub hosts: Vec<String>,
    pub options: crate::deploy::remove::RemoveOptions,
}

/// Removes `request.hosts` (see deploy/remove.rs for the order). The hosts
/// are still in the inventory; the others are planned as if they were not.
pub fn node_remove(
    request: NodeRemoveRequest,
    mut on_event: impl FnMut(InstallEvent<'_>),
) -> Result<crate::deploy::remove::RemoveReport, InstallError> {
    let bundle = open_bundle(&request.data_dir, &request.bundle)?;
    // The cluster as it runs now: its member count is what it is (4 going
    // to 3 is fine); only what stays is held to an odd count.
    let now = ClusterInputs {
        allow_even_etcd: true,
        ..request.cluster.clone()
    };
    let full = plan_cluster(&now, &bundle, false)?;
    let gone = named_hosts(&full, &request.hosts).map_err(InstallError::Nodes)?;
    let exclude = gone.iter().map(|h| h.inventory_host.clone()).collect();
    let rest = plan_cluster_with(&request.cluster, &bundle, false, exclude, false)?;
    let options = deploy_options(&request.access, &rest, None);
    on_event(InstallEvent::Deploying {
        plan: &rest,
        options: &options,
    });
    block_on(crate::deploy::remove::remove(
        &full,
        &rest,
        &bundle,
        &options,
        &gone,
        &request.options,
    ))?
    .map_err(|e| InstallError::Nodes(e.to_string()))
}

/// The cluster dir `cluster` names, else the default for config.yml's
/// `CLUSTER_NAME` (read without planning: the bundle is not known yet).
pub(crate) fn cluster_dir_of(cluster: &ClusterInputs) -> Result<PathBuf, InstallError> {
    if let Some(d) = &cluster.cluster_dir {
        return Ok(d.clone());
    }
    let plan_err = |source| InstallError::Plan {
        inventory: cluster.inventory.clone(),
        config: cluster.config.clone(),
        source,
    };
    let inv = crate::plan::inventory::Inventory::load(&cluster.inventory).map_err(plan_err)?;
    let scope = crate::plan::jinja::Scope::from_inventory(&inv);
    let cfg = crate::plan::config::Config::load(&cluster.config, &scope).map_err(plan_err)?;
    Ok(crate::plan::default_cluster_dir(&cfg.cluster_name.value))
}

/// The hosts of `plan` that `names` name; a name no host has is an error.
fn named_hosts<'p>(plan: &'p ClusterPlan, names: &[String]) -> Result<Vec<&'p HostPlan>, String> {
    let mut hosts = Vec::new();
    for n in names {
        let h = plan
            .hosts
            .iter()
            .find(|h| &h.name == n || &h.inventory_host == n || &h.address == n)
            .ok_or_else(|| format!("not in the inventory: {n}; ferry node remove takes hosts the inventory still lists"))?;
        hosts.push(h);
    }
    Ok(hosts)
}

/// `ferry install` does not move a running cluster to another Kubernetes
/// version: that is `ferry upgrade` (skew checks, snapshot, drained nodes).
fn refuse_version_change(plan: &ClusterPlan, bundle: &DeployContext) -> Result<(), InstallError> {
    let Some(current) = crate::upgrade::installed::load_installed(&plan.cluster_dir)
        .map_err(InstallError::Nodes)?
    else {
        return Ok(());
    };
    if current.kubernetes == bundle.manifest.kubernetes {
        return Ok(());
    }
    Err(InstallError::Nodes(format!(
        "the cluster runs Kubernetes {} (bundle {}, recorded in {}); bundle {} is {}: move it with `ferry upgrade --bundle ...`, which checks the version skew, takes an etcd snapshot and drains nodes",
        current.kubernetes,
        current.bundle,
        crate::upgrade::installed::installed_path(&plan.cluster_dir).display(),
        bundle.manifest.name,
        bundle.manifest.kubernetes
    )))
}

/// `ferry install` does not add etcd members to a running cluster: that is
/// `ferry node add`, which checks the member count.
pub(crate) fn refuse_joining_members(plan: &ClusterPlan) -> Result<(), InstallError> {
    let hosts = crate::deploy::joining::joining_hosts(plan);
    if hosts.is_empty() {
        return Ok(());
    }
    let (what, it) = match hosts.len() {
        1 => ("etcd member", "is"),
        _ => ("etcd members", "are"),
    };
    Err(InstallError::Nodes(format!(
        "{what} {} {it} new to the running etcd cluster recorded in {}: add {} with `ferry node add {}`",
        hosts
            .iter()
            .map(|(h, m)| format!("{m} ({h})"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::plan::etcd_members::record_path(&plan.cluster_dir).display(),
        if hosts.len() == 1 { "it" } else { "them" },
        hosts
            .iter()
            .map(|(h, _)| h.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )))
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
    let (plan, options) = running_cluster(data_dir, bundle, cluster, access)?;
    block_on(deploy::status::status(&plan, &options))
}

/// `ferry etcd backup`: a snapshot of the running cluster's etcd copied to
/// `to` (default `<cluster-dir>/backups`), the newest `keep` kept.
pub fn etcd_backup(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
    to: Option<PathBuf>,
    keep: usize,
) -> Result<deploy::etcd_backup::Backup, InstallError> {
    let (plan, options) = running_cluster(data_dir, bundle, cluster, access)?;
    let backup = deploy::etcd_backup::BackupOptions {
        to: to.unwrap_or_else(|| plan.cluster_dir.join("backups")),
        keep,
    };
    block_on(deploy::etcd_backup::backup(&plan, &options, &backup))?.map_err(InstallError::Nodes)
}

/// `ferry etcd restore`: the cluster's etcd replaced by `snapshot` (see
/// deploy/etcd_restore.rs for the order).
pub fn etcd_restore(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
    options: &deploy::etcd_restore::RestoreOptions,
) -> Result<deploy::etcd_restore::RestoreReport, InstallError> {
    let (plan, deploy_opts) = running_cluster(data_dir, bundle, cluster, access)?;
    block_on(deploy::etcd_restore::restore(&plan, &deploy_opts, options))?
        .map_err(InstallError::Nodes)
}

/// `ferry drill etcd-restore`: `snapshot` (default: the newest backup)
/// restored into a throwaway etcd; the report is written to the cluster dir.
pub fn drill_etcd_restore(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
    snapshot: Option<PathBuf>,
) -> Result<deploy::etcd_drill::DrillReport, InstallError> {
    let (plan, options) = running_cluster(data_dir, bundle, cluster, access)?;
    block_on(deploy::etcd_drill::etcd_restore(&plan, &options, snapshot))?
        .map_err(InstallError::Nodes)
}

/// `ferry drill master-failure`: one master (`host`, else the VIP's
/// holder) failed and brought back; the report is written to the cluster dir.
pub fn drill_master_failure(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
    host: Option<&str>,
) -> Result<deploy::master_drill::MasterDrillReport, InstallError> {
    let (plan, options) = running_cluster(data_dir, bundle, cluster, access)?;
    block_on(deploy::master_drill::master_failure(&plan, &options, host))?
        .map_err(InstallError::Nodes)
}

/// The running cluster's plan, read without writing anything, and how its
/// hosts are reached: what every day-2 command that only reads the plan starts from.
fn running_cluster(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
) -> Result<(ClusterPlan, DeployOptions), InstallError> {
    let plan = plan_read_only(data_dir, bundle, cluster)?;
    let options = deploy_options(access, &plan, None);
    Ok((plan, options))
}

/// The plan of the running cluster, read without writing anything.
pub fn plan_read_only(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
) -> Result<ClusterPlan, InstallError> {
    plan_cluster(cluster, &open_bundle(data_dir, bundle)?, true)
}

/// `ferry destroy`: everything ferry placed taken off every host (data
/// too with `purge_data`), see deploy/destroy.rs.
pub fn destroy(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
    purge_data: bool,
) -> Result<deploy::destroy::DestroyReport, InstallError> {
    let (plan, options) = running_cluster(data_dir, bundle, cluster, access)?;
    block_on(deploy::destroy::destroy(&plan, &options, purge_data))
}

/// `ferry certs check`: every certificate ferry placed, as each host holds it.
pub fn certs_check(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
) -> Result<Vec<deploy::certs::CertRow>, InstallError> {
    let (plan, options) = running_cluster(data_dir, bundle, cluster, access)?;
    block_on(deploy::certs::check(&plan, &options))
}

/// What `ferry certs renew` did.
pub struct CertsRenewed {
    /// The PKI as it was before, kept whole.
    pub kept: PathBuf,
    pub report: DeployReport,
}

/// `ferry certs renew`: every leaf certificate issued again for
/// CERT_EXPIRY from now (keys and CAs kept), then deployed as a re-run of
/// the install: etcd members and masters one at a time behind their
/// gates. Every etcd member must be healthy first; the PKI as it was is
/// kept in `<cluster dir>/pki.before-renew-<time>`.
pub fn certs_renew(
    data_dir: &Path,
    bundle: &str,
    cluster: &ClusterInputs,
    access: &HostAccess,
) -> Result<CertsRenewed, InstallError> {
    let bundle = open_bundle(data_dir, bundle)?;
    let current = plan_cluster(cluster, &bundle, true)?;
    refuse_joining_members(&current)?;
    refuse_version_change(&current, &bundle)?;
    let options = deploy_options(access, &current, None);
    block_on(deploy::before_upgrade::check_and_snapshot(
        &current, &options, None,
    ))?
    .map_err(|e| {
        InstallError::Nodes(format!(
            "before renewing certificates (nothing was changed): {e}"
        ))
    })?;
    let stamp = deploy::etcd_backup::utc_stamp().map_err(InstallError::Nodes)?;
    let kept = crate::plan::pki::keep_copy(&current.cluster_dir, &format!("before-renew-{stamp}"))
        .map_err(|source| InstallError::Plan {
            inventory: cluster.inventory.clone(),
            config: cluster.config.clone(),
            source,
        })?;
    let plan = plan_cluster_with(cluster, &bundle, false, BTreeSet::new(), true)?;
    let options = deploy_options(access, &plan, None);
    let report = block_on(deploy::deploy(&plan, &bundle, &options))??;
    Ok(CertsRenewed { kept, report })
}

pub(crate) fn unpack_bundle(
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
pub(crate) fn open_bundle(data_dir: &Path, name: &str) -> Result<DeployContext, InstallError> {
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
pub(crate) fn plan_cluster(
    cluster: &ClusterInputs,
    bundle: &DeployContext,
    read_only: bool,
) -> Result<ClusterPlan, InstallError> {
    plan_cluster_with(cluster, bundle, read_only, BTreeSet::new(), false)
}

/// [`plan_cluster`] as if the inventory did not list `exclude_hosts`.
fn plan_cluster_with(
    cluster: &ClusterInputs,
    bundle: &DeployContext,
    read_only: bool,
    exclude_hosts: BTreeSet<String>,
    rotate: bool,
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
        allow_even_etcd: cluster.allow_even_etcd,
        exclude_hosts,
        rotate,
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

pub(crate) fn deploy_options(
    access: &HostAccess,
    plan: &ClusterPlan,
    limit: Option<BTreeSet<String>>,
) -> DeployOptions {
    DeployOptions {
        forks: access.forks,
        ssh: access.ssh.clone(),
        log_dir: plan.cluster_dir.join("logs"),
        limit,
        node_roll: None,
        verify_hosts: false,
    }
}

/// Runs `work` to completion on a new multi-threaded runtime.
pub(crate) fn block_on<F: Future>(work: F) -> Result<F::Output, InstallError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(InstallError::Runtime)?;
    Ok(runtime.block_on(work))
}
