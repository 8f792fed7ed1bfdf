//! The in-memory view the mirror serves: every unpacked bundle's
//! images/index.json, with all manifests and indexes loaded (they are small),
//! so requests never touch the directory tree except to stream blobs.

use super::reference::{docker_hub_path, looks_like_host, normalize_host, ImageRef, DOCKER_HUB};
use crate::store::{digest_hex, Store, StoreError};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
}

/// A manifest or index, byte-for-byte as stored.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// One repository (`registry.k8s.io/pause`): its tags and everything reachable from them.
#[derive(Debug, Default)]
pub struct Repo {
    pub host: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    pub manifests: HashSet<String>,
    pub blobs: HashSet<String>,
    /// Index entries listed upstream that no bundle carries, by digest.
    pub absent: HashMap<String, Absent>,
}

/// An upstream index entry the bundle left out (another platform, an attestation).
#[derive(Debug, Clone)]
pub struct Absent {
    /// `windows/amd64 10.0.17763.5458`, `linux/arm/v7`, `unknown/unknown`.
    pub platform: String,
    pub bundle: String,
    /// Platforms the bundle carries of the same image.
    pub carried: Vec<String>,
}

/// What the mirror serves of one tagged image, for the startup log and `push`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub reference: String,
    pub digest: String,
    pub bundle: String,
    /// Platforms carried (`linux/amd64`), or `single manifest`.
    pub platforms: Vec<String>,
    /// Upstream index entries not carried.
    pub absent: usize,
}

/// An image a bundle names that cannot be served, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reference: String,
    pub bundle: String,
    pub reason: String,
}

impl Repo {
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Resolve {
    Unknown,
    /// The path exists under several upstream hosts; the client must say which (ns or host prefix).
    Ambiguous(Vec<String>),
}

#[derive(Debug, Default)]
pub struct Catalog {
    repos: HashMap<(String, String), Repo>,
    /// Repository path -> hosts that have it.
    by_path: HashMap<String, Vec<String>>,
    manifests: HashMap<String, Manifest>,
    blobs_dir: PathBuf,
    images: Vec<ImageSummary>,
    refused: Vec<Refused>,
}

impl Catalog {
    /// Loads every unpacked bundle's image index. A broken bundle is skipped
    /// with a warning so one bad directory does not take the mirror down.
    pub fn load(store: &Store) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog {
            blobs_dir: store.blobs_dir(),
            ..Catalog::default()
        };
        for bundle in store.bundles()? {
            if let Err(err) = catalog.add_bundle(store, &bundle) {
                tracing::warn!(bundle = %bundle, "skipping the bundle's images: {err}");
            }
        }
        for repo in catalog.repos.values() {
            catalog
                .by_path
                .entry(repo.path.clone())
                .or_default()
                .push(repo.host.clone());
        }
        for hosts in catalog.by_path.values_mut() {
            hosts.sort();
        }
        Ok(catalog)
    }

