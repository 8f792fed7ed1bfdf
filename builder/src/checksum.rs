//! Upstream checksum files: the bare hex of dl.k8s.io's `<url>.sha256` and
//! crictl, and the `sha256sum` listing format of etcd's SHA256SUMS, runc.sha256sum,
//! containerd/helm `.sha256sum` and cni-plugins `.sha256`.

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
}
