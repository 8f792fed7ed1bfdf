//! OS packages from the bundle: which of the bundle's sets serves a host
//! (its /etc/os-release and architecture), which packages its roles need
//! that are not installed, and installing those with the distribution's own
//! tool from a copy of the set's repository that ferry places on the host.
//! Nothing is fetched from anywhere else; installed versions are left alone.

use super::{HostRun, REMOTE_DATA_DIR};
use crate::exec::{sh_quote, Source, Upload};
use ferry_bundles::manifest::{BundleManifest, OsFormat, OsPackageSet};
use std::path::PathBuf;
use std::sync::Arc;

/// What the install steps run, by the profile's (Debian) names; a bundle set
/// lists the names its distribution uses.
const STEP_PACKAGES: [&str; 9] = [
    "chrony",
    "conntrack",
    "ipset",
    "ipvsadm",
    "socat",
    "iproute2",
    "haproxy",
    "keepalived",
    "curl",
];

/// A host's missing packages and the set that carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageWork {
    pub set: usize,
    /// The distribution's names.
    pub missing: Vec<String>,
}

/// Every package name preflight asks hosts about (each set's names, and the
/// steps' own when the bundle carries no set). Names are checked to be
/// package names before they reach a shell.
pub fn query_names(bundle: &BundleManifest) -> Vec<String> {
    let mut names: Vec<String> = STEP_PACKAGES.iter().map(|s| s.to_string()).collect();
    for set in &bundle.os_packages {
        names.extend(set.requested.iter().map(|r| r.package.clone()));
    }
    names.retain(|n| is_package_name(n));
    names.sort();
    names.dedup();
    names
}

/// Debian and rpm package names: letters, digits and `+-._`.
fn is_package_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
}

/// The units that run (or whose step runs) a package; a host needs the
/// package when its plan has one of them. `None`: a package the profile asks
/// for that no step names (the stand-ins' interpreter in tests): every host.
fn used_by(package: &str) -> Option<&'static [&'static str]> {
    Some(match package {
        "chrony" => &["chrony.service"],
        // haproxy balances the apiservers on [ex_lb] and on every node.
        "haproxy" => &["haproxy.service", "ferry-kube-lb.service"],
        "keepalived" => &["keepalived.service"],
        // kubelet and kube-proxy: conntrack entries, port-forward, ipvs.
        "conntrack" | "socat" | "ipset" | "ipvsadm" => &["kubelet.service", "kube-proxy.service"],
        "iproute2" => &["kubelet.service", "keepalived.service"],
        // `ferry status` asks the registry mirrors with curl.
        "curl" => &["kubelet.service", "kube-apiserver.service"],
        _ => return None,
    })
}

/// The profile's names this host's planned units need.
fn needed(has_unit: &dyn Fn(&str) -> bool, requested: &[String]) -> Vec<String> {
    requested
        .iter()
        .filter(|n| used_by(n).is_none_or(|units| units.iter().any(|u| has_unit(u))))
        .cloned()
        .collect()
}

/// The set for a host's OS (`ID VERSION_ID`) and Debian architecture name.
pub fn set_for<'b>(
    bundle: &'b BundleManifest,
    os: &str,
    arch: &str,
) -> Option<(usize, &'b OsPackageSet)> {
    let mut words = os.split_whitespace();
    let (id, version) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    bundle.os_packages.iter().enumerate().find(|(_, s)| {
        s.os_id == id
            && s.platform == format!("linux/{arch}")
            && (s.version_id == version || version.starts_with(&format!("{}.", s.version_id)))
    })
}

/// Preflight: problems, and the work for the packages step.
pub fn check(
    bundle: &BundleManifest,
    has_unit: &dyn Fn(&str) -> bool,
    os: &str,
    arch: &str,
    installed: &[&str],
) -> (Vec<String>, Option<PackageWork>) {
    let Some((index, set)) = set_for(bundle, os, arch) else {
        return (no_set_problems(bundle, has_unit, os, arch, installed), None);
    };
    let requested: Vec<String> = set.requested.iter().map(|r| r.name.clone()).collect();
    let mut missing = Vec::new();
    for name in needed(has_unit, &requested) {
        let package = set
            .requested
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.package.clone())
            .unwrap_or(name);
        if !installed.contains(&package.as_str()) {
            missing.push(package);
        }
    }
    let work = (!missing.is_empty()).then_some(PackageWork {
        set: index,
        missing,
    });
    (Vec::new(), work)
}

