//! Rendering every host's files from the templates in `manifests/`
//! (embedded at compile time) into a [`HostPlan`] per host.

use crate::images::{self, find_archive, find_binary, find_image, pinned, ImageRef};
use crate::plan::pki::Pki;
use crate::plan::validate::{Cluster, LbRole, NodeSpec};
use crate::plan::{
    FileContent, HostPlan, PlanError, PlannedArchive, PlannedFile, PlannedService, Result, Role,
    Step,
};
use base64::Engine;
use ferry_bundles::BundleManifest;
use minijinja::Environment;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../manifests/", $name, ".j2")))),*]
    };
}

/// Every template, by path under `manifests/` (without `.j2`).
pub const TEMPLATES: &[(&str, &str)] = templates![
    "systemd/etcd.service",
    "systemd/kube-apiserver.service",
    "systemd/kube-controller-manager.service",
    "systemd/kube-scheduler.service",
    "systemd/kubelet.service",
    "systemd/kube-proxy.service",
    "systemd/containerd.service",
    "systemd/ferry-registry.service",
    "systemd/ferry-swapoff.service",
    "containerd/config.toml",
    "containerd/hosts.toml",
    "kubernetes/kubelet-config.yaml",
    "kubernetes/kube-proxy-config.yaml",
    "kubernetes/audit-policy.yaml",
    "kubernetes/encryption-config.yaml",
    "kubernetes/admission-config.yaml",
    "kubernetes/kubeconfig",
    "baseline/modules-load.conf",
    "baseline/sysctl.conf",
    "baseline/chrony.conf",
    "lb/haproxy.cfg",
    "lb/keepalived.conf",
    "addons/10-coredns.yaml",
    "addons/20-nodelocaldns.yaml",
    "addons/50-prometheus-rules.yaml",
    "addons/60-tenant-baseline.yaml",
];

/// Where the addon manifests go on the first master; install applies them in name order.
pub const ADDONS_DIR: &str = "/etc/ferry/addons";
const SYSTEMD_DIR: &str = "/etc/systemd/system";

/// The template engine with the bundle's images behind `image("short-name")`.
pub struct Renderer {
    env: Environment<'static>,
    /// Image names a template asked for that the bundle does not carry.
    missing: Arc<Mutex<Vec<String>>>,
}

impl Renderer {
    pub fn new(bundle: &BundleManifest) -> Result<Renderer> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Configs, not HTML: values go in as written (the templates quote where needed).
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .map_err(|e| PlanError::Template {
                    template: "syntax".into(),
                    reason: e.to_string(),
                })?,
        );
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .map_err(|e| PlanError::Template {
                    template: name.to_string(),
                    reason: e.to_string(),
                })?;
        }
        let missing = Arc::new(Mutex::new(Vec::new()));
        let images: BTreeMap<String, String> = bundle
            .images
            .iter()
            .map(|i| {
                (
                    ImageRef::parse(&i.reference).short_name().to_string(),
                    pinned(i),
                )
            })
            .collect();
        let m = missing.clone();
        env.add_function("image", move |short: String| -> String {
            match images.get(&short) {
                Some(p) => p.clone(),
                None => {
                    if let Ok(mut m) = m.lock() {
                        m.push(short.clone());
                    }
                    format!("missing-from-bundle/{short}")
                }
            }
        });
        Ok(Renderer { env, missing })
    }

    pub fn render(&self, name: &str, ctx: &Json) -> Result<String> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| PlanError::Template {
                template: name.into(),
                reason: e.to_string(),
            })?;
        t.render(minijinja::value::Serde(ctx))
            .map_err(|e| PlanError::Template {
                template: name.into(),
                reason: format!("{e:#}"),
            })
    }

    /// Images asked for by name and absent from the bundle (drained).
    pub fn take_missing(&self) -> Vec<String> {
        self.missing
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// Collects one host's files and services, refusing two different contents at one path.
struct HostFiles {
    host: String,
    files: Vec<PlannedFile>,
    archives: Vec<PlannedArchive>,
    services: Vec<PlannedService>,
}

impl HostFiles {
    fn add(
        &mut self,
        path: impl Into<PathBuf>,
        mode: u32,
        content: FileContent,
        step: Step,
        secret: bool,
    ) -> Result<()> {
        let path = path.into();
        if let Some(prev) = self.files.iter().find(|f| f.path == path) {
            if prev.content.sha256() == content.sha256() {
                return Ok(());
            }
            return Err(PlanError::Template {
                template: path.display().to_string(),
                reason: format!(
                    "host {}: two different contents planned for one path",
                    self.host
                ),
            });
        }
        self.files.push(PlannedFile {
            path,
            mode,
            secret,
            content,
            step,
        });
        Ok(())
    }

    fn text(&mut self, path: impl Into<PathBuf>, text: String, step: Step) -> Result<()> {
        self.add(
            path,
            0o644,
            FileContent::Inline(text.into_bytes()),
            step,
            false,
        )
    }

    fn secret(&mut self, path: impl Into<PathBuf>, bytes: Vec<u8>, step: Step) -> Result<()> {
        self.add(path, 0o600, FileContent::Inline(bytes), step, true)
    }

    fn service(&mut self, unit: &str, step: Step, enable: bool) {
        self.services.push(PlannedService {
            unit: unit.into(),
            step,
            enable,
        });
    }
}

/// Debian-style name of the architecture this ferry was built for.
pub fn deploy_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Everything rendering needs besides the host.
pub struct RenderInput<'a> {
    pub cluster: &'a Cluster,
    pub bundle: &'a BundleManifest,
    pub pki: &'a Pki,
    pub encryption_key: &'a str,
    /// Kubeconfigs by name (`admin`, `kube-proxy`, `kubelet-<node>`...), as written to the cluster dir.
    pub kubeconfigs: &'a BTreeMap<String, String>,
    /// Where the bundle's files are, for the addons rendered from its release
    /// artifacts; `None` when only bundle.json is at hand.
    pub artifacts: Option<&'a crate::plan::addon_artifacts::Artifacts>,
}

