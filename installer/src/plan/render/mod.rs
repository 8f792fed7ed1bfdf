//! Rendering every host's files from the templates in `manifests/`
//! (embedded at compile time) into a [`HostPlan`] per host.
//!
//! [`render_hosts`] walks the hosts and hands each one to the component
//! renderers (one module each), in the order below; a component gets its
//! inputs as a typed struct built here.

pub mod access;
mod addon_manifests;
mod addons;
mod baseline;
mod binaries;
mod containerd;
mod control_plane;
mod escape;
mod etcd;
mod node;
mod registry;
mod stamp;

use crate::images::{find_image, pinned, ImageRef};
use crate::plan::error::{PlanError, Result};
use crate::plan::model::{
    FileContent, HostPlan, PlannedArchive, PlannedFile, PlannedService, Role, Step,
};
use crate::plan::pki::Pki;
use crate::plan::validate::{Cluster, NodeSpec};
use base64::Engine;
use ferry_bundles::BundleManifest;
use minijinja::Environment;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../../manifests/", $name, ".j2")))),*]
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
    "containerd/hosts-insecure.toml",
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
    "lb/kube-lb.cfg",
    "systemd/ferry-kube-lb.service",
    "systemd/ferry-etcd-backup.service",
    "systemd/ferry-etcd-backup.timer",
    "systemd/haproxy-limits.conf",
    "addons/10-coredns.yaml",
    "addons/20-nodelocaldns.yaml",
    "addons/50-prometheus-rules.yaml",
    "addons/60-tenant-baseline.yaml",
    "addons/15-priority-classes.yaml",
];

/// Where the addon manifests go on the first master; install applies them in name order.
pub const ADDONS_DIR: &str = "/etc/ferry/addons";
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";

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
        // Escaping is per output format instead: `tojson` and the filters of escape.rs.
        escape::register(&mut env);
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

/// Collects one host's files, archives and services, refusing two different
/// contents at one path, and the artifacts the bundle lacks for them.
pub(super) struct HostFiles {
    host: String,
    files: Vec<PlannedFile>,
    archives: Vec<PlannedArchive>,
    services: Vec<PlannedService>,
    kernel_modules: Vec<String>,
    sysctls: Vec<(String, String)>,
    missing: Missing,
}

impl HostFiles {
    fn new(host: &str) -> HostFiles {
        HostFiles {
            host: host.into(),
            files: vec![],
            archives: vec![],
            services: vec![],
            kernel_modules: vec![],
            sysctls: vec![],
            missing: vec![],
        }
    }

    /// The kernel modules and sysctls the host's baseline sets, as data.
    pub(super) fn kernel(&mut self, modules: Vec<String>, sysctls: Vec<(String, String)>) {
        self.kernel_modules = modules;
        self.sysctls = sysctls;
    }

