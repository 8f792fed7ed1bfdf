//! Images: pull an index (or a single manifest) by reference through the
//! mirrors with oci-client, keep the upstream bytes and digest as received,
//! pick one manifest per requested platform, and fetch every blob once into
//! the cache.

use crate::error::{Error, Result};
use crate::fetch::Ctx;
use crate::mirror::ImageSource;
use ferry_bundles::{LeftOut, LeftOutReason};
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

const ACCEPT: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// A blob an image needs, and a repository it can be fetched from.
#[derive(Debug, Clone)]
pub struct BlobNeed {
    pub digest: String,
    pub size: Option<u64>,
    pub from: Reference,
    pub image: String,
}

#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Upstream reference (`registry.k8s.io/pause:3.9`).
    pub reference: String,
    /// `sha256:<hex>` of the top-level manifest or index, as published.
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Requested platforms, sorted.
    pub platforms: Vec<String>,
    /// Per platform: the manifest digest and every blob it references.
    pub per_platform: BTreeMap<String, PlatformImage>,
    /// Blobs still to ensure in the cache (configs and layers).
    pub needs: Vec<BlobNeed>,
    /// Upstream index entries not carried, and why.
    pub left_out: Vec<LeftOut>,
    /// The cosign signature published beside the image, when there is one.
    pub signature: Option<PulledSignature>,
}

/// A cosign signature manifest (`<repo>:sha256-<hex>.sig`) and its blobs.
#[derive(Debug, Clone)]
pub struct PulledSignature {
    /// Full reference of the signature tag.
    pub reference: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Config and layer digests.
    pub blobs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub manifest: String,
    /// Config and layer digests.
    pub blobs: Vec<String>,
}

pub fn client(sources: &[ImageSource]) -> Client {
    let mut plain: Vec<String> = sources
        .iter()
        .filter(|s| s.plain_http)
        .map(|s| s.registry.clone())
        .collect();
    plain.sort();
    plain.dedup();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain),
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        read_timeout: Some(std::time::Duration::from_secs(120)),
        ..Default::default()
    })
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    platform: Option<PlatformSpec>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    urls: Vec<String>,
}

impl Descriptor {
    /// A buildkit attestation manifest rather than an image.
    fn is_attestation(&self) -> bool {
        self.annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
            || self
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
    }

    /// A layer registries may not redistribute (Windows base layers).
    fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
            || self
                .media_type
                .as_deref()
                .is_some_and(|m| m.contains(".foreign.") || m.contains(".nondistributable."))
    }

    fn platform_name(&self) -> String {
        match &self.platform {
            None => "unknown".into(),
            Some(p) => {
                let mut name = format!("{}/{}", p.os, p.architecture);
                if let Some(v) = &p.variant {
                    name = format!("{name}/{v}");
                }
                if let Some(v) = &p.os_version {
                    name = format!("{name} {v}");
                }
                name
            }
        }
    }
}

#[derive(Deserialize)]
struct PlatformSpec {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default, rename = "os.version")]
    os_version: Option<String>,
}

impl PlatformSpec {
    fn matches(&self, wanted: &str) -> bool {
        let (os, arch) = wanted.split_once('/').unwrap_or((wanted, ""));
        self.os == os
            && self.architecture == arch
            && (arch != "arm64" || self.variant.as_deref().is_none_or(|v| v == "v8"))
    }
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

fn parse_doc(image: &str, what: &str, bytes: &[u8]) -> Result<Doc> {
    serde_json::from_slice(bytes).map_err(|e| Error::Image {
        image: image.into(),
        reason: format!("{what}: {e}"),
    })
}

fn media_type_of(doc: &Doc) -> String {
    match &doc.media_type {
        Some(m) => m.clone(),
        None if doc.manifests.is_some() => OCI_IMAGE_INDEX_MEDIA_TYPE.into(),
        None => OCI_IMAGE_MEDIA_TYPE.into(),
    }
}

fn is_index(mt: &str) -> bool {
    mt == OCI_IMAGE_INDEX_MEDIA_TYPE || mt == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

fn hex_of(image: &str, digest: &str) -> Result<String> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_string)
        .ok_or_else(|| Error::Image {
            image: image.into(),
            reason: format!("unsupported digest {digest:?} (sha256 only)"),
        })
}

