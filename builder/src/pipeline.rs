//! `ferry bundle build`: catalog + profile -> fetch (bounded, cached) ->
//! closure lint -> bundle.json -> sign -> write -> re-read and verify.

use crate::assemble;
use crate::binaries::{self, ContentFile};
use crate::cache::Cache;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::fetch::Ctx;
use crate::images;
use crate::layout;
use crate::lint;
use crate::mirror::Mirrors;
use crate::profile::Profile;
use crate::progress::Progress;
use ferry_bundles::{
    BundleSource, ContentSource, NullSink, SigningKey, Trust, TrustedKeys, WriteOptions,
};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub kubernetes: String,
    /// Built-in profile name or path to a profile .toml.
    pub profile: String,
    /// Default: every platform of the catalog.
    pub platforms: Option<Vec<String>>,
    /// OS sources to carry packages for (default: the profile's; `none`: none).
    pub os: Option<Vec<String>>,
    pub mirrors: Vec<String>,
    pub sign_key: Option<PathBuf>,
    /// Explicit insecure choice: write an unsigned bundle.
    pub unsigned: bool,
    pub split: Option<u64>,
    pub cache_dir: PathBuf,
    /// Overrides the built-in catalogs (`<version>.toml`) and profiles (`profiles/<name>.toml`).
    pub catalog_dir: Option<PathBuf>,
    pub output: PathBuf,
    /// Concurrent downloads.
    pub concurrency: usize,
    /// ferry version recorded in bundle.json.
    pub builder_version: String,
    /// SOURCE_DATE_EPOCH: `created` and tar mtimes.
    pub source_date_epoch: Option<i64>,
    /// No progress bars even on a TTY (plain lines).
    pub plain: bool,
    /// `PLATFORM=PATH`: ferry executables to carry as `bin/<os>-<arch>/ferry`.
    pub ferry_binaries: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub name: String,
    pub outputs: Vec<PathBuf>,
    pub kubernetes: String,
    pub platforms: Vec<String>,
    pub files: usize,
    pub components: usize,
    pub images: usize,
    /// Packages over every OS package set.
    pub os_packages: usize,
    pub content_bytes: u64,
    pub compressed_bytes: u64,
    pub downloaded_bytes: u64,
    pub downloads: u64,
    pub cache_hits: u64,
    pub manifest_sha256: String,
    pub signed: bool,
    pub seconds: f64,
}

