//! The bundle's own apt repository for one set: a flat repository
//! (`deb [trusted=yes] file:<dir> ./`) holding `Packages` with each
//! paragraph as the archive published it (Filename pointing at `pool/`) and
//! a `Release` listing its hash. apt trusts it because ferry placed every
//! byte after checking the bundle's signature; the upstream signature was
//! checked when the bundle was built.

use super::packages::DebPackage;
use sha2::{Digest, Sha256};

/// `pool/<file name>` for a package's archive path.
pub fn pool_path(filename: &str) -> String {
    format!("pool/{}", filename.rsplit('/').next().unwrap_or(filename))
}

/// The `Packages` text for `pkgs` (sorted by name by the caller).
pub fn packages(pkgs: &[&DebPackage]) -> String {
    let mut out = String::new();
    for p in pkgs {
        for line in p.stanza.lines() {
            if line.starts_with("Filename:") {
                out.push_str(&format!("Filename: {}\n", pool_path(&p.filename)));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// A `Release` for the flat repository holding `packages`.
pub fn release(set: &str, arch: &str, packages: &str) -> String {
    let hex = hex::encode(Sha256::digest(packages.as_bytes()));
    format!(
        "Origin: ferry\nLabel: ferry {set}\nSuite: {set}\nArchitectures: {arch} all\nDescription: {set} packages carried by a ferry bundle\nSHA256:\n {hex} {} Packages\n",
        packages.len()
    )
}

#[cfg(test)]
mod tests {
    use super::super::packages::parse;
    use super::*;

    #[test]
    fn rewrites_only_the_filename() {
        let text = format!("Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/main/a/a/a_1_all.deb\nSize: 3\nSHA256: {}\nDescription: x\n more\n", "a".repeat(64));
        let pkgs = parse(&text, "amd64", 0).unwrap();
        let idx = packages(&pkgs.iter().collect::<Vec<_>>());
        assert!(idx.contains("Filename: pool/a_1_all.deb\n"), "{idx}");
        assert!(idx.contains("Description: x\n more\n\n"), "{idx}");
        let rel = release("debian-12", "amd64", &idx);
        assert!(rel.contains(&format!(" {} Packages", idx.len())));
    }
}
