//! `ferry registry push`: copy every unpacked image (the index, every
//! per-platform manifest, every blob) into an existing registry, byte for byte,
//! so digests stay the same.
//!
//! Naming at the target keeps the upstream host as a path component:
//! `registry.k8s.io/pause:3.9` pushed `--to harbor.corp/k8s` becomes
//! `harbor.corp/k8s/registry.k8s.io/pause:3.9`. This never collides between
//! upstreams, suits Harbor (the prefix is the project), and containerd reaches
//! it with `[host."https://harbor.corp/v2/k8s/registry.k8s.io"]` and
//! `override_path = true` in `certs.d/registry.k8s.io/hosts.toml`.

use super::catalog::{Catalog, CatalogError, Manifest};
use crate::store::Store;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const ATTEMPTS: u32 = 5;
const BLOB_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub data_dir: PathBuf,
    /// `HOST[:PORT][/PREFIX]`
    pub target: String,
    pub plain_http: bool,
    /// Extra CA certificate (PEM) to trust for the target.
    pub ca: Option<PathBuf>,
    pub credentials: Option<(String, String)>,
    /// Blobs uploaded at the same time.
    pub concurrency: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("invalid --to {0:?}: expected HOST[:PORT][/PREFIX]")]
    Target(String),
    #[error("{path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("{image}: {what}: {source}")]
    Registry {
        image: String,
        what: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{image}: {reason}")]
    Image { image: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct PushReport {
    pub target: String,
    pub images_pushed: u64,
    /// Images whose tag already pointed at the same digest.
    pub images_skipped: u64,
    pub manifests_pushed: u64,
    pub blobs_pushed: u64,
    /// Blobs the target already had.
    pub blobs_skipped: u64,
    pub bytes_pushed: u64,
    pub images: Vec<PushedImage>,
}

#[derive(Debug, Serialize)]
pub struct PushedImage {
    pub source: String,
    pub target: String,
    pub digest: String,
    pub skipped: bool,
}

struct Target {
    registry: String,
    prefix: Option<String>,
}

impl Target {
    fn parse(s: &str) -> Result<Target, PushError> {
        let s = s.trim_end_matches('/');
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let (registry, prefix) = match s.split_once('/') {
            Some((r, p)) => (r, Some(p.to_owned())),
            None => (s, None),
        };
        if registry.is_empty()
            || prefix
                .as_deref()
                .is_some_and(|p| !super::reference::valid_path(p))
        {
            return Err(PushError::Target(s.to_owned()));
        }
        Ok(Target {
            registry: registry.to_owned(),
            prefix,
        })
    }

    fn repository(&self, host: &str, path: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{host}/{path}"),
            None => format!("{host}/{path}"),
        }
    }
}

pub async fn push(opts: PushOptions) -> Result<PushReport, PushError> {
    let target = Target::parse(&opts.target)?;
    let store = Store::open(&opts.data_dir);
    let catalog = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || Catalog::load(&store))
            .await
            .map_err(|e| PushError::Io {
                path: opts.data_dir.clone(),
                source: std::io::Error::other(e),
            })??
    };
    let client = client(&opts, &target)?;
    let auth = match &opts.credentials {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    let mut report = PushReport {
        target: opts.target.clone(),
        ..PushReport::default()
    };
    let bytes = AtomicU64::new(0);
    let (pushed, skipped) = (AtomicU64::new(0), AtomicU64::new(0));
    for repo in catalog.repos() {
        let repository = target.repository(&repo.host, &repo.path);
        for (tag, digest) in &repo.tags {
            let source = format!("{}:{tag}", repo.name());
            let image =
                Reference::with_tag(target.registry.clone(), repository.clone(), tag.clone());
            let shown = format!("{}/{repository}:{tag}", target.registry);
            let reg_err = |what: &str, source: OciDistributionError| PushError::Registry {
                image: shown.clone(),
                what: what.to_owned(),
                source,
            };
            retry(|| client.auth(&image, &auth, RegistryOperation::Push))
                .await
                .map_err(|e| reg_err("authenticate", e))?;
            if let Ok(existing) = client.fetch_manifest_digest(&image, &auth).await {
                if existing == *digest {
                    tracing::info!(image = %shown, "already present with the same digest");
                    report.images_skipped += 1;
                    report.images.push(PushedImage {
                        source,
                        target: shown,
                        digest: digest.clone(),
                        skipped: true,
                    });
                    continue;
                }
            }
            let (manifests, blobs) =
                closure(&catalog, digest).map_err(|reason| PushError::Image {
                    image: source.clone(),
                    reason,
                })?;

            // Blobs first (bounded concurrency), then manifests children-first, then the tag.
            futures::stream::iter(blobs.into_iter().map(Ok::<_, PushError>))
                .try_for_each_concurrent(opts.concurrency.max(1), |(blob, size)| {
                    let (client, image, catalog, bytes, pushed, skipped, shown) =
                        (&client, &image, &catalog, &bytes, &pushed, &skipped, &shown);
                    async move {
                        let err = |what: String, source| PushError::Registry {
                            image: shown.clone(),
                            what,
                            source,
                        };
                        if retry(|| client.blob_exists(image, &blob))
                            .await
                            .map_err(|e| err(format!("HEAD blob {blob}"), e))?
                        {
                            skipped.fetch_add(1, Ordering::Relaxed);
                            return Ok(());
                        }
                        let path = catalog.blob_path(&blob).ok_or_else(|| PushError::Image {
                            image: shown.clone(),
                            reason: format!("invalid blob digest {blob}"),
                        })?;
                        retry(|| async {
                            let file = tokio::fs::File::open(&path).await?;
                            let stream =
                                tokio_util::io::ReaderStream::with_capacity(file, BLOB_CHUNK)
                                    .map(|r| r.map_err(OciDistributionError::from));
                            client
                                .push_blob_stream(image, stream, &blob, Some(size))
                                .await
                        })
                        .await
                        .map_err(|e| {
                            err(format!("upload blob {blob} from {}", path.display()), e)
                        })?;
                        tracing::info!(image = %shown, %blob, size, "blob pushed");
                        pushed.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(size, Ordering::Relaxed);
                        Ok(())
                    }
                })
                .await?;
            for m in &manifests {
                let by_digest = Reference::with_digest(
                    target.registry.clone(),
                    repository.clone(),
                    m.digest.clone(),
                );
                let reference = if m.digest == *digest {
                    &image
                } else {
                    &by_digest
                };
                let content_type =
                    http::HeaderValue::from_str(&m.media_type).map_err(|e| PushError::Image {
                        image: source.clone(),
                        reason: format!("media type {:?}: {e}", m.media_type),
                    })?;
                retry(|| {
                    client.push_manifest_raw(reference, m.bytes.clone(), content_type.clone())
                })
                .await
                .map_err(|e| reg_err(&format!("PUT manifest {}", m.digest), e))?;
                report.manifests_pushed += 1;
            }
            // The registry must keep the bytes: the tag has to resolve to the upstream digest.
            let landed = retry(|| client.fetch_manifest_digest(&image, &auth))
                .await
                .map_err(|e| reg_err("HEAD manifest", e))?;
            if landed != *digest {
                return Err(PushError::Image {
                    image: shown,
                    reason: format!(
                        "the registry stored {landed}, expected {digest}; it rewrote the manifest"
                    ),
                });
            }
            tracing::info!(image = %shown, %digest, "image pushed");
            report.images_pushed += 1;
            report.images.push(PushedImage {
                source,
                target: shown,
                digest: digest.clone(),
                skipped: false,
            });
        }
    }
    report.blobs_pushed = pushed.into_inner();
    report.blobs_skipped = skipped.into_inner();
    report.bytes_pushed = bytes.into_inner();
    Ok(report)
}