pub fn build(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let catalog = Catalog::load(&opts.kubernetes, opts.catalog_dir.as_deref())?;
    let profile_dir = opts.catalog_dir.as_ref().map(|d| d.join("profiles"));
    let profile = Profile::load(&opts.profile, profile_dir.as_deref())?;
    let platforms = match &opts.platforms {
        Some(p) if !p.is_empty() => p.clone(),
        _ => catalog.platforms.clone(),
    };
    let mirrors = Mirrors::parse(&opts.mirrors)?;
    let key = match (&opts.sign_key, opts.unsigned) {
        (Some(_), true) => return Err(Error::Usage("--sign-key and --unsigned exclude each other".into())),
        (Some(k), false) => Some(SigningKey::load(k).map_err(Error::Bundle)?),
        (None, true) => None,
        (None, false) => {
            return Err(Error::Usage(
                "refusing to build an unsigned bundle: pass --sign-key KEY (make one with `ferry bundle keygen -o KEYBASE`), \
                 or --unsigned to accept an unsigned bundle"
                    .into(),
            ))
        }
    };
    let addons: Vec<String> = profile
        .addons
        .iter()
        .map(|a| a.name.clone())
        .chain(std::iter::once(profile.cni.clone()))
        .collect();
    let artifacts = catalog.artifacts(&platforms, profile.component_filter(), &addons)?;
    let mut selfbins = Vec::new();
    for arg in &opts.ferry_binaries {
        let (p, path) = crate::selfbin::parse(arg)?;
        if !platforms.contains(&p) {
            return Err(Error::Usage(format!(
                "--ferry-binary {arg}: {p} is not among the bundle's platforms"
            )));
        }
        selfbins.push(crate::selfbin::content(&p, &path, &opts.builder_version)?);
    }
    let os_sources = os_sources(opts, &profile)?;
    let needed = profile.needed_images(&catalog)?;
    let sources = needed
        .iter()
        .map(|n| mirrors.map_image(&n.reference))
        .collect::<Result<Vec<_>>>()?;

    let cache = Cache::open(&opts.cache_dir)?;
    let progress = Progress::new(opts.plain);
    progress.line(format!(
        "building {} for Kubernetes {} ({}), profile {}: {} files, {} images; cache {}",
        opts.output.display(),
        catalog.kubernetes,
        platforms.join(", "),
        profile.name,
        artifacts.len(),
        sources.len(),
        cache.root().display()
    ));
    let ctx = Ctx::new(cache.clone(), progress.clone(), opts.concurrency)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(4)
        .build()
        .map_err(|e| Error::io("(tokio runtime)", e))?;
    let (bin_results, pulled, (os_files, os_sets)) = rt.block_on(async {
        let bins = futures::stream::iter(artifacts.iter())
            .map(|a| binaries::fetch_artifact(&ctx, &mirrors, &catalog.origin, a))
            .buffer_unordered(32)
            .try_collect::<Vec<_>>();
        let imgs = pull_images(&ctx, &sources, &platforms);
        let os = crate::ospkg::carry(
            &ctx,
            &mirrors,
            crate::ospkg::Request {
                sources: &os_sources,
                platforms: &platforms,
                packages: &profile.os_packages,
            },
        );
        futures::try_join!(bins, imgs, os)
    })?;

    let mut files: BTreeMap<String, ContentFile> = BTreeMap::new();
    let mut components = Vec::new();
    for (fs, cs) in bin_results {
        for f in fs {
            insert(&mut files, f)?;
        }
        components.extend(cs);
    }
    for (f, c) in selfbins {
        insert(&mut files, f)?;
        components.push(c);
    }
    for f in os_files {
        insert(&mut files, f)?;
    }
    for f in layout::layout_files(&cache, &pulled)?.into_values() {
        insert(&mut files, f)?;
    }
    let mut closure = needed.clone();
    closure.extend(lint::artifact_needs(&artifacts, &files, &pulled)?);
    lint::check(&closure, &platforms, &pulled, &files)?;

    let epoch = match opts.source_date_epoch {
        Some(e) => e,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let name = assemble::bundle_name(&opts.output);
    let manifest = assemble::manifest(assemble::Inputs {
        name: &name,
        created_epoch: epoch,
        builder: &opts.builder_version,
        kubernetes: &catalog.kubernetes,
        platforms: &platforms,
        components,
        images: &pulled,
        files: &files,
        os_packages: os_sets,
    })?;
    let manifest_bytes = manifest.to_bytes();
    let manifest_sha256 = hex::encode(Sha256::digest(&manifest_bytes));
    let signature = match &key {
        Some(k) => Some(k.sign(
            &manifest_bytes,
            &ferry_bundles::sign::trusted_comment(&manifest, &manifest_bytes),
        )?),
        None => None,
    };

    let contents: Vec<ContentSource> = manifest
        .files
        .iter()
        .zip(files.values())
        .map(|(entry, f)| ContentSource {
            entry: entry.clone(),
            source: f.source.clone(),
        })
        .collect();
    progress.line(format!(
        "writing {} ({} files, {})",
        opts.output.display(),
        contents.len(),
        crate::fetch::human(manifest.content_bytes())
    ));
    let wopts = WriteOptions {
        split: opts.split,
        mtime: opts.source_date_epoch.map(|e| e.max(0) as u64).unwrap_or(0),
        ..WriteOptions::default()
    };
    let written = ferry_bundles::write_bundle(
        &opts.output,
        &manifest_bytes,
        signature.as_deref(),
        &contents,
        &wopts,
    )?;

    // Re-read the output with the installer's reader before claiming success.
    let first = written
        .outputs
        .first()
        .cloned()
        .unwrap_or_else(|| opts.output.clone());
    let check_path = written
        .outputs
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".parts.json"))
        .cloned()
        .unwrap_or(first);
    let src = BundleSource::open(&check_path)?;
    // Signed: check against the key's own public half, like an installer would.
    let pub_dir =
        tempfile::tempdir_in(cache.root().join("tmp")).map_err(|e| Error::io(cache.root(), e))?;
    let trust = match &key {
        Some(k) => {
            let p = pub_dir.path().join("signing.pub");
            std::fs::write(&p, k.public_key_text()?).map_err(|e| Error::io(&p, e))?;
            Trust::Keys(TrustedKeys::load(&[p])?)
        }
        None => Trust::InsecureUnsigned,
    };
    let verified = ferry_bundles::verify_and_extract(&src, &trust, &mut NullSink)?;
    if verified.manifest_sha256 != manifest_sha256 {
        return Err(Error::Usage(format!(
            "{}: re-read bundle.json has sha256 {}, wrote {manifest_sha256}",
            check_path.display(),
            verified.manifest_sha256
        )));
    }

    Ok(BuildReport {
        name,
        outputs: written.outputs,
        kubernetes: catalog.kubernetes.clone(),
        platforms: manifest.platforms.clone(),
        files: manifest.files.len(),
        components: manifest.components.len(),
        images: manifest.images.len(),
        os_packages: manifest.os_packages.iter().map(|s| s.packages.len()).sum(),
        content_bytes: manifest.content_bytes(),
        compressed_bytes: written.compressed_bytes,
        downloaded_bytes: ctx.stats.downloaded_bytes.load(Ordering::Relaxed),
        downloads: ctx.stats.downloads.load(Ordering::Relaxed),
        cache_hits: ctx.stats.cache_hits.load(Ordering::Relaxed),
        manifest_sha256,
        signed: key.is_some(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The OS sources `--os` names (or the profile does); `none` names none.
fn os_sources(
    opts: &BuildOptions,
    profile: &Profile,
) -> Result<Vec<crate::ospkg::source::OsSource>> {
    let names = opts.os.as_ref().unwrap_or(&profile.os);
    if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            return Err(Error::Usage(format!(
                "--os {}: `none` excludes other names",
                names.join(",")
            )));
        }
        return Ok(Vec::new());
    }
    if !names.is_empty() && profile.os_packages.is_empty() {
        return Err(Error::data(
            &profile.origin,
            "os_packages",
            "is empty, so the OS package sets would be empty",
        ));
    }
    names
        .iter()
        .map(|n| crate::ospkg::source::OsSource::load(n, opts.catalog_dir.as_deref()))
        .collect()
}

async fn pull_images(
    ctx: &Ctx,
    sources: &[crate::mirror::ImageSource],
    platforms: &[String],
) -> Result<Vec<images::PulledImage>> {
    let client = images::client(sources);
    let pulled: Vec<images::PulledImage> = futures::stream::iter(sources.iter())
        .map(|s| images::resolve(ctx, &client, s, platforms))
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let needs: Vec<&images::BlobNeed> = pulled.iter().flat_map(|p| p.needs.iter()).collect();
    futures::stream::iter(needs)
        .map(|n| images::fetch_blob(ctx, &client, n))
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(pulled)
}

fn insert(files: &mut BTreeMap<String, ContentFile>, f: ContentFile) -> Result<()> {
    if let Some(prev) = files.get(&f.path) {
        if prev.sha256 != f.sha256 {
            return Err(Error::Usage(format!(
                "two different files for bundle path {}",
                f.path
            )));
        }
        return Ok(());
    }
    files.insert(f.path.clone(), f);
    Ok(())
}
