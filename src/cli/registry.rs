use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve the unpacked images read-only over the OCI distribution API.
    Serve(ServeArgs),
    /// Copy every image into an existing registry.
    Push(super::registry_push::PushArgs),
}

/// Serves every unpacked bundle's images as a read-only registry mirror.
///
/// Clients may name an image with containerd's `?ns=HOST` parameter
/// (`/v2/pause/manifests/3.9?ns=registry.k8s.io`), with the upstream host as
/// the first path component (`/v2/registry.k8s.io/pause/manifests/3.9`), or by
/// path alone when only one upstream registry has that path. Manifests and
/// indexes are served byte-for-byte as stored; a client whose Accept header
/// excludes the stored media type gets 404 MANIFEST_UNKNOWN (the mirror never
/// converts or picks a platform for it). The catalog reloads on SIGHUP and
/// when a bundle is unpacked; SIGTERM/SIGINT shut down gracefully. The bound
/// address is printed to stdout once listening.
#[derive(Args)]
pub struct ServeArgs {
    /// The data directory bundles were unpacked into.
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:5000")]
    pub listen: SocketAddr,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<()> {
    match cmd {
        RegistryCommand::Serve(args) => serve(args),
        RegistryCommand::Push(args) => super::registry_push::run(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tls = args.tls_cert.zip(args.tls_key);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let opts = ferry_installer::registry::ServeOptions {
        data_dir: args.data_dir,
        listen: args.listen,
        tls,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferry-registry")
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(ferry_installer::registry::serve(opts, |addr| {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "listening on {scheme}://{addr}");
            let _ = out.flush();
        }))
        .context("registry serve")
}
