//! `ferry install` and `ferry status`.

use clap::Args;
use ferry_bundles::BundleSource;
use ferry_installer::deploy::{self, DeployError, DeployReport};
use ferry_installer::exec::{KnownHostsPolicy, SshOptions};
use ferry_installer::install::{
    self, ClusterInputs, HostAccess, InstallError, InstallEvent, InstallRequest,
};
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
    /// Replace the cluster CA, service-account key and encryption keys the
    /// hosts already hold with the cluster dir's. Without it, preflight stops
    /// when a host holds another cluster's (existing Secrets would become
    /// unreadable and every certificate and token would stop verifying).
    #[arg(long)]
    pub new_cluster: bool,
    /// Hash every placed file on every host. Without it, a host whose
    /// fingerprint (every placed file's size, mode, owner, inode and ctime,
    /// its units and sysctls) is the one recorded after the last install of
    /// the same plan is left alone.
    #[arg(long)]
    pub verify_hosts: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Per host: the plan's units and their state, etcd health, mirror reachability.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
}

/// The running cluster a day-2 command works on, and how to reach it.
#[derive(Args)]
pub struct RunningCluster {
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
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl RunningCluster {
    /// The bundle the cluster runs, and what planning it reads.
    pub(super) fn inputs(&self, allow_even_etcd: bool) -> anyhow::Result<(String, ClusterInputs)> {
        let bundle = match &self.bundle_name {
            Some(b) => b.clone(),
            None => only_bundle(&self.data_dir)?,
        };
        let inputs = ClusterInputs {
            config: config_or_beside(&self.config, &self.inventory),
            inventory: self.inventory.clone(),
            cluster_dir: self.cluster_dir.clone(),
            new_cluster: false,
            allow_even_etcd,
        };
        Ok((bundle, inputs))
    }
}

impl SshArgs {
    pub(super) fn access(&self) -> HostAccess {
        if self.ssh_known_hosts == KnownHostsPolicy::Off {
            eprintln!(
                "warning: --ssh-known-hosts off accepts any host key: a machine that answers at a host's address gets root's commands and the cluster's keys; use strict (with the hosts' keys in known_hosts) or accept-new"
            );
        }
        HostAccess {
            ssh: SshOptions {
                config_file: self.ssh_config.clone(),
                known_hosts: self.ssh_known_hosts,
                control_dir: None,
                connect_timeout: None,
            },
            forks: usize::from(self.forks),
        }
    }
}

pub fn run_install(args: InstallArgs) -> anyhow::Result<()> {
    let bundle = BundleSource::open(&args.bundle)?;
    let trust = args.trust.resolve(&bundle)?;
    let request = InstallRequest {
        bundle,
        trust,
        data_dir: args.data_dir,
        cluster: ClusterInputs {
            inventory: args.inventory,
            config: args.config,
            cluster_dir: args.cluster_dir,
            new_cluster: args.new_cluster,
            allow_even_etcd: false,
        },
        access: args.ssh.access(),
        limit: (!args.limit.is_empty()).then(|| args.limit.into_iter().collect::<BTreeSet<_>>()),
        verify_hosts: args.verify_hosts,
    };
    let json = args.json;
    let result = install::install(request, |event| {
        if !json {
            print_progress(event);
        }
    });
    // Preflight problems: every host's row is shown before the error.
    if let Err(InstallError::Deploy(DeployError::Preflight { report, .. })) = &result {
        print_report(report, json)?;
    }
    let outcome = result?;
    print_report(&outcome.report, json)?;
    let unfinished = outcome.unfinished_hosts();
    if !unfinished.is_empty() {
        anyhow::bail!(
            "{} of {} hosts did not finish: {} (see their logs above; fix and run ferry install again)",
            unfinished.len(),
            outcome.report.hosts.len(),
            unfinished.join(", ")
        );
    }
    Ok(())
}

pub(super) fn print_progress(event: InstallEvent<'_>) {
    match event {
        InstallEvent::Unpacked(bundle) if bundle.already_unpacked => eprintln!(
            "bundle {}: already unpacked in {}",
            bundle.name,
            bundle.dir.display()
        ),
        InstallEvent::Unpacked(bundle) => eprintln!(
            "bundle {}: verified and unpacked into {}",
            bundle.name,
            bundle.dir.display()
        ),
        InstallEvent::Deploying { plan, options } => eprintln!(
            "installing {} ({} hosts, {} at a time); logs in {}",
            plan.cluster_name,
            plan.hosts.len(),
            options.forks,
            options.log_dir.display()
        ),
    }
}

pub(super) fn print_report(report: &DeployReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let args = args.cluster;
    let (bundle, cluster) = args.inputs(false)?;
    if ferry_installer::store::Store::open(&args.data_dir).signature_checked(&bundle) == Some(false)
    {
        eprintln!(
            "warning: bundle {bundle} in {} was unpacked with --insecure-skip-signature: its signature was never checked; unpack it again with --trust KEY.pub",
            args.data_dir.display()
        );
    }
    let hosts = install::cluster_status(&args.data_dir, &bundle, &cluster, &args.ssh.access())?;
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

/// `--config`, else config.yml next to the inventory (as kubeasz keeps them).
pub(super) fn config_or_beside(config: &Option<PathBuf>, inventory: &Path) -> PathBuf {
    match config {
        Some(c) => c.clone(),
        None => inventory
            .parent()
            .unwrap_or(Path::new("."))
            .join("config.yml"),
    }
}

/// The name of the one bundle unpacked in `data_dir`.
pub(super) fn only_bundle(data_dir: &Path) -> anyhow::Result<String> {
    match Store::open(data_dir).bundles()?.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!(
            "no bundle unpacked in {}: pass --data-dir",
            data_dir.display()
        ),
        many => anyhow::bail!(
            "several bundles in {} ({}): pass --bundle-name",
            data_dir.display(),
            many.join(", ")
        ),
    }
}
