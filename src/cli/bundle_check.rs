//! `ferry bundle keygen`, `inspect` and `verify`.

use anyhow::Context;
use clap::Args;
use ferry_bundles::{read_manifest, verify_and_extract, BundleSource, NullSink};
use std::path::PathBuf;
use std::time::Instant;

/// Where `verify` looks for trusted public keys when no --trust is given.
use super::trust::DEFAULT_TRUST_DIR;

#[derive(Args)]
pub struct KeygenArgs {
    /// Base path: writes BASE.pub and BASE.key.
    #[arg(short = 'o', long = "output")]
    pub base: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    pub bundle: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Where install and unpack keep bundles: whether this bundle is
    /// unpacked there, and whether its signature was checked then.
    #[arg(long, default_value = "/var/lib/ferry")]
    pub data_dir: PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    #[command(flatten)]
    pub trust: super::trust::TrustArgs,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let (public, secret) = ferry_bundles::generate_keypair(&args.base)?;
    println!("public key: {}", public.display());
    println!(
        "secret key: {} (mode 0600, unencrypted: keep it off shared disks)",
        secret.display()
    );
    println!(
        "sign with `ferry bundle build --sign-key {}`; installers trust the public key via --trust or {DEFAULT_TRUST_DIR}",
        secret.display()
    );
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The signature's trusted comment (unverified: inspect shows what the bundle claims).
fn trusted_comment(sig: &str) -> Option<&str> {
    sig.lines()
        .find_map(|l| l.strip_prefix("trusted comment: "))
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let src = BundleSource::open(&args.bundle)?;
    let head =
        read_manifest(&src).with_context(|| format!("reading bundle.json of {}", src.display()))?;
    let m = &head.manifest;
    let carried: Vec<_> = m.files.iter().filter(|f| !f.in_base).collect();
    let compressed = src.len()?;
    let parts = match &src {
        BundleSource::Single(_) => 1,
        BundleSource::Parts { parts, .. } => parts.len(),
    };
    let unpacked = ferry_installer::store::Store::open(&args.data_dir).signature_checked(&m.name);
    if args.json {
        let out = serde_json::json!({
            "bundle": src.display(),
            "parts": parts,
            "compressed_bytes": compressed,
            "content_bytes": m.content_bytes(),
            "files": carried.len(),
            "files_in_base": m.files.len() - carried.len(),
            "signed": head.signature.is_some(),
            "trusted_comment": head.signature.as_deref().and_then(trusted_comment),
            "unpacked": unpacked.map(|checked| serde_json::json!({
                "data_dir": args.data_dir,
                "signature_checked": checked,
            })),
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "bundle:      {}{}",
        src.display(),
        if parts > 1 {
            format!(" ({parts} parts)")
        } else {
            String::new()
        }
    );
    println!("name:        {}", m.name);
    println!("kubernetes:  {}", m.kubernetes);
    println!("created:     {}", m.created);
    println!("builder:     {}", m.builder);
    println!("platforms:   {}", m.platforms.join(", "));
    match head.signature.as_deref() {
        Some(sig) => println!(
            "signature:   present (not checked here; run `ferry bundle verify`): {}",
            trusted_comment(sig).unwrap_or("")
        ),
        None => println!("signature:   none (unsigned)"),
    }
    match unpacked {
        Some(true) => println!(
            "unpacked:    in {} (signature checked at unpack)",
            args.data_dir.display()
        ),
        Some(false) => println!(
            "unpacked:    in {}, WITHOUT a signature check (--insecure-skip-signature); unpack it again with --trust KEY.pub",
            args.data_dir.display()
        ),
        None => {}
    }
    if let Some(base) = &m.base {
        println!(
            "base:        {} (bundle.json sha256 {})",
            base.name, base.manifest_sha256
        );
    }
    println!(
        "size:        {} compressed, {} of content",
        human(compressed),
        human(m.content_bytes())
    );
    println!(
        "files:       {}{}",
        carried.len(),
        match m.files.len() - carried.len() {
            0 => String::new(),
            n => format!(" (+{n} in the base bundle)"),
        }
    );
    println!("\ncomponents ({}):", m.components.len());
    for c in &m.components {
        let size = m
            .file(&c.path)
            .map(|f| human(f.size))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<24} {:<12} {:<9} {:<12} {:>10}  {}",
            c.name,
            c.version,
            format!("{:?}", c.kind).to_lowercase(),
            c.platform.as_deref().unwrap_or("any"),
            size,
            c.path
        );
    }
    println!("\nimages ({}):", m.images.len());
    for i in &m.images {
        println!(
            "  {}\n    {}  [{}]",
            i.reference,
            i.digest,
            i.platforms.join(", ")
        );
        if !i.left_out.is_empty() {
            println!(
                "    left out: {} of the upstream index's entries ({})",
                i.left_out.len(),
                left_out_summary(&i.left_out)
            );
        }
        if let Some(sig) = &i.signature {
            println!("    signature: {} ({})", sig.reference, sig.digest);
        }
    }
    print_os_sets(m);
    Ok(())
}

/// Each OS package set: distribution, platform, what was asked for, and size.
fn print_os_sets(m: &ferry_bundles::BundleManifest) {
    println!(
        "
OS package sets ({}):",
        m.os_packages.len()
    );
    for s in &m.os_packages {
        let prefix = format!("{}/", s.dir);
        let bytes: u64 = m
            .files
            .iter()
            .filter(|f| f.path.starts_with(&prefix))
            .map(|f| f.size)
            .sum();
        let requested: Vec<&str> = s.requested.iter().map(|r| r.package.as_str()).collect();
        println!(
            "  {:<14} {:<12} {:>3} packages {:>10}  {}  (for {} {}; requested: {})",
            s.name,
            s.platform,
            s.packages.len(),
            human(bytes),
            s.dir,
            s.os_id,
            s.version_id,
            requested.join(" ")
        );
    }
}

/// `3 platform not requested: linux/arm/v7, linux/ppc64le, linux/s390x; 3 foreign layers: windows/amd64 ...`
fn left_out_summary(left_out: &[ferry_bundles::LeftOut]) -> String {
    let mut by_reason: std::collections::BTreeMap<_, Vec<&str>> = Default::default();
    for e in left_out {
        by_reason.entry(e.reason).or_default().push(&e.platform);
    }
    by_reason
        .into_iter()
        .map(|(reason, platforms)| match reason {
            ferry_bundles::LeftOutReason::Attestation => {
                format!("{} {}", platforms.len(), reason.describe())
            }
            _ => format!(
                "{} {}: {}",
                platforms.len(),
                reason.describe(),
                platforms.join(", ")
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let src = BundleSource::open(&args.bundle)?;
    let trust = args.trust.resolve(&src)?;
    let started = Instant::now();
    let v = verify_and_extract(&src, &trust, &mut NullSink)
        .with_context(|| format!("verifying {}", src.display()))?;
    let carried = v.manifest.files.iter().filter(|f| !f.in_base).count();
    println!(
        "OK {}: {} {} (kubernetes {}), {} files, {} of content checked in {:.1}s; bundle.json sha256 {}",
        src.display(),
        v.manifest.name,
        if v.signature.is_some() && !args.trust.insecure_skip_signature { "signed by a trusted key" } else { "NOT signature-checked" },
        v.manifest.kubernetes,
        carried,
        human(v.manifest.content_bytes()),
        started.elapsed().as_secs_f64(),
        v.manifest_sha256,
    );
    Ok(())
}
