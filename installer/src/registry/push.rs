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

use super::catalog::{platform_of, Catalog, CatalogError, Manifest, Repo};
use crate::store::Store;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const ATTEMPTS: u32 = 5;
const BLOB_CHUNK: usize = 1 << 20;

#[derive(Clone)]
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

/// The password never reaches Debug output (logs, panics): only the user.
impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("data_dir", &self.data_dir)
            .field("target", &self.target)
            .field("plain_http", &self.plain_http)
            .field("ca", &self.ca)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<password>")),
            )
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("invalid --to {0:?}: expected HOST[:PORT][/PREFIX]")]
    Target(String),
    #[error("{path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    // The registry's error is in the message, so it is not also chained as a
    // source (that would print it twice).
    #[error("{image}: {what}: {error}")]
    Registry {
        image: String,
        what: String,
        error: OciDistributionError,
    },
    #[error("{image}: {reason}")]
    Image { image: String, reason: String },
    #[error(
        "pushed {pushed} images to {target}, but {} could not be pushed:\n  {}",
        failed.len(),
        failed.join("\n  ")
    )]
    Failed {
        target: String,
        pushed: u64,
        failed: Vec<String>,
    },
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
    /// The upstream digest the bundle carries.
    pub digest: String,
    /// What the tag resolves to at the target: the upstream digest, or that of
    /// an index of the carried platforms when the target refused the partial
    /// upstream index.
    pub pushed_digest: String,
    pub skipped: bool,
}

impl PushedImage {
    fn new(source: String, target: String, digest: &str, landed: &str, skipped: bool) -> Self {
        PushedImage {
            source,
            target,
            digest: digest.to_owned(),
            pushed_digest: landed.to_owned(),
            skipped,
        }
    }
}

impl PushError {
    /// Credentials refused: every other image would fail the same way.
    pub fn is_authentication(&self) -> bool {
        matches!(self, PushError::Registry { error, .. } if refused_credentials(error))
    }
}

/// A token server refused the credentials, or the registry answered 401
/// (with Basic auth the client only learns at its first real request).
fn refused_credentials(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match e {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => true,
        OciDistributionError::RequestError(e) => e.status() == Some(http::StatusCode::UNAUTHORIZED),
        OciDistributionError::ServerError { code, .. } => *code == 401,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Unauthorized),
        _ => false,
    }
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
    let counters = Counters::default();
    let job = Job {
        client: &client,
        auth: &auth,
        target: &target,
        catalog: &catalog,
        counters: &counters,
        concurrency: opts.concurrency.max(1),
    };
    let mut failed: Vec<String> = catalog
        .refused()
        .iter()
        .map(|r| format!("{} (bundle {}): {}", r.reference, r.bundle, r.reason))
        .collect();
    for repo in catalog.repos() {
        for (tag, digest) in &repo.tags {
            match job.push_image(repo, tag, digest, &mut report).await {
                Ok(pushed) => report.images.push(pushed),
                // Every other image would fail the same way: stop at once.
                Err(err) if err.is_authentication() => return Err(err),
                Err(err) => {
                    tracing::error!("{err}");
                    failed.push(err.to_string());
                }
            }
        }
    }
    report.blobs_pushed = counters.pushed.into_inner();
    report.blobs_skipped = counters.skipped.into_inner();
    report.bytes_pushed = counters.bytes.into_inner();
    if !failed.is_empty() {
        return Err(PushError::Failed {
            target: opts.target.clone(),
            pushed: report.images_pushed,
            failed,
        });
    }
    Ok(report)
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    pushed: AtomicU64,
    skipped: AtomicU64,
}

/// What one push run shares between images.
struct Job<'a> {
    client: &'a Client,
    auth: &'a RegistryAuth,
    target: &'a Target,
    catalog: &'a Catalog,
    counters: &'a Counters,
    concurrency: usize,
}