fn reference(src: &ImageSource) -> Reference {
    match (&src.digest, &src.tag) {
        (Some(d), _) => {
            Reference::with_digest(src.registry.clone(), src.repository.clone(), d.clone())
        }
        (None, t) => Reference::with_tag(
            src.registry.clone(),
            src.repository.clone(),
            t.clone().unwrap_or_else(|| "latest".into()),
        ),
    }
}

/// Manifest bytes by digest: from the cache, else from the registry.
async fn manifest_by_digest(
    ctx: &Ctx,
    client: &Client,
    image: &str,
    r: &Reference,
    digest: &str,
) -> Result<Vec<u8>> {
    let hex = hex_of(image, digest)?;
    let path = ctx.cache.blob_path(&hex);
    if let Ok(bytes) = std::fs::read(&path) {
        ctx.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        return Ok(bytes);
    }
    let _slot = ctx.slot().await;
    let by_digest = r.clone_with_digest(digest.to_string());
    let (bytes, got) = client
        .pull_manifest_raw(&by_digest, &RegistryAuth::Anonymous, ACCEPT)
        .await
        .map_err(|e| Error::Image {
            image: image.into(),
            reason: format!("manifest {digest}: {e}"),
        })?;
    if got != digest {
        return Err(Error::Image {
            image: image.into(),
            reason: format!("asked for {digest}, registry sent {got}"),
        });
    }
    ctx.stats
        .downloaded_bytes
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    ctx.cache.put_bytes(&bytes)?;
    Ok(bytes.to_vec())
}

