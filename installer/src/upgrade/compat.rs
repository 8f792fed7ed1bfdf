//! Whether a bundle's etcd and CNI go with its Kubernetes release, checked
//! before an upgrade moves a cluster onto it.
//!
//! - etcd: Kubernetes' "Operating etcd clusters" page names 3.4.22+ and
//!   3.5.6+ as the minimum for production (earlier patches of both lines
//!   have data-inconsistency bugs); etcd before 3.4 is not supported at all.
//! - CNI: each release's own tested Kubernetes versions (Calico's "Kubernetes
//!   requirements" page per release, Cilium's "Kubernetes Compatibility"
//!   page per release). A CNI release this table does not list is let
//!   through: the table only refuses what its vendor says is untested.

use super::skew::Version;
use ferry_bundles::BundleManifest;

/// (CNI, its bundle component, release `major.minor`, Kubernetes minors tested).
type Tested = (&'static str, &'static str, (u64, u64), (u64, u64));

const CNI_TESTED: &[Tested] = &[
    ("calico", "tigera-operator", (3, 26), (24, 28)),
    ("calico", "tigera-operator", (3, 27), (27, 29)),
    ("calico", "tigera-operator", (3, 28), (28, 30)),
    ("calico", "tigera-operator", (3, 29), (29, 32)),
    ("cilium", "cilium", (1, 15), (26, 29)),
    ("cilium", "cilium", (1, 16), (27, 30)),
    ("cilium", "cilium", (1, 17), (29, 32)),
    ("cilium", "cilium", (1, 18), (30, 33)),
];

/// Refuses `bundle` when its etcd or the cluster's CNI (`cni`, as the plan
/// names it) is outside what its Kubernetes release is tested with.
pub fn check(bundle: &BundleManifest, cni: &str) -> Result<(), String> {
    let parts: Vec<(&str, &str)> = bundle
        .components
        .iter()
        .map(|c| (c.name.as_str(), c.version.as_str()))
        .collect();
    check_versions(&bundle.name, &bundle.kubernetes, &parts, cni)
}

/// [`check`] on a bundle's name, Kubernetes version and (component, version) list.
fn check_versions(
    bundle: &str,
    kubernetes: &str,
    parts: &[(&str, &str)],
    cni: &str,
) -> Result<(), String> {
    let k8s = Version::parse(kubernetes)?;
    let version_of = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Version::parse(v))
            .transpose()
    };
    if let Some(etcd) = version_of("etcd")? {
        check_etcd(bundle, etcd)?;
    }
    for (name, component, release, (lo, hi)) in CNI_TESTED {
        if *name != cni {
            continue;
        }
        let Some(v) = version_of(component)? else {
            continue;
        };
        if (v.major, v.minor) == *release && !(*lo..=*hi).contains(&k8s.minor) {
            return Err(format!(
                "bundle {bundle}: {cni} {v} is tested with Kubernetes 1.{lo} to 1.{hi}, not {k8s}; build the bundle with a {cni} release that lists 1.{}",
                k8s.minor
            ));
        }
    }
    Ok(())
}

fn check_etcd(bundle: &str, etcd: Version) -> Result<(), String> {
    let minimum = match (etcd.major, etcd.minor) {
        (3, 4) => Some(Version::parse("3.4.22")?),
        (3, 5) => Some(Version::parse("3.5.6")?),
        (3, m) if m > 5 => None,
        (major, _) if major > 3 => None,
        _ => {
            return Err(format!(
            "bundle {bundle}: etcd {etcd} is older than 3.4, which Kubernetes no longer supports"
        ))
        }
    };
    match minimum {
        Some(min) if etcd < min => Err(format!(
            "bundle {bundle}: etcd {etcd} is older than {min}, the minimum Kubernetes names for production on the {}.{} line; build the bundle with etcd {min} or later",
            etcd.major, etcd.minor
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(k8s: &str, parts: &[(&str, &str)], cni: &str) -> Result<(), String> {
        check_versions("b", k8s, parts, cni)
    }

    #[test]
    fn the_guide_pairings_pass() {
        let parts = [
            ("etcd", "3.5.12"),
            ("cilium", "1.15.6"),
            ("tigera-operator", "3.27.3"),
        ];
        check("1.29.7", &parts, "cilium").unwrap();
        check("1.29.7", &parts, "calico").unwrap();
    }

    #[test]
    fn an_untested_cni_and_an_old_etcd_are_refused() {
        let err = check(
            "1.30.2",
            &[("etcd", "3.5.12"), ("tigera-operator", "3.27.3")],
            "calico",
        )
        .unwrap_err();
        assert!(
            err.contains("calico 3.27.3 is tested with Kubernetes 1.27 to 1.29, not 1.30.2"),
            "{err}"
        );
        // The other CNI's component is not the cluster's: not checked.
        check(
            "1.30.2",
            &[("etcd", "3.5.12"), ("tigera-operator", "3.27.3")],
            "cilium",
        )
        .unwrap();
        let err = check("1.29.7", &[("etcd", "3.5.4")], "cilium").unwrap_err();
        assert!(err.contains("etcd 3.5.4 is older than 3.5.6"), "{err}");
        assert!(check("1.29.7", &[("etcd", "3.3.27")], "cilium").is_err());
        check("1.29.7", &[("etcd", "3.4.30")], "cilium").unwrap();
        // A release the table does not know is let through.
        check("1.29.7", &[("cilium", "1.14.12")], "cilium").unwrap();
    }
}