impl Job<'_> {
    async fn push_image(
        &self,
        repo: &Repo,
        tag: &str,
        digest: &str,
        report: &mut PushReport,
    ) -> Result<PushedImage, PushError> {
        let repository = self.target.repository(&repo.host, &repo.path);
        let source = format!("{}:{tag}", repo.name());
        let image = Reference::with_tag(
            self.target.registry.clone(),
            repository.clone(),
            tag.to_owned(),
        );
        let shown = format!("{}/{repository}:{tag}", self.target.registry);
        let reg_err = |what: &str, error: OciDistributionError| PushError::Registry {
            image: shown.clone(),
            what: what.to_owned(),
            error,
        };
        retry(|| self.client.auth(&image, self.auth, RegistryOperation::Push))
            .await
            .map_err(|e| reg_err("authenticate", e))?;
        let closure = closure(self.catalog, digest).map_err(|reason| PushError::Image {
            image: source.clone(),
            reason,
        })?;
        let reduced = closure.reduced_index()?;
        if let Ok(existing) = self.client.fetch_manifest_digest(&image, self.auth).await {
            let same = existing == digest || reduced.as_ref().is_some_and(|r| r.digest == existing);
            if same {
                tracing::info!(image = %shown, "already present with the same digest");
                report.images_skipped += 1;
                return Ok(PushedImage::new(source, shown, digest, &existing, true));
            }
        }
        self.push_blobs(&image, &shown, &closure.blobs).await?;
        for m in &closure.children {
            self.put_manifest(&repository, m, None)
                .await
                .map_err(|e| reg_err(&format!("PUT manifest {}", m.digest), e))?;
            report.manifests_pushed += 1;
        }
        let top = closure.top.clone();
        let landed_as = match self.put_manifest(&repository, &top, Some(tag)).await {
            Ok(()) => top,
            Err(e) if refused_for_absent_children(&e) && reduced.is_some() => {
                let reduced = reduced.unwrap_or(top);
                self.put_reduced(&repository, tag, &shown, digest, &closure, &reduced)
                    .await?;
                reduced
            }
            Err(e) => return Err(reg_err(&format!("PUT manifest {digest}"), e)),
        };
        report.manifests_pushed += 1;
        // The registry must keep the bytes: the tag has to resolve to what was sent.
        let landed = retry(|| self.client.fetch_manifest_digest(&image, self.auth))
            .await
            .map_err(|e| reg_err("HEAD manifest", e))?;
        if landed != landed_as.digest {
            return Err(PushError::Image {
                image: shown,
                reason: format!(
                    "the registry stored {landed}, expected {}; it rewrote the manifest",
                    landed_as.digest
                ),
            });
        }
        tracing::info!(image = %shown, digest = %landed, "image pushed");
        report.images_pushed += 1;
        Ok(PushedImage::new(source, shown, digest, &landed, false))
    }

    /// The target refused the upstream index because it lists entries the
    /// bundle does not carry (distribution checks every child exists): push an
    /// index of the carried entries instead, and say what that costs.
    async fn put_reduced(
        &self,
        repository: &str,
        tag: &str,
        shown: &str,
        digest: &str,
        closure: &Closure,
        reduced: &Manifest,
    ) -> Result<(), PushError> {
        tracing::warn!(
            image = %shown,
            "the registry refused the upstream index {digest}: it lists {} entries the bundle does \
             not carry ({}). Pushed an index of the carried platforms as {} instead; references \
             pinned to {digest} will not resolve there, the per-platform digests do",
            closure.absent.len(),
            closure.absent.join(", "),
            reduced.digest
        );
        self.put_manifest(repository, reduced, Some(tag))
            .await
            .map_err(|e| PushError::Registry {
                image: shown.to_owned(),
                what: format!("PUT reduced index {}", reduced.digest),
                error: e,
            })
    }

    async fn put_manifest(
        &self,
        repository: &str,
        m: &Manifest,
        tag: Option<&str>,
    ) -> Result<(), OciDistributionError> {
        let registry = self.target.registry.clone();
        let reference = match tag {
            Some(t) => Reference::with_tag(registry, repository.to_owned(), t.to_owned()),
            None => Reference::with_digest(registry, repository.to_owned(), m.digest.clone()),
        };
        let content_type = http::HeaderValue::from_str(&m.media_type).map_err(|e| {
            OciDistributionError::GenericError(Some(format!("media type {:?}: {e}", m.media_type)))
        })?;
        retry(|| {
            self.client
                .push_manifest_raw(&reference, m.bytes.clone(), content_type.clone())
        })
        .await
        .map(|_| ())
    }

    /// Uploads the blobs the target lacks, a bounded number at a time.
    async fn push_blobs(
        &self,
        image: &Reference,
        shown: &str,
        blobs: &[BlobRef],
    ) -> Result<(), PushError> {
        futures::stream::iter(blobs.iter().cloned().map(Ok::<_, PushError>))
            .try_for_each_concurrent(self.concurrency, |(blob, size)| async move {
                let err = |what: String, error| PushError::Registry {
                    image: shown.to_owned(),
                    what,
                    error,
                };
                if retry(|| self.client.blob_exists(image, &blob))
                    .await
                    .map_err(|e| err(format!("HEAD blob {blob}"), e))?
                {
                    self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                let path = self
                    .catalog
                    .blob_path(&blob)
                    .ok_or_else(|| PushError::Image {
                        image: shown.to_owned(),
                        reason: format!("invalid blob digest {blob}"),
                    })?;
                retry(|| async {
                    let file = tokio::fs::File::open(&path).await?;
                    let stream = tokio_util::io::ReaderStream::with_capacity(file, BLOB_CHUNK)
                        .map(|r| r.map_err(OciDistributionError::from));
                    self.client
                        .push_blob_stream(image, stream, &blob, Some(size))
                        .await
                })
                .await
                .map_err(|e| err(format!("upload blob {blob} from {}", path.display()), e))?;
                tracing::info!(image = %shown, %blob, size, "blob pushed");
                self.counters.pushed.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(size, Ordering::Relaxed);
                Ok(())
            })
            .await
    }
}