/// Resolves `src` for `platforms`: the top manifest and each platform's
/// manifest go into the cache now; configs and layers are returned as needs.
pub async fn resolve(
    ctx: &Ctx,
    client: &Client,
    src: &ImageSource,
    platforms: &[String],
) -> Result<PulledImage> {
    let image = src.upstream.as_str();
    let r = reference(src);
    let (top, digest) = {
        let _slot = ctx.slot().await;
        client
            .pull_manifest_raw(&r, &RegistryAuth::Anonymous, ACCEPT)
            .await
            .map_err(|e| Error::Image {
                image: image.into(),
                reason: format!(
                    "pull {} (from {}): {e}",
                    src.pull_reference(),
                    if src.plain_http { "http" } else { "https" }
                ),
            })?
    };
    ctx.stats
        .downloaded_bytes
        .fetch_add(top.len() as u64, Ordering::Relaxed);
    // The exact bytes received: their digest is the upstream digest.
    ctx.cache.put_bytes(&top)?;
    let doc = parse_doc(image, "manifest", &top)?;
    let media_type = media_type_of(&doc);

    let mut per_platform = BTreeMap::new();
    let mut needs = Vec::new();
    let mut want: Vec<String> = platforms.to_vec();
    want.sort();
    want.dedup();

    let mut left_out = Vec::new();
    if is_index(&media_type) {
        let entries = doc.manifests.unwrap_or_default();
        for p in &want {
            let entry = entries.iter().find(|e| {
                !e.is_attestation() && e.platform.as_ref().is_some_and(|pl| pl.matches(p))
            });
            let Some(entry) = entry else {
                if let Some(nested) = entries
                    .iter()
                    .find(|e| e.media_type.as_deref().is_some_and(is_index))
                {
                    return Err(Error::Image {
                        image: image.into(),
                        reason: format!(
                            "{p} is not listed at the top of the index {digest}, which nests the index {}; nested indexes are not supported by the builder",
                            nested.digest
                        ),
                    });
                }
                return Err(Error::MissingPlatform {
                    image: image.into(),
                    platform: p.clone(),
                    digest: digest.clone(),
                });
            };
            if entry.media_type.as_deref().is_some_and(is_index) {
                return Err(Error::Image {
                    image: image.into(),
                    reason: format!("{p}: nested index is not supported"),
                });
            }
            let bytes = manifest_by_digest(ctx, client, image, &r, &entry.digest).await?;
            let child = parse_doc(image, &format!("{p} manifest {}", entry.digest), &bytes)?;
            if let Some(foreign) = child.layers.iter().flatten().find(|l| l.is_foreign()) {
                return Err(Error::Image {
                    image: image.into(),
                    reason: format!(
                        "{p} manifest {} has the non-distributable layer {} (served from {}); a bundle cannot carry it",
                        entry.digest,
                        foreign.digest,
                        foreign.urls.first().map(String::as_str).unwrap_or("another host")
                    ),
                });
            }
            let blobs = blobs_of(image, &child, &r, &mut needs)?;
            per_platform.insert(
                p.clone(),
                PlatformImage {
                    manifest: entry.digest.clone(),
                    blobs,
                },
            );
        }
        let carried: Vec<&str> = per_platform.values().map(|p| p.manifest.as_str()).collect();
        for entry in entries
            .iter()
            .filter(|e| !carried.contains(&e.digest.as_str()))
        {
            let reason = left_out_reason(ctx, client, image, &r, entry).await?;
            left_out.push(LeftOut {
                digest: entry.digest.clone(),
                platform: entry.platform_name(),
                reason,
            });
        }
    } else {
        // A single-platform image: its config says which platform it is.
        let cfg = doc.config.as_ref().ok_or_else(|| Error::Image {
            image: image.into(),
            reason: "manifest has no config".into(),
        })?;
        let cfg_hex = hex_of(image, &cfg.digest)?;
        fetch_blob(
            ctx,
            client,
            &BlobNeed {
                digest: cfg.digest.clone(),
                size: cfg.size,
                from: r.clone(),
                image: image.into(),
            },
        )
        .await?;
        let cfg_path = ctx.cache.blob_path(&cfg_hex);
        let bytes = std::fs::read(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let c: ImageConfig = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
            image: image.into(),
            reason: format!("config: {e}"),
        })?;
        let have = format!("{}/{}", c.os, c.architecture);
        if let Some(p) = want.iter().find(|p| **p != have) {
            return Err(Error::MissingPlatform {
                image: image.into(),
                platform: p.clone(),
                digest: format!("{digest}, a single {have} manifest"),
            });
        }
        let blobs = blobs_of(image, &doc, &r, &mut needs)?;
        per_platform.insert(
            have,
            PlatformImage {
                manifest: digest.clone(),
                blobs,
            },
        );
    }
    let signature = signature(ctx, client, src, &r, &digest, &mut needs).await?;
    ctx.progress.line(format!(
        "resolved {image} ({digest}, {}{}{})",
        want.join(", "),
        if left_out.is_empty() {
            String::new()
        } else {
            format!("; {} upstream entries left out", left_out.len())
        },
        if signature.is_some() { "; signed" } else { "" }
    ));
    Ok(PulledImage {
        reference: image.to_string(),
        digest,
        media_type,
        size: top.len() as u64,
        platforms: want,
        per_platform,
        needs,
        left_out,
        signature,
    })
}

/// Why an index entry stays out of the bundle. Entries of other platforms are
/// read (manifests are small) to tell those with foreign layers apart.
async fn left_out_reason(
    ctx: &Ctx,
    client: &Client,
    image: &str,
    r: &Reference,
    entry: &Descriptor,
) -> Result<LeftOutReason> {
    if entry.is_attestation() {
        return Ok(LeftOutReason::Attestation);
    }
    if entry.media_type.as_deref().is_some_and(is_index) {
        return Ok(LeftOutReason::PlatformNotRequested);
    }
    let bytes = manifest_by_digest(ctx, client, image, r, &entry.digest).await?;
    let child = parse_doc(image, &format!("manifest {}", entry.digest), &bytes)?;
    Ok(
        if child.layers.iter().flatten().any(Descriptor::is_foreign) {
            LeftOutReason::ForeignLayers
        } else {
            LeftOutReason::PlatformNotRequested
        },
    )
}

