//! `ferry bundle unpack`.

use anyhow::Context;
use clap::Args;
use ferry_bundles::BundleSource;
use std::path::PathBuf;

/// Verifies the signature and every file of a bundle while unpacking it in one
/// streaming pass. Extraction goes to a staging directory inside the data dir
/// and is moved into place only when every check passed; on any failure the
/// data dir is left exactly as it was and the exit code is 3 for verification
/// failures. Image blobs go to the shared store DATA_DIR/blobs/sha256, the
/// rest to DATA_DIR/bundles/NAME. Re-running on an unpacked bundle is quick and
/// changes nothing. BUNDLE is a .tar.zst, a .parts.json or its first part.
#[derive(Args)]
pub struct UnpackArgs {
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: super::trust::TrustArgs,
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: UnpackArgs) -> anyhow::Result<()> {
    let src = BundleSource::open(&args.bundle)?;
    let trust = args.trust.resolve(&src)?;
    let report = ferry_installer::unpack::unpack(&src, &trust, &args.data_dir)
        .with_context(|| format!("unpacking into {}", args.data_dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.already_unpacked {
        println!(
            "{}: already unpacked in {} (bundle.json sha256 {}); nothing changed",
            report.name,
            report.dir.display(),
            report.manifest_sha256
        );
    } else {
        let mib = report.bytes as f64 / (1 << 20) as f64;
        println!(
            "unpacked {} into {}: {} files, {:.1} MiB verified in {:.1}s ({:.0} MiB/s); image blobs: {} new, {} already in the store",
            report.name,
            report.dir.display(),
            report.files,
            mib,
            report.seconds,
            mib / report.seconds.max(1e-6),
            report.blobs_new,
            report.blobs_reused
        );
    }
    Ok(())
}