    fn add_bundle(&mut self, store: &Store, bundle: &str) -> Result<(), CatalogError> {
        let index_path = store.images_dir(bundle)?.join("index.json");
        let bytes = match std::fs::read(&index_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&index_path, e).into()),
        };
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| CatalogError::Layout {
                path: index_path.clone(),
                reason: format!("invalid JSON: {e}"),
            })?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        for entry in entries {
            let Some(name) = entry["annotations"][REF_NAME].as_str() else {
                continue;
            };
            let Some(image) = ImageRef::parse(name) else {
                tracing::warn!(
                    bundle,
                    reference = name,
                    "not a full image reference; not served"
                );
                continue;
            };
            let Some(digest) = entry["digest"].as_str() else {
                continue;
            };
            let media_type = entry["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
            let mut reach = Reach::default();
            let loaded = self
                .load_manifest(store, digest, media_type, None, &mut reach, 0)
                .and_then(|()| reach.check_complete(store, digest));
            if let Err(err) = loaded {
                tracing::error!(bundle, reference = name, "not served: {err}");
                self.refused.push(Refused {
                    reference: name.to_owned(),
                    bundle: bundle.to_owned(),
                    reason: err.to_string(),
                });
                continue;
            }
            self.images.push(ImageSummary {
                reference: name.to_owned(),
                digest: digest.to_owned(),
                bundle: bundle.to_owned(),
                platforms: reach.platforms.clone(),
                absent: reach.absent.len(),
            });
            self.add_image(&image, digest, bundle, reach);
        }
        Ok(())
    }

    fn add_image(&mut self, image: &ImageRef, digest: &str, bundle: &str, reach: Reach) {
        let repo = self
            .repos
            .entry((image.host.clone(), image.path.clone()))
            .or_insert_with(|| Repo {
                host: image.host.clone(),
                path: image.path.clone(),
                ..Repo::default()
            });
        if let Some(tag) = &image.tag {
            repo.tags.insert(tag.clone(), digest.to_owned());
        }
        for (child, platform) in reach.absent {
            repo.absent.entry(child).or_insert_with(|| Absent {
                platform,
                bundle: bundle.to_owned(),
                carried: reach.platforms.clone(),
            });
        }
        repo.manifests.extend(reach.manifests);
        repo.blobs.extend(reach.blobs);
    }

    /// Loads a manifest or index (checking its digest) and everything it
    /// references. An index entry whose manifest is not in the store is one the
    /// bundle left out: it is recorded, not an error; upstream indexes always
    /// list more than a bundle carries.
    fn load_manifest(
        &mut self,
        store: &Store,
        digest: &str,
        media_type: &str,
        platform: Option<String>,
        reach: &mut Reach,
        depth: usize,
    ) -> Result<(), CatalogError> {
        if depth > 4 {
            return Err(layout_error(store, digest, "indexes nested too deep"));
        }
        reach.manifests.insert(digest.to_owned());
        reach.blobs.insert(digest.to_owned());
        let manifest = self.read_manifest(store, digest, media_type)?;
        let parsed: serde_json::Value = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| layout_error(store, digest, &format!("invalid JSON: {e}")))?;
        if !manifest.is_index() {
            reach
                .platforms
                .push(platform.unwrap_or_else(|| "single manifest".into()));
            return add_blobs(store, digest, &parsed, reach);
        }
        for child in parsed["manifests"].as_array().into_iter().flatten() {
            let (Some(d), Some(mt)) = (child["digest"].as_str(), child["mediaType"].as_str())
            else {
                return Err(layout_error(
                    store,
                    digest,
                    "index entry without digest or mediaType",
                ));
            };
            digest_hex(d)?;
            let platform = platform_of(child);
            if store.has_blob(d) {
                self.load_manifest(store, d, mt, Some(platform), reach, depth + 1)?;
            } else {
                reach.absent.push((d.to_owned(), platform));
            }
        }
        Ok(())
    }

    /// A manifest's bytes, from memory or from the store (checking its digest).
    fn read_manifest(
        &mut self,
        store: &Store,
        digest: &str,
        media_type: &str,
    ) -> Result<Manifest, CatalogError> {
        if let Some(m) = self.manifests.get(digest) {
            return Ok(m.clone());
        }
        let path = store.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        if format!("sha256:{}", hex::encode(Sha256::digest(&bytes))) != digest {
            return Err(layout_error(
                store,
                digest,
                "content does not match its digest",
            ));
        }
        // The stored mediaType field wins over the descriptor's, as registries do.
        let parsed: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| layout_error(store, digest, &format!("invalid JSON: {e}")))?;
        let media_type = parsed["mediaType"]
            .as_str()
            .unwrap_or(media_type)
            .to_owned();
        let m = Manifest {
            digest: digest.to_owned(),
            media_type,
            bytes: Bytes::from(bytes),
        };
        self.manifests.insert(digest.to_owned(), m.clone());
        Ok(m)
    }

    /// Finds the repository a client means by `name` (and containerd's `ns` parameter).
    pub fn resolve(&self, name: &str, ns: Option<&str>) -> Result<&Repo, Resolve> {
        if let Some(ns) = ns {
            let host = normalize_host(ns);
            let path = docker_hub_path(&host, name);
            // Some clients send both ns and the host prefix.
            let path = path
                .strip_prefix(&format!("{host}/"))
                .map(str::to_owned)
                .unwrap_or(path);
            return self.repos.get(&(host, path)).ok_or(Resolve::Unknown);
        }
        if let Some((first, rest)) = name.split_once('/') {
            if looks_like_host(first) {
                let host = normalize_host(first);
                let path = docker_hub_path(&host, rest);
                if let Some(repo) = self.repos.get(&(host, path)) {
                    return Ok(repo);
                }
            }
        }
        let mut hosts: Vec<(String, String)> = Vec::new();
        for (path, extra) in [
            (name.to_owned(), None),
            (docker_hub_path(DOCKER_HUB, name), Some(DOCKER_HUB)),
        ] {
            for host in self.by_path.get(&path).into_iter().flatten() {
                if extra.is_none_or(|h| h == host)
                    && !hosts.iter().any(|(h, p)| h == host && p == &path)
                {
                    hosts.push((host.clone(), path.clone()));
                }
            }
        }
        match hosts.as_slice() {
            [] => Err(Resolve::Unknown),
            [(host, path)] => self
                .repos
                .get(&(host.clone(), path.clone()))
                .ok_or(Resolve::Unknown),
            many => Err(Resolve::Ambiguous(
                many.iter().map(|(h, p)| format!("{h}/{p}")).collect(),
            )),
        }
    }

    /// Every repository, sorted by full name.
    pub fn repos(&self) -> Vec<&Repo> {
        let mut repos: Vec<&Repo> = self.repos.values().collect();
        repos.sort_by_key(|r| r.name());
        repos
    }

    pub fn manifest(&self, digest: &str) -> Option<&Manifest> {
        self.manifests.get(digest)
    }

    /// Full names (`registry.k8s.io/pause`), sorted.
    pub fn repositories(&self) -> Vec<String> {
        let mut names: Vec<String> = self.repos.values().map(Repo::name).collect();
        names.sort();
        names
    }

    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        digest_hex(digest).ok().map(|hex| self.blobs_dir.join(hex))
    }

    pub fn image_count(&self) -> usize {
        self.repos.values().map(|r| r.tags.len()).sum()
    }

    /// Every image served, in bundle and index order.
    pub fn images(&self) -> &[ImageSummary] {
        &self.images
    }

    /// Images a bundle names that cannot be served.
    pub fn refused(&self) -> &[Refused] {
        &self.refused
    }

    /// One log line per image with the platforms it carries, and an error line
    /// per image that cannot be served.
    pub fn log_images(&self) {
        for i in &self.images {
            let left_out = match i.absent {
                0 => String::new(),
                n => format!("; {n} upstream entries not carried"),
            };
            tracing::info!(
                "serving {} ({}) from bundle {}: {}{left_out}",
                i.reference,
                i.digest,
                i.bundle,
                i.platforms.join(", ")
            );
        }
        for r in &self.refused {
            tracing::error!(
                "not serving {} from bundle {}: {}",
                r.reference,
                r.bundle,
                r.reason
            );
        }
    }
}