fn no_set_problems(
    bundle: &BundleManifest,
    has_unit: &dyn Fn(&str) -> bool,
    os: &str,
    arch: &str,
    installed: &[&str],
) -> Vec<String> {
    if !bundle.os_packages.is_empty() {
        let carried: Vec<String> = bundle
            .os_packages
            .iter()
            .map(|s| format!("{} ({})", s.name, s.platform))
            .collect();
        return vec![format!(
            "the bundle carries no OS packages for {os} on {arch}; it carries {}: build a bundle with --os for this distribution",
            carried.join(", ")
        )];
    }
    let steps: Vec<String> = STEP_PACKAGES.iter().map(|s| s.to_string()).collect();
    let missing: Vec<String> = needed(has_unit, &steps)
        .into_iter()
        .filter(|p| !installed.contains(&p.as_str()))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{} not installed and the bundle carries no OS packages: install them, or build the bundle with --os for {os}",
        missing.join(", ")
    )]
}

/// Copies the set's repository to the host and installs `work.missing`.
pub async fn install(
    ctx: &super::DeployContext,
    r: &mut HostRun,
    work: &PackageWork,
) -> Result<(), String> {
    let set = ctx
        .manifest
        .os_packages
        .get(work.set)
        .ok_or("internal: no such OS package set")?;
    let remote_dir = PathBuf::from(REMOTE_DATA_DIR).join(&set.dir);
    let prefix = format!("{}/", set.dir);
    let mut uploads = Vec::new();
    for f in ctx
        .manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with(&prefix))
    {
        let local = ctx
            .store
            .file_path(&ctx.bundle, &f.path)
            .map_err(|e| format!("bundle file {}: {e}", f.path))?;
        uploads.push(Upload {
            path: remote_dir.join(&f.path[prefix.len()..]),
            mode: 0o644,
            source: Source::File(local),
            sha256: Some(f.sha256.clone()),
        });
    }
    let (config_path, config) = tool_config(set, &remote_dir);
    uploads.push(Upload {
        path: config_path,
        mode: 0o644,
        source: Source::Bytes(Arc::from(config.into_bytes())),
        sha256: None,
    });
    let exec = r.exec()?;
    let changed = exec.put_files(&uploads).await.map_err(|e| e.to_string())?;
    exec.check(&install_script(set, &work.missing))
        .await
        .map_err(|e| {
            format!(
                "installing {} from the bundle's {} set: {e}",
                work.missing.join(", "),
                set.name
            )
        })?;
    r.changed.extend(changed);
    Ok(())
}

/// apt: a sources list naming only the set's repository; dnf: a repo file.
fn tool_config(set: &OsPackageSet, dir: &std::path::Path) -> (PathBuf, String) {
    let base = PathBuf::from(REMOTE_DATA_DIR);
    match set.format {
        OsFormat::Deb => (
            base.join("apt/sources.list"),
            format!("deb [trusted=yes] file:{} ./\n", dir.display()),
        ),
        OsFormat::Rpm => (
            base.join("dnf/ferry.repo"),
            format!(
                "[ferry-{name}]\nname=ferry bundle: {name}\nbaseurl=file://{dir}\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=0\ngpgkey=file://{dir}/keys/archive.asc\n",
                name = set.name,
                dir = dir.display(),
            ),
        ),
    }
}