/// Manifests reachable from `digest`, children before parents (the top one last),
/// and every blob (digest, size) they reference.
/// (digest, size) of a blob.
type BlobRef = (String, u64);

fn closure(catalog: &Catalog, digest: &str) -> Result<(Vec<Manifest>, Vec<BlobRef>), String> {
    let mut manifests = Vec::new();
    let mut blobs: Vec<BlobRef> = Vec::new();
    visit(catalog, digest, &mut manifests, &mut blobs, 0)?;
    blobs.sort();
    blobs.dedup();
    Ok((manifests, blobs))
}

fn visit(
    catalog: &Catalog,
    digest: &str,
    manifests: &mut Vec<Manifest>,
    blobs: &mut Vec<BlobRef>,
    depth: usize,
) -> Result<(), String> {
    if depth > 4 {
        return Err("indexes nested too deep".into());
    }
    let m = catalog
        .manifest(digest)
        .ok_or_else(|| format!("manifest {digest} not loaded"))?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| format!("manifest {digest}: {e}"))?;
    if m.is_index() {
        for child in parsed["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"]
                .as_str()
                .ok_or_else(|| format!("index {digest}: entry without digest"))?;
            if !manifests.iter().any(|x: &Manifest| x.digest == d) {
                visit(catalog, d, manifests, blobs, depth + 1)?;
            }
        }
    } else {
        for desc in std::iter::once(&parsed["config"])
            .chain(parsed["layers"].as_array().into_iter().flatten())
        {
            let (Some(d), Some(size)) = (desc["digest"].as_str(), desc["size"].as_u64()) else {
                return Err(format!(
                    "manifest {digest}: descriptor without digest or size"
                ));
            };
            blobs.push((d.to_owned(), size));
        }
    }
    manifests.push(m.clone());
    Ok(())
}

fn client(opts: &PushOptions, target: &Target) -> Result<Client, PushError> {
    let mut config = ClientConfig {
        protocol: if opts.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        use_monolithic_push: true,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(300)),
        ..ClientConfig::default()
    };
    if let Some(ca) = &opts.ca {
        let data = std::fs::read(ca).map_err(|e| PushError::Ca {
            path: ca.clone(),
            reason: e.to_string(),
        })?;
        if !String::from_utf8_lossy(&data).contains("BEGIN CERTIFICATE") {
            return Err(PushError::Ca {
                path: ca.clone(),
                reason: "not a PEM certificate".into(),
            });
        }
        config.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let _ = target;
    Ok(Client::new(config))
}

/// Retries transient failures (connection errors, timeouts, 5xx, 429) with backoff.
async fn retry<T, F, Fut>(mut op: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let mut delay = Duration::from_millis(300);
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                tracing::warn!(
                    attempt,
                    "transient registry error, retrying in {delay:?}: {e}"
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(e) => {
            e.is_connect()
                || e.is_timeout()
                || e.is_request()
                || e.is_body()
                || e.status().is_some_and(|s| s.is_server_error())
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::IoError(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_naming_keeps_the_upstream_host() {
        let t = Target::parse("harbor.corp:8443/k8s").unwrap();
        assert_eq!(t.registry, "harbor.corp:8443");
        assert_eq!(
            t.repository("registry.k8s.io", "pause"),
            "k8s/registry.k8s.io/pause"
        );
        let t = Target::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            t.repository("docker.io", "library/busybox"),
            "docker.io/library/busybox"
        );
        assert!(Target::parse("host/Bad Prefix").is_err());
        assert!(Target::parse("").is_err());
    }
}
