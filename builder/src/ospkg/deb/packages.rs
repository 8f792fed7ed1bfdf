//! A `Packages` index: the binary packages of one suite, component and
//! architecture (plus `Architecture: all`).

use super::control;
use super::relation::{self, Alternative, Op, Relation};
use debversion::Version;

#[derive(Debug, Clone)]
pub struct DebPackage {
    pub name: String,
    pub version: Version,
    pub arch: String,
    /// Pre-Depends, then Depends.
    pub depends: Vec<Relation>,
    /// Versioned provides carry `(= version)`.
    pub provides: Vec<Alternative>,
    /// Path below the archive root (`pool/main/h/haproxy/haproxy_..._amd64.deb`).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// `Essential: yes` or `Priority: required`: part of every minimal host.
    pub essential: bool,
    /// The index paragraph as published, for the bundle's own index.
    pub stanza: String,
    /// Which of the source's repositories lists it.
    pub repo: usize,
}

impl DebPackage {
    /// `name version arch`, for messages.
    pub fn id(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.arch)
    }
}

/// The packages of `text` for `arch` (and `all`). Errors name the package.
pub fn parse(text: &str, arch: &str, repo: usize) -> Result<Vec<DebPackage>, String> {
    let mut out = Vec::new();
    for p in control::paragraphs(text) {
        let name = p.get("Package").ok_or("a paragraph without Package")?;
        let pkg_arch = p.get("Architecture").unwrap_or_default();
        if pkg_arch != arch && pkg_arch != "all" {
            continue;
        }
        let field = |f: &str| {
            p.get(f)
                .ok_or_else(|| format!("package {name}: no {f} field"))
        };
        let version: Version = field("Version")?
            .parse()
            .map_err(|e| format!("package {name}: Version: {e}"))?;
        let rel = |f: &str| {
            relation::parse(p.get(f).unwrap_or_default(), arch)
                .map_err(|e| format!("package {name}: {f}: {e}"))
        };
        let mut depends = rel("Pre-Depends")?;
        depends.extend(rel("Depends")?);
        let provides = rel("Provides")?
            .into_iter()
            .flatten()
            .filter(|a| matches!(a.constraint, None | Some((Op::Eq, _))))
            .collect();
        let sha256 = field("SHA256")?.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("package {name}: SHA256 {sha256:?} is not a sha256"));
        }
        out.push(DebPackage {
            name: name.to_string(),
            version,
            arch: pkg_arch.to_string(),
            depends,
            provides,
            filename: field("Filename")?.to_string(),
            size: field("Size")?
                .parse()
                .map_err(|_| format!("package {name}: Size is not a number"))?,
            sha256,
            essential: p.get("Essential") == Some("yes") || p.get("Priority") == Some("required"),
            stanza: p.raw.trim_end().to_string(),
            repo,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn keeps_the_arch_and_all_and_reads_relations() {
        let text = format!(
            "Package: haproxy\nVersion: 2.6.12-1+deb12u1\nArchitecture: amd64\nPre-Depends: init-system-helpers (>= 1.54~)\nDepends: libc6 (>= 2.34), adduser\nFilename: pool/main/h/haproxy/haproxy_2.6.12-1+deb12u1_amd64.deb\nSize: 10\nSHA256: {H}\n\n\
             Package: haproxy\nVersion: 2.6.12-1+deb12u1\nArchitecture: arm64\nFilename: x\nSize: 1\nSHA256: {H}\n\n\
             Package: adduser\nVersion: 3.134\nArchitecture: all\nPriority: important\nProvides: adduser-ng (= 1.0), other (>= 2)\nFilename: pool/main/a/adduser/adduser_3.134_all.deb\nSize: 5\nSHA256: {H}\n"
        );
        let ps = parse(&text, "amd64", 0).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].depends.len(), 3);
        assert_eq!(ps[0].depends[0][0].name, "init-system-helpers");
        assert_eq!(ps[1].provides.len(), 1, "only (= v) provides count");
        assert!(!ps[1].essential);
        assert!(ps[0].stanza.ends_with(H));
    }

    #[test]
    fn errors_name_the_package() {
        let err = parse(
            "Package: x\nArchitecture: all\nVersion: 1\nFilename: f\nSize: 1\nSHA256: nothex\n",
            "amd64",
            0,
        )
        .unwrap_err();
        assert!(err.contains("package x") && err.contains("SHA256"), "{err}");
    }
}