/// Installs without starting services (policy-rc.d): ferry writes their
/// configuration and starts the ones the host runs in later steps. A run
/// killed mid-install may leave its apt running, dpkg interrupted or its
/// policy-rc.d (marked as ferry's) in place: apt waits for dpkg's lock, an
/// interrupted dpkg is configured before one retry, and the marked
/// policy-rc.d is taken as this run's and removed at its end.
fn install_script(set: &OsPackageSet, missing: &[String]) -> String {
    let names: Vec<String> = missing.iter().map(|n| sh_quote(n)).collect();
    let d = REMOTE_DATA_DIR;
    match set.format {
        OsFormat::Deb => format!(
            r#"set -e
export DEBIAN_FRONTEND=noninteractive
mkdir -p {d}/apt/lists/partial {d}/apt/cache/archives/partial {d}/apt/sources.list.d
opts="-o Dir::Etc::SourceList={d}/apt/sources.list -o Dir::Etc::SourceParts={d}/apt/sources.list.d -o Dir::State::Lists={d}/apt/lists -o Dir::Cache={d}/apt/cache -o Acquire::Languages=none"
mark='# ferry: no service starts while packages are installed'
if [ ! -e /usr/sbin/policy-rc.d ] || grep -qxF "$mark" /usr/sbin/policy-rc.d; then printf '#!/bin/sh\n%s\nexit 101\n' "$mark" >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; trap 'exit 1' HUP INT TERM PIPE; fi
apt-get $opts -q update
install_packages() {{ apt-get $opts -o DPkg::Lock::Timeout=600 -q -y --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install {names}; }}
install_packages || {{ dpkg --configure -a && install_packages; }}
"#,
            names = names.join(" ")
        ),
        OsFormat::Rpm => format!(
            "set -e\ndnf -y -q --setopt=reposdir={d}/dnf --disablerepo='*' --enablerepo='ferry-*' --setopt=install_weak_deps=False install {}\n",
            names.join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_bundles::manifest::RequestedPackage;

    fn set(name: &str, os_id: &str, version: &str, platform: &str) -> OsPackageSet {
        OsPackageSet {
            name: name.into(),
            format: OsFormat::Deb,
            os_id: os_id.into(),
            version_id: version.into(),
            platform: platform.into(),
            arch: "amd64".into(),
            dir: format!("os/{name}/amd64"),
            requested: STEP_PACKAGES
                .iter()
                .map(|n| RequestedPackage {
                    name: n.to_string(),
                    package: n.replace("conntrack", "conntrack-tools"),
                })
                .collect(),
            packages: vec![],
        }
    }

    fn bundle(sets: Vec<OsPackageSet>) -> BundleManifest {
        let mut b = BundleManifest::from_bytes(
            br#"{"schema":1,"name":"t","created":"2026-01-01T00:00:00Z","builder":"t","kubernetes":"1.29.6","platforms":["linux/amd64"],"components":[],"images":[],"files":[]}"#,
        )
        .unwrap();
        b.os_packages = sets;
        b
    }

    #[test]
    fn sets_match_os_release_major_versions_and_platform() {
        let b = bundle(vec![
            set("debian-12", "debian", "12", "linux/amd64"),
            set("rocky-9", "rocky", "9", "linux/amd64"),
        ]);
        assert_eq!(set_for(&b, "debian 12", "amd64").map(|s| s.0), Some(0));
        assert_eq!(set_for(&b, "rocky 9.4", "amd64").map(|s| s.0), Some(1));
        assert!(set_for(&b, "rocky 9", "arm64").is_none());
        assert!(set_for(&b, "rocky 91", "amd64").is_none());
        assert!(set_for(&b, "ubuntu 22.04", "amd64").is_none());
    }

    #[test]
    fn missing_packages_follow_the_planned_units_and_the_set_names() {
        let b = bundle(vec![set("rocky-9", "rocky", "9", "linux/amd64")]);
        let installed = ["chrony", "ipset", "haproxy", "iproute2"];
        let (problems, work) = check(&b, &worker_units, "rocky 9.4", "amd64", &installed);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            work.unwrap().missing,
            ["conntrack-tools", "ipvsadm", "socat", "curl"],
            "no keepalived off [ex_lb]"
        );
        let lb = |u: &str| ["haproxy.service", "keepalived.service"].contains(&u);
        let (_, work) = check(&b, &lb, "rocky 9.4", "amd64", &installed);
        assert_eq!(
            work.unwrap().missing,
            ["keepalived"],
            "an [ex_lb] host runs no kubelet"
        );
        let (_, work) = check(&b, &|_| false, "rocky 9.4", "amd64", &[]);
        assert!(
            work.is_none(),
            "a host whose plan runs none of them needs none"
        );
    }

    fn worker_units(u: &str) -> bool {
        [
            "chrony.service",
            "kubelet.service",
            "kube-proxy.service",
            "ferry-kube-lb.service",
        ]
        .contains(&u)
    }

    #[test]
    fn a_host_without_a_set_fails_naming_what_the_bundle_carries() {
        let b = bundle(vec![set("rocky-9", "rocky", "9", "linux/amd64")]);
        let (problems, work) = check(&b, &|_| true, "debian 12", "amd64", &[]);
        assert!(work.is_none());
        assert!(
            problems[0].contains("debian 12") && problems[0].contains("rocky-9 (linux/amd64)"),
            "{problems:?}"
        );
        let none = bundle(vec![]);
        let (problems, _) = check(
            &none,
            &worker_units,
            "debian 12",
            "amd64",
            &["chrony", "haproxy"],
        );
        assert!(
            problems[0]
                .starts_with("conntrack, ipset, ipvsadm, socat, iproute2, curl not installed"),
            "{problems:?}"
        );
        let all: Vec<&str> = STEP_PACKAGES.to_vec();
        assert!(check(&none, &|_| true, "debian 12", "amd64", &all)
            .0
            .is_empty());
    }

    #[test]
    fn only_package_names_reach_the_facts_script() {
        let mut s = set("x", "debian", "12", "linux/amd64");
        s.requested.push(RequestedPackage {
            name: "evil".into(),
            package: "a;rm -rf /".into(),
        });
        let names = query_names(&bundle(vec![s]));
        assert!(names.contains(&"conntrack-tools".to_string()));
        assert!(!names.iter().any(|n| n.contains(';')));
    }
}