#[derive(Default)]
struct Reach {
    manifests: HashSet<String>,
    blobs: HashSet<String>,
    /// Platforms of the image manifests reached.
    platforms: Vec<String>,
    /// Index entries not in the store: (digest, platform).
    absent: Vec<(String, String)>,
}

impl Reach {
    /// An index none of whose entries is carried serves nothing.
    fn check_complete(&self, store: &Store, digest: &str) -> Result<(), CatalogError> {
        if self.platforms.is_empty() {
            return Err(layout_error(
                store,
                digest,
                &format!(
                    "none of the index's {} entries is in the store",
                    self.absent.len()
                ),
            ));
        }
        Ok(())
    }
}

/// The config and layers of an image manifest: every one must be in the store,
/// except foreign layers, which clients fetch from the URLs the manifest names.
fn add_blobs(
    store: &Store,
    digest: &str,
    parsed: &serde_json::Value,
    reach: &mut Reach,
) -> Result<(), CatalogError> {
    let descriptors =
        std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().into_iter().flatten());
    for desc in descriptors {
        let Some(d) = desc["digest"].as_str() else {
            continue;
        };
        digest_hex(d)?;
        if store.has_blob(d) {
            reach.blobs.insert(d.to_owned());
        } else if desc["urls"].as_array().is_none_or(|u| u.is_empty()) {
            return Err(layout_error(
                store,
                d,
                &format!("blob of manifest {digest} missing from the store"),
            ));
        }
    }
    Ok(())
}

/// `linux/arm/v7`, `windows/amd64 10.0.17763.5458`, or `unknown/unknown`
/// (an attestation); `unknown` for an entry without a platform.
pub fn platform_of(entry: &serde_json::Value) -> String {
    let p = &entry["platform"];
    let (Some(os), Some(arch)) = (p["os"].as_str(), p["architecture"].as_str()) else {
        return "unknown".into();
    };
    let mut name = format!("{os}/{arch}");
    if let Some(v) = p["variant"].as_str() {
        name = format!("{name}/{v}");
    }
    if let Some(v) = p["os.version"].as_str() {
        name = format!("{name} {v}");
    }
    name
}

