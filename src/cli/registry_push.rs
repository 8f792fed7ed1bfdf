use anyhow::Context;
use clap::Args;
use ferry_installer::registry::push::PushError;
use std::io::BufRead;
use std::path::PathBuf;

/// Copies every unpacked image (each index, every platform's manifest and
/// every blob, byte for byte so digests stay the same) into an existing
/// registry such as Harbor or distribution. Blobs the target already has are
/// skipped, and an image whose tag already has the same digest is skipped
/// whole. Transient errors (connection resets, 5xx) are retried with backoff.
///
/// Naming: the upstream host is kept as a path component under the prefix:
/// `--to harbor.corp/k8s` pushes `registry.k8s.io/pause:3.9` as
/// `harbor.corp/k8s/registry.k8s.io/pause:3.9`. Point containerd at it with
/// `[host."https://harbor.corp/v2/k8s/registry.k8s.io"]` and
/// `override_path = true` in `certs.d/registry.k8s.io/hosts.toml`.
#[derive(Args)]
pub struct PushArgs {
    /// The data directory bundles were unpacked into.
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
    /// Target registry: HOST[:PORT][/PREFIX] (for Harbor the prefix is the project).
    #[arg(long = "to", value_name = "HOST[:PORT][/PREFIX]")]
    pub to: String,
    /// Talk plain HTTP to the target instead of HTTPS.
    #[arg(long)]
    pub plain_http: bool,
    /// CA certificate (PEM) to trust for the target, in addition to the system roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// User name for the target (basic auth or token exchange).
    #[arg(long, requires = "password_stdin")]
    pub user: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// Blobs uploaded concurrently.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let credentials = match args.user {
        Some(user) => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            anyhow::ensure!(
                !password.is_empty(),
                "--password-stdin: stdin gave an empty password"
            );
            Some((user, password))
        }
        None => None,
    };
    let user = credentials.as_ref().map(|(user, _)| user.clone());
    let opts = ferry_installer::registry::PushOptions {
        data_dir: args.data_dir,
        target: args.to.clone(),
        plain_http: args.plain_http,
        ca: args.ca,
        credentials,
        concurrency: args.jobs,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(ferry_installer::registry::push(opts))
        .map_err(|e| explain_auth(e, user.as_deref()))
        .with_context(|| format!("registry push to {}", args.to))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "pushed {} images ({} already present) to {}: {} blobs uploaded ({} bytes), {} blobs already there, {} manifests",
            report.images_pushed,
            report.images_skipped,
            report.target,
            report.blobs_pushed,
            report.bytes_pushed,
            report.blobs_skipped,
            report.manifests_pushed
        );
        for image in report.images.iter().filter(|i| i.pushed_digest != i.digest) {
            println!(
                "  {} is an index of the carried platforms ({}): the target refused the upstream index {}, whose other entries the bundle does not carry",
                image.target, image.pushed_digest, image.digest
            );
        }
    }
    Ok(())
}

/// Says plainly that the registry refused the credentials (or wants some),
/// naming the user; the password is never part of any message.
fn explain_auth(err: PushError, user: Option<&str>) -> anyhow::Error {
    if !err.is_authentication() {
        return err.into();
    }
    let what = match user {
        Some(user) => format!(
            "authentication failed as user {user:?}: the registry refused the credentials; \
             check --user and the password given on stdin"
        ),
        None => "authentication failed: the registry wants credentials; \
                 give --user and --password-stdin"
            .to_owned(),
    };
    anyhow::Error::new(err).context(what)
}
