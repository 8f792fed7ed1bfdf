//! Images: pull an index (or a single manifest) by reference through the
//! mirrors with oci-client, keep the upstream bytes and digest as received,
//! pick one manifest per requested platform, and fetch every blob once into
//! the cache.

use crate::error::{Error, Result};
use crate::fetch::Ctx;
use crate::mirror::ImageSource;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use std::collections::BTreeMap;
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
}

#[derive(Deserialize)]
struct PlatformSpec {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
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

    if is_index(&media_type) {
        let entries = doc.manifests.unwrap_or_default();
        for p in &want {
            let (os, arch) = p.split_once('/').unwrap_or((p.as_str(), ""));
            let entry = entries.iter().find(|e| {
                e.platform.as_ref().is_some_and(|pl| {
                    pl.os == os
                        && pl.architecture == arch
                        && (arch != "arm64" || pl.variant.as_deref().is_none_or(|v| v == "v8"))
                })
            });
            let Some(entry) = entry else {
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
            let blobs = blobs_of(image, &child, &r, &mut needs)?;
            per_platform.insert(
                p.clone(),
                PlatformImage {
                    manifest: entry.digest.clone(),
                    blobs,
                },
            );
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
    ctx.progress
        .line(format!("resolved {image} ({digest}, {})", want.join(", ")));
    Ok(PulledImage {
        reference: image.to_string(),
        digest,
        media_type,
        size: top.len() as u64,
        platforms: want,
        per_platform,
        needs,
    })
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