/// Problems the closure check finds while rendering (missing binaries, archives, images).
pub type Missing = Vec<String>;

pub(crate) fn cluster_ctx(c: &Cluster) -> Json {
    let etcd_endpoints: Vec<String> = c
        .with_role(Role::Etcd)
        .map(|n| format!("https://{}:{}", n.ip, c.config.etcd_client_port.value))
        .collect();
    json!({
        "name": c.name,
        "bin_dir": c.bin_dir,
        "ca_dir": c.ca_dir,
        "apiserver_port": c.apiserver_port,
        "apiserver_endpoint": c.apiserver_endpoint(),
        "etcd_endpoints": etcd_endpoints,
        "cluster_cidr": c.cluster_cidr.to_string(),
        "service_cidr": c.service_cidr.to_string(),
        "node_port_range": c.node_port_range,
        "proxy_mode": c.proxy_mode,
        "dns_domain": c.dns_domain,
    })
}

fn host_ctx(n: &NodeSpec, chrony_managed: bool) -> Json {
    json!({
        "name": n.name,
        "ip": n.ip.to_string(),
        "master": n.roles.contains(&Role::Master),
        "ex_lb": n.roles.contains(&Role::ExLb),
        "chrony_server": chrony_managed && n.roles.contains(&Role::Chrony),
    })
}