/// distribution answers a manifest list with unknown children with
/// MANIFEST_BLOB_UNKNOWN (or MANIFEST_UNKNOWN / MANIFEST_INVALID elsewhere).
fn refused_for_absent_children(e: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode as C;
    match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                C::ManifestBlobUnknown | C::ManifestUnknown | C::ManifestInvalid | C::BlobUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 400 || *code == 404,
        _ => false,
    }
}

/// (digest, size) of a blob.
type BlobRef = (String, u64);

/// What pushing one tagged image takes.
struct Closure {
    top: Manifest,
    /// Carried manifests below the top one, children before parents.
    children: Vec<Manifest>,
    blobs: Vec<BlobRef>,
    /// Top-level index entries the bundle does not carry: digests, and
    /// `digest (platform)` for messages.
    absent_digests: Vec<String>,
    absent: Vec<String>,
}

impl Closure {
    /// The top index with only the carried entries, when some are not carried.
    fn reduced_index(&self) -> Result<Option<Manifest>, PushError> {
        if self.absent_digests.is_empty() || !self.top.is_index() {
            return Ok(None);
        }
        let bad = |e: serde_json::Error| PushError::Image {
            image: self.top.digest.clone(),
            reason: format!("index {}: {e}", self.top.digest),
        };
        let mut doc: serde_json::Value = serde_json::from_slice(&self.top.bytes).map_err(bad)?;
        if let Some(entries) = doc["manifests"].as_array_mut() {
            entries.retain(|e| {
                e["digest"]
                    .as_str()
                    .is_none_or(|d| !self.absent_digests.iter().any(|a| a == d))
            });
        }
        let bytes = serde_json::to_vec_pretty(&doc).map_err(bad)?;
        Ok(Some(Manifest {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            media_type: self.top.media_type.clone(),
            bytes: bytes.into(),
        }))
    }
}

fn closure(catalog: &Catalog, digest: &str) -> Result<Closure, String> {
    let top = catalog
        .manifest(digest)
        .ok_or_else(|| format!("manifest {digest} not loaded"))?
        .clone();
    let mut c = Closure {
        top,
        children: Vec::new(),
        blobs: Vec::new(),
        absent_digests: Vec::new(),
        absent: Vec::new(),
    };
    visit(catalog, digest, &mut c, 0)?;
    c.children.retain(|m| m.digest != digest);
    c.blobs.sort();
    c.blobs.dedup();
    Ok(c)
}

fn visit(catalog: &Catalog, digest: &str, c: &mut Closure, depth: usize) -> Result<(), String> {
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
            if catalog.manifest(d).is_none() {
                // An entry the bundle left out (the catalog checked the rest).
                if depth == 0 {
                    c.absent_digests.push(d.to_owned());
                    c.absent.push(format!("{d} ({})", platform_of(child)));
                }
            } else if !c.children.iter().any(|x| x.digest == d) {
                visit(catalog, d, c, depth + 1)?;
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
            // Foreign layers stay where their URLs point, as registries expect.
            if desc["urls"].as_array().is_none_or(|u| u.is_empty()) {
                c.blobs.push((d.to_owned(), size));
            }
        }
    }
    c.children.push(m.clone());
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

#[cfg(test)]
mod debug_tests {
    use super::PushOptions;

    #[test]
    fn debug_output_never_carries_the_password() {
        let opts = PushOptions {
            data_dir: "/var/lib/ferry".into(),
            target: "harbor.example:443/k8s".into(),
            plain_http: false,
            ca: None,
            credentials: Some(("robot".into(), "s3cr3t-Pa55".into())),
            concurrency: 4,
        };
        let shown = format!("{opts:?}");
        assert!(
            shown.contains("robot") && !shown.contains("s3cr3t-Pa55"),
            "{shown}"
        );
    }
}
