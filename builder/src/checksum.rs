//! Upstream checksum files: the bare hex of dl.k8s.io's `<url>.sha256` and
//! crictl, and the `sha256sum` listing format of etcd's SHA256SUMS, runc.sha256sum,
//! containerd/helm `.sha256sum` and cni-plugins `.sha256`; a Helm chart
//! repository's `index.yaml` (each chart version's `digest`); GitHub's release
//! API document (each asset's `"digest": "sha256:<hex>"`).

use crate::catalog::ChecksumFormat;
use crate::error::{Error, Result};

/// The lowercase hex sha256 that the checksum file at `url` gives for `file_name`.
pub fn expected_sha256(
    format: ChecksumFormat,
    text: &str,
    file_name: &str,
    url: &str,
) -> Result<String> {
    let err = |reason: String| Error::ChecksumFile {
        url: url.to_string(),
        reason,
    };
    match format {
        ChecksumFormat::Bare => {
            let mut tokens = text.split_whitespace();
            let hex = tokens.next().ok_or_else(|| err("empty file".into()))?;
            // Tolerate "hex  name" too, as long as the name is the right file.
            if let Some(name) = tokens.next() {
                if clean(name) != file_name {
                    return Err(err(format!(
                        "lists {name:?}, expected a digest for {file_name}"
                    )));
                }
            }
            check_hex(hex).ok_or_else(|| err(format!("{hex:?} is not a sha256 hex digest")))
        }
        ChecksumFormat::Sha256sum => {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((hex, name)) = line.split_once(char::is_whitespace) else {
                    return Err(err(format!(
                        "line {}: expected \"<sha256>  <file>\"",
                        n + 1
                    )));
                };
                if clean(name.trim()) == file_name {
                    return check_hex(hex).ok_or_else(|| {
                        err(format!(
                            "line {}: {hex:?} is not a sha256 hex digest",
                            n + 1
                        ))
                    });
                }
            }
            Err(err(format!("has no line for {file_name}")))
        }
        ChecksumFormat::HelmIndex => helm_index(text, file_name, url),
        ChecksumFormat::GithubAsset => github_asset(text, file_name, url),
    }
}

/// The `digest` of the chart version in a Helm repository `index.yaml` whose
/// `urls` end in `file_name` (absolute or relative to the repository).
fn helm_index(text: &str, file_name: &str, url: &str) -> Result<String> {
    let err = |reason: String| Error::ChecksumFile {
        url: url.to_string(),
        reason,
    };
    let index: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| err(format!("not a Helm index: {e}")))?;
    let entries = index
        .get("entries")
        .and_then(|e| e.as_mapping())
        .ok_or_else(|| err("not a Helm index: no `entries`".into()))?;
    for versions in entries.values().filter_map(|v| v.as_sequence()) {
        for v in versions {
            let names_file = v
                .get("urls")
                .and_then(|u| u.as_sequence())
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str())
                .any(|u| u.rsplit('/').next() == Some(file_name));
            if !names_file {
                continue;
            }
            let digest = v.get("digest").and_then(|d| d.as_str()).unwrap_or("");
            return check_hex(digest.trim_start_matches("sha256:")).ok_or_else(|| {
                err(format!(
                    "the entry for {file_name} has digest {digest:?}, not a sha256 hex digest"
                ))
            });
        }
    }
    Err(err(format!("lists no chart version at {file_name}")))
}

/// The digest GitHub's release API gives for the asset named `file_name`.
fn github_asset(text: &str, file_name: &str, url: &str) -> Result<String> {
    let err = |reason: String| Error::ChecksumFile {
        url: url.to_string(),
        reason,
    };
    let release: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(format!("not a GitHub release: {e}")))?;
    let assets = release
        .get("assets")
        .and_then(|a| a.as_array())
        .ok_or_else(|| err("not a GitHub release: no `assets`".into()))?;
    let asset = assets
        .iter()
        .find(|a| a.get("name").and_then(|n| n.as_str()) == Some(file_name))
        .ok_or_else(|| err(format!("the release has no asset {file_name}")))?;
    match asset.get("digest").and_then(|d| d.as_str()) {
        None => Err(Error::NoUpstreamDigest {
            file: file_name.to_string(),
            url: url.to_string(),
        }),
        Some(d) => d
            .strip_prefix("sha256:")
            .and_then(check_hex)
            .ok_or_else(|| {
                err(format!(
                    "asset {file_name} has digest {d:?}, not sha256:<hex>"
                ))
            }),
    }
}

