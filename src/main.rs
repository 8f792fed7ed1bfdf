//! ferry: carry a production Kubernetes cluster across an air gap.
//! This file is the command line only; the work lives in the crates.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Carry a production Kubernetes cluster across an air gap"
)]
struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info`, `debug`, `ferry_installer=debug`.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Say more: ferry's debug messages (each ignored config key, each step's detail).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, sign, inspect, verify and unpack bundles.
    #[command(subcommand)]
    Bundle(cli::bundle::BundleCommand),
    /// Serve the unpacked images as a registry mirror, or push them to a registry.
    #[command(subcommand)]
    Registry(cli::registry::RegistryCommand),
    /// Render the cluster plan (certificates and every host's files) without touching hosts.
    Plan(cli::plan::PlanArgs),
    /// Verify and unpack a bundle, then deploy the cluster to the inventory's hosts.
    Install(cli::install::InstallArgs),
    /// Show services, etcd health and mirror reachability per host.
    Status(cli::install::StatusArgs),
    /// Day 2: move the cluster to a newer bundle, or back (--rollback).
    Upgrade(cli::upgrade::UpgradeArgs),
    /// Day 2: add hosts to the running cluster.
    #[command(subcommand)]
    Node(cli::node::NodeCommand),
    /// Day 2: etcd backup and restore.
    #[command(subcommand)]
    Etcd(cli::etcd::EtcdCommand),
    /// Day 2: the guide's drills, each leaving a dated report.
    #[command(subcommand)]
    Drill(cli::drill::DrillCommand),
    /// Day 2: certificates on the hosts.
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
    /// Take the cluster off every host (data too with --purge-data).
    Destroy(cli::destroy::DestroyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        true => format!(
            "{},ferry=debug,ferry_installer=debug,ferry_bundles=debug,ferry_builder=debug",
            cli.log
        ),
        false => cli.log.clone(),
    };
    init_logging(&filter);
    let result = match cli.command {
        Command::Bundle(cmd) => cli::bundle::run(cmd),
        Command::Registry(cmd) => cli::registry::run(cmd),
        Command::Plan(args) => cli::plan::run(args),
        Command::Install(args) => cli::install::run_install(args),
        Command::Status(args) => cli::install::run_status(args),
        Command::Node(cmd) => cli::node::run(cmd),
        Command::Upgrade(args) => cli::upgrade::run(args),
        Command::Etcd(cmd) => cli::etcd::run(cmd),
        Command::Drill(cmd) => cli::drill::run(cmd),
        Command::Certs(cmd) => cli::certs::run(cmd),
        Command::Destroy(args) => cli::destroy::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            ferry_installer::interrupt::wait_if_requested();
            eprintln!("error: {err:#}");
            ExitCode::from(cli::exit_code(&err))
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
