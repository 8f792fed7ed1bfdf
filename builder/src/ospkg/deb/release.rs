//! A suite's `Release` (the text an `InRelease` signs): which suite it is,
//! its architectures, and the SHA256 of every index file.

use super::control;
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub architectures: Vec<String>,
    pub valid_until: Option<String>,
    /// Index path (relative to `dists/<suite>/`) -> (sha256 hex, size).
    pub sha256: BTreeMap<String, (String, u64)>,
}

impl Release {
    pub fn parse(text: &str) -> Result<Release, String> {
        let p = control::paragraphs(text)
            .next()
            .ok_or("empty Release file")?;
        let mut sha256 = BTreeMap::new();
        for line in p.get("SHA256").ok_or("no SHA256 field")?.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [] => {}
                [hex, size, path] if hex.len() == 64 => {
                    let size = size
                        .parse()
                        .map_err(|_| format!("SHA256 line {line:?}: bad size"))?;
                    sha256.insert(path.to_string(), (hex.to_ascii_lowercase(), size));
                }
                _ => {
                    return Err(format!(
                        "SHA256 line {line:?} is not \"<sha256> <size> <path>\""
                    ))
                }
            }
        }
        Ok(Release {
            suite: p.get("Suite").map(str::to_string),
            codename: p.get("Codename").map(str::to_string),
            architectures: p
                .get("Architectures")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            valid_until: p.get("Valid-Until").map(str::to_string),
            sha256,
        })
    }

    /// A signed Release for another suite must not stand in for this one.
    pub fn is_suite(&self, suite: &str) -> bool {
        self.suite.as_deref() == Some(suite) || self.codename.as_deref() == Some(suite)
    }

    /// The best listed `Packages` index of a component and architecture:
    /// `.xz`, then `.gz`, then plain.
    pub fn packages_index(&self, component: &str, arch: &str) -> Option<(String, &(String, u64))> {
        ["xz", "gz", ""].iter().find_map(|ext| {
            let base = format!("{component}/binary-{arch}/Packages");
            let path = if ext.is_empty() {
                base
            } else {
                format!("{base}.{ext}")
            };
            self.sha256.get(&path).map(|h| (path, h))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Origin: Debian\nSuite: stable\nCodename: bookworm\nArchitectures: amd64 arm64\nSHA256:\n 0123456789012345678901234567890123456789012345678901234567890123 10 main/binary-amd64/Packages\n abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd 4 main/binary-amd64/Packages.xz\n";

    #[test]
    fn parses_hashes_and_prefers_xz() {
        let r = Release::parse(TEXT).unwrap();
        assert!(r.is_suite("bookworm") && r.is_suite("stable") && !r.is_suite("trixie"));
        assert_eq!(r.architectures, ["amd64", "arm64"]);
        let (path, (hex, size)) = r.packages_index("main", "amd64").unwrap();
        assert_eq!(path, "main/binary-amd64/Packages.xz");
        assert!(hex.starts_with("abcdef") && *size == 4);
        assert!(r.packages_index("main", "arm64").is_none());
    }

    #[test]
    fn refuses_malformed_hash_lines() {
        let err = Release::parse("Suite: x\nSHA256:\n zz 1\n").unwrap_err();
        assert!(err.contains("zz 1"), "{err}");
        assert!(Release::parse("Suite: x\n").unwrap_err().contains("SHA256"));
    }
}
