//! Whether a cluster may move from one bundle to another, by Kubernetes'
//! version-skew policy: one minor version at a time, never down without
//! being asked, and etcd never older than the cluster's (an etcd member
//! cannot read data a newer minor wrote). Kubelets are upgraded after every
//! apiserver (the roll's order), so they are never newer than the apiserver.

use std::cmp::Ordering;
use std::fmt;

/// `major.minor.patch`, as bundles and catalogs write versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    /// `1.29.6`, `v1.29.6` or `3.5.12-0`; what follows a `-` or `+` is ignored.
    pub fn parse(s: &str) -> Result<Version, String> {
        let core = s
            .trim()
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        let num = |i: usize| -> Result<u64, String> {
            parts
                .get(i)
                .ok_or_else(|| format!("version {s:?} is not major.minor.patch"))?
                .parse()
                .map_err(|_| format!("version {s:?} is not major.minor.patch"))
        };
        if parts.len() != 3 {
            return Err(format!("version {s:?} is not major.minor.patch"));
        }
        Ok(Version {
            major: num(0)?,
            minor: num(1)?,
            patch: num(2)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The versions a bundle runs a cluster with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub kubernetes: Version,
    /// None when the bundle carries no etcd.
    pub etcd: Option<Version>,
}

/// Refuses a move from `from` to `to` that the skew policy does not allow;
/// `allow_downgrade` lets a lower version through (a rollback), never a jump
/// of more than one minor version.
pub fn check(from: &Versions, to: &Versions, allow_downgrade: bool) -> Result<(), String> {
    let (f, t) = (from.kubernetes, to.kubernetes);
    if f.major != t.major {
        return Err(format!(
            "Kubernetes {f} to {t} changes the major version; ferry upgrades one minor version at a time"
        ));
    }
    let minors = t.minor.abs_diff(f.minor);
    if minors > 1 {
        return Err(format!(
            "Kubernetes {f} to {t} skips {} minor version(s); upgrade one minor version at a time ({f} to {}.{}.x first)",
            minors - 1,
            f.major,
            if t.minor > f.minor { f.minor + 1 } else { f.minor - 1 }
        ));
    }
    if t.cmp(&f) == Ordering::Less && !allow_downgrade {
        return Err(format!(
            "Kubernetes {t} is older than the cluster's {f}: a downgrade; pass --allow-downgrade (or use --rollback) if that is meant"
        ));
    }
    if let (Some(fe), Some(te)) = (from.etcd, to.etcd) {
        if (te.major, te.minor) < (fe.major, fe.minor) && !allow_downgrade {
            return Err(format!(
                "etcd {te} is an older minor version than the cluster's {fe}: its members cannot read what {fe} wrote; pass --allow-downgrade only to return to a snapshot taken before"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(k: &str, e: &str) -> Versions {
        Versions {
            kubernetes: Version::parse(k).unwrap(),
            etcd: Some(Version::parse(e).unwrap()),
        }
    }

    #[test]
    fn versions_parse_as_bundles_write_them() {
        assert_eq!(Version::parse("v1.29.7").unwrap().to_string(), "1.29.7");
        assert_eq!(Version::parse("3.5.12-0").unwrap().to_string(), "3.5.12");
        assert!(Version::parse("1.29").is_err());
        assert!(Version::parse("1.x.3").is_err());
    }

    #[test]
    fn a_patch_or_one_minor_up_is_allowed() {
        check(&v("1.29.6", "3.5.12"), &v("1.29.7", "3.5.12"), false).unwrap();
        check(&v("1.29.6", "3.5.12"), &v("1.30.2", "3.5.14"), false).unwrap();
        check(&v("1.29.6", "3.5.12"), &v("1.29.6", "3.5.12"), false).unwrap();
    }

    #[test]
    fn two_minors_a_downgrade_and_an_older_etcd_are_refused() {
        let err = check(&v("1.29.6", "3.5.12"), &v("1.31.0", "3.5.15"), false).unwrap_err();
        assert!(
            err.contains("skips 1 minor") && err.contains("1.30.x first"),
            "{err}"
        );
        let err = check(&v("1.29.7", "3.5.12"), &v("1.29.6", "3.5.12"), false).unwrap_err();
        assert!(
            err.contains("downgrade") && err.contains("--allow-downgrade"),
            "{err}"
        );
        check(&v("1.29.7", "3.5.12"), &v("1.29.6", "3.5.12"), true).unwrap();
        let err = check(&v("1.29.6", "3.5.12"), &v("1.29.7", "3.4.30"), false).unwrap_err();
        assert!(err.contains("etcd 3.4.30"), "{err}");
        let err = check(&v("1.29.6", "3.5.12"), &v("1.31.0", "3.5.12"), true).unwrap_err();
        assert!(err.contains("skips"), "{err}");
        assert!(check(&v("1.29.6", "3.5.12"), &v("2.0.0", "3.5.12"), false).is_err());
    }
}
