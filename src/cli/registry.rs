use anyhow::Context;
use clap::{Args, Subcommand};
use ferry_installer::registry::Limits;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
///
/// Slow, idle and excess connections are closed (see the limit options);
/// refused connections are logged at most once per client address every 10 s.
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
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Connection limits; the defaults suit a master serving a few hundred nodes.
#[derive(Args)]
#[command(next_help_heading = "Connection limits")]
pub struct LimitArgs {
    /// Seconds a client gets to send a complete request head, counted from
    /// connect (first request) or from the head's first byte.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value_t = Secs(Limits::DEFAULT.header_read_timeout))]
    pub header_read_timeout: Secs,
    /// Seconds a connection may sit between requests, and a response may
    /// stall because the client stopped reading, before it is closed.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value_t = Secs(Limits::DEFAULT.idle_timeout))]
    pub idle_timeout: Secs,
    /// Seconds a TLS client gets to finish its handshake.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value_t = Secs(Limits::DEFAULT.tls_handshake_timeout))]
    pub tls_handshake_timeout: Secs,
    /// Connections held open at once; more are closed at accept. Keep well
    /// under the open-file limit (the unit sets LimitNOFILE=65536).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), default_value_t = Limits::DEFAULT.max_connections as u64)]
    pub max_connections: u64,
    /// Connections held open at once from one client IP address; more are
    /// closed at accept.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), default_value_t = Limits::DEFAULT.max_connections_per_ip as u64)]
    pub max_connections_per_ip: u64,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2) in bytes;
    /// larger ones get 431.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..), default_value_t = Limits::DEFAULT.max_header_bytes as u32)]
    pub max_header_bytes: u32,
    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), default_value_t = Limits::DEFAULT.h2_max_streams)]
    pub h2_max_streams: u32,
    /// HTTP/2 streams reset by the client but not yet handled before the
    /// connection is closed (the "rapid reset" attack bound).
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.h2_max_pending_resets as u64)]
    pub h2_max_pending_resets: u64,
    /// Seconds between HTTP/2 keep-alive pings (0: no pings).
    #[arg(long, value_name = "SECS", value_parser = secs_or_zero, default_value_t = Secs(Limits::DEFAULT.h2_keepalive_interval))]
    pub h2_keepalive_interval: Secs,
    /// Seconds to wait for a ping's answer before closing the connection.
    #[arg(long, value_name = "SECS", value_parser = secs, default_value_t = Secs(Limits::DEFAULT.h2_keepalive_timeout))]
    pub h2_keepalive_timeout: Secs,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            header_read_timeout: self.header_read_timeout.0,
            idle_timeout: self.idle_timeout.0,
            tls_handshake_timeout: self.tls_handshake_timeout.0,
            max_connections: usize_of(self.max_connections),
            max_connections_per_ip: usize_of(self.max_connections_per_ip),
            max_header_bytes: self.max_header_bytes as usize,
            h2_max_streams: self.h2_max_streams,
            h2_max_pending_resets: usize_of(self.h2_max_pending_resets),
            h2_keepalive_interval: self.h2_keepalive_interval.0,
            h2_keepalive_timeout: self.h2_keepalive_timeout.0,
        }
    }
}

/// A duration given in seconds on the command line (fractions allowed).
#[derive(Clone, Copy, Debug)]
pub struct Secs(pub Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// Seconds above zero.
fn secs(s: &str) -> Result<Secs, String> {
    match secs_or_zero(s)? {
        Secs(d) if d.is_zero() => Err("must be above 0 seconds".into()),
        d => Ok(d),
    }
}

fn secs_or_zero(s: &str) -> Result<Secs, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 10 or 0.5)"))?;
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{s:?} is not a number of seconds from 0 to a few days"))
        .and_then(|d| {
            if d > Duration::from_secs(7 * 86400) {
                Err(format!("{s:?} seconds is more than a week"))
            } else {
                Ok(Secs(d))
            }
        })
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
        limits: args.limits.limits(),
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