    pub(super) fn add(
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

    pub(super) fn text(
        &mut self,
        path: impl Into<PathBuf>,
        text: String,
        step: Step,
    ) -> Result<()> {
        self.add(
            path,
            0o644,
            FileContent::Inline(text.into_bytes()),
            step,
            false,
        )
    }

    pub(super) fn secret(
        &mut self,
        path: impl Into<PathBuf>,
        bytes: Vec<u8>,
        step: Step,
    ) -> Result<()> {
        self.add(path, 0o600, FileContent::Inline(bytes), step, true)
    }

    pub(super) fn archive(&mut self, archive: PlannedArchive) {
        self.archives.push(archive);
    }

    pub(super) fn service(&mut self, unit: &str, step: Step, enable: bool) {
        self.services.push(PlannedService {
            unit: unit.into(),
            step,
            enable,
        });
    }

    /// Notes an artifact the bundle lacks; the closure check reports them all.
    pub(super) fn missing(&mut self, problem: String) {
        self.missing.push(problem);
    }

    /// The host's plan, files in (step, path) order, and what it lacks.
    fn into_plan(mut self, n: &NodeSpec) -> (HostPlan, Missing) {
        self.files
            .sort_by(|a, b| (a.step, &a.path).cmp(&(b.step, &b.path)));
        self.services.sort_by_key(|s| s.step);
        let plan = HostPlan {
            name: n.name.clone(),
            inventory_host: n.inventory_host.clone(),
            address: n.ip.to_string(),
            ssh: n.ssh.clone(),
            arch: n.arch.clone(),
            roles: n.roles.clone(),
            pool: n.pool,
            files: self.files,
            archives: self.archives,
            services: self.services,
            kernel_modules: self.kernel_modules,
            sysctls: self.sysctls,
        };
        (plan, self.missing)
    }
}

/// A file the bundle carries, at its path in the bundle.
pub(super) fn bundle_file(bundle_path: String, sha256: String, size: u64) -> FileContent {
    FileContent::BundleFile {
        bundle_path,
        sha256,
        size,
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
    /// How each etcd member starts (plan/etcd_members.rs).
    pub etcd_members: &'a crate::plan::etcd_members::EtcdMembers,
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
        "nftables_feature_gate": c.proxy_mode == "nftables"
            && crate::plan::validate::kube_minor(&c.kubernetes).is_some_and(|m| m < 31),
        "node_cidr_len": c.node_cidr_len,
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

/// kubeasz's own local registry (`ezdown` fills it), which ferry's mirror replaces.
const KUBEASZ_LOCAL_REGISTRY: &str = "easzlab.io.local:5000";

/// The sandbox (pause) image: the bundle's, by its upstream name. A SANDBOX_IMAGE
/// naming a private copy of the same image (same name and tag) is replaced by
/// the bundle's, since the mirror serves it under its upstream name; so is
/// kubeasz's copy in its local registry, whatever its tag: the bundle's pause
/// is the one its Kubernetes release names.
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
            } else if want.short_name() == have.short_name()
                && want.registry == KUBEASZ_LOCAL_REGISTRY
            {
                tracing::warn!(
                    "{}: SANDBOX_IMAGE {} is kubeasz's local registry copy; ferry's mirror serves the bundle's {}, the pause image of Kubernetes {}",
                    s.origin,
                    s.value,
                    have.name_tag(),
                    c.kubernetes
                );
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

/// Values every host's rendering shares, worked out once per cluster.
struct ClusterScope<'a> {
    ctx: Json,
    chrony_hosts: Vec<&'a NodeSpec>,
    first_master: Option<&'a str>,
    /// `linux/<arch>` of every Kubernetes node, which addon images must cover.
    node_platforms: BTreeSet<String>,
    mirrors: Vec<String>,
    sandbox: String,
    host_nets: Vec<String>,
}

impl<'a> ClusterScope<'a> {
    fn new(input: &RenderInput<'a>, missing: &mut Missing) -> ClusterScope<'a> {
        let c = input.cluster;
        ClusterScope {
            ctx: cluster_ctx(c),
            chrony_hosts: c.with_role(Role::Chrony).collect(),
            first_master: c.with_role(Role::Master).next().map(|n| n.name.as_str()),
            node_platforms: c
                .with_role(Role::Node)
                .map(|n| format!("linux/{}", n.arch))
                .collect(),
            mirrors: c.registry_mirrors(),
            sandbox: sandbox_image(c, input.bundle, missing),
            host_nets: host_networks(c),
        }
    }
}

/// The hosts' networks (HOST_SUBNET_PREFIX wide), sorted and without repeats.
fn host_networks(c: &Cluster) -> Vec<String> {
    let prefix = c.config.host_subnet_prefix.value.min(32);
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
}

/// What every component knows about the host it renders for.
pub(super) struct HostScope<'a> {
    pub node: &'a NodeSpec,
    pub cluster: &'a Cluster,
    /// The templates' `cluster` values.
    pub cluster_ctx: &'a Json,
    /// The templates' `host` values.
    pub host_ctx: Json,
    /// `linux/<arch>`, as messages about missing artifacts name it.
    pub platform: String,
}

impl HostScope<'_> {
    pub(super) fn ca_dir(&self) -> &Path {
        Path::new(&self.cluster.ca_dir)
    }

    pub(super) fn bin_dir(&self) -> &Path {
        Path::new(&self.cluster.bin_dir)
    }

    pub(super) fn has(&self, role: Role) -> bool {
        self.node.roles.contains(&role)
    }
}

/// Render every host's files.
pub fn render_hosts(r: &Renderer, input: &RenderInput) -> Result<(Vec<HostPlan>, Missing)> {
    let mut missing: Missing = Vec::new();
    let shared = ClusterScope::new(input, &mut missing);
    let mut out = Vec::new();
    for n in &input.cluster.nodes {
        let scope = HostScope {
            node: n,
            cluster: input.cluster,
            cluster_ctx: &shared.ctx,
            host_ctx: host_ctx(n, !shared.chrony_hosts.is_empty()),
            platform: format!("linux/{}", n.arch),
        };
        let mut h = HostFiles::new(&n.name);
        render_host_runtime(&mut h, r, input, &shared, &scope)?;
        render_host_kubernetes(&mut h, r, input, &shared, &scope)?;
        let (mut plan, host_missing) = h.into_plan(n);
        stamp::stamp_units(&mut plan);
        missing.extend(host_missing);
        out.push(plan);
    }
    Ok((out, missing))
}

/// The host's baseline, binaries, container runtime and registry mirror.
fn render_host_runtime(
    h: &mut HostFiles,
    r: &Renderer,
    input: &RenderInput,
    shared: &ClusterScope,
    scope: &HostScope,
) -> Result<()> {
    let baseline = baseline::BaselineInput {
        scope,
        chrony_hosts: &shared.chrony_hosts,
        host_nets: &shared.host_nets,
    };
    baseline::render(h, r, &baseline)?;
    let bins = binaries::BinariesInput {
        scope,
        bundle: input.bundle,
    };
    binaries::render(h, &bins)?;
    if scope.has(Role::Node) {
        let containerd = containerd::ContainerdInput {
            scope,
            bundle: input.bundle,
            pki: input.pki,
            sandbox: &shared.sandbox,
            mirrors: &shared.mirrors,
        };
        containerd::render(h, r, &containerd)?;
    }
    if scope.has(Role::Registry) {
        let registry = registry::RegistryInput {
            scope,
            pki: input.pki,
        };
        registry::render(h, r, &registry)?;
    }
    Ok(())
}

/// The host's etcd, control plane, access layer, kubelet and addons.
fn render_host_kubernetes(
    h: &mut HostFiles,
    r: &Renderer,
    input: &RenderInput,
    shared: &ClusterScope,
    scope: &HostScope,
) -> Result<()> {
    let n = scope.node;
    if let Some(member) = &n.etcd_name {
        let start =
            input
                .etcd_members
                .get(member)
                .ok_or_else(|| crate::plan::error::PlanError::Pki {
                    name: format!("etcd member {member}"),
                    reason: "not in the planned membership".into(),
                })?;
        let etcd = etcd::EtcdInput {
            scope,
            pki: input.pki,
            member,
            start,
        };
        etcd::render(h, r, &etcd)?;
    }
    if scope.has(Role::Master) {
        let control_plane = control_plane::ControlPlaneInput {
            scope,
            pki: input.pki,
            encryption_key: input.encryption_key,
            kubeconfigs: input.kubeconfigs,
        };
        control_plane::render(h, r, &control_plane)?;
    }
    if let (true, Some(vip)) = (scope.has(Role::ExLb), input.cluster.vip) {
        access::render(
            h,
            r,
            &access::AccessInput {
                scope,
                pki: input.pki,
                vip,
            },
        )?;
    }
    if scope.has(Role::Node) {
        access::render_local(h, r, scope, input.pki)?;
    }
    if scope.has(Role::Node) {
        let node = node::NodeInput {
            scope,
            pki: input.pki,
            kubeconfigs: input.kubeconfigs,
        };
        node::render(h, r, &node)?;
    }
    if Some(n.name.as_str()) == shared.first_master {
        let addons = addons::AddonsInput {
            scope,
            render: input,
            node_platforms: &shared.node_platforms,
        };
        addons::render(h, r, &addons)?;
    }
    Ok(())
}

/// The kubeconfig of `name` from the cluster dir's set.
pub(super) fn kubeconfig(kubeconfigs: &BTreeMap<String, String>, name: &str) -> Result<String> {
    kubeconfigs
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
    let node_endpoint = c.node_apiserver_endpoint();
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
            node_endpoint.clone(),
        ),
    ];
    for n in c.with_role(Role::Node) {
        list.push((
            format!("kubelet-{}", n.name),
            format!("system:node:{}", n.name),
            format!("kubelet/{}", n.name),
            node_endpoint.clone(),
        ));
    }
    let ca = b64(pki.get("ca.pem")?);
    let mut out = BTreeMap::new();
    for (name, user, cert, server) in list {
        let context = match (&c.config.context_name, name.as_str()) {
            (Some(ctx), "admin") => ctx.value.clone(),
            _ => format!("{user}@{}", c.name),
        };
        let ctx = json!({"cluster_name": c.name, "server": server, "ca_data": ca, "user": user, "context": context,
            "cert_data": b64(pki.get(&format!("{cert}.pem"))?), "key_data": b64(pki.get(&format!("{cert}-key.pem"))?)});
        out.insert(name, r.render("kubernetes/kubeconfig", &ctx)?);
    }
    Ok(out)
}
