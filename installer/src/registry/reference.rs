//! Image references as written upstream (`registry.k8s.io/pause:3.9`) and the
//! repository names clients ask a mirror for (`pause` with `?ns=registry.k8s.io`,
//! `registry.k8s.io/pause`, `library/nginx`, `nginx`).

/// The registry host Docker Hub images are filed under.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed upstream reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Normalized registry host (`docker.io` for Docker Hub), with port if any.
    pub host: String,
    /// Repository path inside the host (`pause`, `library/nginx`, `cilium/cilium`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `[host[:port]/]path[:tag][@sha256:hex]` the way docker and containerd do.
    pub fn parse(reference: &str) -> Option<ImageRef> {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_owned())),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if tag.as_deref().is_some_and(|t| !valid_tag(t)) {
            return None;
        }
        let (host, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => {
                (normalize_host(first), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let path = docker_hub_path(&host, &path);
        if !valid_path(&path) || (tag.is_none() && digest.is_none()) {
            return None;
        }
        Some(ImageRef {
            host,
            path,
            tag,
            digest,
        })
    }

    /// `host/path`, the name listed by `_catalog`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }
}

/// A first path component is a registry host when it has a dot or a port, or is localhost.
pub fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Docker Hub has several names; file them all under `docker.io`.
pub fn normalize_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        other => other.to_ascii_lowercase(),
    }
}

/// Docker Hub's official images live under `library/`.
pub fn docker_hub_path(host: &str, path: &str) -> String {
    if host == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    }
}

/// Repository path components: lowercase alphanumerics separated by `.`, `_`, `__` or dashes.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

/// A request name: a repository path, optionally prefixed by a host component (which may carry a port).
pub fn valid_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => valid_host(first) && valid_path(rest),
        _ => valid_path(name),
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        && !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-'
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(s).unwrap_or_else(|| panic!("{s} should parse"));
        (r.host, r.path, r.tag, r.digest)
    }

    #[test]
    fn parses_upstream_references() {
        assert_eq!(
            parse("registry.k8s.io/pause:3.9"),
            (
                "registry.k8s.io".into(),
                "pause".into(),
                Some("3.9".into()),
                None
            )
        );
        assert_eq!(
            parse("quay.io/cilium/cilium:v1.15.6@sha256:abc"),
            (
                "quay.io".into(),
                "cilium/cilium".into(),
                Some("v1.15.6".into()),
                Some("sha256:abc".into())
            )
        );
        assert_eq!(
            parse("nginx:1.25"),
            (
                "docker.io".into(),
                "library/nginx".into(),
                Some("1.25".into()),
                None
            )
        );
        assert_eq!(
            parse("docker.io/bitnami/redis:7"),
            (
                "docker.io".into(),
                "bitnami/redis".into(),
                Some("7".into()),
                None
            )
        );
        assert_eq!(
            parse("localhost:5000/a/b:c"),
            (
                "localhost:5000".into(),
                "a/b".into(),
                Some("c".into()),
                None
            )
        );
        assert_eq!(
            parse("index.docker.io/busybox:1"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                Some("1".into()),
                None
            )
        );
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "registry.k8s.io/pause",
            "Registry/UPPER:1",
            "a//b:1",
            "a/b:bad tag",
            "x:",
        ] {
            assert!(ImageRef::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn validates_request_names() {
        assert!(valid_name("pause"));
        assert!(valid_name("registry.k8s.io/pause"));
        assert!(valid_name("127.0.0.1:5000/a/b"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a/../b"));
        assert!(!valid_name("UPPER"));
        assert!(!valid_name("a/"));
    }
}