fn clean(name: &str) -> &str {
    let name = name.trim_start_matches('*');
    name.trim_start_matches("./")
}

fn check_hex(s: &str) -> Option<String> {
    (s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    const A: &str = "e97f49f4a300cc14e6cd59daec7069d1288ccf9c6271900dcc98b2091c1ef2b4";
    const B: &str = "8fa945774f6137a5b692f30e3a02428561212fb5585d9192238d634da77307d4";

    #[test]
    fn bare_hex() {
        assert_eq!(
            expected_sha256(ChecksumFormat::Bare, &format!("{A}\n"), "kubelet", "u").expect("ok"),
            A
        );
        assert_eq!(
            expected_sha256(ChecksumFormat::Bare, &A.to_uppercase(), "kubelet", "u").expect("ok"),
            A
        );
        assert!(expected_sha256(ChecksumFormat::Bare, "", "kubelet", "u").is_err());
        assert!(expected_sha256(ChecksumFormat::Bare, "abc", "kubelet", "u").is_err());
        let e = expected_sha256(
            ChecksumFormat::Bare,
            &format!("{A}  other"),
            "kubelet",
            "http://x/kubelet.sha256",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("http://x/kubelet.sha256") && e.contains("other"),
            "{e}"
        );
    }

    #[test]
    fn sha256sum_listing_picks_the_right_line() {
        let text =
            format!("{A}  etcd-v3.5.12-linux-amd64.tar.gz\n{B} *etcd-v3.5.12-linux-arm64.tar.gz\n");
        let f = ChecksumFormat::Sha256sum;
        assert_eq!(
            expected_sha256(f, &text, "etcd-v3.5.12-linux-arm64.tar.gz", "u").expect("ok"),
            B
        );
        assert_eq!(
            expected_sha256(f, &text, "etcd-v3.5.12-linux-amd64.tar.gz", "u").expect("ok"),
            A
        );
        let e = expected_sha256(f, &text, "etcd-v3.5.12-linux-s390x.tar.gz", "SUMS")
            .unwrap_err()
            .to_string();
        assert!(e.contains("SUMS") && e.contains("s390x"), "{e}");
        assert!(expected_sha256(f, "nonsense\n", "x", "u").is_err());
    }

    #[test]
    fn helm_index_picks_the_chart_version_by_file() {
        let text = format!(
            "apiVersion: v1\nentries:\n  cilium:\n  - digest: {A}\n    name: cilium\n    urls:\n    - https://helm.cilium.io/cilium-1.15.6.tgz\n    version: 1.15.6\n  - digest: {B}\n    name: cilium\n    urls:\n    - cilium-1.15.7.tgz\n    version: 1.15.7\n"
        );
        let f = ChecksumFormat::HelmIndex;
        assert_eq!(
            expected_sha256(f, &text, "cilium-1.15.6.tgz", "u").expect("ok"),
            A
        );
        assert_eq!(
            expected_sha256(f, &text, "cilium-1.15.7.tgz", "u").expect("ok"),
            B
        );
        let e = expected_sha256(f, &text, "cilium-1.15.8.tgz", "IDX")
            .unwrap_err()
            .to_string();
        assert!(e.contains("IDX") && e.contains("cilium-1.15.8.tgz"), "{e}");
        assert!(expected_sha256(f, "<html>", "x", "u").is_err());
    }

    #[test]
    fn github_asset_digest_by_name_and_missing_digest() {
        let text = format!(
            r#"{{"tag_name":"v1.14.5","assets":[{{"name":"cert-manager.yaml","digest":"sha256:{A}"}},{{"name":"old.yaml","digest":null}}]}}"#
        );
        let f = ChecksumFormat::GithubAsset;
        assert_eq!(
            expected_sha256(f, &text, "cert-manager.yaml", "u").expect("ok"),
            A
        );
        let e = expected_sha256(f, &text, "old.yaml", "API").unwrap_err();
        assert!(matches!(e, Error::NoUpstreamDigest { .. }), "{e}");
        assert!(e.to_string().contains("old.yaml") && e.to_string().contains("API"));
        let e = expected_sha256(f, &text, "nope.yaml", "API")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no asset nope.yaml"), "{e}");
    }
}
