//! `--mirror FROM=TO`: route an upstream URL prefix or registry to a proxy.
//!
//! * URL prefix: `https://dl.k8s.io=http://nexus.corp/dl` rewrites every URL
//!   starting with the prefix (at a `/` boundary).
//! * Registry: `registry.k8s.io=harbor.corp/k8s` (HTTPS) or
//!   `registry.k8s.io=http://127.0.0.1:5000/k8s` (plain HTTP); FROM may include a
//!   repository prefix (`quay.io/cilium=...`). The longest matching FROM wins.

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct UrlRule {
    from: String,
    to: String,
}

#[derive(Debug, Clone)]
struct RegistryRule {
    /// `host[/repo-prefix]`
    from: String,
    /// `host[:port][/path]`, without scheme.
    to: String,
    plain_http: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    urls: Vec<UrlRule>,
    registries: Vec<RegistryRule>,
}

/// Where to pull an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The upstream reference, normalised (`registry.k8s.io/pause:3.9`).
    pub upstream: String,
    /// Registry host[:port] to contact.
    pub registry: String,
    pub repository: String,
    /// `tag` or `@sha256:...` part.
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub plain_http: bool,
}

impl ImageSource {
    /// Reference string for the pull (`host/repo:tag` or `host/repo@digest`).
    pub fn pull_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}/{}@{d}", self.registry, self.repository),
            (None, Some(t)) => format!("{}/{}:{t}", self.registry, self.repository),
            (None, None) => format!("{}/{}:latest", self.registry, self.repository),
        }
    }
}

impl Mirrors {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Mirrors> {
        let mut m = Mirrors::default();
        for arg in args {
            let arg = arg.as_ref();
            let bad = |why: &str| {
                Error::Usage(format!(
                    "--mirror {arg:?}: {why} (expected FROM=TO, e.g. registry.k8s.io=harbor.corp/k8s, \
                     registry.k8s.io=http://127.0.0.1:5000 or https://dl.k8s.io=http://nexus.corp/dl)"
                ))
            };
            let (from, to) = arg.split_once('=').ok_or_else(|| bad("no '='"))?;
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() || to.is_empty() {
                return Err(bad("empty side"));
            }
            if from.starts_with("http://") || from.starts_with("https://") {
                if !(to.starts_with("http://") || to.starts_with("https://")) {
                    return Err(bad("a URL prefix must map to an http:// or https:// URL"));
                }
                m.urls.push(UrlRule {
                    from: from.trim_end_matches('/').into(),
                    to: to.trim_end_matches('/').into(),
                });
            } else {
                if from.contains("://") {
                    return Err(bad("FROM must be http(s)://... or a registry host"));
                }
                let (plain_http, rest) = if let Some(r) = to.strip_prefix("http://") {
                    (true, r)
                } else if let Some(r) = to.strip_prefix("https://") {
                    (false, r)
                } else if to.contains("://") {
                    return Err(bad("a registry mirror is host[:port][/path], optionally with http:// or https://"));
                } else {
                    (false, to)
                };
                let rest = rest.trim_end_matches('/');
                if rest.is_empty() || rest.starts_with('/') {
                    return Err(bad("mirror has no host"));
                }
                m.registries.push(RegistryRule {
                    from: from.trim_end_matches('/').into(),
                    to: rest.into(),
                    plain_http,
                });
            }
        }
        // Longest FROM first, so the most specific rule wins.
        m.urls.sort_by_key(|r| std::cmp::Reverse(r.from.len()));
        m.registries
            .sort_by_key(|r| std::cmp::Reverse(r.from.len()));
        Ok(m)
    }

    pub fn map_url(&self, url: &str) -> String {
        for r in &self.urls {
            if let Some(rest) = url.strip_prefix(&r.from) {
                if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
                    return format!("{}{rest}", r.to);
                }
            }
        }
        url.to_string()
    }

    pub fn map_image(&self, reference: &str) -> Result<ImageSource> {
        let (host, repo, tag, digest) = split_reference(reference).map_err(Error::Usage)?;
        let upstream = normalised(&host, &repo, tag.as_deref(), digest.as_deref());
        let full = format!("{host}/{repo}");
        for r in &self.registries {
            if let Some(rest) = full.strip_prefix(&r.from) {
                if rest.is_empty() || rest.starts_with('/') {
                    let (mhost, mpath) = match r.to.split_once('/') {
                        Some((h, p)) => (h.to_string(), p.to_string()),
                        None => (r.to.clone(), String::new()),
                    };
                    let rest = rest.trim_start_matches('/');
                    let repository = [mpath.as_str(), rest]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join("/");
                    if repository.is_empty() {
                        return Err(Error::Usage(format!(
                            "--mirror {}={}: maps {reference} to an empty repository",
                            r.from, r.to
                        )));
                    }
                    return Ok(ImageSource {
                        upstream,
                        registry: mhost,
                        repository,
                        tag,
                        digest,
                        plain_http: r.plain_http,
                    });
                }
            }
        }
        Ok(ImageSource {
            upstream,
            registry: host,
            repository: repo,
            tag,
            digest,
            plain_http: false,
        })
    }
}