/// The cosign signature of the image, if upstream publishes one: the manifest
/// tagged `sha256-<hex>.sig` in the same repository. Sites verify signatures
/// offline, so a bundle carries them; a registry answering anything other
/// than "unknown manifest" fails the build rather than dropping it silently.
async fn signature(
    ctx: &Ctx,
    client: &Client,
    src: &ImageSource,
    r: &Reference,
    digest: &str,
    needs: &mut Vec<BlobNeed>,
) -> Result<Option<PulledSignature>> {
    let image = src.upstream.as_str();
    let tag = format!("sha256-{}.sig", hex_of(image, digest)?);
    let sig_ref = Reference::with_tag(r.registry().into(), r.repository().into(), tag.clone());
    let pulled = {
        let _slot = ctx.slot().await;
        client
            .pull_manifest_raw(&sig_ref, &RegistryAuth::Anonymous, ACCEPT)
            .await
    };
    let (bytes, sig_digest) = match pulled {
        Ok(found) => found,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => {
            return Err(Error::Image {
                image: image.into(),
                reason: format!("looking up its cosign signature {tag}: {e}"),
            })
        }
    };
    ctx.cache.put_bytes(&bytes)?;
    let doc = parse_doc(image, &format!("signature {tag}"), &bytes)?;
    let blobs = blobs_of(image, &doc, &sig_ref, needs)?;
    Ok(Some(PulledSignature {
        reference: format!("{}:{tag}", repository_of(image)),
        digest: sig_digest,
        media_type: media_type_of(&doc),
        size: bytes.len() as u64,
        blobs,
    }))
}

/// `quay.io/cilium/cilium:v1.15.6` (or `...@sha256:..`) -> `quay.io/cilium/cilium`.
fn repository_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(i) if i > name.rfind('/').unwrap_or(0) => &name[..i],
        _ => name,
    }
}

fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    match e {
        E::ImageManifestNotFoundError(_) => true,
        E::RegistryError { envelope, .. } => envelope.errors.iter().any(|err| {
            matches!(
                err.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        E::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

fn blobs_of(
    image: &str,
    doc: &Doc,
    r: &Reference,
    needs: &mut Vec<BlobNeed>,
) -> Result<Vec<String>> {
    let cfg = doc.config.as_ref().ok_or_else(|| Error::Image {
        image: image.into(),
        reason: "manifest has no config".into(),
    })?;
    let mut out = Vec::new();
    for d in std::iter::once(cfg).chain(doc.layers.iter().flatten()) {
        hex_of(image, &d.digest)?;
        out.push(d.digest.clone());
        needs.push(BlobNeed {
            digest: d.digest.clone(),
            size: d.size,
            from: r.clone(),
            image: image.into(),
        });
    }
    Ok(out)
}

/// Ensures one blob is in the cache (downloaded at most once per digest).
pub async fn fetch_blob(ctx: &Ctx, client: &Client, need: &BlobNeed) -> Result<()> {
    let hex = hex_of(&need.image, &need.digest)?;
    let _guard = ctx.lock_digest(&hex).await;
    if let Some(size) = ctx.cache.blob_size(&hex) {
        if need.size.is_none_or(|s| s == size) {
            ctx.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    }
    let _slot = ctx.slot().await;
    let err = |reason: String| Error::Image {
        image: need.image.clone(),
        reason: format!("blob {}: {reason}", need.digest),
    };
    let mut stream = client
        .pull_blob_stream(&need.from, need.digest.as_str())
        .await
        .map_err(|e| err(e.to_string()))?;
    let task = ctx.progress.task(
        &format!("{} {}", short(&need.image), &need.digest[7..19]),
        need.size,
    );
    let mut w = ctx.cache.writer()?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| err(e.to_string()))?;
        w.write(&chunk)?;
        task.inc(chunk.len() as u64);
        ctx.stats
            .downloaded_bytes
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    drop(task);
    if let Some(s) = need.size {
        if w.size() != s {
            return Err(err(format!("size {} but the manifest says {s}", w.size())));
        }
    }
    let cache = ctx.cache.clone();
    let committed = tokio::task::spawn_blocking(move || w.commit(&cache, Some(&hex)))
        .await
        .map_err(|e| Error::Usage(format!("internal: {e}")))?;
    match committed {
        Ok(_) => {
            ctx.stats.downloads.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("fetched blob {} of {}", need.digest, need.image);
            Ok(())
        }
        Err(crate::cache::CommitError::Io(e)) => Err(*e),
        Err(crate::cache::CommitError::Mismatch { actual }) => {
            Err(err(format!("content has sha256:{actual}")))
        }
    }
}

fn short(image: &str) -> &str {
    image.rsplit('/').next().unwrap_or(image)
}