fn layout_error(store: &Store, digest: &str, reason: &str) -> CatalogError {
    let path = store
        .blob_path(digest)
        .unwrap_or_else(|_| store.blobs_dir().join(digest));
    CatalogError::Layout {
        path,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes `value` as a blob; returns its digest and size.
    fn put(store: &Store, value: &serde_json::Value) -> (String, usize) {
        let bytes = serde_json::to_vec(value).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        std::fs::write(store.blob_path(&digest).unwrap(), &bytes).unwrap();
        (digest, bytes.len())
    }

    fn absent_digest(name: &str) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(name.as_bytes())))
    }

    /// An OCI index whose first entry is itself an index: both may list
    /// entries the bundle does not carry. What is carried is served, what is
    /// not is named with its platform, at every depth.
    #[test]
    fn nested_partial_indexes_serve_what_is_carried() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path());
        std::fs::create_dir_all(store.blobs_dir()).unwrap();
        let (config, config_size) = put(&store, &json!({"architecture": "amd64", "os": "linux"}));
        let (layer, layer_size) = put(&store, &json!("a layer"));
        let (amd64, amd64_size) = put(
            &store,
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size},
                           {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                            "digest": absent_digest("foreign"), "size": 9, "urls": ["https://example.invalid/x"]}]}),
        );
        let arm64 = absent_digest("arm64");
        let (inner, inner_size) = put(
            &store,
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": amd64, "size": amd64_size, "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": arm64, "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}),
        );
        let windows = absent_digest("windows");
        let (outer, outer_size) = put(
            &store,
            &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
                {"mediaType": OCI_INDEX, "digest": inner, "size": inner_size},
                {"mediaType": DOCKER_MANIFEST, "digest": windows, "size": 1,
                 "platform": {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.2322"}}]}),
        );
        let images = dir.path().join("bundles/prod/images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(dir.path().join("bundles/prod/bundle.json"), b"{}").unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": DOCKER_LIST, "digest": outer,
            "size": outer_size, "annotations": {REF_NAME: "registry.example/app:1.0"}}]});
        std::fs::write(
            images.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();

        let catalog = Catalog::load(&store).unwrap();
        assert!(catalog.refused().is_empty(), "{:?}", catalog.refused());
        let repo = catalog.resolve("registry.example/app", None).unwrap();
        assert_eq!(repo.tags["1.0"], outer);
        for d in [&outer, &inner, &amd64] {
            assert!(repo.manifests.contains(d.as_str()), "{d} served");
        }
        assert!(repo.blobs.contains(&layer) && repo.blobs.contains(&config));
        assert_eq!(repo.absent[&arm64].platform, "linux/arm64/v8");
        assert_eq!(
            repo.absent[&windows].platform,
            "windows/amd64 10.0.20348.2322"
        );
        assert_eq!(repo.absent[&windows].carried, ["linux/amd64"]);
        assert_eq!(repo.absent[&windows].bundle, "prod");
        let summary = &catalog.images()[0];
        assert_eq!(
            (summary.platforms.clone(), summary.absent),
            (vec!["linux/amd64".to_owned()], 2)
        );
    }

    /// A carried image manifest whose layer is gone is refused by name.
    #[test]
    fn an_image_missing_a_layer_is_refused_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path());
        std::fs::create_dir_all(store.blobs_dir()).unwrap();
        let (config, config_size) = put(&store, &json!({"architecture": "amd64", "os": "linux"}));
        let (manifest, size) = put(
            &store,
            &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": absent_digest("gone"), "size": 4}]}),
        );
        let images = dir.path().join("bundles/prod/images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(dir.path().join("bundles/prod/bundle.json"), b"{}").unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest,
            "size": size, "annotations": {REF_NAME: "registry.example/app:1.0"}}]});
        std::fs::write(
            images.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        let catalog = Catalog::load(&store).unwrap();
        assert_eq!(catalog.image_count(), 0);
        let refused = &catalog.refused()[0];
        assert_eq!(refused.reference, "registry.example/app:1.0");
        assert!(
            refused.reason.contains(&absent_digest("gone")[7..]),
            "{}",
            refused.reason
        );
    }
}