fn normalised(host: &str, repo: &str, tag: Option<&str>, digest: Option<&str>) -> String {
    let mut s = format!("{host}/{repo}");
    if let Some(t) = tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = digest {
        s.push('@');
        s.push_str(d);
    }
    s
}

/// `host/repo[:tag][@digest]` -> parts. A reference without a registry host is
/// Docker Hub's (`nginx` -> `docker.io/library/nginx`).
#[allow(clippy::type_complexity)]
pub fn split_reference(
    r: &str,
) -> std::result::Result<(String, String, Option<String>, Option<String>), String> {
    let bad = |why: &str| format!("image reference {r:?}: {why}");
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("digest must be sha256:<hex>"))?;
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("digest must be sha256: and 64 hex digits"));
            }
            (n, Some(d.to_string()))
        }
        None => (r, None),
    };
    // A ':' after the last '/' is the tag (a ':' before it is a port).
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name[slash..].find(':') {
        Some(i) => (&name[..slash + i], Some(name[slash + i + 1..].to_string())),
        None => (name, None),
    };
    if name.is_empty() || tag.as_deref() == Some("") {
        return Err(bad("empty name or tag"));
    }
    let (host, repo) = match name.split_once('/') {
        Some((h, rest)) if h.contains('.') || h.contains(':') || h == "localhost" => {
            (h.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), name.to_string()),
        None => ("docker.io".to_string(), format!("library/{name}")),
    };
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if repo.is_empty() || !repo.chars().all(ok) || repo.starts_with('/') || repo.ends_with('/') {
        return Err(bad("repository must be lowercase [a-z0-9._-/]"));
    }
    Ok((host, repo, tag, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_prefix_mapping_respects_boundaries_and_longest_match() {
        let m = Mirrors::parse(&[
            "https://dl.k8s.io=http://127.0.0.1:8080/dl",
            "https://dl.k8s.io/release/v1.29.6=http://other/x",
        ])
        .expect("parse");
        assert_eq!(
            m.map_url("https://dl.k8s.io/release/v1.29.6/bin/linux/amd64/kubelet"),
            "http://other/x/bin/linux/amd64/kubelet"
        );
        assert_eq!(
            m.map_url("https://dl.k8s.io/release/v1.30.0/kubelet"),
            "http://127.0.0.1:8080/dl/release/v1.30.0/kubelet"
        );
        assert_eq!(
            m.map_url("https://dl.k8s.io.evil/x"),
            "https://dl.k8s.io.evil/x"
        );
        assert_eq!(
            m.map_url("https://get.helm.sh/helm.tgz"),
            "https://get.helm.sh/helm.tgz"
        );
    }

    #[test]
    fn registry_mapping_with_path_and_plain_http() {
        let m = Mirrors::parse(&[
            "registry.k8s.io=127.0.0.1:5000/k8s",
            "quay.io=http://127.0.0.1:5001",
            "quay.io/cilium=https://harbor.corp/cilium-mirror",
        ])
        .expect("parse");
        let s = m.map_image("registry.k8s.io/pause:3.9").expect("map");
        assert_eq!(s.pull_reference(), "127.0.0.1:5000/k8s/pause:3.9");
        assert!(!s.plain_http);
        assert_eq!(s.upstream, "registry.k8s.io/pause:3.9");
        let s = m
            .map_image("quay.io/jetstack/cert-manager-webhook:v1.14.5")
            .expect("map");
        assert_eq!(
            s.pull_reference(),
            "127.0.0.1:5001/jetstack/cert-manager-webhook:v1.14.5"
        );
        assert!(s.plain_http);
        let s = m.map_image("quay.io/cilium/cilium:v1.15.6").expect("map");
        assert_eq!(
            s.pull_reference(),
            "harbor.corp/cilium-mirror/cilium:v1.15.6"
        );
        assert!(!s.plain_http);
        let s = m.map_image("registry.k8s.io.evil/pause:3.9").expect("map");
        assert_eq!(s.registry, "registry.k8s.io.evil");
    }

    #[test]
    fn references_are_split_and_checked() {
        assert_eq!(
            split_reference("localhost:5000/a/b:1").expect("ok"),
            (
                "localhost:5000".into(),
                "a/b".into(),
                Some("1".into()),
                None
            )
        );
        assert_eq!(split_reference("nginx").expect("ok").1, "library/nginx");
        assert!(split_reference("registry.k8s.io/Pause:3.9").is_err());
        assert!(split_reference("registry.k8s.io/pause@sha256:abc").is_err());
        assert!(Mirrors::parse(&["registry.k8s.io"]).is_err());
        assert!(Mirrors::parse(&["https://dl.k8s.io=nexus.corp/dl"]).is_err());
        assert!(Mirrors::parse(&["registry.k8s.io=ftp://x"]).is_err());
    }
}
