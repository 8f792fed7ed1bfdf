//! `ferry install` and `ferry status`.

use anyhow::Context;
use clap::Args;
use ferry_bundles::BundleSource;
use ferry_installer::deploy::{self, DeployContext, DeployError, DeployOptions};
use ferry_installer::exec::{KnownHostsPolicy, SshOptions};
use ferry_installer::plan::addon_artifacts::Artifacts;
use ferry_installer::plan::{build_plan, ClusterPlan, PlanOptions};
use ferry_installer::store::Store;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How to reach hosts over SSH (the system OpenSSH client).
#[derive(Args, Clone)]
pub struct SshArgs {
    /// ssh_config file to use instead of ~/.ssh/config (jump hosts: ProxyJump there).
    #[arg(long)]
    pub ssh_config: Option<PathBuf>,
    /// Host keys not in known_hosts: strict (refuse), accept-new (record), off (accept any).
    #[arg(long, default_value = "strict", value_parser = parse_known_hosts)]
    pub ssh_known_hosts: KnownHostsPolicy,
    /// Parallel hosts.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
}

fn parse_known_hosts(s: &str) -> Result<KnownHostsPolicy, String> {
    s.parse()
}

/// Verifies and unpacks the bundle (if not already), plans the cluster from
/// the inventory and config.yml, then deploys it over SSH: preflight on every
/// host (all problems listed at once, nothing changed), OS baseline, binaries,
/// containerd with the mirror config, the registry mirror on the registry
/// hosts, etcd, control plane, haproxy + keepalived on [ex_lb], kubelet and
/// kube-proxy, addons, checks. Files are written only when they differ and
/// units restarted only when their files changed, so a re-run converges and a
/// re-run with nothing to do says "no changes". Per-host logs go to
/// CLUSTER_DIR/logs/HOST.log.
#[derive(Args)]
pub struct InstallArgs {
    /// The bundle: .tar.zst, .parts.json or its first part.
    #[arg(long)]
    pub bundle: PathBuf,
    /// kubeasz-style inventory (hosts file).
    #[arg(long)]
    pub inventory: PathBuf,
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub trust: super::trust::TrustArgs,
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
    /// PKI, kubeconfigs and logs (default /etc/ferry/clusters/CLUSTER_NAME).
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
    /// Only these hosts (comma separated names or inventory hosts).
    #[arg(long, value_delimiter = ',')]
    pub limit: Vec<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Per host: the plan's units and their state, etcd health, mirror reachability.
#[derive(Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub inventory: PathBuf,
    /// config.yml (default: config.yml next to the inventory).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
    /// Which unpacked bundle the cluster runs (default: the only one in the data dir).
    #[arg(long)]
    pub bundle_name: Option<String>,
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshArgs,
    #[arg(long)]
    pub json: bool,
}

fn options(ssh: &SshArgs, plan: &ClusterPlan, limit: &[String]) -> DeployOptions {
    DeployOptions {
        forks: usize::from(ssh.forks),
        ssh: SshOptions {
            config_file: ssh.ssh_config.clone(),
            known_hosts: ssh.ssh_known_hosts,
            control_dir: None,
            connect_timeout: None,
        },
        log_dir: plan.cluster_dir.join("logs"),
        limit: (!limit.is_empty()).then(|| limit.iter().cloned().collect::<BTreeSet<_>>()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn plan(
    inventory: &Path,
    config: &Path,
    store: &Store,
    bundle: &str,
    cluster_dir: Option<&Path>,
) -> anyhow::Result<ClusterPlan> {
    let manifest = store
        .manifest(bundle)
        .with_context(|| format!("reading bundle {bundle} in {}", store.root().display()))?;
    let artifacts = store
        .bundle_dir(bundle)
        .with_context(|| format!("bundle {bundle} in {}", store.root().display()))?;
    build_plan(
        inventory,
        config,
        &manifest,
        cluster_dir,
        &PlanOptions {
            artifacts: Some(Artifacts::new(artifacts)),
            ..PlanOptions::default()
        },
    )
    .with_context(|| {
        format!(
            "planning the cluster from {} and {}",
            inventory.display(),
            config.display()
        )
    })
}

pub fn run_install(args: InstallArgs) -> anyhow::Result<()> {
    let src = BundleSource::open(&args.bundle)?;
    let trust = args.trust.resolve(&src)?;
    let unpacked =
        ferry_installer::unpack::unpack(&src, &trust, &args.data_dir).with_context(|| {
            format!(
                "unpacking {} into {}",
                src.display(),
                args.data_dir.display()
            )
        })?;
    if !args.json {
        if unpacked.already_unpacked {
            eprintln!(
                "bundle {}: already unpacked in {}",
                unpacked.name,
                unpacked.dir.display()
            );
        } else {
            eprintln!(
                "bundle {}: verified and unpacked into {}",
                unpacked.name,
                unpacked.dir.display()
            );
        }
    }
    let store = Store::open(&args.data_dir);
    let plan = plan(
        &args.inventory,
        &args.config,
        &store,
        &unpacked.name,
        args.cluster_dir.as_deref(),
    )?;
    let manifest = store.manifest(&unpacked.name)?;
    let ctx = DeployContext {
        store,
        bundle: unpacked.name.clone(),
        manifest,
    };
    let opts = options(&args.ssh, &plan, &args.limit);
    if !args.json {
        eprintln!(
            "installing {} ({} hosts, {} at a time); logs in {}",
            plan.cluster_name,
            plan.hosts.len(),
            opts.forks,
            opts.log_dir.display()
        );
    }
    let result = runtime()?.block_on(deploy::deploy(&plan, &ctx, &opts));
    let report = match result {
        Ok(r) => r,
        Err(DeployError::Preflight { findings, report }) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            let n = findings.iter().filter(|f| !f.warning).count();
            anyhow::bail!(
                "preflight found {n} problem(s); nothing was changed:\n{}",
                deploy::format_findings(&findings)
            );
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    let failed: Vec<&str> = report
        .hosts
        .iter()
        .filter(|h| h.status != deploy::Status::Ok)
        .map(|h| h.host.as_str())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} hosts did not finish: {} (see their logs above; fix and run ferry install again)",
            failed.len(),
            report.hosts.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(c) => c.clone(),
        None => args
            .inventory
            .parent()
            .unwrap_or(Path::new("."))
            .join("config.yml"),
    };
    let store = Store::open(&args.data_dir);
    let bundle = match &args.bundle_name {
        Some(b) => b.clone(),
        None => {
            let all = store.bundles()?;
            match all.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!(
                    "no bundle unpacked in {}: pass --data-dir",
                    args.data_dir.display()
                ),
                many => anyhow::bail!(
                    "several bundles in {} ({}): pass --bundle-name",
                    args.data_dir.display(),
                    many.join(", ")
                ),
            }
        }
    };
    let plan = plan(
        &args.inventory,
        &config,
        &store,
        &bundle,
        args.cluster_dir.as_deref(),
    )?;
    let opts = options(&args.ssh, &plan, &[]);
    let hosts = runtime()?.block_on(deploy::status::status(&plan, &opts));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
    } else {
        print!("{}", deploy::status::table(&hosts));
    }
    let bad: Vec<&str> = hosts
        .iter()
        .filter(|h| !h.healthy())
        .map(|h| h.host.as_str())
        .collect();
    if !bad.is_empty() {
        anyhow::bail!("not healthy: {}", bad.join(", "));
    }
    Ok(())
}
