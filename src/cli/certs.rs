//! `ferry certs check` and `ferry certs renew`.

use super::install::RunningCluster;
use clap::{Args, Subcommand};
use ferry_installer::deploy::certs;
use ferry_installer::install;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Every certificate on every host: expiry, days left, and whether the
    /// host's copy is the cluster dir's.
    Check(CheckArgs),
    /// Issue every leaf certificate again and roll it out, one etcd member
    /// and one master at a time.
    Renew(RenewArgs),
}

/// Every leaf certificate (etcd's, the apiserver's, every client's and
/// kubeconfig's, each kubelet's serving certificate, the registry's) is
/// issued again for CERT_EXPIRY from now, with its key kept, and never past
/// its CA's expiry; the CAs are kept. The old PKI is kept whole in
/// <cluster-dir>/pki.before-renew-<time>. Then the cluster is deployed as
/// a re-run of the install: etcd members and masters restart one at a
/// time, each healthy (its /readyz, the VIP's, the controllers' leases)
/// before the next. Refused unless every etcd member is healthy. Ends with
/// the `certs check` table of every host.
#[derive(Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
}

/// Reads every certificate ferry placed (the .pem certificates and the
/// client certificates in kubeconfigs; never a key) on every host. Exits 1
/// when any expires within 30 days, differs from the cluster dir's, or
/// cannot be read.
#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub cluster: RunningCluster,
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Check(args) => check(&args.cluster),
        CertsCommand::Renew(args) => renew(&args.cluster),
    }
}

fn renew(args: &RunningCluster) -> anyhow::Result<()> {
    let (bundle, cluster) = args.inputs(false)?;
    let renewed = install::certs_renew(&args.data_dir, &bundle, &cluster, &args.ssh.access())?;
    eprintln!(
        "certificates issued again; the PKI as it was is kept in {}",
        renewed.kept.display()
    );
    if !args.json {
        print!("{}", renewed.report.table());
    }
    if !renewed.report.ok() {
        anyhow::bail!(
            "the new certificates are in the cluster dir but not on every host (see the report above); fix what failed and run `ferry install` with the same inventory: it places them without issuing them again"
        );
    }
    check(args)
}

fn check(args: &RunningCluster) -> anyhow::Result<()> {
    let (bundle, cluster) = args.inputs(false)?;
    let rows = install::certs_check(&args.data_dir, &bundle, &cluster, &args.ssh.access())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", certs::table(&rows));
    }
    let renew = rows.iter().filter(|r| r.needs_renewal()).count();
    if renew > 0 {
        anyhow::bail!(
            "{renew} of {} certificate(s) need attention: expiring within {} days, differing from the cluster dir, or unreadable",
            rows.len(),
            certs::WARN_DAYS
        );
    }
    Ok(())
}
