//! `ferry upgrade`.

use super::install::{config_or_beside, print_progress, print_report, SshArgs};
use clap::Args;
use ferry_bundles::BundleSource;
use ferry_installer::deploy::node_roll::{MaxUnavailable, NodeRoll};
use ferry_installer::install::ClusterInputs;
use ferry_installer::upgrade::{self, UpgradeOutcome, UpgradeRequest};
use std::path::PathBuf;
use std::time::Duration;

/// Moves the cluster to a newer bundle (one Kubernetes minor version at a
/// time), or back with --rollback. Verifies and unpacks the bundle beside
/// the one the cluster runs (the registry mirrors then serve both), checks
/// the version skew, requires every etcd member healthy, takes an etcd
/// snapshot on a member, then rolls: etcd members one at a time, masters one
/// at a time (each /readyz and the leases held before the next), nodes in batches (cordon,
/// drain, upgrade, uncordon), addons. Progress is recorded in
/// CLUSTER_DIR/upgrade.json: a re-run resumes, and a finished upgrade run
/// again changes nothing.
#[derive(Args)]
pub struct UpgradeArgs {
    /// The newer bundle: .tar.zst, .parts.json or its first part.
    #[arg(
        long,
        required_unless_present = "rollback",
        conflicts_with = "rollback"
    )]
    pub bundle: Option<PathBuf>,
    /// Return to the bundle the last upgrade came from (it must still be unpacked).
    #[arg(long)]
    pub rollback: bool,
    #[arg(long)]
    pub inventory: PathBuf,
    /// config.yml (default: config.yml next to the inventory).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub trust: super::trust::TrustArgs,
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
    /// Nodes out of service at once: a count or a percentage (25%).
    #[arg(long, default_value = "1", value_parser = parse_max_unavailable)]
    pub max_unavailable: MaxUnavailable,
    /// How long draining a node may take, in seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout: u64,
    /// Accept a lower version (a rollback by hand).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Print the order and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_max_unavailable(s: &str) -> Result<MaxUnavailable, String> {
    s.parse()
}

pub fn run(args: UpgradeArgs) -> anyhow::Result<()> {
    let bundle = match &args.bundle {
        Some(path) => {
            let source = BundleSource::open(path)?;
            let trust = args.trust.resolve(&source)?;
            Some((source, trust))
        }
        None => None,
    };
    let request = UpgradeRequest {
        bundle,
        data_dir: args.data_dir,
        cluster: ClusterInputs {
            config: config_or_beside(&args.config, &args.inventory),
            inventory: args.inventory,
            cluster_dir: args.cluster_dir,
            new_cluster: false,
            allow_even_etcd: false,
        },
        access: args.ssh.access(),
        roll: NodeRoll {
            max_unavailable: args.max_unavailable,
            drain_timeout: Duration::from_secs(args.drain_timeout),
        },
        dry_run: args.dry_run,
        allow_downgrade: args.allow_downgrade,
    };
    let json = args.json;
    let outcome = upgrade::upgrade(request, |event| {
        if !json {
            print_progress(event);
        }
    })?;
    match outcome {
        UpgradeOutcome::DryRun { from, to, order } => {
            println!(
                "upgrade {} (Kubernetes {}) to {} (Kubernetes {}), in this order:",
                from.bundle, from.kubernetes, to.bundle, to.kubernetes
            );
            for line in order {
                println!("  {line}");
            }
            Ok(())
        }
        UpgradeOutcome::Done {
            from,
            to,
            snapshot,
            report,
        } => {
            if let (Some(s), false) = (&snapshot, json) {
                eprintln!(
                    "etcd snapshot before the upgrade: {} on {} (revision {})",
                    s.path.display(),
                    s.host,
                    s.revision
                );
            }
            print_report(&report, json)?;
            if !report.ok() {
                anyhow::bail!(
                    "the upgrade from {} to {} did not finish (see the report above); fix what failed and run the same command again: it resumes",
                    from.bundle,
                    to.bundle
                );
            }
            if !json {
                eprintln!(
                    "the cluster runs {} (Kubernetes {})",
                    to.bundle, to.kubernetes
                );
            }
            Ok(())
        }
    }
}