/// The sandbox (pause) image: the bundle's, by its upstream name. A SANDBOX_IMAGE
/// naming a private copy of the same image (same name and tag) is replaced by
/// the bundle's, since the mirror serves it under its upstream name.
pub fn sandbox_image(c: &Cluster, bundle: &BundleManifest, missing: &mut Missing) -> String {
    let pause = find_image(bundle, "pause");
    match (&c.config.sandbox_image, pause) {
        (None, Some(p)) => ImageRef::parse(&p.reference).name_tag(),
        (Some(s), Some(p)) => {
            let want = ImageRef::parse(&s.value);
            let have = ImageRef::parse(&p.reference);
            if want.registry == have.registry
                && want.repository == have.repository
                && want.tag == have.tag
            {
                have.name_tag()
            } else if want.short_name() == have.short_name() && want.tag == have.tag {
                tracing::warn!(
                    "{}: SANDBOX_IMAGE {} is not in the bundle; using the bundle's {} (same image, served by the ferry mirror)",
                    s.origin,
                    s.value,
                    have.name_tag()
                );
                have.name_tag()
            } else {
                missing.push(format!(
                    "/etc/containerd/config.toml: sandbox image {} (SANDBOX_IMAGE at {}) is not in the bundle, which carries {}",
                    s.value,
                    s.origin,
                    p.reference
                ));
                s.value.clone()
            }
        }
        (_, None) => {
            missing.push(
                "/etc/containerd/config.toml: the bundle carries no pause image for the sandbox"
                    .into(),
            );
            "missing-from-bundle/pause".into()
        }
    }
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

/// Render every host's files.
pub fn render_hosts(r: &Renderer, input: &RenderInput) -> Result<(Vec<HostPlan>, Missing)> {
    let c = input.cluster;
    let cfg = &c.config;
    let mut missing: Missing = Vec::new();
    let cluster = cluster_ctx(c);
    let ca_dir = Path::new(&c.ca_dir);
    let bin_dir = Path::new(&c.bin_dir);
    let runtime_bin_dir = cfg.runtime_bin_dir.value.clone();
    let chrony_hosts: Vec<&NodeSpec> = c.with_role(Role::Chrony).collect();
    let chrony_managed = !chrony_hosts.is_empty();
    let first_master = c.with_role(Role::Master).next().map(|n| n.name.clone());
    let node_platforms: std::collections::BTreeSet<String> = c
        .with_role(Role::Node)
        .map(|n| format!("linux/{}", n.arch))
        .collect();
    let mirrors = c.registry_mirrors();
    let sandbox = sandbox_image(c, input.bundle, &mut missing);
    let pki = input.pki;
    let host_nets: Vec<String> = {
        let prefix = cfg.host_subnet_prefix.value.min(32);
        let mut v: Vec<String> = c
            .nodes
            .iter()
            .filter_map(|n| {
                ipnet::Ipv4Net::new(n.ip, prefix)
                    .ok()
                    .map(|x| x.trunc().to_string())
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };

    let mut out = Vec::new();
    for n in &c.nodes {
        let mut h = HostFiles {
            host: n.name.clone(),
            files: vec![],
            archives: vec![],
            services: vec![],
        };
        let host = host_ctx(n, chrony_managed);
        let base = json!({"cluster": cluster, "host": host});
        let is_node = n.roles.contains(&Role::Node);
        let platform = format!("linux/{}", n.arch);

        // Baseline: every host.
        h.text(
            "/etc/modules-load.d/k8s.conf",
            r.render("baseline/modules-load.conf", &base)?,
            Step::Baseline,
        )?;
        h.text(
            "/etc/sysctl.d/99-kubernetes-cri.conf",
            r.render("baseline/sysctl.conf", &base)?,
            Step::Baseline,
        )?;
        h.text(
            format!("{SYSTEMD_DIR}/ferry-swapoff.service"),
            r.render("systemd/ferry-swapoff.service", &base)?,
            Step::Baseline,
        )?;
        h.service("systemd-modules-load.service", Step::Baseline, false);
        h.service("systemd-sysctl.service", Step::Baseline, false);
        h.service("ferry-swapoff.service", Step::Baseline, true);
        if chrony_managed {
            let servers: Vec<String> = chrony_hosts
                .iter()
                .filter(|x| x.name != n.name)
                .map(|x| x.ip.to_string())
                .collect();
            let ctx = json!({"cluster": cluster, "host": host,
                "chrony": {"servers": chrony_hosts.iter().map(|x| x.ip.to_string()).collect::<Vec<_>>(), "peers": servers, "allow": host_nets}});
            h.text(
                "/etc/chrony/chrony.conf",
                r.render("baseline/chrony.conf", &ctx)?,
                Step::Baseline,
            )?;
            h.service("chrony.service", Step::Baseline, true);
        }

        // Binaries by role.
        let mut bins: Vec<&str> = Vec::new();
        if n.roles.contains(&Role::Etcd) {
            bins.extend(["etcd", "etcdctl"]);
        }
        if n.roles.contains(&Role::Master) {
            bins.extend([
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubectl",
                "helm",
            ]);
        }
        if is_node {
            bins.extend(["kubelet", "kube-proxy", "crictl"]);
        }
        for b in bins {
            match find_binary(input.bundle, &n.arch, b) {
                Some((path, sha256, size, mode)) => h.add(
                    bin_dir.join(b),
                    if mode == 0 { 0o755 } else { mode },
                    FileContent::BundleFile {
                        bundle_path: path,
                        sha256,
                        size,
                    },
                    Step::Binaries,
                    false,
                )?,
                None => missing.push(format!(
                    "host {}: binary {b} for {platform} is not in the bundle",
                    n.name
                )),
            }
        }
        if n.roles.contains(&Role::Registry) {
            let content = match find_binary(input.bundle, &n.arch, "ferry") {
                Some((path, sha256, size, _)) => FileContent::BundleFile {
                    bundle_path: path,
                    sha256,
                    size,
                },
                None => {
                    // The running ferry can only stand in for a host of its own architecture.
                    if n.arch != deploy_arch() {
                        missing.push(format!(
                            "host {}: the registry mirror needs ferry for {platform}; the bundle carries none and this ferry is linux/{}",
                            n.name,
                            deploy_arch()
                        ));
                    }
                    FileContent::FerryExecutable
                }
            };
            h.add(bin_dir.join("ferry"), 0o755, content, Step::Binaries, false)?;
        }

        // containerd on every Kubernetes node.
        if is_node {
            let runc_path = format!("{runtime_bin_dir}/runc");
            match find_binary(input.bundle, &n.arch, "runc") {
                Some((path, sha256, size, _)) => h.add(
                    &runc_path,
                    0o755,
                    FileContent::BundleFile {
                        bundle_path: path,
                        sha256,
                        size,
                    },
                    Step::Containerd,
                    false,
                )?,
                None => missing.push(format!(
                    "host {}: binary runc for {platform} is not in the bundle",
                    n.name
                )),
            }
            if cfg.task_install_containerd.value {
                match find_archive(input.bundle, &n.arch, "containerd") {
                    Some((bundle_path, sha256, size)) => h.archives.push(PlannedArchive {
                        bundle_path,
                        sha256,
                        size,
                        dest_dir: PathBuf::from(&runtime_bin_dir),
                        strip_components: 1,
                        step: Step::Containerd,
                    }),
                    None => missing.push(format!(
                        "host {}: the containerd archive for {platform} is not in the bundle",
                        n.name
                    )),
                }
            }
            match find_archive(input.bundle, &n.arch, "cni") {
                Some((bundle_path, sha256, size)) => h.archives.push(PlannedArchive {
                    bundle_path,
                    sha256,
                    size,
                    dest_dir: PathBuf::from("/opt/cni/bin"),
                    strip_components: 0,
                    step: Step::Containerd,
                }),
                None => missing.push(format!(
                    "host {}: the CNI plugins archive for {platform} is not in the bundle",
                    n.name
                )),
            }
            let ctx = json!({"cluster": cluster, "host": host,
                "containerd": {"sandbox_image": sandbox, "runc": runc_path, "bin_dir": runtime_bin_dir,
                    "restrict_oom_score_adj": cfg.containerd_restrict_oom_score_adj.value}});
            h.text(
                "/etc/containerd/config.toml",
                r.render("containerd/config.toml", &ctx)?,
                Step::Containerd,
            )?;
            h.add(
                ca_dir.join("ca.pem"),
                0o644,
                FileContent::Inline(pki.get("ca.pem")?.to_vec()),
                Step::Containerd,
                false,
            )?;
            for reg in images::registries(input.bundle) {
                let ctx = hosts_toml_ctx(&cluster, &reg, &mirrors, c, &ca_dir.join("ca.pem"));
                h.text(
                    format!("/etc/containerd/certs.d/{reg}/hosts.toml"),
                    r.render("containerd/hosts.toml", &ctx)?,
                    Step::Containerd,
                )?;
            }
            h.text(
                format!("{SYSTEMD_DIR}/containerd.service"),
                r.render("systemd/containerd.service", &ctx)?,
                Step::Containerd,
            )?;
            h.service("containerd.service", Step::Containerd, true);
        }

        // The registry mirror.
        if n.roles.contains(&Role::Registry) {
            h.text(
                "/etc/ferry/registry/tls.pem",
                pki.text("registry.pem")?,
                Step::Registry,
            )?;
            h.secret(
                "/etc/ferry/registry/tls-key.pem",
                pki.get("registry-key.pem")?.to_vec(),
                Step::Registry,
            )?;
            let ctx =
                json!({"cluster": cluster, "host": host, "registry": {"port": c.registry_port}});
            h.text(
                format!("{SYSTEMD_DIR}/ferry-registry.service"),
                r.render("systemd/ferry-registry.service", &ctx)?,
                Step::Registry,
            )?;
            h.service("ferry-registry.service", Step::Registry, true);
        }

        // etcd.
        if let Some(member) = &n.etcd_name {
            let initial: Vec<String> = c
                .with_role(Role::Etcd)
                .map(|m| {
                    format!(
                        "{}=https://{}:{}",
                        m.etcd_name.clone().unwrap_or_default(),
                        m.ip,
                        cfg.etcd_peer_port.value
                    )
                })
                .collect();
            let ctx = json!({"cluster": cluster, "host": host, "etcd": {
                "name": member, "data_dir": cfg.etcd_data_dir.value, "wal_dir": cfg.etcd_wal_dir.value,
                "client_port": cfg.etcd_client_port.value, "peer_port": cfg.etcd_peer_port.value,
                "initial_cluster": initial.join(","), "auto_compaction_retention": cfg.etcd_auto_compaction_retention.value,
                "snapshot_count": cfg.etcd_snapshot_count.value}});
            let etcd_dir = ca_dir.join("etcd");
            h.text(
                etcd_dir.join("ca.pem"),
                pki.text("etcd/ca.pem")?,
                Step::Etcd,
            )?;
            for (kind, src) in [
                ("server", format!("etcd/{member}-server")),
                ("peer", format!("etcd/{member}-peer")),
                ("healthcheck-client", "etcd/healthcheck-client".to_string()),
            ] {
                h.text(
                    etcd_dir.join(format!("{kind}.pem")),
                    pki.text(&format!("{src}.pem"))?,
                    Step::Etcd,
                )?;
                h.secret(
                    etcd_dir.join(format!("{kind}-key.pem")),
                    pki.get(&format!("{src}-key.pem"))?.to_vec(),
                    Step::Etcd,
                )?;
            }
            h.text(
                format!("{SYSTEMD_DIR}/etcd.service"),
                r.render("systemd/etcd.service", &ctx)?,
                Step::Etcd,
            )?;
            h.service("etcd.service", Step::Etcd, true);
        }

        // Control plane.
        if n.roles.contains(&Role::Master) {
            let ctx = json!({"cluster": cluster, "host": host, "encryption_key": input.encryption_key, "apiserver": {
                "admission_plugins": cfg.apiserver_admission_plugins.value,
                "max_requests_inflight": cfg.apiserver_max_requests_inflight.value,
                "max_mutating_requests_inflight": cfg.apiserver_max_mutating_requests_inflight.value,
                "request_timeout": cfg.apiserver_request_timeout.value,
                "event_ttl": cfg.apiserver_event_ttl.value,
                "profiling": cfg.apiserver_enable_profiling.value,
                "audit_log_max_age": cfg.apiserver_audit_log_max_age.value,
                "audit_log_max_backup": cfg.apiserver_audit_log_max_backup.value,
                "audit_log_max_size": cfg.apiserver_audit_log_max_size.value}});
            for f in [
                "ca.pem",
                "apiserver.pem",
                "apiserver-kubelet-client.pem",
                "front-proxy-ca.pem",
                "front-proxy-client.pem",
                "sa.pub",
            ] {
                h.text(ca_dir.join(f), pki.text(f)?, Step::ControlPlane)?;
            }
            for f in [
                "ca-key.pem",
                "apiserver-key.pem",
                "apiserver-kubelet-client-key.pem",
                "front-proxy-client-key.pem",
                "sa.key",
            ] {
                h.secret(ca_dir.join(f), pki.get(f)?.to_vec(), Step::ControlPlane)?;
            }
            h.text(
                ca_dir.join("etcd/ca.pem"),
                pki.text("etcd/ca.pem")?,
                Step::ControlPlane,
            )?;
            h.text(
                ca_dir.join("etcd/apiserver-etcd-client.pem"),
                pki.text("etcd/apiserver-etcd-client.pem")?,
                Step::ControlPlane,
            )?;
            h.secret(
                ca_dir.join("etcd/apiserver-etcd-client-key.pem"),
                pki.get("etcd/apiserver-etcd-client-key.pem")?.to_vec(),
                Step::ControlPlane,
            )?;
            h.text(
                "/etc/kubernetes/audit-policy.yaml",
                r.render("kubernetes/audit-policy.yaml", &ctx)?,
                Step::ControlPlane,
            )?;
            h.text(
                "/etc/kubernetes/admission-config.yaml",
                r.render("kubernetes/admission-config.yaml", &ctx)?,
                Step::ControlPlane,
            )?;
            h.secret(
                "/etc/kubernetes/encryption-config.yaml",
                r.render("kubernetes/encryption-config.yaml", &ctx)?
                    .into_bytes(),
                Step::ControlPlane,
            )?;
            for k in ["kube-controller-manager", "kube-scheduler", "admin"] {
                let kc = kubeconfig(input, k)?;
                h.secret(
                    format!("/etc/kubernetes/{k}.kubeconfig"),
                    kc.into_bytes(),
                    Step::ControlPlane,
                )?;
            }
            for unit in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                h.text(
                    format!("{SYSTEMD_DIR}/{unit}.service"),
                    r.render(&format!("systemd/{unit}.service"), &ctx)?,
                    Step::ControlPlane,
                )?;
                h.service(&format!("{unit}.service"), Step::ControlPlane, true);
            }
        }

        // Access layer.
        if n.roles.contains(&Role::ExLb) {
            if let Some(vip) = c.vip {
                let lbs: Vec<&NodeSpec> = c.with_role(Role::ExLb).collect();
                let any_master = lbs.iter().any(|x| x.lb_role == Some(LbRole::Master));
                let idx = lbs.iter().position(|x| x.name == n.name).unwrap_or(0);
                let is_master = match n.lb_role {
                    Some(role) => role == LbRole::Master,
                    None => !any_master && idx == 0,
                };
                let router_id = 1
                    + (c.name
                        .bytes()
                        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32))
                        % 254);
                let masters: Vec<Json> = c
                    .with_role(Role::Master)
                    .map(|m| json!({"name": m.name, "ip": m.ip.to_string()}))
                    .collect();
                let ctx = json!({"cluster": cluster, "host": host, "lb": {
                    "vip": vip.to_string(), "port": c.lb_port, "masters": masters,
                    "state": if is_master {"MASTER"} else {"BACKUP"},
                    "priority": if is_master {150} else {100usize.saturating_sub(idx)},
                    "interface": cfg.vip_if.value, "router_id": router_id,
                    "peers": lbs.iter().filter(|x| x.name != n.name).map(|x| x.ip.to_string()).collect::<Vec<_>>()}});
                h.text(
                    "/etc/haproxy/haproxy.cfg",
                    r.render("lb/haproxy.cfg", &ctx)?,
                    Step::AccessLayer,
                )?;
                h.text(
                    "/etc/keepalived/keepalived.conf",
                    r.render("lb/keepalived.conf", &ctx)?,
                    Step::AccessLayer,
                )?;
                h.service("haproxy.service", Step::AccessLayer, true);
                h.service("keepalived.service", Step::AccessLayer, true);
            }
        }

        // kubelet + kube-proxy.
        if is_node {
            let kubelet = json!({
                "root_dir": cfg.kubelet_root_dir.value,
                "max_pods": cfg.max_pods.value,
                "cluster_dns": if cfg.enable_local_dns_cache.value { cfg.local_dns_cache.value.clone() } else { c.dns_service_ip().to_string() },
                "kube_reserved_enabled": cfg.kube_reserved_enabled.value,
                "kube_reserved": cfg.kube_reserved.value,
                "system_reserved": cfg.system_reserved.value,
                "eviction_hard": cfg.eviction_hard.value});
            let ctx = json!({"cluster": cluster, "host": host, "kubelet": kubelet});
            h.add(
                ca_dir.join("ca.pem"),
                0o644,
                FileContent::Inline(pki.get("ca.pem")?.to_vec()),
                Step::Nodes,
                false,
            )?;
            h.text(
                ca_dir.join("kubelet.pem"),
                pki.text(&format!("kubelet/{}-server.pem", n.name))?,
                Step::Nodes,
            )?;
            h.secret(
                ca_dir.join("kubelet-key.pem"),
                pki.get(&format!("kubelet/{}-server-key.pem", n.name))?
                    .to_vec(),
                Step::Nodes,
            )?;
            h.secret(
                "/etc/kubernetes/kubelet.kubeconfig",
                kubeconfig(input, &format!("kubelet-{}", n.name))?.into_bytes(),
                Step::Nodes,
            )?;
            h.secret(
                "/etc/kubernetes/kube-proxy.kubeconfig",
                kubeconfig(input, "kube-proxy")?.into_bytes(),
                Step::Nodes,
            )?;
            h.text(
                format!("{}/config.yaml", cfg.kubelet_root_dir.value),
                r.render("kubernetes/kubelet-config.yaml", &ctx)?,
                Step::Nodes,
            )?;
            h.text(
                "/var/lib/kube-proxy/config.yaml",
                r.render("kubernetes/kube-proxy-config.yaml", &ctx)?,
                Step::Nodes,
            )?;
            h.text(
                format!("{SYSTEMD_DIR}/kubelet.service"),
                r.render("systemd/kubelet.service", &ctx)?,
                Step::Nodes,
            )?;
            h.text(
                format!("{SYSTEMD_DIR}/kube-proxy.service"),
                r.render("systemd/kube-proxy.service", &ctx)?,
                Step::Nodes,
            )?;
            h.service("kubelet.service", Step::Nodes, true);
            h.service("kube-proxy.service", Step::Nodes, true);
        }

        // Addons, applied from the first master.
        if Some(&n.name) == first_master.as_ref() {
            for a in crate::plan::addon_render::render_addons(r, input)? {
                let path = Path::new(ADDONS_DIR).join(&a.name);
                for image in &a.implied_images {
                    for p in &node_platforms {
                        if let Err(reason) = images::bundle_has_image(input.bundle, image, p) {
                            missing.push(format!(
                                "host {}: {} (its operator deploys {image}): {reason}",
                                n.name,
                                path.display()
                            ));
                        }
                    }
                }
                for short in a.absent {
                    missing.push(format!(
                        "host {}: {}: image {short} is not in bundle {} (no image named */{short})",
                        n.name,
                        path.display(),
                        input.bundle.name
                    ));
                }
                if a.secret {
                    h.secret(path, a.text.into_bytes(), Step::Addons)?;
                } else {
                    h.text(path, a.text, Step::Addons)?;
                }
            }
        }

        h.files
            .sort_by(|a, b| (a.step, &a.path).cmp(&(b.step, &b.path)));
        h.services.sort_by_key(|s| s.step);
        out.push(HostPlan {
            name: n.name.clone(),
            inventory_host: n.inventory_host.clone(),
            address: n.ip.to_string(),
            ssh: n.ssh.clone(),
            arch: n.arch.clone(),
            roles: n.roles.clone(),
            files: h.files,
            archives: h.archives,
            services: h.services,
        });
    }
    Ok((out, missing))
}

