//! Looking up the bundle's images and binaries by name, for rendering and
//! the closure check.

use ferry_bundles::{BundleManifest, ComponentKind, ImageRecord};

/// `registry.k8s.io/coredns/coredns:v1.11.1` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry.k8s.io` (`docker.io` when the reference names none).
    pub registry: String,
    /// `coredns/coredns`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(reference: &str) -> ImageRef {
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (reference, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, repo))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), repo.to_string())
            }
            _ => {
                let repo = if name.contains('/') {
                    name.to_string()
                } else {
                    format!("library/{name}")
                };
                ("docker.io".to_string(), repo)
            }
        };
        ImageRef {
            registry,
            repository,
            tag,
            digest,
        }
    }

    /// Last path component of the repository: `coredns`, `pause`, `cilium`.
    pub fn short_name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// `registry/repository[:tag]`, no digest.
    pub fn name_tag(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}/{}:{t}", self.registry, self.repository),
            None => format!("{}/{}", self.registry, self.repository),
        }
    }
}

/// The bundle image whose repository ends in `short`.
pub fn find_image<'a>(bundle: &'a BundleManifest, short: &str) -> Option<&'a ImageRecord> {
    bundle
        .images
        .iter()
        .find(|i| ImageRef::parse(&i.reference).short_name() == short)
}

/// `registry/repo:tag@sha256:...`: the tag for people, the digest for containerd.
pub fn pinned(record: &ImageRecord) -> String {
    format!(
        "{}@{}",
        ImageRef::parse(&record.reference).name_tag(),
        record.digest
    )
}

/// Is `reference` (as written in a rendered file) one of the bundle's images, for `platform`?
pub fn bundle_has_image(
    bundle: &BundleManifest,
    reference: &str,
    platform: &str,
) -> Result<(), String> {
    let want = ImageRef::parse(reference);
    let found = bundle.images.iter().find(|i| {
        let have = ImageRef::parse(&i.reference);
        have.registry == want.registry
            && have.repository == want.repository
            && (want.tag.is_none() || want.tag == have.tag)
            && (want.digest.is_none() || want.digest.as_deref() == Some(i.digest.as_str()))
    });
    match found {
        None => Err(format!("image {reference} is not in the bundle")),
        Some(i) if !i.platforms.iter().any(|p| p == platform) => Err(format!(
            "image {reference} is in the bundle only for {}, not {platform}",
            i.platforms.join(", ")
        )),
        Some(_) => Ok(()),
    }
}

/// Upstream registries of the bundle's images, sorted, each once.
pub fn registries(bundle: &BundleManifest) -> Vec<String> {
    let mut out: Vec<String> = bundle
        .images
        .iter()
        .map(|i| ImageRef::parse(&i.reference).registry)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A binary of the bundle for `arch`: (bundle path, sha256, size, mode).
pub fn find_binary(
    bundle: &BundleManifest,
    arch: &str,
    name: &str,
) -> Option<(String, String, u64, u32)> {
    let platform = format!("linux/{arch}");
    let from_component = bundle
        .components
        .iter()
        .filter(|c| {
            c.kind == ComponentKind::Binary && c.platform.as_deref() == Some(platform.as_str())
        })
        .find(|c| c.path.rsplit('/').next() == Some(name) || c.name == name)
        .map(|c| c.path.clone());
    let path = from_component.unwrap_or_else(|| format!("bin/linux-{arch}/{name}"));
    let f = bundle.file(&path)?;
    Some((f.path.clone(), f.sha256.clone(), f.size, f.mode))
}

/// An archive component for `arch` whose name starts with `prefix` (`containerd`, `cni`).
pub fn find_archive(
    bundle: &BundleManifest,
    arch: &str,
    prefix: &str,
) -> Option<(String, String, u64)> {
    let platform = format!("linux/{arch}");
    let c = bundle
        .components
        .iter()
        .filter(|c| {
            c.kind == ComponentKind::Archive && c.platform.as_deref() == Some(platform.as_str())
        })
        .find(|c| c.name.starts_with(prefix))?;
    let f = bundle.file(&c.path)?;
    Some((f.path.clone(), f.sha256.clone(), f.size))
}

/// Debian-style name of the architecture this ferry was built for.
pub fn deploy_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("registry.k8s.io/coredns/coredns:v1.11.1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("registry.k8s.io", "coredns/coredns", Some("v1.11.1"))
        );
        assert_eq!(r.short_name(), "coredns");
        let r = ImageRef::parse("busybox");
        assert_eq!(r.name_tag(), "docker.io/library/busybox");
        let r = ImageRef::parse("localhost:5000/a/b:1@sha256:00");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("localhost:5000", Some("1"), Some("sha256:00"))
        );
    }
}
