//! The binaries of the host's roles, and the ferry executable on registry
//! hosts and etcd members (their scheduled snapshots).

use super::{bundle_file, HostFiles, HostScope};
use crate::images::{deploy_arch, find_binary};
use crate::plan::error::Result;
use crate::plan::model::{FileContent, Role, Step};
use ferry_bundles::BundleManifest;

pub(super) struct BinariesInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub bundle: &'a BundleManifest,
}

pub(super) fn render(h: &mut HostFiles, input: &BinariesInput) -> Result<()> {
    for b in role_binaries(input.scope) {
        role_binary(h, input, b)?;
    }
    // The registry mirror runs ferry, and so does each etcd member's
    // scheduled snapshot (ETCD_BACKUP_SCHEDULE).
    let scheduled = !input
        .scope
        .cluster
        .config
        .etcd_backup_schedule
        .value
        .is_empty();
    // etcd's offline snapshot tool (etcd 3.5+); the snapshot commands fall
    // back to etcdctl when a bundle carries none.
    if input.scope.has(Role::Etcd)
        && find_binary(input.bundle, &input.scope.node.arch, "etcdutl").is_some()
    {
        role_binary(h, input, "etcdutl")?;
    }
    if input.scope.has(Role::Registry) || (input.scope.has(Role::Etcd) && scheduled) {
        ferry_binary(h, input)?;
    }
    Ok(())
}

fn role_binaries(s: &HostScope) -> Vec<&'static str> {
    let mut bins: Vec<&str> = Vec::new();
    if s.has(Role::Etcd) {
        bins.extend(["etcd", "etcdctl"]);
    }
    if s.has(Role::Master) {
        bins.extend([
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "helm",
        ]);
    }
    if s.has(Role::Node) {
        bins.extend(["kubelet", "kube-proxy", "crictl"]);
    }
    bins
}

fn role_binary(h: &mut HostFiles, input: &BinariesInput, b: &str) -> Result<()> {
    let s = input.scope;
    match find_binary(input.bundle, &s.node.arch, b) {
        Some((path, sha256, size, mode)) => h.add(
            s.bin_dir().join(b),
            if mode == 0 { 0o755 } else { mode },
            bundle_file(path, sha256, size),
            Step::Binaries,
            false,
        ),
        None => {
            h.missing(format!(
                "host {}: binary {b} for {} is not in the bundle",
                s.node.name, s.platform
            ));
            Ok(())
        }
    }
}

/// ferry for the host: the bundle's build for its platform, else this one.
fn ferry_binary(h: &mut HostFiles, input: &BinariesInput) -> Result<()> {
    let s = input.scope;
    let content = match find_binary(input.bundle, &s.node.arch, "ferry") {
        Some((path, sha256, size, _)) => bundle_file(path, sha256, size),
        None => {
            // The running ferry can only stand in for a host of its own architecture.
            if s.node.arch != deploy_arch() {
                h.missing(format!(
                    "host {}: its registry mirror or scheduled etcd snapshot needs ferry for {}; the bundle carries none and this ferry is linux/{}",
                    s.node.name,
                    s.platform,
                    deploy_arch()
                ));
            }
            FileContent::FerryExecutable
        }
    };
    h.add(
        s.bin_dir().join("ferry"),
        0o755,
        content,
        Step::Binaries,
        false,
    )
}
