//! containerd on every Kubernetes node: runc, the containerd and CNI archives,
//! config.toml, a hosts.toml per registry and the unit.

use super::{bundle_file, HostFiles, HostScope, Renderer, SYSTEMD_DIR};
use crate::images::{self, find_archive, find_binary};
use crate::plan::error::Result;
use crate::plan::model::{FileContent, PlannedArchive, Step};
use crate::plan::pki::Pki;
use crate::plan::validate::Cluster;
use ferry_bundles::BundleManifest;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

pub(super) struct ContainerdInput<'a> {
    pub scope: &'a HostScope<'a>,
    pub bundle: &'a BundleManifest,
    pub pki: &'a Pki,
    /// The sandbox (pause) image, see [`super::sandbox_image`].
    pub sandbox: &'a str,
    /// ferry's registry mirrors, `ip:port`.
    pub mirrors: &'a [String],
}

pub(super) fn render(h: &mut HostFiles, r: &Renderer, input: &ContainerdInput) -> Result<()> {
    let s = input.scope;
    let cfg = &s.cluster.config;
    let runtime_bin_dir = &cfg.runtime_bin_dir.value;
    let runc_path = format!("{runtime_bin_dir}/runc");
    runc(h, input, &runc_path)?;
    if cfg.task_install_containerd.value {
        archive(
            h,
            input,
            "containerd",
            runtime_bin_dir,
            1,
            "the containerd archive",
        );
    }
    archive(
        h,
        input,
        "cni",
        "/opt/cni/bin",
        0,
        "the CNI plugins archive",
    );
    let ctx = json!({"cluster": s.cluster_ctx, "host": s.host_ctx,
        "containerd": {"sandbox_image": input.sandbox, "runc": runc_path, "bin_dir": runtime_bin_dir,
            "restrict_oom_score_adj": cfg.containerd_restrict_oom_score_adj.value,
            "root_dir": cfg.containerd_root_dir.value, "state_dir": cfg.containerd_state_dir.value}});
    h.text(
        "/etc/containerd/config.toml",
        r.render("containerd/config.toml", &ctx)?,
        Step::Containerd,
    )?;
    h.add(
        s.ca_dir().join("ca.pem"),
        0o644,
        FileContent::Inline(input.pki.get("ca.pem")?.to_vec()),
        Step::Containerd,
        false,
    )?;
    hosts_tomls(h, r, input)?;
    h.text(
        format!("{SYSTEMD_DIR}/containerd.service"),
        r.render("systemd/containerd.service", &ctx)?,
        Step::Containerd,
    )?;
    h.service("containerd.service", Step::Containerd, true);
    Ok(())
}

fn runc(h: &mut HostFiles, input: &ContainerdInput, runc_path: &str) -> Result<()> {
    let s = input.scope;
    match find_binary(input.bundle, &s.node.arch, "runc") {
        Some((path, sha256, size, _)) => h.add(
            runc_path,
            0o755,
            bundle_file(path, sha256, size),
            Step::Containerd,
            false,
        ),
        None => {
            h.missing(format!(
                "host {}: binary runc for {} is not in the bundle",
                s.node.name, s.platform
            ));
            Ok(())
        }
    }
}

/// The bundle's archive named `prefix`, unpacked into `dest_dir`; `what` names it when absent.
fn archive(
    h: &mut HostFiles,
    input: &ContainerdInput,
    prefix: &str,
    dest_dir: &str,
    strip_components: u32,
    what: &str,
) {
    let s = input.scope;
    match find_archive(input.bundle, &s.node.arch, prefix) {
        Some((bundle_path, sha256, size)) => h.archive(PlannedArchive {
            bundle_path,
            sha256,
            size,
            dest_dir: PathBuf::from(dest_dir),
            strip_components,
            step: Step::Containerd,
        }),
        None => h.missing(format!(
            "host {}: {what} for {} is not in the bundle",
            s.node.name, s.platform
        )),
    }
}

fn hosts_tomls(h: &mut HostFiles, r: &Renderer, input: &ContainerdInput) -> Result<()> {
    let s = input.scope;
    let ca_file = s.ca_dir().join("ca.pem");
    for reg in images::registries(input.bundle) {
        let ctx = hosts_toml_ctx(s.cluster_ctx, &reg, input.mirrors, s.cluster, &ca_file);
        h.text(
            format!("/etc/containerd/certs.d/{reg}/hosts.toml"),
            r.render("containerd/hosts.toml", &ctx)?,
            Step::Containerd,
        )?;
    }
    for reg in &s.cluster.insecure_registries {
        let ctx = json!({"cluster": s.cluster_ctx, "registry": {"url": reg.url, "skip_verify": reg.skip_verify}});
        h.text(
            format!("/etc/containerd/certs.d/{}/hosts.toml", reg.host),
            r.render("containerd/hosts-insecure.toml", &ctx)?,
            Step::Containerd,
        )?;
    }
    Ok(())
}

/// Context of `certs.d/<registry>/hosts.toml`: ferry's mirror(s) with the
/// cluster CA, then REGISTRY_MIRRORS. containerd tries `server` last and, when
/// it is omitted, falls back to `https://<registry>`; so without
/// FERRY_UPSTREAM_FALLBACK `server` is ferry's first mirror (containerd still
/// adds `?ns=<registry>` for any host other than the registry itself).
fn hosts_toml_ctx(
    cluster: &Json,
    reg: &str,
    mirrors: &[String],
    c: &Cluster,
    ca_file: &Path,
) -> Json {
    let cfg = &c.config;
    let upstream = if reg == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{reg}")
    };
    let mirror_urls: Vec<String> = mirrors.iter().map(|m| format!("https://{m}")).collect();
    let fallback = cfg.ferry_upstream_fallback.value || mirror_urls.is_empty();
    let server = match mirror_urls.first() {
        Some(first) if !fallback => first.clone(),
        _ => upstream,
    };
    json!({"cluster": cluster, "registry": reg, "server": server, "fallback": fallback,
        "mirrors": mirror_urls, "fallbacks": cfg.registry_mirrors.value, "ca_file": ca_file})
}