/// The kubeconfig of `name` from the cluster dir's set.
fn kubeconfig(input: &RenderInput, name: &str) -> Result<String> {
    input
        .kubeconfigs
        .get(name)
        .cloned()
        .ok_or_else(|| PlanError::Pki {
            name: format!("{name}.kubeconfig"),
            reason: "not generated".into(),
        })
}

/// Every kubeconfig: name -> (user, certificate base name in the PKI, server).
pub fn render_kubeconfigs(
    r: &Renderer,
    c: &Cluster,
    pki: &Pki,
) -> Result<BTreeMap<String, String>> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let local = format!("https://127.0.0.1:{}", c.apiserver_port);
    let endpoint = c.apiserver_endpoint();
    let mut list: Vec<(String, String, String, String)> = vec![
        (
            "admin".into(),
            "admin".into(),
            "admin".into(),
            endpoint.clone(),
        ),
        (
            "kube-controller-manager".into(),
            "system:kube-controller-manager".into(),
            "kube-controller-manager".into(),
            local.clone(),
        ),
        (
            "kube-scheduler".into(),
            "system:kube-scheduler".into(),
            "kube-scheduler".into(),
            local,
        ),
        (
            "kube-proxy".into(),
            "system:kube-proxy".into(),
            "kube-proxy".into(),
            endpoint.clone(),
        ),
    ];
    for n in c.with_role(Role::Node) {
        list.push((
            format!("kubelet-{}", n.name),
            format!("system:node:{}", n.name),
            format!("kubelet/{}", n.name),
            endpoint.clone(),
        ));
    }
    let ca = b64(pki.get("ca.pem")?);
    let mut out = BTreeMap::new();
    for (name, user, cert, server) in list {
        let ctx = json!({"cluster_name": c.name, "server": server, "ca_data": ca, "user": user,
            "cert_data": b64(pki.get(&format!("{cert}.pem"))?), "key_data": b64(pki.get(&format!("{cert}-key.pem"))?)});
        out.insert(name, r.render("kubernetes/kubeconfig", &ctx)?);
    }
    Ok(out)
}
